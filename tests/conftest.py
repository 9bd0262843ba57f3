"""Shared pytest fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

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
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs the shared data folder {SHARED}")


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
