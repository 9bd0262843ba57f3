"""The pipeline's stage machinery: bounded-queue threads keep order, bound memory, pass errors on and shut down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from videos import make_video

from fervid.model.detect import Detection
from fervid.worker import runtime
from fervid.worker.jobs import Submission, create, database
from fervid.db.jobs import get_job
from fervid.worker.pipeline import STAGES, prefetch, run_segment


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


def test_consumer_stopping_early_stops_every_stage_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    def passthrough(items: Iterator[int]) -> Iterator[int]:
        yield from items

    items = prefetch(passthrough(prefetch(source(), size=2, name="test-stage-a")), size=2, name="test-stage-b")
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.wait(5)
    _wait_for_no_stage_threads()


def test_consumer_error_stops_the_producer() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    def consume() -> None:
        for item in prefetch(source(), size=2, name="test-stage"):
            if item == 3:
                raise Boom("consumer failed")

    with pytest.raises(Boom):
        consume()
    assert closed.wait(5)
    _wait_for_no_stage_threads()


class _FailingDetector:
    """Finds one face in the first frames, then fails: a detector-stage error."""

    name = "failing"

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self.calls += 1
        if self.calls > self.fail_at:
            raise Boom(f"detector failed on call {self.calls}")
        return [Detection((10.0, 10.0, 60.0, 70.0), 0.9)]


@pytest.fixture
def video_job(tmp_path: Path, embedded_settings):
    """A 2 s, 10 fps video job (sampled at 5 fps: 10 frames) on the embedded settings, not yet run."""
    video = make_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(160, 120))
    settings = embedded_settings.replace(segment_seconds=100.0)
    engine = database(settings)
    return settings, get_job(engine, create(engine, Submission(str(video)), settings))


def _with_detector(monkeypatch: pytest.MonkeyPatch, detector) -> None:
    monkeypatch.setattr(runtime, "detector", lambda name, max_side, threshold: detector)


def test_detector_error_reaches_the_caller_and_no_stage_thread_is_left(monkeypatch, video_job) -> None:
    settings, job = video_job
    _with_detector(monkeypatch, _FailingDetector(fail_at=4))
    with pytest.raises(Boom, match="call 5"):
        run_segment(job, 0, 0.0, None, settings, "w")
    deadline = time.monotonic() + 5
    while any(t.name in ("fervid-decode", "fervid-detect") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name in ("fervid-decode", "fervid-detect")]


def test_run_segment_rows_in_frame_order_with_stage_times(monkeypatch, video_job) -> None:
    settings, job = video_job
    detector = _FailingDetector(fail_at=10**9)
    _with_detector(monkeypatch, detector)
    frames = []
    rows, counts = run_segment(job, 0, 0.0, None, settings, "w", on_frame=frames.append)
    assert counts.frames == len(frames) == 10 and counts.faces == len(rows) == 10
    assert [r["frame_index"] for r in rows] == list(range(0, 20, 2))
    assert {r["track_id"] for r in rows} == {0}
    assert all(abs(sum(r[f"p_{c}"] for c in job["classes"]) - 1) < 1e-4 for r in rows)
    assert set(counts.seconds) == set(STAGES) and all(s > 0 for s in counts.seconds.values())


def test_detect_every_k_detects_every_kth_sample_and_keeps_its_boxes(monkeypatch, video_job) -> None:
    settings, job = video_job
    job["params"] = {**job["params"], "detect_every": 3}
    detector = _FailingDetector(fail_at=10**9)
    _with_detector(monkeypatch, detector)
    rows, counts = run_segment(job, 0, 0.0, None, settings, "w")
    assert detector.calls == 4  # samples 0, 3, 6, 9 of 10
    assert len(rows) == 10 and {(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows} == {(10.0, 10.0, 60.0, 70.0)}
