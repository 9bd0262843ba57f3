"""Labelled image folders decoded once into memory: one sub-folder per class, names mapped onto the canonical vocabulary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fervid.expressions import UnknownExpressionError, canonical, canonical_order
from fervid.model.align import FaceCropper, locate_faces
from fervid.model.detect import FaceDetector
from fervid.model.preprocess import preprocess

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
        if image is None:  # some layouts (a one-channel float TIFF) decode only as they are stored
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if image is not None and (image.ndim == 2 or image.shape[2] in (1, 4)):
                code = cv2.COLOR_BGRA2BGR if image.ndim == 3 and image.shape[2] == 4 else cv2.COLOR_GRAY2BGR
                image = cv2.cvtColor(image, code)
    except cv2.error as exc:  # e.g. more pixels than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        raise ImageReadError(f"{path}: cannot decode ({exc.err})") from None
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ImageReadError(f"{path}: not a decodable image")
    if image.dtype.kind == "f":  # floating-point TIFF/EXR: [0, 1] by convention, clipped
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        image = (np.clip(finite, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
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
    undetected: int = 0  # images in which the detector found no face: the whole image was taken
    soft: np.ndarray | None = None  # (N, len(classes)) float32 label distributions (soft labels), if any

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> ImageSet:
        soft = self.soft[idx] if self.soft is not None else None
        return ImageSet(self.x[idx], self.y[idx], self.classes, [self.paths[i] for i in idx], soft=soft)


def soft_labels(path: str | Path, images: ImageSet) -> tuple[np.ndarray, int]:
    """Per-image label distributions from a CSV, for ``images``: one row per image, named by an ``image`` column
    (its file name) or a ``path`` column (matched by file name), and one column of counts or probabilities per
    class (canonical names or aliases, e.g. FER+'s ``votes.csv``); other columns are ignored. Each row is
    normalised over ``images.classes``; an image without a row, or whose row gives its classes nothing, keeps its
    folder's label. Returns the distributions ``(N, C)`` and how many images had a row."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns: dict[str, str] = {}
        for column in reader.fieldnames or []:
            try:
                columns.setdefault(canonical(column), column)
            except UnknownExpressionError:
                continue
        missing = [c for c in images.classes if c not in columns]
        if missing:
            raise DatasetError(f"{path}: no column for the classes {', '.join(missing)}")
        rows = {}
        for row in reader:
            name = row.get("image") or Path(row.get("path") or "").name
            if name:
                rows[name] = [float(row[columns[c]] or 0) for c in images.classes]
    soft = np.eye(len(images.classes), dtype=np.float32)[images.y]
    matched = 0
    for i, image in enumerate(images.paths):
        counts = rows.get(Path(image).name)
        if counts is not None and sum(counts) > 0:
            soft[i] = np.asarray(counts, dtype=np.float32) / sum(counts)
            matched += 1
    if not matched:
        raise DatasetError(f"{path}: names none of the {len(images)} images")
    return soft, matched


def face_input(image: np.ndarray, detector: FaceDetector | None, cropper: FaceCropper) -> tuple[np.ndarray, bool]:
    """The gray crop of an image's face (the largest one found; the whole image when none is) and whether a face
    was found: the same :func:`~fervid.model.align.locate_faces` and crop as image jobs."""
    located = locate_faces(image, detector, context=cropper.context)
    if not located:
        return cropper(image, None), False
    best = max(located, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return cropper(best.image, best.face), best.face is not None


def load_image_folder(
    root: str | Path,
    size: int,
    *,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    detector: FaceDetector | None = None,
    cropper: FaceCropper | None = None,
    threads: int = 4,
    on_skip: Callable[[str], None] | None = None,
) -> ImageSet:
    """Decode, crop (:func:`face_input`; without a detector each image is the face) and preprocess every image
    of a class-folder tree once.

    ``cropper`` defaults to the old definition (:class:`~fervid.model.align.FaceCropper` without a spec).
    Unreadable files are skipped and listed in ``ImageSet.skipped`` (and passed to ``on_skip``).
    """
    cropper = cropper or FaceCropper(size, detector.name if detector else "none")
    folders = class_folders(root, classes, skip_unknown)
    names = list(folders)
    files = [(path, label) for label, name in enumerate(names) for f in folders[name] for path in list_images(f)]
    if not files:
        raise DatasetError(f"{root}: no images in the class folders")

    def load(item: tuple[Path, int]) -> tuple[np.ndarray, bool] | str:
        try:
            image = read_image(item[0])
        except ImageReadError as exc:
            return str(exc)
        crop, found = face_input(image, detector, cropper)
        return preprocess([crop], size)[0], found or detector is None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(load, files))
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = [r for r in results if isinstance(r, str)]
    for message in skipped:
        if on_skip:
            on_skip(message)
    if not kept:
        raise DatasetError(f"{root}: none of the {len(files)} images could be read")
    x = np.stack([results[i][0] for i in kept]).astype(np.float32, copy=False)  # type: ignore[index]
    y = np.array([files[i][1] for i in kept], dtype=np.int64)
    undetected = sum(not results[i][1] for i in kept)  # type: ignore[index]
    return ImageSet(x, y, names, [str(files[i][0]) for i in kept], skipped, undetected)
