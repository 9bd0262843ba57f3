"""Jobs and their segments: creation, status transitions and the per-segment work claims."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, case, delete, exists, func, insert, literal, select, update

from fervid.db.engine import write_transaction
from fervid.db.schema import FINISHED_STATUSES, JOB_KINDS, JOB_STATUSES, UTCDateTime, jobs, utcnow
from fervid.db.schema import segments as segment_table


class JobNotFoundError(LookupError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist (`fervid jobs` lists the known ones)")
        self.job_id = job_id


def create_job(
    engine: Engine,
    *,
    source: str,
    kind: str,
    params: dict[str, Any],
    model_name: str,
    model_sha256: str,
    classes: Sequence[str],
    segments: Sequence[tuple[float, float | None]],
    duration: float | None = None,
    frames_total: int | None = None,
    batch: str | None = None,
) -> int:
    """Insert a queued job and its segments (``(start, end)`` seconds, ``end=None``: to the end), in ``batch``
    when given; its id."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; choose from {', '.join(JOB_KINDS)}")
    if not segments:
        raise ValueError("a job needs at least one segment")
    with write_transaction(engine) as conn:
        job_id = conn.execute(
            insert(jobs).values(
                source=source,
                kind=kind,
                status="queued",
                created_at=utcnow(),
                params=params,
                model_name=model_name,
                model_sha256=model_sha256,
                classes=list(classes),
                duration=duration,
                frames_total=frames_total,
                segments_total=len(segments),
                batch=batch,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(segment_table),
            [{"job_id": job_id, "idx": i, "start": start, "end": end} for i, (start, end) in enumerate(segments)],
        )
    return job_id


def get_job(engine: Engine, job_id: int) -> dict[str, Any]:
    """The job's row as a dict."""
    with engine.connect() as conn:
        return job_row(conn, job_id)


def job_row(conn: Connection, job_id: int, *, for_update: bool = False) -> dict[str, Any]:
    """The job's row on an open connection (``for_update``: lock it until the transaction ends)."""
    query = select(jobs).where(jobs.c.id == job_id)
    row = conn.execute(query.with_for_update() if for_update else query).mappings().first()
    if row is None:
        raise JobNotFoundError(job_id)
    return dict(row)


def list_jobs(engine: Engine, limit: int | None = 50, batch: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` jobs (``None``: all), newest first; only those of ``batch`` when given."""
    query = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if batch is not None:
        query = query.where(jobs.c.batch == batch)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def get_jobs(engine: Engine, job_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The jobs' rows in the order of ``job_ids``."""
    with engine.connect() as conn:
        found = {row["id"]: dict(row) for row in conn.execute(select(jobs).where(jobs.c.id.in_(job_ids))).mappings()}
    missing = [job_id for job_id in job_ids if job_id not in found]
    if missing:
        raise JobNotFoundError(missing[0])
    return [found[job_id] for job_id in job_ids]


def delete_job(engine: Engine, job_id: int) -> None:
    """Delete a finished job and everything stored with it (segments, detections, thumbnails, descriptors,
    persons, evaluations: their rows go with the job's, ``ON DELETE CASCADE``). A queued or running job is
    refused: cancel it first, so that no worker writes into a job that is gone."""
    with write_transaction(engine) as conn:
        status = job_row(conn, job_id, for_update=True)["status"]
        if status not in FINISHED_STATUSES:
            raise ValueError(f"job {job_id} is {status}: cancel it first (`fervid cancel {job_id}`)")
        conn.execute(delete(jobs).where(jobs.c.id == job_id))


def set_status(engine: Engine, job_id: int, status: str, error: str | None = None) -> None:
    """Move the job to ``status`` with ``error`` (cleared when ``None``).

    ``running`` stamps ``started_at`` the first time, the finished statuses stamp ``finished_at``, and ``queued``
    or ``running`` clear it (a retried job).
    """
    if status not in JOB_STATUSES:
        raise ValueError(f"unknown job status {status!r}; choose from {', '.join(JOB_STATUSES)}")
    now = literal(utcnow(), UTCDateTime())
    values: dict[str, Any] = {"status": status, "error": error}
    if status in FINISHED_STATUSES:
        values["finished_at"] = now
    else:
        values["finished_at"] = None
        if status == "running":
            values["started_at"] = func.coalesce(jobs.c.started_at, now)
    with write_transaction(engine) as conn:
        if conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values)).rowcount == 0:
            raise JobNotFoundError(job_id)


def begin_segment(engine: Engine, job_id: int, idx: int, worker: str) -> bool:
    """Claim segment ``idx`` for ``worker``: mark it running and count the attempt.

    False (nothing changed) when the job was cancelled or the segment is already done. A queued job becomes running.
    """
    now = literal(utcnow(), UTCDateTime())
    seg = segment_table.c
    with write_transaction(engine) as conn:
        claimed = conn.execute(
            update(segment_table)
            .where(seg.job_id == job_id, seg.idx == idx, seg.status != "done")
            .where(~exists().where(jobs.c.id == job_id, jobs.c.status == "cancelled"))
            .values(status="running", attempts=seg.attempts + 1, worker=worker, started_at=now, heartbeat_at=now, error=None)
        ).rowcount
        if not claimed:
            job_row(conn, job_id)  # raises for a missing job
            if conn.execute(select(seg.idx).where(seg.job_id == job_id, seg.idx == idx)).first() is None:
                raise LookupError(f"job {job_id} has no segment {idx}")
            return False
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                worker=worker,
                status=case((jobs.c.status == "queued", "running"), else_=jobs.c.status),
                started_at=func.coalesce(jobs.c.started_at, now),
            )
        )
    return True


def wait_jobs(
    engine: Engine,
    job_ids: Sequence[int],
    on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
    *,
    outage: float = 60.0,
    poll: float = 0.5,
) -> list[dict[str, Any]]:
    """Poll jobs until every one is done, failed or cancelled; their rows. ``on_poll`` sees the rows at each
    poll. The database being unreachable for up to ``outage`` seconds in a row (a restart) is waited through,
    with capped exponential backoff; a longer outage raises the last error."""
    failing_since: float | None = None
    delay = poll
    while True:
        try:
            rows = get_jobs(engine, job_ids)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError):
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > outage:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        failing_since, delay = None, poll
        if on_poll:
            on_poll(rows)
        if all(row["status"] in FINISHED_STATUSES for row in rows):
            return rows
        time.sleep(poll)


def beat(engine: Engine, job_id: int, idx: int, worker: str) -> bool:
    """Refresh the heartbeat of segment ``idx`` while ``worker`` runs it; False once it is no longer its own."""
    seg = segment_table.c
    with write_transaction(engine) as conn:
        return bool(
            conn.execute(
                update(segment_table)
                .where(seg.job_id == job_id, seg.idx == idx, seg.status == "running", seg.worker == worker)
                .values(heartbeat_at=literal(utcnow(), UTCDateTime()))
            ).rowcount
        )


def claim_stale_segments(engine: Engine, older_than: float) -> dict[int, list[int]]:
    """Running segments of live jobs whose heartbeat is more than ``older_than`` seconds old (their worker died),
    claimed for re-enqueueing: each one's heartbeat is renewed under the same condition, so of several processes
    looking at once only one claims it. Returns ``{job_id: [segment, ...]}`` claimed."""
    seg = segment_table.c
    now = utcnow()
    cutoff = literal(now - timedelta(seconds=older_than), UTCDateTime())
    stale = (
        (seg.status == "running")
        & (func.coalesce(seg.heartbeat_at, seg.started_at) < cutoff)
        & exists().where(jobs.c.id == seg.job_id, jobs.c.status.in_(("queued", "running")))
    )
    claimed: dict[int, list[int]] = {}
    with engine.connect() as conn:
        candidates = conn.execute(select(seg.job_id, seg.idx).where(stale).order_by(seg.job_id, seg.idx)).all()
    for job_id, idx in candidates:
        with write_transaction(engine) as conn:
            renewed = conn.execute(
                update(segment_table)
                .where(seg.job_id == job_id, seg.idx == idx, stale)
                .values(heartbeat_at=literal(now, UTCDateTime()))
            ).rowcount
        if renewed:
            claimed.setdefault(job_id, []).append(idx)
    return claimed


def live_unfinished_segments(engine: Engine, older_than: float = 0.0) -> dict[int, list[int]]:
    """The segments not yet done of every queued or running job created more than ``older_than`` seconds ago:
    ``{job_id: [segment, ...]}``."""
    seg = segment_table.c
    cutoff = literal(utcnow() - timedelta(seconds=older_than), UTCDateTime())
    query = (
        select(seg.job_id, seg.idx)
        .join(jobs, jobs.c.id == seg.job_id)
        .where(jobs.c.status.in_(("queued", "running")), seg.status != "done", jobs.c.created_at <= cutoff)
        .order_by(seg.job_id, seg.idx)
    )
    found: dict[int, list[int]] = {}
    with engine.connect() as conn:
        for job_id, idx in conn.execute(query):
            found.setdefault(job_id, []).append(idx)
    return found


def unfinished_segments(engine: Engine, job_id: int) -> list[int]:
    """The indices of the job's segments that are not done, in order."""
    seg = segment_table.c
    with engine.connect() as conn:
        return list(conn.scalars(select(seg.idx).where(seg.job_id == job_id, seg.status != "done").order_by(seg.idx)))


def fail_segment(engine: Engine, job_id: int, idx: int, error: str) -> None:
    """Mark segment ``idx`` failed with ``error``."""
    seg = segment_table.c
    with write_transaction(engine) as conn:
        conn.execute(
            update(segment_table)
            .where(seg.job_id == job_id, seg.idx == idx)
            .values(status="failed", error=error, finished_at=literal(utcnow(), UTCDateTime()))
        )


def get_segments(engine: Engine, job_id: int) -> list[dict[str, Any]]:
    """The job's segments in order, as dicts."""
    seg = segment_table.c
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(segment_table).where(seg.job_id == job_id).order_by(seg.idx)).mappings()]


def get_segment(engine: Engine, job_id: int, idx: int) -> dict[str, Any]:
    """One segment's row as a dict."""
    seg = segment_table.c
    with engine.connect() as conn:
        row = conn.execute(select(segment_table).where(seg.job_id == job_id, seg.idx == idx)).mappings().first()
    if row is None:
        raise LookupError(f"job {job_id} has no segment {idx}")
    return dict(row)
