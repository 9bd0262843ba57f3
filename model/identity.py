"""Face identity: 128-d descriptors from dlib's face-recognition ResNet, to link tracks into persons.

The network (``dlib_face_recognition_resnet_model_v1``, 99.38 % on LFW) and the 5-point landmark model that aligns
its input are Davis King's dlib models, in the public domain / CC0, installed from PyPI by the
``face-recognition-models`` package (MIT) and run by the ``dlib-bin`` wheels (Boost licence): nothing is downloaded
at run time. dlib documents two faces of one person as lying within 0.6 of each other (Euclidean); fervid's
calibration on CK+ subjects is in ``docs/identity.md``.

Descriptors are computed on a few good samples per track (:func:`face_quality`), not on every face: a job keeps
a small :func:`face_region` around each candidate face until its segment ends. dlib holds Python's GIL while it
computes one (about 60 ms of CPU), which stalls every other thread of a job; :class:`ProcessEmbedder` runs it in a
child process instead.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np

if TYPE_CHECKING:  # not imported at run time: a ProcessEmbedder's child loads dlib and numpy only
    from fervid.model.detect import Box, Detection

DESCRIPTOR_SIZE = 128
#: Context kept around a candidate face, as a fraction of the box's size on each side (the landmark model looks
#: at the box; the descriptor's 150×150 chip adds 25 % padding).
REGION_MARGIN = 0.35
#: Faces at least this many pixels wide count as fully sharp in :func:`face_quality`.
SHARP_SIDE = 80.0


@dataclass(frozen=True)
class FaceRegion:
    """A small copy of the frame around a face (uint8 BGR or gray) and the face's box within it."""

    image: np.ndarray
    box: Box


def face_region(frame: np.ndarray, box: Box, margin: float = REGION_MARGIN) -> FaceRegion:
    """The part of ``frame`` around ``box`` (widened by ``margin`` of its size per side), copied."""
    x1, y1, x2, y2 = box
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(int(x1 - dx), 0), max(int(y1 - dy), 0)
    right, bottom = min(int(np.ceil(x2 + dx)), frame.shape[1]), min(int(np.ceil(y2 + dy)), frame.shape[0])
    return FaceRegion(frame[top:bottom, left:right].copy(), (x1 - left, y1 - top, x2 - left, y2 - top))


def face_quality(detection: Detection | None, box: Box) -> float:
    """How good a face is for identity, in ``[0, 1]``: detector confidence × size (up to :data:`SHARP_SIDE`
    pixels) × frontality (the nose between the eyes, from the landmarks where the detector gives them)."""
    side = min(box[2] - box[0], box[3] - box[1])
    score = detection.score if detection is not None else 1.0
    frontal = 1.0
    if detection is not None and detection.landmarks is not None:
        (lx, _), (rx, _), (nx, _) = detection.landmarks[:3]
        span = abs(rx - lx)
        frontal = max(0.0, 1.0 - 2.0 * abs(nx - (lx + rx) / 2) / span) if span > 0 else 0.0
    return float(score * min(side / SHARP_SIDE, 1.0) * frontal)


