"""Distributed mode end to end: real ``fervid worker --cpu`` processes on Redis and PostgreSQL.

Every job is compared with the embedded run of the same video and settings (SQLite, in this process). The detector
is ``none`` (the whole frame is the face), so every sampled frame has exactly one row.

Re-delivery after a whole worker is SIGKILLed waits for the Redis transport's visibility timeout, twice the segment
timeout: the tests set ``segment_timeout`` to 6 s, so that takes about 12 s. The tests that restart PostgreSQL or
Redis disturb everything else using them; they run only with ``FERVID_TEST_RESTART_SERVICES=1``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from conftest import Workers, needs_shared, wait_for
from sqlalchemy import Engine, text
from videos import make_video

from fervid.db import database
from fervid.db.jobs import begin_segment, get_job, get_segment, get_segments
from fervid.settings import Settings, get_settings
from fervid.worker.jobs import Submission, retry, submit
from fervid.worker.tasks import recover

pytestmark = [pytest.mark.services, pytest.mark.slow]

FPS, SAMPLE_FPS, SEGMENT_SECONDS = 10, 5.0, 2.0
SHORT, LONG = 8, 40  # video lengths (s): 4 segments; 20 for the service restarts
restarts_services = pytest.mark.skipif(
    os.environ.get("FERVID_TEST_RESTART_SERVICES") != "1",
    reason="restarts the machine's PostgreSQL/Redis: set FERVID_TEST_RESTART_SERVICES=1",
)


def _settings(**values: Any) -> Settings:
    common = dict(detector="none", sample_fps=SAMPLE_FPS, segment_seconds=SEGMENT_SECONDS, segment_timeout=6.0)
    return get_settings(**(common | values))


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, broker_url: str, tiny_checkpoint: Path) -> Settings:
    return _settings(data_dir=tmp_path, database_url=pg_url, broker_url=broker_url, model=str(tiny_checkpoint))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``videos(seconds)``: a test video of that length, made once per module."""
    folder, made = tmp_path_factory.mktemp("videos"), {}

    def video(seconds: int) -> Path:
        if seconds not in made:
            made[seconds] = make_video(folder / f"{seconds}s.mp4", seconds=seconds, fps=FPS)
        return made[seconds]

    return video


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, videos: Callable[[int], Path], tiny_checkpoint: Path):
    """``embedded(seconds)``: :func:`results` of the embedded run on that video (once per module)."""
    done: dict[int, dict[str, Any]] = {}

    def run(seconds: int) -> dict[str, Any]:
        if seconds not in done:
            folder = tmp_path_factory.mktemp("embedded")
            settings = _settings(data_dir=folder, database_url=f"sqlite:///{folder / 'fervid.db'}", model=str(tiny_checkpoint))
            job_id = submit(Submission(str(videos(seconds))), settings)
            done[seconds] = results(database(settings), job_id)
        return done[seconds]

    return run


def results(engine: Engine, job_id: int) -> dict[str, Any]:
    """A job's rows (frame, time, label) and statistics; checks that no frame has two rows."""
    with engine.connect() as conn:
        rows, frames = conn.execute(
            text("SELECT count(*), count(DISTINCT frame_index) FROM detections WHERE job_id = :j"), {"j": job_id}
        ).one()
        assert rows == frames, f"job {job_id}: {rows} rows for {frames} frames"
        detections = conn.execute(
            text("SELECT frame_index, t, label, confidence FROM detections WHERE job_id = :j ORDER BY frame_index"),
            {"j": job_id},
        ).mappings().all()
        stats = conn.execute(
            text("SELECT label, faces, share, mean_probability, mean_confidence FROM job_stats WHERE job_id = :j ORDER BY label"),
            {"j": job_id},
        ).mappings().all()
    return {
        "frames": [r["frame_index"] for r in detections],
        "t": np.array([r["t"] for r in detections]),
        "labels": [r["label"] for r in detections],
        "confidence": np.array([r["confidence"] for r in detections]),
        "stats": [(s["label"], s["faces"]) for s in stats],
        "stat_values": np.array([[s["share"], s["mean_probability"], s["mean_confidence"]] for s in stats], dtype=float),
    }


def assert_same_as_embedded(got: dict[str, Any], expected: dict[str, Any], seconds: int) -> None:
    assert len(got["frames"]) == seconds * SAMPLE_FPS
    assert got["frames"] == expected["frames"] and got["labels"] == expected["labels"]
    # Continuous timestamps across segment borders: one sample every 1 / SAMPLE_FPS s, none missing or repeated.
    np.testing.assert_allclose(np.diff(got["t"]), 1 / SAMPLE_FPS, atol=1e-6)
    np.testing.assert_allclose(got["t"], expected["t"], atol=1e-6)
    np.testing.assert_allclose(got["confidence"], expected["confidence"], rtol=1e-5)
    assert got["stats"] == expected["stats"]
    np.testing.assert_allclose(got["stat_values"], expected["stat_values"], rtol=1e-5)


