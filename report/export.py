"""Streaming exports of a job's timeline: CSV, JSON Lines or Parquet, per frame or per second.

Rows come from :func:`~fervid.db.reports.timeline_rows` a batch at a time and are written as they arrive, so memory
does not grow with the job. Parquet needs the optional extra ``fervid[parquet]`` (pyarrow).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine

from fervid.db.jobs import get_job
from fervid.db.reports import timeline_rows
from fervid.db.schema import PROBABILITY_COLUMNS, SMOOTHED_OF
from fervid.report.formatting import check_output

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
GRANULARITIES: tuple[str, ...] = ("frame", "second")
#: Rows fetched from the database, and rows per Parquet record batch.
BATCH_ROWS = 5000

_BOX = (("x1", "float"), ("y1", "float"), ("x2", "float"), ("y2", "float"))
_PREDICTION = (("label", "str"), ("confidence", "float"), *((name, "float") for name in PROBABILITY_COLUMNS))
#: Columns and their types: a video's frames, an image folder's images, and a video's per-second means.
VIDEO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("job_id", "int"), ("person_id", "int"), ("track_id", "int"), ("t", "float"), ("frame_index", "int"), *_BOX, *_PREDICTION,
    ("truth", "str"),
)  # fmt: skip
IMAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("job_id", "int"), ("source_path", "str"), ("track_id", "int"), ("frame_index", "int"), *_BOX, *_PREDICTION,
    ("truth", "str"),
)  # fmt: skip
SECOND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("job_id", "int"), ("person_id", "int"), ("track_id", "int"), ("second", "int"), ("faces", "int"), *_PREDICTION,
)  # fmt: skip


def export_timeline(
    engine: Engine, job_id: int, fmt: str, output: Path | None, per: str = "frame", smoothed: bool = True
) -> int:
    """Write the job's timeline to ``output`` (``None``: standard output, text formats only); the number of rows.

    ``label``, ``confidence`` and the probabilities are the readings smoothed over time (:mod:`fervid.worker.
    smoothing`; the raw ones where a job has none) or, ``smoothed=False``, the raw ones.

    ``fmt`` is ``csv``, ``jsonl`` or ``parquet``. ``per="frame"`` writes every detection (:data:`VIDEO_COLUMNS`, or
    :data:`IMAGE_COLUMNS` for an image folder); ``per="second"`` writes, per track and whole second
    ``floor(t)``, the number of faces, the mean of each probability (NULLs skipped, as SQL's ``AVG``) and the
    dominant label, the argmax of those means, with its mean probability as ``confidence``
    (:data:`SECOND_COLUMNS`; videos only). Rows are ordered by time, then track.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if per not in GRANULARITIES:
        raise ValueError(f"unknown granularity per={per!r}; choose from {', '.join(GRANULARITIES)}")
    if fmt == "parquet":
        if output is None:
            raise ValueError("parquet is a binary format: pass an output file")
        _pyarrow()
    if output is not None:
        output = check_output(output)
    images = get_job(engine, job_id)["kind"] == "images"
    if per == "second" and images:
        raise ValueError(f"job {job_id} is an image folder: its rows have no times to aggregate per second")
    rows = timeline_rows(engine, job_id, BATCH_ROWS)
    if smoothed:
        rows = (_smoothed(row) for row in rows)
    if per == "second":
        columns, records = SECOND_COLUMNS, per_second(rows)
    else:
        columns = IMAGE_COLUMNS if images else VIDEO_COLUMNS
        records = ({name: row[name] for name, _ in columns} for row in rows)
    if fmt == "parquet":
        return _write_parquet(records, columns, output)
    with _text_output(output) as stream:
        return (_write_csv if fmt == "csv" else _write_jsonl)(records, columns, stream)


def _smoothed(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its smoothed reading in the raw reading's columns (where it has one)."""
    if row["label_smoothed"] is None:
        return row
    return row | {raw: row[smooth] for raw, smooth in SMOOTHED_OF.items()}


def per_second(rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Per-(second, track) means of rows ordered by time (``job_id``, ``track_id``, ``t``, ``p_*`` keys).

    Only the current second's accumulators are held; a second's tracks come out in track order.
    """
    second: int | None = None
    tracks: dict[int | None, _Accumulator] = {}
    for row in rows:
        t = row["t"]
        if t is None:
            raise ValueError(f"job {row['job_id']} has a detection without a time (frame {row['frame_index']})")
        current = math.floor(t)
        if current != second:
            if second is not None and current < second:
                raise ValueError("rows must be ordered by time")
            yield from _flush(tracks, second)
            second, tracks = current, {}
        tracks.setdefault(row["track_id"], _Accumulator(row["job_id"], row.get("person_id"))).add(row)
    yield from _flush(tracks, second)


class _Accumulator:
    """Sums and non-NULL counts of one track's probabilities within one second."""

    def __init__(self, job_id: int, person_id: int | None) -> None:
        self.job_id, self.person_id = job_id, person_id
        self.faces = 0
        self.sums = [0.0] * len(PROBABILITY_COLUMNS)
        self.counts = [0] * len(PROBABILITY_COLUMNS)

    def add(self, row: Mapping[str, Any]) -> None:
        self.faces += 1
        for i, name in enumerate(PROBABILITY_COLUMNS):
            if row[name] is not None:
                self.sums[i] += row[name]
                self.counts[i] += 1

    def record(self, track_id: int | None, second: int) -> dict[str, Any]:
        means = [total / n if n else None for total, n in zip(self.sums, self.counts)]
        known = [(mean, -i) for i, mean in enumerate(means) if mean is not None]
        best = -max(known)[1] if known else None  # ties: the first class in canonical order
        return {
            "job_id": self.job_id,
            "person_id": self.person_id,
            "track_id": track_id,
            "second": second,
            "faces": self.faces,
            "label": None if best is None else PROBABILITY_COLUMNS[best].removeprefix("p_"),
            "confidence": None if best is None else means[best],
            **dict(zip(PROBABILITY_COLUMNS, means)),
        }


def _flush(tracks: dict[int | None, _Accumulator], second: int | None) -> Iterator[dict[str, Any]]:
    for track_id in sorted(tracks, key=lambda track: (track is None, track or 0)):
        yield tracks[track_id].record(track_id, second)


@contextmanager
def _text_output(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8", newline="") as stream:
        yield stream


def _write_csv(records: Iterable[dict[str, Any]], columns: tuple[tuple[str, str], ...], stream: TextIO) -> int:
    """CSV with a header; NULL is the empty field and floats keep every digit (``repr``)."""
    writer = csv.writer(stream, lineterminator="\n")
    names = [name for name, _ in columns]
    writer.writerow(names)
    count = 0
    for record in records:
        writer.writerow([record[name] for name in names])
        count += 1
    return count


def _write_jsonl(records: Iterable[dict[str, Any]], columns: tuple[tuple[str, str], ...], stream: TextIO) -> int:
    """One JSON object per line; NULL is ``null``."""
    count = 0
    for record in records:
        stream.write(json.dumps(record) + "\n")
        count += 1
    return count


def _write_parquet(records: Iterable[dict[str, Any]], columns: tuple[tuple[str, str], ...], path: Path) -> int:
    """Parquet written one record batch of :data:`BATCH_ROWS` rows at a time."""
    pa, pq = _pyarrow()
    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    schema = pa.schema([(name, types[kind]) for name, kind in columns])
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for record in records:
            chunk.append(record)
            if len(chunk) == BATCH_ROWS:
                writer.write_batch(pa.RecordBatch.from_pylist(chunk, schema=schema))
                count, chunk = count + len(chunk), []
        if chunk:
            writer.write_batch(pa.RecordBatch.from_pylist(chunk, schema=schema))
        count += len(chunk)
    return count


def _pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an ImportError that names the extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ImportError("parquet export needs pyarrow: pip install 'fervid[parquet]'") from exc
    return pyarrow, pyarrow.parquet
