"""Hard cuts between sampled frames, so that no track continues across one.

Each sample is reduced to a small grayscale thumbnail; a cut is a mean absolute difference between consecutive
thumbnails above a threshold (a share of the full 0–255 range). Faces moving, talking or turning change a few
percent of a thumbnail; a cut to another shot changes most of it.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Thumbnail size (width, height) compared between consecutive samples.
THUMBNAIL = (64, 36)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The frame as a :data:`THUMBNAIL` uint8 gray image."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(gray, THUMBNAIL, interpolation=cv2.INTER_AREA)


def is_cut(before: np.ndarray | bytes, after: np.ndarray | bytes, threshold: float) -> bool:
    """Whether two thumbnails (arrays, or their stored bytes) differ by more than ``threshold`` (``1``: never)."""
    a, b = (np.frombuffer(x, np.uint8) if isinstance(x, bytes) else x for x in (before, after))
    return threshold < 1 and float(np.abs(a.astype(np.float32).ravel() - b.astype(np.float32).ravel()).mean()) > 255 * threshold


class CutDetector:
    """Says whether each frame starts a new shot: its thumbnail differs from the previous frame's by more than
    ``threshold`` (:func:`is_cut`). Keeps the first and the last thumbnail, for cuts at segment borders."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.first: np.ndarray | None = None
        self.last: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> bool:
        current = thumbnail(frame)
        previous, self.last = self.last, current
        if previous is None:
            self.first = current
            return False
        return is_cut(previous, current, self.threshold)
