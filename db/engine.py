"""Engines, one per database URL, configured for fervid's concurrent writers.

SQLite runs in WAL mode with foreign keys on and a busy timeout; its driver's own transaction handling is turned
off so that SQLAlchemy emits ``BEGIN`` itself, which makes DDL transactional and lets :func:`write_transaction`
take the write lock up front with ``BEGIN IMMEDIATE``. PostgreSQL pings pooled connections before use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "fervid_sqlite_begin"

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


#: Database URL schemes fervid accepts, and the SQLAlchemy dialect+driver each one is served by: PostgreSQL through
#: the installed psycopg 3 whatever driver the URL names (``postgres://`` as Heroku and libpq write it,
#: ``postgresql+psycopg2://`` as older guides do), SQLite through the standard library.
URL_SCHEMES: dict[str, str] = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


def database_url(url: str) -> str:
    """``url`` with its scheme mapped onto the installed driver (:data:`URL_SCHEMES`); an unknown scheme is a
    :class:`ValueError` listing the accepted ones."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        accepted = ", ".join(f"{s}://" for s in URL_SCHEMES)
        raise ValueError(f"database URL {scheme + sep if sep else url!r}: unsupported scheme; use one of {accepted}")
    return f"{URL_SCHEMES[scheme.lower()]}://{rest}"


def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (its scheme mapped by :func:`database_url`; created on first use)."""
    url = database_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
        return engine


def dispose_engines() -> None:
    """Close every cached engine's connections and forget the engines (e.g. in a forked worker process)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes SQLite's write lock at its start (``BEGIN IMMEDIATE``).

    On PostgreSQL it is a plain transaction; lock the rows you serialise on with ``SELECT ... FOR UPDATE``.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        with conn.begin():
            yield conn


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))
