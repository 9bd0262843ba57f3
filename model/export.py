"""ONNX export of a network or checkpoint, and a parity check against PyTorch with onnxruntime.

torch ≥ 2.9 defaults to the ``torch.export``-based exporter (``dynamo=True``), which needs the extra package
onnxscript and emits opset ≥ 18. fervid uses the TorchScript exporter (``dynamo=False``): it needs nothing beyond
torch and onnx, supports opset 17, and exports every attention variant (``amax``, ``mean``, ``conv1d``) exactly.
The batch dimension is dynamic; the spatial size is fixed at ``input_size``.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from fervid.model.checkpoint import Checkpoint

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ParityError(RuntimeError):
    """ONNX and PyTorch outputs differ by more than the tolerance."""


def _resolve(
    model_or_checkpoint: nn.Module | Checkpoint, input_size: int | None, in_chans: int | None
) -> tuple[nn.Module, int, int]:
    """The eval-mode model, input size and channels; a checkpoint supplies what is not given."""
    if isinstance(model_or_checkpoint, Checkpoint):
        return (
            model_or_checkpoint.build(),
            input_size or model_or_checkpoint.input_size,
            in_chans or model_or_checkpoint.config.in_chans,
        )
    if input_size is None or in_chans is None:
        raise ValueError("input_size and in_chans are required to export a module")
    return model_or_checkpoint.eval(), input_size, in_chans


def export_onnx(
    model_or_checkpoint: nn.Module | Checkpoint,
    path: str | os.PathLike[str] | BinaryIO,
    input_size: int | None = None,
    in_chans: int | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> None:
    """Write the network as ONNX to ``path`` (a file path or a binary stream): input ``(N, in_chans, S, S)``
    float32 named ``input``, output ``(N, num_classes)`` logits named ``logits``.

    A module is put in eval mode; ``input_size`` and ``in_chans`` default to a checkpoint's.
    """
    model, input_size, in_chans = _resolve(model_or_checkpoint, input_size, in_chans)
    device = next(model.parameters()).device
    example = torch.zeros(1, in_chans, input_size, input_size, device=device)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and the tracer's note that the input-size check is constant.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
        )


def onnx_bytes(
    model_or_checkpoint: nn.Module | Checkpoint, input_size: int | None = None, in_chans: int | None = None
) -> bytes:
    """The ONNX model of :func:`export_onnx` (dynamic batch, default opset) as bytes."""
    buffer = io.BytesIO()
    export_onnx(model_or_checkpoint, buffer, input_size, in_chans)
    return buffer.getvalue()


def check_parity(
    model_or_checkpoint: nn.Module | Checkpoint,
    onnx_model: str | os.PathLike[str] | bytes,
    input_size: int | None = None,
    in_chans: int | None = None,
    atol: float = 1e-4,
    batch: int = 3,
    seed: int = 0,
) -> float:
    """The largest absolute difference between PyTorch's and onnxruntime's logits on a random batch.

    Raises :class:`ParityError` when it exceeds ``atol``. The batch size differs from the export's example (1)
    so that the dynamic batch dimension is exercised too.
    """
    model, input_size, in_chans = _resolve(model_or_checkpoint, input_size, in_chans)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_chans, input_size, input_size, generator=generator)
    with torch.no_grad():
        expected = model(x.to(next(model.parameters()).device)).float().cpu().numpy()
    source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    diff = float(np.abs(actual - expected).max())
    if not diff <= atol:
        raise ParityError(f"ONNX and PyTorch logits differ by {diff:.3g} > {atol:g}")
    return diff
