"""Face thumbnails kept with a job for its reports: per track, the face at the peak of each expression it shows (the
highest probability of that label while it is the argmax); in an image job, every face.

Each face gets a small colour crop while its frame is still at hand (:func:`face_crop`, a resize of the box plus a
margin: cheap next to detection); a crop is JPEG-encoded only if it is still a peak when the segment ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

#: Side of a thumbnail in pixels, and the share of the box's size added around it.
SIZE = 72
MARGIN = 0.2
JPEG_QUALITY = 80


def face_crop(image: np.ndarray, box: Sequence[float], size: int = SIZE) -> np.ndarray:
    """The square around ``box`` (``MARGIN`` added on every side, clipped to the image) resized to ``size``."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * MARGIN)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w = image.shape[:2]
    left, top = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    right, bottom = int(min(cx + side / 2, w)), int(min(cy + side / 2, h))
    patch = image[top:max(bottom, top + 1), left:max(right, left + 1)]
    if patch.size == 0:
        patch = image
    if patch.ndim == 2:
        patch = cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR)
    scale = size / max(patch.shape[:2])
    dsize = (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale)))
    return cv2.resize(patch, dsize, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


class Peaks:
    """Collects classified faces with their crops and keeps, per track and label, the one with the highest
    probability of that label (``every_face``: keeps them all, for image jobs)."""

    def __init__(self, every_face: bool = False) -> None:
        self.every_face = every_face
        self._kept: dict[tuple[Any, ...], tuple[float, Mapping[str, Any], np.ndarray]] = {}

    def offer(self, row: Mapping[str, Any], crop: np.ndarray) -> None:
        """``row``: a classified detection (``track_id``, ``label``, ``confidence``, ``t``, ...)."""
        if self.every_face:
            key: tuple[Any, ...] = (len(self._kept),)
        else:
            key = (row["track_id"], row["label"])
            if key in self._kept and self._kept[key][0] >= row["confidence"]:
                return
        self._kept[key] = (row["confidence"], row, crop)

    def rows(self) -> list[dict[str, Any]]:
        """Rows of ``face_thumbnails`` (without job and segment): the kept faces, JPEG-encoded."""
        found = []
        for probability, row, crop in self._kept.values():
            ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                found.append(
                    {name: row.get(name) for name in ("track_id", "t", "frame_index", "source_path", "label", "truth")}
                    | {"probability": probability, "image": jpeg.tobytes()}
                )
        return found
