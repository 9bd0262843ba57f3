"""Face tracks: greedy IoU matching frame to frame, and stitching tracks across segment borders.

A new box continues a track when their IoU reaches the threshold (the "IOU tracker" of
Bochinski et al., "High-Speed Tracking-by-Detection Without Using Image Information", AVSS 2017);
since faces move far between frames at low sample rates, a box whose centre is less than one
box width from the track's last box also continues it, ranked below every IoU match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def affinity(a: Box, b: Box, iou_threshold: float) -> float:
    """How well ``b`` continues ``a``: their IoU when it reaches ``iou_threshold``; otherwise, when
    the centres are less than one (mean) box width apart, a score in ``(0, iou_threshold]`` that
    falls with the distance; else 0 (no match)."""
    overlap = iou(a, b)
    if overlap >= iou_threshold and overlap > 0:
        return overlap
    width = ((a[2] - a[0]) + (b[2] - b[0])) / 2
    distance = math.dist(((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))
    if width <= 0 or distance >= width:
        return 0.0
    return iou_threshold * (1 - distance / width)


def match(
    old: Sequence[Box],
    new: Sequence[Box],
    iou_threshold: float,
    allowed: Callable[[int, int], bool] = lambda i, j: True,
) -> dict[int, int]:
    """Greedy one-to-one matching, best :func:`affinity` first: ``{index in new: index in old}``.

    ``allowed(i, j)`` can exclude a pair (old ``i``, new ``j``) beforehand.
    """
    candidates = sorted(
        (
            (score, i, j)
            for i, a in enumerate(old)
            for j, b in enumerate(new)
            if allowed(i, j) and (score := affinity(a, b, iou_threshold)) > 0
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in candidates:
        if i not in used and j not in matched:
            matched[j] = i
            used.add(i)
    return matched


class IoUTracker:
    """Assigns track ids 0, 1, 2, ... (in order of creation) to the boxes of successive frames.

    A track ends when unseen for more than ``max_gap`` seconds.
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: float = 1.0) -> None:
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self._tracks: dict[int, tuple[float, Box]] = {}  # id -> (last time, last box)
        self._next_id = 0

    def update(self, time: float, boxes: Sequence[Box]) -> list[int]:
        """The track id of each box of the frame at ``time`` seconds (times must not decrease)."""
        self._tracks = {k: v for k, v in self._tracks.items() if time - v[0] <= self.max_gap}
        ids = list(self._tracks)
        matched = match([self._tracks[k][1] for k in ids], boxes, self.iou_threshold)
        result = []
        for j, box in enumerate(boxes):
            if j in matched:
                track = ids[matched[j]]
            else:
                track, self._next_id = self._next_id, self._next_id + 1
            self._tracks[track] = (time, tuple(box))
            result.append(track)
        return result

    def split(self, track: int) -> int:
        """End ``track`` before its latest box, which starts a new track instead; the new track's id."""
        new, self._next_id = self._next_id, self._next_id + 1
        self._tracks[new] = self._tracks.pop(track)
        return new


def stitch(
    ends: Mapping[int, tuple[float, Box]],
    starts: Mapping[int, tuple[float, Box]],
    iou_threshold: float = 0.3,
    max_gap: float = 1.0,
    same_face: Callable[[int, int], bool] = lambda old, new: True,
) -> dict[int, int]:
    """Join tracks across a segment border: ``{track of segment k+1: track of segment k}``.

    ``ends`` holds the last (time, box) of each track of segment k, ``starts`` the first
    (time, box) of each track of segment k+1; tracks join by the :class:`IoUTracker` rule when
    at most ``max_gap`` seconds separate them and ``same_face(old, new)`` allows it.
    """
    old, new = list(ends), list(starts)
    pairs = match(
        [ends[k][1] for k in old],
        [starts[k][1] for k in new],
        iou_threshold,
        lambda i, j: starts[new[j]][0] - ends[old[i]][0] <= max_gap and same_face(old[i], new[j]),
    )
    return {new[j]: old[i] for j, i in pairs.items()}
