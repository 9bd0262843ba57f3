"""Test-time augmentation: each face read as several views whose probabilities are averaged.

The views are the face itself, with ``shift`` four copies moved by that fraction of its side (rounded to whole
pixels, at least one) up, down, left and right (edges repeated), and with ``flip`` the mirror image of each. Shifts,
not the ten crops of Krizhevsky et al. (2012): the networks are trained on aligned faces at one scale, and crops that
enlarge the face read fewer faces right (benchmarks/results/training.md, "Test-time augmentation").
"""

from __future__ import annotations

import numpy as np


def views(faces: np.ndarray, flip: bool = False, shift: float = 0.0) -> np.ndarray:
    """The views of faces ``(N, C, S, S)`` stacked view by view: ``(V · N, C, S, S)`` float32."""
    size = faces.shape[-1]
    pixels = max(1, round(shift * size)) if shift > 0 else 0  # a shift asked for is a shift made
    if not flip and not pixels:  # the face alone: no copy where it is already contiguous float32 (jobs' hot path)
        return np.ascontiguousarray(faces, dtype=np.float32)
    stack = [faces]
    if pixels:
        padded = np.pad(faces, ((0, 0), (0, 0), (pixels, pixels), (pixels, pixels)), mode="edge")
        for dy, dx in ((-pixels, 0), (pixels, 0), (0, -pixels), (0, pixels)):
            stack.append(padded[..., pixels + dy : pixels + dy + size, pixels + dx : pixels + dx + size])
    if flip:
        stack += [view[..., ::-1] for view in stack]
    return np.ascontiguousarray(np.concatenate(stack), dtype=np.float32)


def average(probs: np.ndarray, faces: int) -> np.ndarray:
    """Each of ``faces`` faces' probabilities averaged over its views (``probs`` stacked as :func:`views` stacks)."""
    return probs.reshape(-1, faces, probs.shape[-1]).mean(axis=0)
