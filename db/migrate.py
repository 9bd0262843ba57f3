"""Schema migrations: Alembic, configured in code, the only way fervid's schema is created.

Migrations run on one connection inside one transaction that first takes a lock (PostgreSQL: an advisory lock;
SQLite: ``BEGIN IMMEDIATE``), so workers that start together against a fresh database migrate it once. Checking
that a database is current needs no Alembic import (one query, and the newest migration file's revision), so
read-only commands start fast; Alembic is loaded only to migrate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from fervid.db.engine import get_engine, write_transaction
from fervid.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

#: Arbitrary 64-bit key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x666572766964  # b"fervid"


def script_location() -> Path:
    """The Alembic scripts: ``fervid/db/migrations`` in a wheel, the repository's ``alembic/`` otherwise."""
    package_dir = Path(__file__).parent  # the fervid.db package
    installed = package_dir / "migrations"
    return installed if installed.is_dir() else package_dir.resolve().parent / "alembic"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` (no ``alembic.ini`` involved)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


#: Migration files are named after their revision, which counts up: ``0002_heartbeats_events.py`` is revision 0002.
_MIGRATION_FILE = re.compile(r"(\d{4})_\w+\.py")


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision of the migration scripts: the highest-numbered migration file (the tests check that
    Alembic's own graph agrees)."""
    found = [m[1] for p in (script_location() / "versions").iterdir() if (m := _MIGRATION_FILE.fullmatch(p.name))]
    return max(found)


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    from alembic import command

    _run(url, command.upgrade, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base``: drop everything)."""
    from alembic import command

    _run(url, command.downgrade, revision)


def current(url: str) -> str | None:
    """The database's revision, ``None`` for an empty database (Alembic's ``alembic_version`` table)."""
    with get_engine(url).connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def ensure_schema(url: str) -> None:
    """Upgrade to the newest revision unless the database is already there (one query when it is)."""
    if current(url) != head():
        upgrade(url)


def database(settings: Settings) -> Engine:
    """The database's front door: the configured database (:attr:`Settings.effective_database_url`), migrated to
    the current schema."""
    url = settings.effective_database_url
    ensure_schema(url)
    return get_engine(url)


def _run(url: str, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config(url)
    engine = get_engine(url)
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        step(config, revision)
