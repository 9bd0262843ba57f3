"""Database ingest: timeline rows per second written by :func:`fervid.db.writes.write_segment`.

    python benchmarks/ingest.py [--rows 200000] [--postgres URL]

PostgreSQL (``COPY``) runs in a throwaway database created next to the server's maintenance database and dropped
afterwards; SQLite in a temporary file. Each is compared, in the same run, with a plain ``INSERT`` of the same
rows: SQLAlchemy's ``executemany`` on PostgreSQL (what ``COPY`` replaces), the bare ``sqlite3`` driver on SQLite
(the floor under SQLAlchemy). :mod:`benchmarks.throughput` prints these figures with the rest.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from fervid.db.engine import dispose_engines, get_engine
from fervid.db.jobs import create_job
from fervid.db.migrate import ensure_schema
from fervid.db.schema import detections
from fervid.db.writes import DETECTION_COLUMNS, write_segment
from fervid.expressions import EXPRESSIONS

#: The PostgreSQL maintenance database next to which throwaway databases are made (as tests/conftest.py does).
POSTGRES_URL = os.environ.get("FERVID_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: Targets of the issue, rows per second.
TARGETS = {"postgresql": 50_000, "sqlite": 20_000}


@dataclass(frozen=True)
class Ingest:
    """Rows per second of ``write_segment`` and of the plain-INSERT baseline on one database."""

    database: str
    rows: int
    write_segment: float
    baseline: float
    baseline_name: str


def timeline_rows(count: int, job_id: int, segment: int = 0, fps: float = 5.0, seed: int = 0) -> list[dict]:
    """``count`` detection rows as the pipeline makes them: one face per frame, a box, 7 probabilities, a label."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(EXPRESSIONS)), size=count)
    boxes = rng.uniform(0, 600, size=(count, 2))
    rows = []
    for i in range(count):
        best = int(probs[i].argmax())
        x, y = boxes[i].tolist()
        row = {
            "job_id": job_id, "segment": segment, "frame_index": 5 * i, "t": i / fps, "track_id": i // 500,
            "x1": x, "y1": y, "x2": x + 120.0, "y2": y + 160.0, "det_score": 0.9,
            "label": EXPRESSIONS[best], "confidence": float(probs[i, best]),
            "truth": None, "source_path": None, "worker": "bench:1",
        }  # fmt: skip
        row.update({f"p_{name}": float(p) for name, p in zip(EXPRESSIONS, probs[i])})
        rows.append(row)
    return rows


@contextmanager
def throwaway_postgres(admin_url: str = POSTGRES_URL) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped on exit; :class:`OperationalError` when unreachable."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 3})
    name = f"fervid_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            dispose_engines()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _job(url: str) -> int:
    return create_job(
        get_engine(url), source="bench.mp4", kind="video", params={}, model_name="bench", model_sha256="0" * 64,
        classes=list(EXPRESSIONS), segments=[(0.0, None)],
    )  # fmt: skip


def _baseline(url: str, rows: list[dict]) -> tuple[float, str]:
    """Seconds for a plain INSERT of ``rows`` (into a job of their own) and what it was."""
    job_id = _job(url)
    records = [{**dict.fromkeys(DETECTION_COLUMNS), **row, "job_id": job_id} for row in rows]
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        values = [tuple(r[c] for c in DETECTION_COLUMNS) for r in records]
        sql = f"INSERT INTO detections ({', '.join(DETECTION_COLUMNS)}) VALUES ({', '.join('?' * len(DETECTION_COLUMNS))})"
        conn = sqlite3.connect(engine.url.database)
        try:
            start = time.perf_counter()
            with conn:
                conn.executemany(sql, values)
            return time.perf_counter() - start, "sqlite3 executemany (no SQLAlchemy)"
        finally:
            conn.close()
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(detections), records)
    return time.perf_counter() - start, "SQLAlchemy executemany INSERT"


def measure(url: str, count: int) -> Ingest:
    """Rows per second of ``write_segment`` and of the baseline for ``count`` rows on the database at ``url``."""
    ensure_schema(url)
    engine = get_engine(url)
    job_id = _job(url)
    rows = timeline_rows(count, job_id)
    start = time.perf_counter()
    write_segment(engine, job_id, 0, rows, frames=count, worker="bench:1")
    seconds = time.perf_counter() - start
    baseline, name = _baseline(url, rows)
    return Ingest(engine.dialect.name, count, count / seconds, count / baseline, name)


def measure_all(count: int, postgres_url: str = POSTGRES_URL) -> tuple[list[Ingest], str | None]:
    """SQLite and PostgreSQL ingest; the reason PostgreSQL was skipped, if it was."""
    results = []
    with tempfile.TemporaryDirectory(prefix="fervid-ingest-") as tmp:
        results.append(measure(f"sqlite:///{Path(tmp) / 'ingest.db'}", count))
        dispose_engines()
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres(postgres_url))
        except OperationalError as exc:
            return results, f"PostgreSQL unreachable at {postgres_url}: {str(exc.orig).strip()}"
        results.append(measure(url, count))
    return results, None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per write")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="PostgreSQL maintenance database URL")
    args = parser.parse_args(argv)
    results, skipped = measure_all(args.rows, args.postgres)
    for r in results:
        target = TARGETS[r.database]
        print(
            f"{r.database:10s} write_segment {r.write_segment:>9,.0f} rows/s ({r.write_segment / target:.1f}× the "
            f"{target:,} target) | {r.baseline_name} {r.baseline:,.0f} rows/s → ×{r.write_segment / r.baseline:.2f}"
        )
    if skipped:
        print(skipped)


if __name__ == "__main__":
    main()