def _model_file(name: str) -> str:
    """A model file of the ``face-recognition-models`` package, found without importing it (it needs
    ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face identity needs the face-recognition-models package: pip install face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ImportError(f"{path}: missing from the face-recognition-models package; reinstall it")
    return str(path)


class Embedder(Protocol):
    """What describes faces: one at a time, or many at once."""

    def __call__(self, region: FaceRegion) -> np.ndarray: ...

    def many(self, regions: Sequence[FaceRegion]) -> list[np.ndarray]: ...


class FaceEmbedder:
    """dlib's 5-point alignment and face-recognition ResNet: a unit-free 128-d descriptor per face.

    One instance may be called from several threads (calls are serialised).
    """

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._landmarks = dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat"))
        self._network = dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))
        self._lock = threading.Lock()

    def __call__(self, region: FaceRegion) -> np.ndarray:
        """The descriptor (float32, :data:`DESCRIPTOR_SIZE`) of the face at ``region.box``."""
        image = region.image
        rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, 2::-1]
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        x1, y1, x2, y2 = (int(round(v)) for v in region.box)
        with self._lock:
            shape = self._landmarks(rgb, self._dlib.rectangle(x1, y1, x2, y2))
            descriptor = self._network.compute_face_descriptor(rgb, shape)
        return np.asarray(descriptor, dtype=np.float32)

    def many(self, regions: Sequence[FaceRegion]) -> list[np.ndarray]:
        """The descriptors of ``regions``, in order."""
        return [self(region) for region in regions]


#: A request to the identity process: the box (x1, y1, x2, y2), then the image's height, width and channels (0: gray),
#: then its uint8 pixels. An answer: 1 and the descriptor's float32 bytes, or 0 and an error message.
_REQUEST = struct.Struct("<4d3I")
_ANSWER = struct.Struct("<BI")


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the identity process ended")
    return data


def _ask(stream: BinaryIO, region: FaceRegion) -> None:
    image = np.ascontiguousarray(region.image, dtype=np.uint8)
    if image.ndim not in (2, 3):
        raise ValueError(f"a face region is an (H, W) or (H, W, C) image, not shape {image.shape}")
    channels = image.shape[2] if image.ndim == 3 else 0
    stream.write(_REQUEST.pack(*region.box, image.shape[0], image.shape[1], channels) + image.tobytes())
    stream.flush()


def _question(stream: BinaryIO) -> FaceRegion:
    *box, height, width, channels = _REQUEST.unpack(_read(stream, _REQUEST.size))
    shape = (height, width, channels) if channels else (height, width)
    image = np.frombuffer(_read(stream, int(np.prod(shape))), dtype=np.uint8).reshape(shape)
    return FaceRegion(image, tuple(box))  # type: ignore[arg-type]


def _answer(stream: BinaryIO, ok: bool, payload: bytes) -> None:
    stream.write(_ANSWER.pack(ok, len(payload)) + payload)
    stream.flush()


def _reply(stream: BinaryIO) -> np.ndarray:
    ok, size = _ANSWER.unpack(_read(stream, _ANSWER.size))
    payload = _read(stream, size)
    if not ok:
        raise RuntimeError(f"face identity: {payload.decode('utf-8', 'replace')}")
    return np.frombuffer(payload, dtype=np.float32).copy()


class _Child:
    """One identity process (this module run as ``__main__`` at :data:`CHILD_NICENESS`) and the pipe to it, replaced
    once per call if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process = self._start()

    @staticmethod
    def _start() -> subprocess.Popen[bytes]:
        # Lower priority before loading anything: a cold job's decoding goes first while the child starts.
        code = (
            f"import os, runpy; hasattr(os, 'nice') and os.nice({CHILD_NICENESS}); "  # os.nice: POSIX only
            "runpy.run_module('fervid.model.identity', run_name='__main__')"
        )
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _exchange(self, region: FaceRegion) -> np.ndarray:
        _ask(self._process.stdin, region)  # type: ignore[arg-type]
        return _reply(self._process.stdout)  # type: ignore[arg-type]

    def describe(self, region: FaceRegion) -> np.ndarray:
        with self._lock:
            try:
                return self._exchange(region)
            except (BrokenPipeError, EOFError):  # it died (killed, out of memory): once more, with a new one
                self._process.kill()
                self._process.wait()
                self._process = self._start()
            try:
                return self._exchange(region)
            except (BrokenPipeError, EOFError):
                self._process.kill()
                raise RuntimeError(f"the face identity process ended (exit code {self._process.wait()})") from None

    def close(self) -> None:
        with self._lock:
            if self._process.stdin:
                self._process.stdin.close()
            self._process.wait()


#: Niceness of the identity processes: a cold job's decoding and detection go first (cold job ×1.11 → ×1.08-1.09 of a
#: warm one on the 60 s one-face video, benchmarks/throughput.py).
CHILD_NICENESS = 5
#: Faces a :meth:`ProcessEmbedder.many` call gives each child at least: starting one costs about as much as 5 faces.
MANY_PER_CHILD = 10


class ProcessEmbedder:
    """A :class:`FaceEmbedder` in up to ``children`` child processes (``python -m fervid.model.identity``, which
    loads dlib and numpy only, 77 MB each), fed face regions through pipes: the job's threads go on while a face is
    described. Single faces go to the first child, started at once; :meth:`many` shares its faces among more
    children, started when a call has :data:`MANY_PER_CHILD` faces for each (a crowd's segment end). Callable from
    several threads; a child that dies (killed, out of memory) is replaced once per call; the children end when this
    process does (their input closes)."""

    def __init__(self, children: int = 2) -> None:
        if importlib.util.find_spec("dlib") is None:
            raise ImportError("face identity needs dlib: pip install dlib-bin")
        for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
            _model_file(name)  # a missing model fails here, in words, not in a child
        self._most = max(children, 1)
        self._lock = threading.Lock()
        self._children = [_Child()]

    def __call__(self, region: FaceRegion) -> np.ndarray:
        """The descriptor (float32, :data:`DESCRIPTOR_SIZE`) of the face at ``region.box``."""
        return self._children[0].describe(region)

    def many(self, regions: Sequence[FaceRegion]) -> list[np.ndarray]:
        """The descriptors of ``regions``, in order, shared among the children."""
        with self._lock:
            wanted = min(self._most, max(1, len(regions) // MANY_PER_CHILD))
            self._children += [_Child() for _ in range(wanted - len(self._children))]
            children = self._children[:wanted]
        n = len(children)
        with ThreadPoolExecutor(n, thread_name_prefix="fervid-identity") as pool:
            shares = [pool.submit(list, map(child.describe, regions[k::n])) for k, child in enumerate(children)]
            described = [share.result() for share in shares]
        return [described[i % n][i // n] for i in range(len(regions))]

    def close(self) -> None:
        """End the child processes."""
        for child in self._children:
            child.close()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The identity process's loop: a face region in, its descriptor (or what went wrong) out, until the input
    closes."""
    embedder = FaceEmbedder()
    while True:
        try:
            region = _question(requests)
        except EOFError:
            return
        try:
            _answer(answers, True, embedder(region).astype(np.float32).tobytes())
        except Exception as exc:  # noqa: BLE001 - handed to the parent
            _answer(answers, False, f"{type(exc).__name__}: {exc}".encode())


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
