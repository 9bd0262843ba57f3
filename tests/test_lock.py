"""One trainer per run folder: the lock is exclusive, names its owner, is released, and a dead owner's is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fervid.model.lock import LOCK, FolderBusyError, training_lock


def test_a_held_folder_is_busy_until_released(tmp_path: Path) -> None:
    with training_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == f"{socket.gethostname()} {os.getpid()}"
        with pytest.raises(FolderBusyError, match=f"process {socket.gethostname()} {os.getpid()}"):
            with training_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK).exists()
    with training_lock(tmp_path):  # free again
        pass


def test_released_on_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError), training_lock(tmp_path):
        raise KeyError("boom")
    assert not (tmp_path / LOCK).exists()


def test_a_dead_process_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK).write_text(f"{socket.gethostname()} {int(dead.stdout)}")
    with training_lock(tmp_path):
        assert (tmp_path / LOCK).read_text().endswith(f" {os.getpid()}")


@pytest.mark.parametrize("owner", ["other-machine 123", f"{socket.gethostname()} {os.getppid()}", ""])
def test_another_machine_a_live_process_or_a_lock_being_written_is_busy(tmp_path: Path, owner: str) -> None:
    (tmp_path / LOCK).write_text(owner)
    with pytest.raises(FolderBusyError, match="delete .*lock if that process is gone"):
        with training_lock(tmp_path):
            pass
    assert (tmp_path / LOCK).read_text() == owner  # not taken
