"""Distributed mode's Celery task (one message per segment), enqueueing, and recovery of lost messages.

A worker runs the same :func:`~fervid.worker.pipeline.process_segment` as the embedded default. Transient errors
(the database or broker unreachable) are retried with capped exponential backoff and jitter; anything else — bad
input, a time limit, a worker process that keeps dying — fails the segment and the job with its reason, and
``fervid retry N`` runs the unfinished segments again. ``fervid recover`` re-enqueues the unfinished segments of
queued or running jobs that have no message left in the broker, so no job stays running forever.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import psycopg
import redis.exceptions
import sqlalchemy.exc
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery import Celery, Task, shared_task, signals

from fervid.db.engine import get_engine
from fervid.db.jobs import claim_stale_segments, fail_segment, get_job, live_unfinished_segments, set_status
from fervid.settings import Settings, get_settings
from fervid.worker import runtime
from fervid.worker.celery_app import SEGMENT_TASK, make_app
from fervid.worker.pipeline import process_segment

logger = logging.getLogger(__name__)

#: Errors worth retrying: the database or the broker is unreachable or went away mid-segment.
TRANSIENT: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,  # raised unwrapped by the COPY of detections
    psycopg.InterfaceError,
    redis.exceptions.ConnectionError,
    ConnectionError,
    TimeoutError,
)
#: Retries of a transient error: 2, 4, 8, 16, 32, then 60 s apart (no jitter, so that they cannot all come at once
#: and be spent within seconds), about four minutes in all: a database or broker restart is ridden out.
MAX_RETRIES = 8
#: Seconds to wait for workers' replies when ``recover`` asks which tasks they hold.
INSPECT_TIMEOUT = 2.0
_TASK_ID = re.compile(r"fervid-(\d+)-(\d+)-[0-9a-f]+")


@shared_task(
    name=SEGMENT_TASK,
    autoretry_for=TRANSIENT,
    max_retries=MAX_RETRIES,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=False,
    # A pool process that dies (out of memory, a crashing driver) sends the segment round again, counted
    # against max_retries, so a segment that kills every worker fails its job instead of looping.
    retry_on_worker_lost=True,
    default_retry_delay=1,
)
def segment(job_id: int, idx: int) -> bool:
    """Process segment ``idx`` of job ``job_id``; True when it finished the job."""
    settings = get_settings()
    engine = get_engine(settings.effective_database_url)
    return process_segment(engine, job_id, idx, settings, runtime.worker_name())


def task_id(job_id: int, idx: int) -> str:
    """A fresh task id naming its segment: ``fervid-<job>-<idx>-<random>``."""
    return f"fervid-{job_id}-{idx}-{uuid.uuid4().hex[:12]}"


def segment_of(task_id: str) -> tuple[int, int] | None:
    """``(job_id, idx)`` of a :func:`task_id`; None for other tasks."""
    match = _TASK_ID.fullmatch(task_id)
    return (int(match[1]), int(match[2])) if match else None


def enqueue_segments(job_id: int, idxs: Iterable[int], settings: Settings) -> list[str]:
    """Send one message per segment to ``settings.queue``; the task ids."""
    app = make_app(settings)
    sent = []
    with app.producer_or_acquire() as producer:
        for idx in idxs:
            sent.append(app.send_task(SEGMENT_TASK, args=(job_id, idx), task_id=task_id(job_id, idx), producer=producer).id)
    return sent


def reclaim(settings: Settings) -> dict[int, list[int]]:
    """Re-enqueue the running segments whose worker stopped beating for ``heartbeat_timeout`` seconds (killed, out
    of memory, a lost machine): their messages would otherwise wait out the broker's visibility timeout. A late
    duplicate is harmless: a segment's rows are written once. Returns ``{job_id: [segment, ...]}``."""
    from fervid.db import database

    claimed = claim_stale_segments(database(settings), settings.heartbeat_timeout)
    for job, idxs in claimed.items():
        logger.warning("job %s: segments %s lost their worker (no heartbeat for %g s): sent again", job, idxs, settings.heartbeat_timeout)
        enqueue_segments(job, idxs, settings)
    return claimed


def reaper(settings: Settings, stop: threading.Event) -> None:
    """Until ``stop``: :func:`recover` every half heartbeat timeout (each worker runs one, so any live worker
    sends again a dead worker's segments and the messages that were lost, e.g. a segment whose failure could not be
    recorded while the database was down); errors are logged and tried again."""
    while not stop.wait(settings.heartbeat_timeout / 2):
        try:
            recover(settings, settled=settings.heartbeat_timeout)
        except Exception as exc:  # noqa: BLE001 - the reaper outlives a database or broker outage
            logger.warning("recovering lost segments failed: %s", exc)


_reaper_stop = threading.Event()