def wait_finished(engine: Engine, job_id: int, workers: Workers) -> dict[str, Any]:
    return wait_for(lambda: (job := get_job(engine, job_id))["status"] in ("done", "failed", "cancelled") and job,
                    f"job {job_id} to finish", workers)  # fmt: skip


def running_segment(engine: Engine, job_id: int) -> dict[str, Any] | None:
    return next((s for s in get_segments(engine, job_id) if s["status"] == "running"), None)


def test_two_workers_process_a_job_like_the_embedded_run(settings, workers, videos, embedded) -> None:
    workers.start(2)
    job_id = submit(Submission(str(videos(SHORT))), settings)
    engine = database(settings)
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert_same_as_embedded(results(engine, job_id), embedded(SHORT), SHORT)
    segments = get_segments(engine, job_id)
    assert len(segments) == SHORT / SEGMENT_SECONDS and {s["status"] for s in segments} == {"done"}
    assert len({s["worker"].split(":")[1] for s in segments}) == 2, "both workers took segments"
    assert workers.stop_all() == [0, 0], "SIGTERM to `fervid worker` shuts its worker down warm"


def test_lost_messages_are_found_and_sent_again(settings, workers, videos, embedded) -> None:
    job_id = submit(Submission(str(videos(SHORT))), settings)  # no worker yet: the messages wait in the queue
    engine = database(settings)
    assert recover(settings) == {}
    redis.Redis.from_url(settings.broker_url).delete(settings.queue)  # the broker lost them
    begin_segment(engine, job_id, 1, "gone:1")  # and a worker died running segment 1
    assert recover(settings) == {job_id: [0, 1, 2, 3]}
    assert recover(settings) == {}
    workers.start(1)
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert_same_as_embedded(results(engine, job_id), embedded(SHORT), SHORT)


def test_bad_input_fails_the_job_at_once_and_retry_completes_it(settings, workers, videos, embedded, tmp_path) -> None:
    video = tmp_path / "gone.mp4"
    video.write_bytes(videos(SHORT).read_bytes())
    job_id = submit(Submission(str(video)), settings)
    video.unlink()  # every segment now fails to decode: bad input, not retried
    workers.start(1)
    engine = database(settings)
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "failed" and job["error"].startswith("segment ") and "gone.mp4" in job["error"]
    wait_for(lambda: all(s["status"] == "failed" for s in get_segments(engine, job_id)), "every segment failed", workers)
    assert {s["attempts"] for s in get_segments(engine, job_id)} == {1}
    video.write_bytes(videos(SHORT).read_bytes())
    retry(settings, job_id)
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert_same_as_embedded(results(engine, job_id), embedded(SHORT), SHORT)


@pytest.mark.parametrize("victim", ["pool process", "whole worker"])
def test_a_killed_worker_s_segment_is_delivered_again(settings, workers, videos, embedded, victim: str) -> None:
    """A dead pool process is noticed by its worker, which sends the segment round again at once; a dead worker
    leaves its message unacknowledged, and the other worker restores it after the visibility timeout."""
    workers.start(2)
    job_id = submit(Submission(str(videos(SHORT))), settings)
    engine = database(settings)
    while True:
        segment = wait_for(lambda: running_segment(engine, job_id), "a running segment", workers, poll=0.02)
        pid = int(segment["worker"].split(":")[1])  # the pool process
        group = os.getpgid(pid)  # its Celery worker's
        os.killpg(group, signal.SIGSTOP)  # frozen: the segment cannot finish while we look
        now = get_segment(engine, job_id, segment["idx"])
        killed = now["status"] == "running" and now["worker"] == segment["worker"]
        if killed and victim == "pool process":
            os.kill(pid, signal.SIGKILL)
        elif killed:
            os.killpg(group, signal.SIGKILL)
        os.killpg(group, signal.SIGCONT)
        if killed:
            break
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert_same_as_embedded(results(engine, job_id), embedded(SHORT), SHORT)
    again = get_segment(engine, job_id, segment["idx"])
    assert again["attempts"] >= 2 and again["worker"] != segment["worker"]


def test_a_killed_worker_is_recovered_by_heartbeat_with_default_timeouts(
    settings, workers, videos, embedded
) -> None:
    """With the default settings the message of a SIGKILLed worker waits out a two-hour visibility timeout; its
    segment's heartbeat stops instead, and the live worker sends the segment again: done within two minutes, with
    exactly the embedded run's rows."""
    import time

    settings = settings.replace(segment_timeout=get_settings().segment_timeout)
    assert settings.segment_timeout == 3600 and settings.heartbeat_timeout == 60
    workers.settings = settings
    workers.start(2)
    job_id = submit(Submission(str(videos(SHORT))), settings)
    engine = database(settings)
    while True:
        segment = wait_for(lambda: running_segment(engine, job_id), "a running segment", workers, poll=0.02)
        group = os.getpgid(int(segment["worker"].split(":")[1]))
        os.killpg(group, signal.SIGSTOP)
        now = get_segment(engine, job_id, segment["idx"])
        killed = now["status"] == "running" and now["worker"] == segment["worker"]
        os.killpg(group, signal.SIGKILL if killed else signal.SIGCONT)
        if killed:
            break
    started = time.monotonic()
    job = wait_for(lambda: (j := get_job(engine, job_id))["status"] in ("done", "failed") and j, "the job", workers, timeout=150)
    assert job["status"] == "done", job["error"]
    assert time.monotonic() - started < 120
    assert_same_as_embedded(results(engine, job_id), embedded(SHORT), SHORT)
    again = get_segment(engine, job_id, segment["idx"])
    assert again["attempts"] >= 2 and again["worker"] != segment["worker"]


