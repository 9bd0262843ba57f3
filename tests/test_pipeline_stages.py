"""The pipeline's stage machinery: stage threads and parallel detection keep order, bound memory, pass errors on
and shut down."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from videos import make_video, read_index

from fervid.db import database
from fervid.db.jobs import get_job
from fervid.model.detect import Detection
from fervid.worker import runtime
from fervid.worker.jobs import Submission, create
from fervid.worker.pipeline import STAGES, ordered_map, prefetch, run_segment


class Boom(RuntimeError):
    pass


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-stage")]


def _wait_for_no_stage_threads() -> None:
    deadline = time.monotonic() + 5
    while _stage_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _stage_threads()


def test_chained_stages_keep_order_and_run_in_their_own_threads() -> None:
    seen: dict[str, set[str]] = {"source": set(), "square": set()}

    def source() -> Iterator[int]:
        for i in range(200):
            seen["source"].add(threading.current_thread().name)
            yield i

    def square(items: Iterator[int]) -> Iterator[int]:
        for i in items:
            seen["square"].add(threading.current_thread().name)
            yield i * i

    out = list(prefetch(square(prefetch(source(), size=3, name="test-stage-a")), size=2, name="test-stage-b"))
    assert out == [i * i for i in range(200)]
    assert seen == {"source": {"test-stage-a"}, "square": {"test-stage-b"}}
    _wait_for_no_stage_threads()


def test_queue_bounds_how_far_the_producer_runs_ahead() -> None:
    produced = []

    def source() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    items = prefetch(source(), size=4, name="test-stage")
    assert next(items) == 0
    time.sleep(0.2)  # give the producer every chance to run ahead
    # one handed out, 4 queued, one more produced and waiting for room
    assert len(produced) <= 1 + 4 + 1
    items.close()
    _wait_for_no_stage_threads()


def test_error_is_raised_after_the_items_before_it_through_two_stages() -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise Boom("frame 5 is damaged")

    def double(items: Iterator[int]) -> Iterator[int]:
        for i in items:
            yield 2 * i

    got = []
    with pytest.raises(Boom, match="frame 5"):
        for item in prefetch(double(prefetch(source(), name="test-stage-a")), name="test-stage-b"):
            got.append(item)
    assert got == [0, 2, 4, 6, 8]
    _wait_for_no_stage_threads()


def _endless(closed: threading.Event) -> Iterator[int]:
    """0, 1, 2, ... until closed; sets ``closed`` when the generator is closed."""
    try:
        yield from range(10**9)
    finally:
        closed.set()


def test_consumer_stopping_early_stops_every_stage_and_closes_the_source() -> None:
    closed = threading.Event()
    source = partial(_endless, closed)

    def passthrough(items: Iterator[int]) -> Iterator[int]:
        yield from items

    items = prefetch(passthrough(prefetch(source(), size=2, name="test-stage-a")), size=2, name="test-stage-b")
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.wait(5)
    _wait_for_no_stage_threads()


def test_consumer_error_stops_the_producer() -> None:
    closed = threading.Event()
    source = partial(_endless, closed)

    def consume() -> None:
        for item in prefetch(source(), size=2, name="test-stage"):
            if item == 3:
                raise Boom("consumer failed")

    with pytest.raises(Boom):
        consume()
    assert closed.wait(5)
    _wait_for_no_stage_threads()


def test_ordered_map_keeps_order_and_bounds_the_work_in_flight() -> None:
    pulled = 0
    workers: set[str] = set()

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(60):
            pulled += 1
            yield i

    def slow_square(i: int) -> int:
        workers.add(threading.current_thread().name)
        time.sleep(random.Random(i).uniform(0, 0.01))  # later items often finish first
        return i * i

    out = []
    for value in ordered_map(slow_square, source(), threads=3, name="test-stage"):
        out.append(value)
        assert pulled - len(out) <= 2 * 3
    assert out == [i * i for i in range(60)]
    assert len(workers) > 1 and all(name.startswith("test-stage") for name in workers)
    _wait_for_no_stage_threads()


def test_ordered_map_raises_in_order_and_stops_its_threads() -> None:
    def fail_at_5(i: int) -> int:
        if i == 5:
            raise Boom("item 5")
        time.sleep(0.001 * (i % 3))
        return i

    got = []
    with pytest.raises(Boom, match="item 5"):
        for value in ordered_map(fail_at_5, iter(range(10**9)), threads=4, name="test-stage"):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    _wait_for_no_stage_threads()


def test_ordered_map_on_one_thread_runs_in_the_caller() -> None:
    names = list(ordered_map(lambda _: threading.current_thread().name, range(3), threads=1, name="test-stage"))
    assert names == [threading.current_thread().name] * 3


class _IndexDetector:
    """Finds one face whose box encodes the frame number drawn in the frame (tests/videos.py), after an uneven
    delay; fails on frame ``fail_at``."""

    name = "index"

    def __init__(self, concurrent: bool, fail_at: int | None = None) -> None:
        self.concurrent, self.fail_at = concurrent, fail_at
        self.frames: list[int] = []
        self.lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> list[Detection]:
        index = read_index(frame)
        with self.lock:
            self.frames.append(index)
        time.sleep(random.Random(index).uniform(0, 0.02))
        if index == self.fail_at:
            raise Boom(f"detector failed on frame {index}")
        return [Detection((float(index), 10.0, index + 50.0, 70.0), 0.9)]
@pytest.fixture
def video_job(tmp_path: Path, embedded_settings):
    """A 2 s, 10 fps video job (sampled at 5 fps: 10 frames) on the embedded settings, not yet run."""
    video = make_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(160, 120))
    settings = embedded_settings.replace(segment_seconds=100.0)
    engine = database(settings)
    return settings, get_job(engine, create(engine, Submission(str(video)), settings))


def _with_detector(monkeypatch: pytest.MonkeyPatch, detector) -> None:
    monkeypatch.setattr(runtime, "detector", lambda name, max_side, threshold: detector)


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fervid-")]


@pytest.mark.parametrize("concurrent", [False, True], ids=["one-thread", "parallel"])
def test_detector_error_reaches_the_caller_and_no_stage_thread_is_left(monkeypatch, video_job, concurrent: bool) -> None:
    settings, job = video_job
    _with_detector(monkeypatch, _IndexDetector(concurrent, fail_at=8))
    with pytest.raises(Boom, match="frame 8"):
        run_segment(job, 0, 0.0, None, settings, "w")
    deadline = time.monotonic() + 5
    while _pipeline_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _pipeline_threads()


@pytest.mark.parametrize("concurrent", [False, True], ids=["one-thread", "parallel"])
def test_run_segment_rows_in_frame_order_with_stage_times(monkeypatch, video_job, concurrent: bool) -> None:
    settings, job = video_job
    detector = _IndexDetector(concurrent)
    _with_detector(monkeypatch, detector)
    frames = []
    rows, counts = run_segment(job, 0, 0.0, None, settings, "w", on_frame=frames.append)
    assert counts.frames == len(frames) == 10 and counts.faces == len(rows) == 10
    assert [r["frame_index"] for r in rows] == list(range(0, 20, 2))
    assert [r["x1"] for r in rows] == [float(r["frame_index"]) for r in rows]  # each row has its own frame's box
    assert {r["track_id"] for r in rows} == {0}
    assert all(abs(sum(r[f"p_{c}"] for c in job["classes"]) - 1) < 1e-4 for r in rows)
    assert set(counts.seconds) == set(STAGES) and all(s > 0 for s in counts.seconds.values())


class _AroundDetector(_IndexDetector):
    """:class:`_IndexDetector` on whole frames; in a cut-out (another size) one face in its middle, half its side."""

    def __init__(self, frame_shape: tuple[int, int]) -> None:
        super().__init__(concurrent=True)
        self.frame_shape, self.crops = frame_shape, 0

    def detect(self, frame: np.ndarray) -> list[Detection]:
        if frame.shape[:2] == self.frame_shape:
            return super().detect(frame)
        with self.lock:
            self.crops += 1
        height, width = frame.shape[:2]
        return [Detection((width / 4, height / 4, 3 * width / 4, 3 * height / 4), 0.8)]


def test_detect_every_k_searches_the_frame_every_kth_sample_and_around_the_faces_between(
    monkeypatch, tmp_path: Path, embedded_settings
) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(640, 360))  # large enough to search around a face
    settings = embedded_settings.replace(segment_seconds=100.0, detect_every=3)
    engine = database(settings)
    job = get_job(engine, create(engine, Submission(str(video)), settings))
    detector = _AroundDetector((360, 640))
    _with_detector(monkeypatch, detector)
    rows, _ = run_segment(job, 0, 0.0, None, settings, "w")
    assert sorted(detector.frames) == [0, 6, 12, 18]  # samples 0, 3, 6, 9 of 10 (frames 0, 2, ..., 18)
    assert detector.crops == 6 and len(rows) == 10
    for previous, row in zip(rows, rows[1:]):
        if row["frame_index"] % 6:  # found around the previous sample's face: its centre lies inside that box
            cx, cy = (row["x1"] + row["x2"]) / 2, (row["y1"] + row["y2"]) / 2
            assert previous["x1"] <= cx <= previous["x2"] and previous["y1"] <= cy <= previous["y2"]
        else:
            assert row["x1"] == float(row["frame_index"])
