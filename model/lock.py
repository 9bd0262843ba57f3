"""One trainer per folder: ``fervid train --out DIR`` and each fold of ``fervid evaluate --protocol`` hold
``DIR/lock`` while they train, so processes or machines sharing a run folder never write the same checkpoints."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = "lock"


class FolderBusyError(RuntimeError):
    """Another live process is training into the folder."""


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _alive(owner: str) -> bool:
    """Whether the lock's owner may still run: a dead pid on this host is the only proof it does not."""
    host, _, pid = owner.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's process, or a lock still being written
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def training_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/lock`` (host and pid) for the block; :class:`FolderBusyError` while a live process holds it.

    A lock left by a process that died on this host is taken over; one left on another machine names that machine
    and pid, and is removed by hand once that process is gone.
    """
    path = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = path.read_text().strip() if path.exists() else ""
            if _alive(owner):
                raise FolderBusyError(
                    f"{folder} is being trained by process {owner or '(starting)'}; wait for it, or delete {path} "
                    "if that process is gone"
                ) from None
            path.unlink(missing_ok=True)  # left by a dead process: take it over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(_owner())
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise FolderBusyError(f"{folder}: another process took {path} at the same moment")
