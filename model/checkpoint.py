"""Checkpoints: a model's weights with everything needed to rebuild and use it.

A checkpoint file is a plain ``dict`` of primitives and tensors, written with :func:`torch.save` and read with
``torch.load(weights_only=True)``, so loading a file never runs code from it::

    {"format": "fervid-checkpoint", "format_version": 1, "config": {...}, "classes": [...], "input_size": 48,
     "preprocessing": {...}, "training": {...}, "metrics": {...}, "state_dict": {name: tensor}}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fervid.expressions import canonical
from fervid.model.files import CheckpointError
from fervid.model.network import ModelConfig, build_model

FORMAT = "fervid-checkpoint"
FORMAT_VERSION = 1
_SHOWN = 5  # how many mismatching keys an error names
#: What torch's weights-only unpickler refused: a global such as ``posix.system``, or an opcode.
_REFUSED = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) (\S+)|WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)")


@dataclass
class Checkpoint:
    """A trained network: its architecture, output classes, input and preprocessing, provenance and weights.

    ``classes`` are canonical expression names (:data:`fervid.expressions.EXPRESSIONS`) in output order;
    ``training`` records how it was made (data, command, epochs, ...); ``metrics`` how well it does.
    """

    config: ModelConfig
    classes: list[str]
    input_size: int
    preprocessing: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    source: str = "<memory>"  # the file it was loaded from, for error messages

    def build(self) -> nn.Module:
        """The network in eval mode with the weights loaded."""
        model = build_model(self.config)
        _check_state_dict(model.state_dict(), self.state_dict, self.source)
        model.load_state_dict(self.state_dict)
        return model.eval()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``torch.compile``, ``DataParallel`` and ``DistributedDataParallel`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: ModelConfig,
    classes: Sequence[str],
    input_size: int,
    preprocessing: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model``'s weights and metadata to ``path``; returns the path.

    ``classes`` are mapped onto canonical expression names. ``half`` stores the parameters as float16 (half the
    size, for shipped weights) and keeps the small buffers (BatchNorm statistics, whose variances can be below
    float16's normal range) in float32; :func:`load_checkpoint` casts everything back to float32. Metadata values
    must be primitives, lists, dicts, paths or numpy scalars/arrays (converted to plain Python).
    """
    names = [canonical(c) for c in classes]
    if len(names) != config.num_classes or len(set(names)) != len(names):
        raise ValueError(f"classes {list(classes)} do not name the model's {config.num_classes} outputs once each")
    model = unwrap_model(model)
    halved = {name for name, _ in model.named_parameters()} if half else set()
    state = {
        k: (v.detach().to("cpu", torch.float16) if k in halved else v.detach().cpu()).clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "classes": names,
        "input_size": int(input_size),
        "preprocessing": _plain(preprocessing, "preprocessing"),
        "training": _plain(training or {}, "training"),
        "metrics": _plain(metrics or {}, "metrics"),
        "state_dict": state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (float tensors as float32).

    Raises :class:`CheckpointError` for a missing file, a file that is not a checkpoint (corrupt, truncated, or
    a pickle that ``weights_only`` refuses), an unknown format version, weights that do not fit the
    architecture the checkpoint names, or weights that are not all finite.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails with many types: zip, pickle, EOF, key errors
        if type(e).__name__ == "UnpicklingError":
            found = _REFUSED.search(str(e))
            what = f" ({(found.group(1) or found.group(2)).strip()})" if found else ""
            raise CheckpointError(
                f"{path}: not a readable checkpoint: refused, it contains code or objects other than tensors and "
                f"plain values{what}; fervid "
                "loads checkpoints with weights_only=True and never runs code from them"
            ) from None
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint: corrupt, truncated or not a torch file ({type(e).__name__}: {reason})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fervid checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown checkpoint format version {version!r} (this fervid reads {FORMAT_VERSION})"
        )
    try:
        config = ModelConfig(**payload["config"])
        checkpoint = Checkpoint(
            config=config,
            classes=[str(c) for c in payload["classes"]],
            input_size=int(payload["input_size"]),
            preprocessing=dict(payload["preprocessing"]),
            training=dict(payload["training"]),
            metrics=dict(payload["metrics"]),
            state_dict={k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()},
            source=str(path),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint ({type(e).__name__}: {e})") from e
    if len(checkpoint.classes) != config.num_classes:
        raise CheckpointError(f"{path}: {len(checkpoint.classes)} classes for {config.num_classes} outputs")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = build_model(config).state_dict()
    _check_state_dict(expected, checkpoint.state_dict, str(path))
    broken = [k for k, v in checkpoint.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        more = f" and {len(broken) - _SHOWN} more" if len(broken) > _SHOWN else ""
        raise CheckpointError(f"{path}: corrupt weights: NaN or infinite values in {', '.join(broken[:_SHOWN])}{more}")
    return checkpoint


def _check_state_dict(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming the first keys that are missing, unexpected or of the wrong shape."""
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            problems.append(f"{label}: {', '.join(items[:_SHOWN])}{more}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the architecture ({'; '.join(problems)})")


def _plain(value: Any, where: str) -> Any:
    """``value`` as the primitives, lists and dicts that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: cannot store {type(value).__name__} in a checkpoint")
