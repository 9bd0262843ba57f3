"""The crowded-scene test video of ``benchmarks/throughput.py``: 20 moving real faces on a 1280×720 canvas.

How it is made: CenterFace finds the face in every frame of ``../shared/videos/face_clip.mp4`` (the previous box where
it finds none); a square patch of :data:`PATCH_MARGIN` × the box's larger side around the box centre is cut from
each frame, so each patch shows the face, changing, with its surroundings. :data:`PEOPLE` copies of that face
sequence are placed on a 5 × 4 grid over a textured background, each with its own patch size (:data:`SIZES`: faces
of roughly 60 to 110 pixels), mirroring (every other copy), brightness (× 0.7 to 1.3), start frame in the clip and a
slow elliptical drift within its cell; a feathered elliptical mask blends each patch into the background. The clip
plays forwards and backwards; the video is encoded like the one-face video (libx264 veryfast, CRF 23, 25 fps, a
keyframe every 2 s). Without ``../shared`` the drawn face of the one-face video stands in (the output says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fervid.model.detect import create_detector

#: Faces in the scene, on a grid of COLUMNS × ROWS cells.
PEOPLE, COLUMNS, ROWS = 20, 5, 4
#: The patch around a face: this many times the face box's larger side.
PATCH_MARGIN = 1.6
#: Range of patch sides in pixels (faces are about 1 / PATCH_MARGIN of that).
SIZES = (100, 175)
VERSION = 1  # bump when the video changes, so cached copies are remade


@dataclass(frozen=True)
class Person:
    """One face of the scene: where its cell is, its size, look and motion."""

    column: int
    row: int
    side: int
    mirrored: bool
    gain: float
    phase: int  # start frame in the face sequence
    drift: tuple[float, float]  # pixels of drift in x and y
    periods: tuple[float, float]  # seconds per drift cycle in x and y


def face_patches(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Square patches around the face of each frame (see the module docstring), all of one size."""
    detector = create_detector("centerface")
    box, side, patches = None, 0, []
    for frame in frames:
        found = max(detector.detect(frame), key=lambda d: d.score, default=None)
        box = found.box if found is not None else box
        if box is None:
            continue
        side = side or round(PATCH_MARGIN * max(box[2] - box[0], box[3] - box[1]))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x, y = round(cx - side / 2), round(cy - side / 2)
        padded = cv2.copyMakeBorder(frame, side, side, side, side, cv2.BORDER_REFLECT)
        patches.append(padded[y + side : y + 2 * side, x + side : x + 2 * side].copy())
    if not patches:  # the drawn stand-in face, which CenterFace need not find: it fills its frames
        side = min(frames[0].shape[:2])
        return [f[(f.shape[0] - side) // 2 :][:side, (f.shape[1] - side) // 2 :][:, :side].copy() for f in frames]
    return patches


def people(seed: int = 0) -> list[Person]:
    rng = np.random.default_rng(seed)
    return [
        Person(
            i % COLUMNS,
            i // COLUMNS,
            int(rng.integers(SIZES[0], SIZES[1] + 1)),
            bool(i % 2),
            float(rng.uniform(0.7, 1.3)),
            int(rng.integers(0, 1000)),
            (float(rng.uniform(10, 35)), float(rng.uniform(3, 8))),
            (float(rng.uniform(4, 9)), float(rng.uniform(3, 7))),
        )  # fmt: skip
        for i in range(PEOPLE)
    ]


def _mask(side: int) -> np.ndarray:
    """A feathered ellipse filling a ``side`` square, (side, side, 1) float32 in [0, 1]."""
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.42), int(side * 0.47)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), side * 0.05)[..., None]


def painter(patches: list[np.ndarray], size: tuple[int, int], fps: int) -> Callable[[int, np.ndarray], np.ndarray]:
    """``paint(index, background)``: frame ``index`` of the scene, every person's face pasted over the background."""
    cast = people()
    width, height = size
    cell_w, cell_h = width / COLUMNS, height / ROWS
    looks = {}
    for p in cast:  # each person's face sequence, resized, mirrored and brightened once
        frames = [cv2.resize(f, (p.side, p.side), interpolation=cv2.INTER_AREA) for f in patches]
        frames = [cv2.flip(f, 1) if p.mirrored else f for f in frames]
        looks[p] = [np.clip(f.astype(np.float32) * p.gain, 0, 255) for f in frames]
    masks = {p.side: _mask(p.side) for p in cast}
    period = max(2 * len(patches) - 2, 1)

    def paint(index: int, background: np.ndarray) -> np.ndarray:
        image = background.astype(np.float32)
        t = index / fps
        for p in cast:
            k = (index + p.phase) % period
            face = looks[p][k if k < len(patches) else period - k]
            cx = (p.column + 0.5) * cell_w + p.drift[0] * math.sin(2 * math.pi * t / p.periods[0])
            cy = (p.row + 0.5) * cell_h + p.drift[1] * math.cos(2 * math.pi * t / p.periods[1])
            x = min(max(round(cx - p.side / 2), 0), width - p.side)
            y = min(max(round(cy - p.side / 2), 0), height - p.side)
            region, mask = image[y : y + p.side, x : x + p.side], masks[p.side]
            region[:] = face * mask + region * (1 - mask)
        return image.astype(np.uint8)

    return paint
