"""Distributed mode under load, and with a service down at submit time.

Real ``fervid worker --cpu`` processes on Redis database 9 and a fresh PostgreSQL database (the fixtures of
``conftest.py``). The detector is ``none`` (the whole frame is the face), so every sampled frame has exactly one row.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from sqlalchemy import text
from typer.testing import CliRunner
from videos import make_video

from fervid.cli.app import app
from fervid.db import database
from fervid.db.jobs import get_job, list_jobs
from fervid.settings import Settings, get_settings
from fervid.worker.jobs import Submission, submit

pytestmark = pytest.mark.services

JOBS = 50
SECONDS, FPS, SAMPLE_FPS = 1, 10, 5.0
FRAMES = int(SECONDS * SAMPLE_FPS)  # sampled frames (and rows) per job
LOAD_TIMEOUT = 240.0  # seconds all the jobs may take
SECRET = "hunter2-s3cret"
UNREACHABLE = "127.0.0.1:1"  # nothing listens there


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny clip that every job of the module analyses."""
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=SECONDS, fps=FPS, size=(64, 48))


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, broker_url: str, tiny_checkpoint: Path) -> Settings:
    return get_settings(
        data_dir=tmp_path, database_url=pg_url, broker_url=broker_url, model=str(tiny_checkpoint), detector="none",
        sample_fps=SAMPLE_FPS,
    )  # fmt: skip


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner for ``fervid`` commands with the test's settings in the environment (URLs set per test)."""
    monkeypatch.setenv("FERVID_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FERVID_MODEL", settings.model)
    monkeypatch.setenv("FERVID_DETECTOR", "none")
    monkeypatch.setenv("COLUMNS", "400")  # one table row and one error per line
    return CliRunner()


def queued_messages(settings: Settings) -> int:
    """Messages waiting in the fervid queue (kombu's Redis transport keeps them in a list named after it)."""
    return redis.Redis.from_url(settings.broker_url).llen(settings.queue)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_fifty_jobs_at_once_on_two_workers(settings: Settings, workers, video: Path, cli: CliRunner, monkeypatch) -> None:
    workers.start(2)
    job_ids = [submit(Submission(str(video)), settings) for _ in range(JOBS)]
    assert len(set(job_ids)) == JOBS
    engine = database(settings)

    def finished() -> bool:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM jobs WHERE status IN ('done', 'failed', 'cancelled')")) == JOBS

    wait_for(finished, f"{JOBS} jobs to finish", workers, poll=1.0, timeout=LOAD_TIMEOUT)
    with engine.connect() as conn:
        jobs = conn.execute(
            text(
                "SELECT j.id, j.status, j.error, j.frames_done, count(d.id) AS rows,"
                " count(DISTINCT (d.job_id, d.frame_index, d.track_id)) AS distinct_rows"
                " FROM jobs j LEFT JOIN detections d ON d.job_id = j.id GROUP BY j.id ORDER BY j.id"
            )
        ).mappings().all()
        total, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT (job_id, frame_index, track_id)) FROM detections")
        ).one()
        workers_used = conn.scalars(text("SELECT DISTINCT worker FROM segments")).all()
    assert [j["id"] for j in jobs] == sorted(job_ids)
    assert [(j["id"], j["status"], j["error"]) for j in jobs] == [(i, "done", None) for i in sorted(job_ids)]
    assert [(j["rows"], j["distinct_rows"], j["frames_done"]) for j in jobs] == [(FRAMES, FRAMES, FRAMES)] * JOBS
    assert total == distinct == JOBS * FRAMES, "no row written twice"
    assert len({w.split(":")[1] for w in workers_used}) >= 2, "both workers took segments"

    # `fervid jobs` reads the newest `limit` jobs only, however many there are.
    assert [j["id"] for j in list_jobs(engine, 20)] == sorted(job_ids, reverse=True)[:20]
    monkeypatch.setenv("FERVID_DATABASE_URL", settings.database_url)
    for args, shown in ((["jobs"], 20), (["jobs", "--limit", "100"], JOBS)):
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = [line for line in result.output.splitlines() if " done " in line and str(video.name) in line]
        assert len(rows) == shown, result.output


def submit_unavailable(cli: CliRunner, video: Path) -> str:
    """Submit ``video`` with a service down: exit 3 and one redacted error line, which is returned."""
    result = cli.invoke(app, ["submit", str(video)])
    assert result.exit_code == 3, result.output
    (error,) = error_lines(result.output)
    assert error.startswith("error: service unavailable: ")
    assert "Traceback" not in result.output and SECRET not in result.output
    return error


def test_submit_with_the_database_down_enqueues_nothing(
    settings: Settings, video: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERVID_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("FERVID_DATABASE_URL", settings.database_url)
    accepted = cli.invoke(app, ["submit", str(video)])  # no worker: its one segment waits in the queue
    assert accepted.exit_code == 0, accepted.output
    assert queued_messages(settings) == 1

    monkeypatch.setenv("FERVID_DATABASE_URL", f"postgresql+psycopg://fervid:{SECRET}@{UNREACHABLE}/fervid")
    submit_unavailable(cli, video)
    assert queued_messages(settings) == 1, "nothing enqueued without a job row"


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """The address of a socket that accepts connections and never answers (a hung broker)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.timeout(120)  # without a socket timeout the silent broker hangs the submit
@pytest.mark.parametrize("down", ["refused", "silent"])
def test_submit_with_the_broker_down_fails_the_job(
    settings: Settings, video: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    down: str,
) -> None:  # fmt: skip
    address = UNREACHABLE if down == "refused" else request.getfixturevalue("silent_broker")
    monkeypatch.setenv("FERVID_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("FERVID_BROKER_URL", f"redis://:{SECRET}@{address}/0")
    error = submit_unavailable(cli, video)

    # The job was stored before enqueueing failed: it is failed with the broker's error, not queued forever.
    engine = database(settings)
    (job,) = list_jobs(engine)
    assert job["status"] == "failed", job
    reason = job["error"].removeprefix("could not enqueue its segments: ")
    assert reason != job["error"] and reason in error and SECRET not in reason

    # Once the broker is back, `fervid retry` enqueues it.
    monkeypatch.setenv("FERVID_BROKER_URL", settings.broker_url)
    retried = cli.invoke(app, ["retry", str(job["id"])])
    assert retried.exit_code == 0, retried.output
    assert get_job(engine, job["id"])["status"] == "queued"
    assert queued_messages(settings) == 1
