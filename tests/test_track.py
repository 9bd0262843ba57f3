"""fervid.worker.track: IoU tracking, its centroid fallback, gaps and stitching across segments."""

from __future__ import annotations

import pytest

from fervid.worker.track import Box, IoUTracker, affinity, iou, match, stitch


def square(x: float, y: float, side: float = 40.0) -> Box:
    return (x, y, x + side, y + side)


def test_iou() -> None:
    assert iou(square(0, 0), square(0, 0)) == pytest.approx(1.0)
    assert iou(square(0, 0), square(20, 0)) == pytest.approx(800 / 2400)
    assert iou(square(0, 0), square(40, 0)) == 0.0


def test_affinity_falls_back_to_centre_distance() -> None:
    assert affinity(square(0, 0), square(10, 0), 0.3) == pytest.approx(iou(square(0, 0), square(10, 0)))
    near = affinity(square(0, 0), square(30, 0), 0.3)  # IoU 1/7 < 0.3, centres 0.75 width apart
    assert 0 < near < 0.3 and near == pytest.approx(0.3 * 0.25)
    assert affinity(square(0, 0), square(39, 0), 0.3) > 0  # IoU 1/79, moved less than a width
    assert affinity(square(0, 0), square(30, 30), 0.3) == 0  # moved more than a width (42 px)


def test_match_prefers_best_pairs() -> None:
    old = [square(0, 0), square(100, 0)]
    new = [square(95, 0), square(5, 0), square(300, 300)]
    assert match(old, new, 0.3) == {0: 1, 1: 0}
    assert match(old, new, 0.3, allowed=lambda i, j: i != 1) == {1: 0}


def test_two_moving_faces_keep_their_ids() -> None:
    tracker = IoUTracker()
    for step in range(20):
        time = step / 5
        left, right = square(10 + 8 * step, 20), square(400 - 8 * step, 60)
        boxes = [left, right] if step % 2 else [right, left]  # detector order varies
        assert tracker.update(time, boxes) == ([1, 0] if step % 2 else [0, 1])


def test_fast_face_is_followed_by_centre_distance() -> None:
    tracker = IoUTracker()
    ids = [tracker.update(step * 0.5, [square(35 * step, 0)])[0] for step in range(6)]  # IoU 1/15 each step
    assert ids == [0] * 6


def test_gap_longer_than_max_gap_starts_a_new_track() -> None:
    tracker = IoUTracker(max_gap=1.0)
    assert tracker.update(0.0, [square(0, 0)]) == [0]
    assert tracker.update(0.9, [square(2, 0)]) == [0]
    assert tracker.update(1.8, []) == []
    assert tracker.update(1.9, [square(4, 0)]) == [0]  # unseen for 1.0 s: still alive
    assert tracker.update(3.0, [square(4, 0)]) == [1]  # unseen for 1.1 s: a new track
    assert tracker.update(3.2, [square(4, 0), square(200, 0)]) == [1, 2]


def test_stitch_joins_tracks_across_a_border() -> None:
    ends = {0: (9.8, square(0, 0)), 1: (9.9, square(200, 0)), 2: (5.0, square(400, 0))}
    starts = {
        0: (10.0, square(205, 0)),
        1: (10.1, square(3, 0)),
        2: (10.0, square(402, 0)),
        3: (10.0, square(600, 0)),
    }
    assert stitch(ends, starts) == {0: 1, 1: 0}  # track 2 ended 5 s before: no join
    assert stitch(ends, starts, max_gap=10.0) == {0: 1, 1: 0, 2: 2}
    assert stitch({}, starts) == {} and stitch(ends, {}) == {}
