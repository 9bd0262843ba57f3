"""What checkpoint files need without PyTorch: their error type and their checksum (``fervid models`` and other
read-only commands use these and load no ML code)."""

from __future__ import annotations

import hashlib
import os


class CheckpointError(ValueError):
    """A file that is not a usable fervid checkpoint; the message names the file."""


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
