"""The per-process runtime of a worker: the classifier and the face detector, loaded once and kept warm."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass

from fervid.model.checkpoint import sha256_file
from fervid.model.detect import FaceDetector, create_detector
from fervid.model.infer import Classifier
from fervid.model.weights import resolve_model


@dataclass(frozen=True)
class ModelRef:
    """Which model a job uses: its name (shipped name or path), file and checksum."""

    name: str
    path: str
    sha256: str


def model_ref(name_or_path: str) -> ModelRef:
    """Resolve a shipped model name or checkpoint path (checksum verified for shipped models)."""
    path = resolve_model(name_or_path)
    return ModelRef(str(name_or_path), str(path), sha256_file(path))


def worker_name() -> str:
    """``host:pid[:device]``: recorded in every row a worker writes."""
    device = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{socket.gethostname()}:{os.getpid()}" + (f":cuda{device}" if device else "")


@functools.lru_cache(maxsize=4)
def classifier(path: str, sha256: str, device: str, batch_size: int, threads: int = 0) -> Classifier:
    """A classifier for the checkpoint at ``path`` (cached per process; ``sha256`` keys a changed file anew)."""
    if sha256_file(path) != sha256:
        raise ValueError(f"{path}: the checkpoint changed since the job was submitted (sha256 mismatch)")
    return Classifier(path, device=device, batch_size=batch_size, threads=threads)


@functools.lru_cache(maxsize=4)
def detector(name: str, max_side: int, threshold: float) -> FaceDetector:
    """A face detector (cached per process)."""
    return create_detector(name, threshold=threshold, max_side=max_side)
