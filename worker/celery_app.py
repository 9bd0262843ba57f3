"""The Celery application of distributed mode, configured from fervid's settings.

Workers run ``celery -A fervid.worker.celery_app worker`` (``fervid worker`` starts them pinned to devices) and Flower
runs ``celery -A fervid.worker.celery_app flower``; both use the module attribute :data:`app`, built on first use
from :func:`fervid.settings.get_settings`.

Delivery is at-least-once: a message is acknowledged after its segment is written (``acks_late``), and a message
whose worker vanished goes back to the queue (a lost pool process at once; a lost machine after the broker's
visibility timeout). Re-running a segment is harmless, since its rows are replaced in one transaction.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from typing import Any

from celery import Celery, signals
from kombu import Queue

from fervid.db.engine import dispose_engines
from fervid.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: The Celery name of the one task: process one segment of a job.
SEGMENT_TASK = "fervid.segment"
#: Seconds a connect or a blocking Redis command may take (kombu waits forever by default), so that a broker
#: that accepts connections but never answers fails ``fervid submit`` instead of hanging it. Above kombu's
#: one-second BRPOP timeout, which workers block on.
BROKER_SOCKET_TIMEOUT = 5.0


@functools.lru_cache(maxsize=8)
def make_app(settings: Settings) -> Celery:
    """A Celery app on ``settings.broker_url`` (cached per settings).

    JSON messages only; one explicit queue (``settings.queue``); one message per worker process at a time,
    acknowledged when the segment is written; per-segment time limits from ``settings.segment_timeout`` (soft:
    the segment fails with a clear error; hard, a quarter later: its process is killed); the Redis visibility
    timeout at twice that, so a message is never handed out again while its segment may still be running;
    Redis socket operations bounded by :data:`BROKER_SOCKET_TIMEOUT`.
    """
    timeout = settings.segment_timeout
    visibility = 2 * timeout
    app = Celery("fervid", broker=settings.broker_url, include=["fervid.worker.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_backend=settings.result_backend,
        task_ignore_result=not settings.result_backend,
        task_queues=[Queue(settings.queue, routing_key=settings.queue)],
        task_default_queue=settings.queue,
        task_routes={SEGMENT_TASK: {"queue": settings.queue}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=timeout,
        task_time_limit=1.25 * timeout,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Sweep for messages of vanished workers every tenth of the visibility timeout (kombu's default
            # sweep is every 10 × 10 s).
            "unacked_restore_interval": max(1, min(60, round(visibility / 10))),
            "unacked_restore_throttle": 1,
            "socket_timeout": BROKER_SOCKET_TIMEOUT,
            "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
        },
        broker_connection_retry_on_startup=True,
        # A broker restart must not kill running segments: they finish and write their rows.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


@functools.cache
def _default_app() -> Celery:
    return make_app(get_settings())


def __getattr__(name: str) -> Any:
    """``app``: the app for this process's settings (what ``celery -A fervid.worker.celery_app`` loads)."""
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@signals.worker_process_init.connect
def _process_init(**_: Any) -> None:
    """In each pool process: drop database connections inherited through fork, say where it runs."""
    from fervid.model.infer import resolve_device
    from fervid.worker.runtime import worker_name

    dispose_engines()
    settings = get_settings()
    logger.info(
        "fervid worker process %s on %s: device %s (setting %r, CUDA_VISIBLE_DEVICES=%r)",
        worker_name(), socket.gethostname(), resolve_device(settings.device), settings.device,
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )  # fmt: skip
