"""Labelled image folders decoded once into memory: one sub-folder per class, names mapped onto the canonical vocabulary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fervid.expressions import UnknownExpressionError, canonical, canonical_order
from fervid.model.detect import FaceDetector
from fervid.model.preprocess import crop_face, preprocess

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


class ImageReadError(ValueError):
    """An image file that cannot be decoded."""


class DatasetError(ValueError):
    """A data folder that cannot be used for training or evaluation."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file (any bit depth, EXIF orientation applied, non-ASCII paths) as uint8 BGR.

    Raises :class:`ImageReadError` naming the file when it is empty, not an image, damaged, or a JPEG cut short
    (which decoders fill with grey without an error).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror})") from None
    if not data.size:
        raise ImageReadError(f"{path}: empty file")
    if _truncated_jpeg(data):
        raise ImageReadError(f"{path}: truncated JPEG (the data ends before the end-of-image marker)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:  # e.g. more pixels than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        raise ImageReadError(f"{path}: cannot decode ({exc.err})") from None
    if image is None:
        raise ImageReadError(f"{path}: not a decodable image")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / float(np.iinfo(image.dtype).max))
    return image


def _truncated_jpeg(data: np.ndarray) -> bool:
    """A JPEG whose last scan (SOS marker) is not followed by the end-of-image marker (EOI), or that has neither.

    Entropy-coded data never holds an ``FF`` marker byte unescaped, so the last EOI comes after the last SOS in
    a whole file; an EXIF thumbnail's EOI comes before the main image's scans.
    """
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    raw = data.tobytes()
    return raw.rfind(b"\xff\xd9") <= raw.rfind(b"\xff\xda")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(root: str | Path, classes: Sequence[str] | None = None, skip_unknown: bool = False) -> dict[str, list[Path]]:
    """Canonical class name → its folders under ``root`` (several aliases may map to one class).

    ``classes`` selects a subset (canonical names or aliases); an unknown folder name is an error unless ``skip_unknown``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    wanted = set(canonical_order(classes)) if classes else None
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            name = canonical(folder.name)
        except UnknownExpressionError as exc:
            if skip_unknown:
                continue
            raise DatasetError(f"{root}: class folder {folder.name!r}: {exc}") from None
        if wanted is None or name in wanted:
            found.setdefault(name, []).append(folder)
    if not found:
        raise DatasetError(f"{root}: no class folders" + (f" for classes {sorted(wanted)}" if wanted else ""))
    return {name: found[name] for name in canonical_order(found)}


@dataclass
class ImageSet:
    """Preprocessed images in memory: ``x`` float32 (N, 1, S, S), ``y`` int64 indices into ``classes``."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    paths: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "ImageSet":
        return ImageSet(self.x[idx], self.y[idx], self.classes, [self.paths[i] for i in idx])


def largest_face(image: np.ndarray, detector: FaceDetector, margin: float) -> np.ndarray:
    """The crop of the largest detected face, or the whole image when none is found."""
    faces = detector.detect(image)
    if not faces:
        return image
    best = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    return crop_face(image, best.box, margin)


def load_image_folder(
    root: str | Path,
    size: int,
    *,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    detector: FaceDetector | None = None,
    margin: float = 0.2,
    threads: int = 4,
    on_skip: Callable[[str], None] | None = None,
) -> ImageSet:
    """Decode and preprocess every image of a class-folder tree once.

    Unreadable files are skipped and listed in ``ImageSet.skipped`` (and passed to ``on_skip``).
    """
    folders = class_folders(root, classes, skip_unknown)
    names = list(folders)
    files = [(path, label) for label, name in enumerate(names) for f in folders[name] for path in list_images(f)]
    if not files:
        raise DatasetError(f"{root}: no images in the class folders")

    def load(item: tuple[Path, int]) -> np.ndarray | str:
        try:
            image = read_image(item[0])
        except ImageReadError as exc:
            return str(exc)
        if detector is not None:
            image = largest_face(image, detector, margin)
        return preprocess([image], size)[0]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(load, files))
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = [r for r in results if isinstance(r, str)]
    for message in skipped:
        if on_skip:
            on_skip(message)
    if not kept:
        raise DatasetError(f"{root}: none of the {len(files)} images could be read")
    x = np.stack([results[i] for i in kept]).astype(np.float32, copy=False)
    y = np.array([files[i][1] for i in kept], dtype=np.int64)
    return ImageSet(x, y, names, [str(files[i][0]) for i in kept], skipped)
