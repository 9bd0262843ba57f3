"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from fervid.settings import Settings

#: The PostgreSQL server's maintenance database; test databases are created next to it.
POSTGRES_URL = os.environ.get("FERVID_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'fervid.db'}"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An autocommit engine on the local PostgreSQL server; skips (once per session) when it is unreachable."""
    engine = create_engine(
        POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL} (set FERVID_TEST_POSTGRES_URL): {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(postgres_admin: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    from fervid.db.engine import dispose_engines

    name = f"fervid_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    dispose_engines()
    with postgres_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database URL, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url"}[request.param])


#: ../shared beside the repository: datasets and the test clip (tests that need it skip without it).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def needs_shared(test: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``test`` ``shared`` (``-m "not shared"`` leaves it out) and skip it where ../shared is absent."""
    return pytest.mark.shared(pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs the shared data folder {SHARED}")(test))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained, narrow) fervid checkpoint for the seven FER2013 classes, for pipeline tests."""
    import torch

    from fervid.model.checkpoint import save_checkpoint
    from fervid.model.network import ModelConfig, build_model
    from fervid.model.preprocess import PREPROCESSING

    torch.manual_seed(0)
    config = ModelConfig(num_classes=7, width=0.125)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    classes = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    return save_checkpoint(path, build_model(config), config, classes, 48, PREPROCESSING)


@pytest.fixture
def embedded_settings(tmp_path: Path, sqlite_url: str, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    """Embedded-default settings (no broker, a SQLite file) using the tiny checkpoint."""
    from fervid.settings import get_settings

    for name in ("FERVID_DATABASE_URL", "FERVID_BROKER_URL", "FERVID_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return get_settings(data_dir=tmp_path, database_url=sqlite_url, model=str(tiny_checkpoint), segment_seconds=1.0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test (the machine's two cores are shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- Distributed mode: real `fervid worker --cpu` processes on Redis database 9 (tests marked `services`).

#: The Redis database the distributed tests use as broker (flushed before and after each test).
BROKER = "redis://127.0.0.1:6379/9"
#: The ``fervid`` console script of this virtual environment.
FERVID = Path(sys.executable).with_name("fervid")
#: Seconds any wait on workers may take unless told otherwise.
SERVICES_TIMEOUT = 120.0


@pytest.fixture
def broker_url() -> Iterator[str]:
    """Redis database 9, flushed before and after the test; skips when Redis is unreachable."""
    import redis

    client = redis.Redis.from_url(BROKER, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis unreachable at {BROKER}: {exc}")
    yield BROKER
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        pass


class Workers:
    """``fervid worker --cpu`` processes; :meth:`stop_all` leaves none behind."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs = settings, logs
        self.launchers: list[subprocess.Popen[bytes]] = []
        self.groups: set[int] = set()  # process groups: each launcher's and each Celery worker's

    def start(self, count: int) -> None:
        from fervid.worker.launcher import settings_env

        env = {**os.environ, **settings_env(self.settings), "OMP_NUM_THREADS": "1"}
        for _ in range(count):
            with open(self.logs / f"worker{len(self.launchers)}.log", "wb") as log:
                launcher = subprocess.Popen([str(FERVID), "worker", "--cpu"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
            self.launchers.append(launcher)
            self.groups.add(launcher.pid)
        self.wait_ready(count)

    def wait_ready(self, count: int) -> None:
        """Wait until ``count`` Celery workers answer a ping; note their process groups."""
        from fervid.worker.celery_app import make_app

        app = make_app(self.settings)
        deadline = time.monotonic() + SERVICES_TIMEOUT
        while True:
            with app.connection_for_write() as connection:  # a fresh one: the broker may have restarted
                if len(app.control.ping(timeout=1.0, connection=connection)) >= count:
                    break
            assert time.monotonic() < deadline, f"fewer than {count} workers came up\n{self.log_tail()}"
        for launcher in self.launchers:
            self.groups.update(_children(launcher.pid))

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(self.logs.glob("worker*.log")))

    def stop_all(self) -> list[int | None]:
        """Stop every worker (SIGTERM to the launchers, then SIGKILL to what is left); the launchers' exit codes."""
        for launcher in self.launchers:
            if launcher.poll() is None:
                launcher.terminate()  # forwarded: warm shutdown
        for launcher in self.launchers:
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for launcher in self.launchers:
            launcher.wait(timeout=10)
        return [launcher.returncode for launcher in self.launchers]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """:class:`Workers` on the test module's ``settings`` fixture, all stopped after the test."""
    if not FERVID.exists():
        pytest.skip(f"no fervid console script at {FERVID}")
    pool = Workers(settings, tmp_path)
    yield pool
    pool.stop_all()


def wait_for(
    condition: Callable[[], Any], what: str, workers: Workers, poll: float = 0.2, timeout: float = SERVICES_TIMEOUT
) -> Any:
    """Poll ``condition`` until it is truthy (its value) or ``timeout`` seconds pass (fails with the workers' logs)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{workers.log_tail()}"
        time.sleep(poll)
    return value