@signals.worker_ready.connect
def _start_reaper(**_: Any) -> None:
    """In each worker's main process: start the :func:`reaper` thread."""
    threading.Thread(target=reaper, args=(get_settings(), _reaper_stop), name="fervid-reaper", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    _reaper_stop.set()


def recover(settings: Settings, settled: float = 0.0) -> dict[int, list[int]]:
    """Re-enqueue the unfinished segments of queued or running jobs that have no message in the broker.

    A segment's message is in the broker while it waits in the queue, while a worker holds it unacknowledged
    (kombu's ``unacked`` hash, emptied again to the queue when a worker vanished and the visibility timeout
    passed), or while a live worker runs it (asked with ``inspect``). Anything else — a broker that restarted
    empty, a job enqueued while the broker was down, a running segment whose worker and message are gone — is
    lost. Run it once the workers are connected again: a running segment whose worker does not answer within
    :data:`INSPECT_TIMEOUT` counts as lost and runs a second time. Returns
    ``{job_id: [segment, ...]}`` re-enqueued.
    """
    if settings.embedded:
        raise ValueError("recover needs a broker (FERVID_BROKER_URL); on the embedded default `fervid retry N` re-runs a job")
    from fervid.db import database

    stale = reclaim(settings)  # dead workers' segments, whatever the broker holds for them
    # read before the broker (a race only re-sends); jobs younger than ``settled`` seconds may still be enqueueing
    unfinished = live_unfinished_segments(database(settings), settled)
    if not unfinished:
        return stale
    held = _segments_in_broker(make_app(settings), settings.queue)
    held |= {(job, i) for job, idxs in stale.items() for i in idxs}
    lost = {job: missing for job, idxs in unfinished.items() if (missing := [i for i in idxs if (job, i) not in held])}
    for job, idxs in lost.items():
        logger.warning("job %s: re-enqueueing lost segments %s", job, idxs)
        enqueue_segments(job, idxs, settings)
    for job, idxs in stale.items():
        lost.setdefault(job, []).extend(idxs)
    return {job: sorted(idxs) for job, idxs in lost.items()}


def _segments_in_broker(app: Celery, queue: str) -> set[tuple[int, int]]:
    """The segments with a message waiting in ``queue``, unacknowledged, or running on a live worker."""
    ids: set[str] = set()
    with app.connection_for_read() as connection:
        if connection.transport.driver_type != "redis":
            raise ValueError(f"recover reads kombu's Redis transport; the broker is {connection.transport.driver_type}")
        channel = connection.default_channel
        client = channel.client
        for key in [queue, *(f"{queue}{channel.sep}{p}" for p in channel.priority_steps if p)]:
            ids.update(json.loads(raw)["headers"]["id"] for raw in client.lrange(key, 0, -1))
        ids.update(json.loads(raw)[0]["headers"]["id"] for raw in client.hvals(channel.unacked_key))
        # What a live worker prefetched or scheduled is in the unacked hash, or was dropped when it reconnected to
        # a restarted broker; only what it is running matters.
        inspect = app.control.inspect(timeout=INSPECT_TIMEOUT, connection=connection)
        for running in (inspect.active() or {}).values():
            ids.update(request["id"] for request in running)
    return {seg for i in ids if (seg := segment_of(i))}


def failure_message(idx: int, exc: BaseException, settings: Settings) -> str:
    """Why segment ``idx`` failed, for the job's ``error``."""
    if isinstance(exc, TRANSIENT):
        reason = f"{str(exc).splitlines()[0]} (gave up after {MAX_RETRIES} retries)"
    elif isinstance(exc, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        reason = f"ran over the time limit of {settings.segment_timeout:.0f} s (FERVID_SEGMENT_TIMEOUT)"
    elif isinstance(exc, WorkerLostError):
        reason = f"its worker process died {MAX_RETRIES + 1} times (out of memory?): {exc}"
    else:
        reason = str(exc) or type(exc).__name__
    return f"segment {idx}: {reason}"


@signals.task_failure.connect
def _segment_failed(sender: Task | None = None, exception: BaseException | None = None, args: Any = (), **_: Any) -> None:
    """A segment failed for good (in the pool process, or the worker's main one for time limits and lost
    processes): mark the segment and the job failed."""
    if sender is None or sender.name != SEGMENT_TASK or exception is None:
        return
    job_id, idx = args
    settings = get_settings()
    message = failure_message(idx, exception, settings)
    engine = get_engine(settings.effective_database_url)
    try:
        fail_segment(engine, job_id, idx, message)
        if get_job(engine, job_id)["status"] in ("queued", "running"):
            set_status(engine, job_id, "failed", message)
    except TRANSIENT as exc:
        logger.error("job %s %s; recording it failed too (%s): `fervid recover` re-enqueues the segment", job_id, message, exc)