@restarts_services
def test_a_postgres_restart_mid_job_ends_done_or_retryable(settings, workers, videos, embedded) -> None:
    workers.start(2)
    job_id = submit(Submission(str(videos(LONG))), settings)
    engine = database(settings)
    wait_for(lambda: running_segment(engine, job_id), "a running segment", workers, poll=0.02)
    cluster = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True, timeout=60)
    job = wait_finished(engine, job_id, workers)
    if job["status"] == "failed":
        assert job["error"].startswith("segment "), job["error"]
        retry(settings, job_id)
        job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert_same_as_embedded(results(engine, job_id), embedded(LONG), LONG)


@restarts_services
def test_submit_wait_waits_through_a_database_restart(settings, workers, videos, tmp_path: Path) -> None:
    """`fervid submit --wait` keeps waiting while PostgreSQL is down for a few seconds and exits with the job's
    real outcome (0, done), not "service unavailable"."""
    from conftest import FERVID

    from fervid.worker.launcher import settings_env

    workers.start(2)
    env = {**os.environ, **settings_env(settings)}
    waiting = subprocess.Popen([str(FERVID), "submit", str(videos(LONG)), "--wait"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    engine = database(settings)
    wait_for(lambda: running_segment_of_any(engine), "a running segment", workers, poll=0.05)
    cluster = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop"], check=True, timeout=60)
    import time

    time.sleep(5)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"], check=True, timeout=60)
    out, err = waiting.communicate(timeout=300)
    job_id = int(out.strip().splitlines()[0])
    job = get_job(engine, job_id)
    if job["status"] == "failed":  # a segment gave up on the outage: the exit code says so, not "unavailable"
        assert waiting.returncode == 1 and "service unavailable" not in err, err
    else:
        assert job["status"] == "done" and waiting.returncode == 0, err


def running_segment_of_any(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM segments WHERE status = 'running'")).scalar())


@restarts_services
def test_a_redis_restart_loses_messages_that_recover_sends_again(settings, workers, videos, embedded) -> None:
    workers.start(2)
    job_id = submit(Submission(str(videos(LONG))), settings)
    engine = database(settings)
    wait_for(lambda: get_job(engine, job_id)["segments_done"] > 0, "a finished segment", workers, poll=0.02)
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], timeout=30)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
         "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
        check=True, timeout=30,
    )  # fmt: skip
    workers.wait_ready(2)  # reconnected, so that recover sees what they are running
    job = get_job(engine, job_id)
    assert job["status"] == "running" and job["segments_done"] < job["segments_total"], "the job ended before the restart"
    assert recover(settings).get(job_id), "the lost segments were found"
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert_same_as_embedded(results(engine, job_id), embedded(LONG), LONG)
    assert recover(settings) == {}


def _persons(engine: Engine, job_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT segment, frame_index, track_id, person_id, label_smoothed FROM detections WHERE job_id = :j "
                 "ORDER BY segment, frame_index, x1"),
            {"j": job_id},
        ).all()  # fmt: skip
        persons = conn.execute(
            text("SELECT person_id, tracks, faces, dominant_label FROM persons WHERE job_id = :j ORDER BY person_id"), {"j": job_id}
        ).all()
    return {"rows": [tuple(r) for r in rows], "persons": [tuple(p) for p in persons]}


@needs_shared
def test_persons_and_smoothing_on_workers_match_the_embedded_run(settings, workers, tmp_path: Path, tiny_checkpoint) -> None:
    """A man, a cut to a woman at the same place, the empty scene, the woman again, the man again, in 2 s segments
    on two workers: the same tracks, persons and smoothed labels as the embedded run."""
    from scenes import ck_face, ck_subjects, clip_frames, clip_shot, empty_shot, still_shot, write_shots

    frames, rate = clip_frames()
    man = still_shot(ck_face(ck_subjects(1)[0]["happy"], 130), 2.0, centre=(361, 87))
    woman = clip_shot(frames, rate, 2.0)
    video = write_shots(tmp_path / "people.mp4", [man, woman, empty_shot(frames, 2.0), woman, man])
    local = _settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'embedded.db'}", model=str(tiny_checkpoint),
                      detector="centerface")  # fmt: skip
    expected = _persons(database(local), submit(Submission(str(video)), local))
    assert [p[:3] for p in expected["persons"]] == [(0, 2, 20), (1, 2, 20)]
    workers.start(2)
    distributed = settings.replace(detector="centerface")
    job_id = submit(Submission(str(video)), distributed)
    engine = database(distributed)
    job = wait_finished(engine, job_id, workers)
    assert job["status"] == "done", job["error"]
    assert _persons(engine, job_id) == expected
