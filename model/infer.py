"""Batched expression classification of preprocessed faces with a checkpoint.

Two backends: onnxruntime (the checkpoint exported to ONNX in memory once, the fast path on CPU) and PyTorch
(on CUDA with float16 autocast and channels-last). ``backend="auto"`` picks PyTorch on CUDA, else onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from fervid.model.checkpoint import Checkpoint, load_checkpoint
from fervid.model.export import INPUT_NAME, OUTPUT_NAME, onnx_bytes
from fervid.model.files import sha256_file
from fervid.model.tta import average, views
from fervid.settings import get_settings

BACKENDS: tuple[str, ...] = ("auto", "onnx", "torch")
#: On CPU the network runs on at most this many faces at a time, however large ``batch_size``: a small batch's
#: activations stay in the core's cache, which makes a run of 64 faces about 1.6× faster than one call on all 64
#: (benchmarks/results/throughput.md).
CPU_BATCH = 8


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; a CUDA device without CUDA raises :class:`RuntimeError`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def cached_onnx(checkpoint: Checkpoint) -> bytes:
    """The checkpoint's ONNX export, cached under ``FERVID_DATA_DIR/cache/onnx`` by the file's sha256 and the
    torch version (a cold process skips the export: seconds on a CPU); a checkpoint in memory is exported."""
    source = Path(checkpoint.source)
    if not source.is_file():
        return onnx_bytes(checkpoint)
    cache = get_settings().data_dir / "cache" / "onnx" / f"{sha256_file(source)}-torch{torch.__version__}.onnx"
    if cache.is_file():
        return cache.read_bytes()
    data = onnx_bytes(checkpoint)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(cache)
    except OSError:  # a read-only data directory: export every time
        pass
    return data


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """Expression probabilities for batches of preprocessed faces (:func:`fervid.model.preprocess.preprocess`).

    ``checkpoint`` is a :class:`Checkpoint` or a path to one. ``device`` and ``batch_size`` default to the
    settings (on CPU, runs hold at most :data:`CPU_BATCH` faces); ``threads`` sets onnxruntime's intra-op
    threads (0: its default, all cores).
    """

    def __init__(
        self,
        checkpoint: Checkpoint | str | os.PathLike[str],
        backend: str = "auto",
        device: str | None = None,
        batch_size: int | None = None,
        threads: int = 0,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        settings = get_settings()
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        self.classes: list[str] = list(self.checkpoint.classes)
        self.input_size: int = self.checkpoint.input_size
        self.in_chans: int = self.checkpoint.config.in_chans
        self.device = resolve_device(device or settings.device)
        self.backend = backend if backend != "auto" else ("torch" if self.device.type == "cuda" else "onnx")
        self.batch_size = batch_size or settings.batch_size
        self._step = self.batch_size if self.device.type == "cuda" else min(self.batch_size, CPU_BATCH)
        if self.backend == "torch":
            self._model = self.checkpoint.build().to(self.device)
            if self.device.type == "cuda":
                self._model = self._model.to(memory_format=torch.channels_last)
        else:
            self._session = self._onnx_session(threads)

    def _onnx_session(self, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("the ONNX backend on CUDA needs onnxruntime-gpu: pip install 'fervid[gpu]'")
            providers: list = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        return ort.InferenceSession(cached_onnx(self.checkpoint), options, providers=providers)

    def predict(self, faces: np.ndarray, flip: bool = False, shift: float = 0.0) -> np.ndarray:
        """Probabilities ``(N, len(classes))`` float32 for faces ``(N, in_chans, S, S)``, run in batches, averaged
        over the views of :mod:`fervid.model.tta`: with ``flip`` each face's mirror image, with ``shift`` copies
        moved by that fraction of its side."""
        expected = (self.in_chans, self.input_size, self.input_size)
        if faces.ndim != 4 or faces.shape[1:] != expected:
            raise ValueError(f"faces must have shape (N, {', '.join(map(str, expected))}), got {faces.shape}")
        if not len(faces):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        stacked = views(faces, flip, shift)
        logits = [self._logits(stacked[i : i + self._step]) for i in range(0, len(stacked), self._step)]
        probs = softmax(np.concatenate(logits))
        if not np.isfinite(probs).all():
            raise FloatingPointError(
                f"{self.checkpoint.source}: the network gave NaN or infinite outputs: corrupt weights, refusing to store them"
            )
        return average(probs, len(faces))

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            return self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        cuda = self.device.type == "cuda"
        x = torch.from_numpy(batch).to(self.device, memory_format=torch.channels_last if cuda else torch.preserve_format)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            return self._model(x).float().cpu().numpy()
