"""The per-process runtime of a worker: the classifier, the face detector and the face-identity network, loaded
once and kept warm."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from fervid.model.detect import FaceDetector, create_detector
from fervid.model.files import sha256_file
from fervid.model.identity import ProcessEmbedder
from fervid.model.infer import Classifier
from fervid.model.weights import Weights, resolve_model


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


def job_model(name: str, path: str, sha256: str, model_dir: Path | None) -> str:
    """This worker's file for a job's model: a shipped model from this installation; a custom checkpoint at the
    path it was submitted from, else by its file name in ``model_dir`` (``FERVID_MODEL_DIR``, e.g. shared
    storage). The file's sha256 must be the job's: a :class:`ValueError` says which file differs or is missing."""
    if any(member.value.name == name for member in Weights):
        candidates = [Weights.get(name).path]
    else:
        candidates = [Path(path)] + ([Path(model_dir) / Path(path).name] if model_dir else [])
    mismatch = None
    for candidate in filter(Path.is_file, candidates):
        digest = sha256_file(candidate)
        if digest == sha256:
            return str(candidate)
        mismatch = mismatch or f"{candidate}: sha256 {digest[:12]}… but the job's model {name!r} has sha256 {sha256[:12]}…"
    if mismatch:
        raise ValueError(f"{mismatch}: the checkpoint changed since the job was submitted, or this worker has another release")
    hint = "" if model_dir else "; set FERVID_MODEL_DIR to a folder that holds it"
    raise ValueError(f"model {name!r} (sha256 {sha256[:12]}…) is not on this worker: no {' or '.join(map(str, candidates))}{hint}")


@functools.lru_cache(maxsize=4)
def classifier(path: str, sha256: str, device: str, batch_size: int, threads: int = 0) -> Classifier:
    """A classifier for the checkpoint at ``path`` whose sha256 :func:`job_model` checked (cached per process;
    ``sha256`` keys a changed file anew)."""
    return Classifier(path, device=device, batch_size=batch_size, threads=threads)


@functools.lru_cache(maxsize=4)
def detector(name: str, max_side: int, threshold: float) -> FaceDetector:
    """A face detector (cached per process)."""
    return create_detector(name, threshold=threshold, max_side=max_side)


@functools.lru_cache(maxsize=1)
def embedder() -> ProcessEmbedder:
    """The face-identity network, in its own process beside the job's threads (cached per process). It returns at
    once: the process loads dlib while the job decodes and detects, and the first face described waits for it."""
    return ProcessEmbedder()

