"""What a job reads: a video (cut into time segments) or an image folder (cut into chunks of files).

Both yield :class:`Sample` objects, so one pipeline serves both.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervid.expressions import UnknownExpressionError, canonical
from fervid.model.data import ImageReadError, list_images, read_image
from fervid.worker.decode import VideoInfo, iter_frames
from fervid.worker.labels import Labels

IMAGES_PER_SEGMENT = 1000
#: Files a folder's videos are recognised by (``fervid submit FOLDER``; ``--glob`` chooses others).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".mts", ".m2ts", ".ts", ".wmv", ".flv", ".3gp", ".ogv"})


@dataclass(frozen=True)
class Sample:
    """One sampled frame or image, with its ground truth when known."""

    frame_index: int
    time: float | None
    image: np.ndarray
    source_path: str | None = None
    truth: str | None = None


@dataclass(frozen=True)
class ImageEntry:
    """An image file with its ground truth; ``warning`` is set on the first image of a sub-folder whose name is
    no expression (its images are processed without ground truth, and the job counts one warning)."""

    path: Path
    truth: str | None
    warning: str | None = None


def is_video_source(source: str) -> bool:
    """URLs and files are videos; directories are image folders."""
    return "://" in source or not Path(source).is_dir()


def expand_inputs(paths: Sequence[str], recursive: bool = False, pattern: str | None = None) -> list[str]:
    """The sources of ``fervid submit PATH...``, in order and without repeats: a URL or a file is one source; a
    folder that holds videos (files with :data:`VIDEO_SUFFIXES`, or whose names match ``pattern``; in its
    sub-folders too with ``recursive``) gives each video; any other folder is one image folder. Raises, before
    anything is stored, for a path that does not exist and a folder with neither videos nor images."""
    found: list[str] = []
    for path in paths:
        if "://" in path:
            found.append(path)
            continue
        location = Path(path)
        if not location.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if not location.is_dir():
            found.append(str(location.resolve()))
            continue
        files = location.rglob("*") if recursive else location.iterdir()
        videos = sorted(
            f for f in files
            if f.is_file() and not f.name.startswith(".")
            and (fnmatch.fnmatch(f.name, pattern) if pattern else f.suffix.lower() in VIDEO_SUFFIXES)
        )  # fmt: skip
        if videos:
            found += [str(f.resolve()) for f in videos]
        elif image_entries(location):
            found.append(str(location.resolve()))
        else:
            wanted = f"files matching {pattern!r}" if pattern else "videos"
            raise ValueError(f"{path}: no {wanted} or images (png, jpg, bmp, tif, webp) in the folder or its sub-folders")
    return list(dict.fromkeys(found))


def image_entries(root: str | Path) -> list[ImageEntry]:
    """Images of a folder, in a stable order: those at the top level (no truth), then each class sub-folder's.

    Sub-folders named after an expression (or an alias) give ground truth; others are read without it.
    Files are chosen by suffix (:data:`~fervid.model.data.IMAGE_SUFFIXES`); other files are ignored.
    """
    root = Path(root)
    entries = [ImageEntry(p, None) for p in list_images(root)]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = list_images(folder)
        try:
            entries += [ImageEntry(p, canonical(folder.name)) for p in images]
        except UnknownExpressionError:
            note = f"{folder}: not an expression name, its {len(images)} images have no ground truth"
            entries += [ImageEntry(p, None, note if i == 0 else None) for i, p in enumerate(images)]
    return entries


def plan_video(info: VideoInfo, segment_seconds: float) -> list[tuple[float, float | None]]:
    """Consecutive ``[start, end)`` segments covering the video; the last one is open-ended."""
    if not info.duration or info.duration <= segment_seconds or segment_seconds <= 0:
        return [(0.0, None)]
    count = math.ceil(info.duration / segment_seconds - 1e-9)
    return [(k * segment_seconds, (k + 1) * segment_seconds if k + 1 < count else None) for k in range(count)]


def plan_images(count: int, per_segment: int = IMAGES_PER_SEGMENT) -> list[tuple[float, float | None]]:
    """Chunks of image indices ``[start, end)``."""
    return [(float(s), float(min(s + per_segment, count))) for s in range(0, count, per_segment)]


def video_samples(
    source: str,
    start: float,
    end: float | None,
    sample_fps: float | None,
    labels: Labels | None,
    on_error: Callable[[Exception], None],
) -> Iterator[Sample]:
    for frame in iter_frames(source, sample_fps, start, end, on_error=on_error):
        yield Sample(frame.index, frame.time, frame.image, None, labels.at(frame.time) if labels else None)


def image_samples(
    root: str,
    start: float,
    end: float | None,
    on_error: Callable[[Exception], None],
    on_warning: Callable[[Exception], None] | None = None,
) -> Iterator[Sample]:
    """The images ``[start, end)`` of :func:`image_entries`; unreadable files go to ``on_error`` and are skipped,
    an unknown class folder goes to ``on_warning`` once (with its first image)."""
    entries = image_entries(root)
    for index in range(int(start), int(end) if end is not None else len(entries)):
        entry = entries[index]
        if entry.warning and on_warning:
            on_warning(UserWarning(entry.warning))
        try:
            image = read_image(entry.path)
        except ImageReadError as exc:
            on_error(exc)
            continue
        yield Sample(index, None, image, str(entry.path), entry.truth)
