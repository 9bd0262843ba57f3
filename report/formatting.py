"""What every report format shares: output file checks, times as clock strings, expression colours and order."""

from __future__ import annotations

from pathlib import Path

from fervid.expressions import COLORS, EXPRESSIONS

#: Colour of labels outside the canonical vocabulary.
OTHER_COLOR = "#607d8b"


def check_output(path: Path, suffixes: tuple[str, ...] | None = None) -> Path:
    """``path`` resolved, checked to be a writable file name: not a directory, in an existing directory, and
    (when ``suffixes`` are given) with one of those suffixes."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: give a file name inside it")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; use {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist: create it first")
    return path


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from one hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def color(label: str | None) -> str:
    """The expression's fixed colour (:data:`fervid.expressions.COLORS`), :data:`OTHER_COLOR` for other labels."""
    return COLORS.get(label or "", OTHER_COLOR)


def label_order(labels: set[str | None]) -> list[str | None]:
    """Canonical expressions first, in their order, then the others alphabetically, ``None`` last."""
    order = {name: i for i, name in enumerate(EXPRESSIONS)}
    return sorted(labels, key=lambda label: (label is None, order.get(label or "", len(order)), label or ""))
