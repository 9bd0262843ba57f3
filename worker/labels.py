"""Ground-truth expression labels for a video: time ranges read from a CSV file.

The file has a header ``start,end,label`` (any column order; other columns are ignored) and one
range per row, in seconds; a range holds ``start <= t < end``. Labels are canonicalised with
:func:`fervid.expressions.canonical`.
"""

from __future__ import annotations

import csv
import math
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TextIO

from fervid.expressions import EXPRESSIONS, UnknownExpressionError, canonical

COLUMNS = ("start", "end", "label")


class LabelsError(ValueError):
    """A bad labels file; names the file and, for a bad row, its line."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


class LabelRange(NamedTuple):
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Labels:
    """Non-overlapping labelled ranges, sorted by start."""

    ranges: tuple[LabelRange, ...]

    def at(self, time: float) -> str | None:
        """The label of the range holding ``time``, or ``None`` outside every range."""
        i = bisect_right(self.ranges, time, key=lambda r: r.start) - 1
        return self.ranges[i].label if i >= 0 and time < self.ranges[i].end else None


def _seconds(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{column} {text!r} must be a finite, non-negative number of seconds")
    return value


def _parse(row: dict[str, str | None]) -> LabelRange:
    missing = [c for c in COLUMNS if not (row.get(c) or "").strip()]
    if missing:
        raise ValueError(f"missing value for {', '.join(missing)}")
    start, end = _seconds(row["start"].strip(), "start"), _seconds(row["end"].strip(), "end")
    if end <= start:
        raise ValueError(f"end {end:g} is not after start {start:g}")
    try:
        label = canonical(row["label"])
    except UnknownExpressionError:
        known = ", ".join(EXPRESSIONS)
        raise ValueError(f"unknown label {row['label'].strip()!r} (expected one of {known})") from None
    return LabelRange(start, end, label)


def load_labels(path: str | Path) -> Labels:
    """Read and check a labels file; any problem raises :class:`LabelsError` naming the file and line."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as error:
        raise LabelsError(path, f"cannot read: {error.strerror}") from None
    with handle:
        try:
            rows = _read_rows(path, handle)
        except UnicodeDecodeError:
            raise LabelsError(path, "not UTF-8 text; save it as a UTF-8 CSV file") from None
        except csv.Error as error:
            raise LabelsError(path, f"not a readable CSV file ({error})") from None
    rows.sort(key=lambda r: r[1].start)
    for (line_a, a), (line_b, b) in zip(rows, rows[1:]):
        if b.start < a.end:
            problem = f"range {b.start:g}-{b.end:g} overlaps line {line_a} ({a.start:g}-{a.end:g})"
            raise LabelsError(path, problem, line_b)
    return Labels(tuple(r for _, r in rows))


def _read_rows(path: str | Path, handle: TextIO) -> list[tuple[int, LabelRange]]:
    """``(line, range)`` for every row of an open labels file, in file order."""
    reader = csv.DictReader(handle, skipinitialspace=True)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not header:
        raise LabelsError(path, "empty file")
    reader.fieldnames = header
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise LabelsError(path, f"header lacks column(s) {', '.join(missing)} (want {','.join(COLUMNS)})", 1)
    rows: list[tuple[int, LabelRange]] = []
    for row in reader:
        try:
            rows.append((reader.line_num, _parse(row)))
        except ValueError as error:
            raise LabelsError(path, str(error), reader.line_num) from None
    if not rows:
        raise LabelsError(path, "no label rows")
    return rows
