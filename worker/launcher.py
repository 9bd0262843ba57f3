"""``fervid worker``: Celery worker processes pinned to devices, one per GPU (or one on the CPU).

Each worker is a child process started with ``CUDA_VISIBLE_DEVICES`` already in its environment, so CUDA never sees
another device and the parent never initialises CUDA (GPUs are counted with ``nvidia-smi -L``). The workers use
the prefork pool even at concurrency 1: the pool enforces the per-segment time limits, the main process answers
``inspect`` (``fervid recover``, Flower) while a segment runs, and a pool process that dies is noticed and its
segment sent round again. Each pool process loads the model once and keeps it warm.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from fervid.settings import ENV_PREFIX, Settings

APP = "fervid.worker.celery_app"
#: Seconds between checks on the children while they run.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerSpec:
    """One Celery worker process: its node name, queues, pool size and extra environment."""

    hostname: str
    queues: str
    concurrency: int
    env: Mapping[str, str]
    loglevel: str = "INFO"

    @property
    def argv(self) -> list[str]:
        """The command line that starts this worker."""
        return [
            sys.executable, "-m", "celery", "-A", APP, "worker", "-Q", self.queues, "-n", self.hostname,
            "-c", str(self.concurrency), "--pool", "prefork", "--loglevel", self.loglevel,
        ]  # fmt: skip


def settings_env(settings: Settings) -> dict[str, str]:
    """``FERVID_<NAME>`` variables that give a child process these settings (unset ones are left out)."""
    return {
        ENV_PREFIX + f.name.upper(): str(value)
        for f in dataclasses.fields(settings)
        if (value := getattr(settings, f.name)) is not None
    }


def count_gpus() -> int:
    """NVIDIA GPUs on this machine, from ``nvidia-smi -L`` (0 without the driver); CUDA is not touched."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def plan_workers(
    gpus: str | None,
    cpu: bool,
    concurrency: int,
    queues: str | None,
    settings: Settings,
    visible_gpus: int | None = None,
    pid: int | None = None,
) -> list[WorkerSpec]:
    """The workers to start: one per GPU in ``gpus`` (``"0,1"``), plus a CPU worker with ``cpu``.

    With neither, one worker per visible GPU, or a CPU worker when there is none. ``visible_gpus`` (when known)
    checks the indices. Node names are ``fervid-gpu<index>-<pid>@%h`` / ``fervid-cpu-<pid>@%h`` (``pid``: this
    launcher's), unique even for several launchers on one host.
    """
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, not {concurrency}")
    pid = os.getpid() if pid is None else pid
    indices = [part.strip() for part in gpus.split(",") if part.strip()] if gpus else []
    for index in indices:
        if not index.isdigit():
            raise ValueError(f"--gpus takes comma-separated GPU indices such as 0,1; got {gpus!r}")
        if visible_gpus is not None and int(index) >= visible_gpus:
            raise ValueError(f"GPU {index} requested but {visible_gpus} visible (nvidia-smi -L)")
    if len(set(indices)) != len(indices):
        raise ValueError(f"--gpus names a GPU twice: {gpus!r}")
    if not indices and not cpu:
        indices = [str(i) for i in range(visible_gpus or 0)]
    env = settings_env(settings)
    common = dict(queues=queues or settings.queue, concurrency=concurrency, loglevel=settings.log_level)
    specs = [
        WorkerSpec(hostname=f"fervid-gpu{i}-{pid}@%h", env={**env, "CUDA_VISIBLE_DEVICES": i}, **common) for i in indices
    ]
    if cpu or not indices:
        specs.append(WorkerSpec(hostname=f"fervid-cpu-{pid}@%h", env={**env, "CUDA_VISIBLE_DEVICES": ""}, **common))
    return specs


def spawn(argv: Sequence[str], env: Mapping[str, str], **popen: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` with ``env`` over this process's environment, in place before the child runs anything.

    The child gets a session of its own (a terminal's Ctrl-C reaches it once, forwarded by the launcher, so it
    shuts down warm) and, on Linux, SIGTERM when the launcher dies.
    """
    return subprocess.Popen(
        list(argv),
        env={**os.environ, **env},
        start_new_session=True,
        preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
        **popen,
    )


def _terminate_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_workers(settings: Settings, gpus: str | None, cpu: bool, concurrency: int, queues: str | None) -> int:
    """Start the planned workers and wait for them; returns the worst exit code.

    SIGINT and SIGTERM are forwarded to every worker (once: warm shutdown, the running segments finish; twice:
    cold). When one worker exits by itself the others are stopped too, so that a supervisor (Docker, systemd)
    restarts the set.
    """
    if settings.embedded:
        raise ValueError("workers need a broker: set FERVID_BROKER_URL or pass --broker-url")
    visible = None if cpu and not gpus else count_gpus()
    specs = plan_workers(gpus, cpu, concurrency, queues, settings, visible_gpus=visible)
    children = [spawn(spec.argv, spec.env) for spec in specs]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while all(child.poll() is None for child in children):
            time.sleep(POLL_SECONDS)
        if not stopping:
            forward(signal.SIGTERM, None)
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return max(code if code >= 0 else 128 - code for code in codes)
