"""Face preprocessing shared by training and the video pipeline.

The paper's input pipeline: a square face crop, converted to gray, histogram-equalised, resized to the
network's input size and normalised to ``[-1, 1]``. :data:`PREPROCESSING` records these choices in checkpoints
so inference reproduces exactly what training saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Normalisation: ``(x / 255 - MEAN) / STD`` maps ``[0, 255]`` onto ``[-1, 1]``.
MEAN: float = 0.5
STD: float = 0.5
#: Default margin added around a detector box on each side, as a fraction of the box's longer side.
MARGIN: float = 0.2

#: What :func:`crop_face` and :func:`preprocess` do by default, for checkpoint metadata.
PREPROCESSING: dict[str, object] = {
    "gray": True,
    "equalize": True,
    "mean": MEAN,
    "std": STD,
    "margin": MARGIN,
}


def to_gray(image: np.ndarray) -> np.ndarray:
    """An 8-bit gray copy of a gray, BGR or BGRA image (8- or 16-bit)."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 or uint16 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")


def crop_face(
    frame: np.ndarray, box: tuple[float, float, float, float], margin: float = MARGIN
) -> np.ndarray:
    """A square crop centred on ``box`` (x1, y1, x2, y2), its longer side enlarged by ``margin`` on each side.

    Parts of the crop outside the frame repeat the frame's edge pixels, so the crop is always square with the
    face in its centre.
    """
    x1, y1, x2, y2 = box
    side = max(int(round(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin))), 1)
    left = int(round((x1 + x2 - side) / 2.0))
    top = int(round((y1 + y2 - side) / 2.0))
    height, width = frame.shape[:2]
    rows = np.clip(np.arange(top, top + side), 0, height - 1)
    cols = np.clip(np.arange(left, left + side), 0, width - 1)
    return frame[np.ix_(rows, cols)]


def preprocess(images: Sequence[np.ndarray], size: int, equalize: bool = True) -> np.ndarray:
    """Face images → the network's input batch, float32 ``(N, 1, size, size)`` in ``[-1, 1]``.

    Each image is converted to gray, histogram-equalised (``cv2.equalizeHist``), resized to ``size``×``size``
    (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when growing) and normalised with :data:`MEAN`, :data:`STD`.
    """
    batch = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        gray = to_gray(image)
        if equalize:
            gray = cv2.equalizeHist(gray)
        if gray.shape != (size, size):
            shrink = gray.shape[0] >= size and gray.shape[1] >= size
            gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        batch[i, 0] = gray
    batch *= 1.0 / (255.0 * STD)
    batch -= MEAN / STD
    return batch
