"""Checkpoints: save → load round trips, half-precision storage, and every way a file can be unusable."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from fervid.expressions import EXPRESSIONS
from fervid.model.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from fervid.model.files import sha256_file
from fervid.model.network import ModelConfig, build_model

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = ModelConfig(width=0.25)
CLASSES = list(EXPRESSIONS[:7])
SIZE = 48


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A network whose BatchNorm statistics come from data, so activations do not vanish in eval mode."""
    torch.manual_seed(0)
    net = build_model(CONFIG)
    update_bn([torch.randn(8, 1, SIZE, SIZE)], net)
    return net.eval()


@pytest.fixture()
def saved(tmp_path: Path, model: nn.Module) -> Path:
    return save_checkpoint(tmp_path / "model.pt", model, CONFIG, CLASSES, SIZE, {"equalize": True})


def outputs(model: nn.Module, seed: int = 1) -> torch.Tensor:
    x = torch.randn(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def test_round_trip_is_exact(tmp_path: Path, model: nn.Module) -> None:
    path = save_checkpoint(
        tmp_path / "sub" / "model.pt",
        model,
        CONFIG,
        ["Neutral", "happiness", "sad", "surprised", "fear", "disgust", "angry"],
        SIZE,
        preprocessing={"equalize": True, "range": (-1, 1)},
        training={"data": tmp_path / "fer2013", "epochs": 3},
        metrics={"accuracy": np.float32(0.5), "confusion": np.eye(2, dtype=np.int64)},
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == CONFIG
    assert checkpoint.classes == CLASSES
    assert checkpoint.input_size == SIZE
    assert checkpoint.preprocessing == {"equalize": True, "range": [-1, 1]}
    assert checkpoint.training == {"data": str(tmp_path / "fer2013"), "epochs": 3}
    assert checkpoint.metrics == {"accuracy": 0.5, "confusion": [[1, 0], [0, 1]]}
    assert checkpoint.source == str(path)
    rebuilt = checkpoint.build()
    assert not rebuilt.training
    assert torch.equal(outputs(rebuilt), outputs(model))


def test_half_stores_parameters_as_float16(tmp_path: Path, model: nn.Module, saved: Path) -> None:
    half = save_checkpoint(tmp_path / "half.pt", model, CONFIG, CLASSES, SIZE, {}, half=True)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(saved)
    stored = torch.load(half, weights_only=True)["state_dict"]
    assert stored["classifier.weight"].dtype == torch.float16
    assert stored["features.0.1.running_var"].dtype == torch.float32
    checkpoint = load_checkpoint(half)
    params = dict(model.named_parameters())
    for key, value in model.state_dict().items():
        loaded = checkpoint.state_dict[key]
        assert loaded.dtype == value.dtype, key
        expected = value.half().float() if key in params else value
        assert torch.equal(loaded, expected), key
    rounded = copy.deepcopy(model)
    for p in rounded.parameters():
        p.data = p.data.half().float()
    loaded = outputs(checkpoint.build())
    assert torch.equal(loaded, outputs(rounded))
    reference = outputs(model)
    assert (loaded - reference).abs().max() < 0.1 * reference.abs().max()


def test_compiled_model_saves_plain_keys(tmp_path: Path, model: nn.Module) -> None:
    path = save_checkpoint(tmp_path / "compiled.pt", torch.compile(model), CONFIG, CLASSES, SIZE, {})
    assert torch.equal(outputs(load_checkpoint(path).build()), outputs(model))


def test_save_rejects_bad_classes_and_metadata(tmp_path: Path, model: nn.Module) -> None:
    with pytest.raises(ValueError, match="outputs once each"):
        save_checkpoint(tmp_path / "a.pt", model, CONFIG, CLASSES[:6], SIZE, {})
    with pytest.raises(ValueError, match="outputs once each"):
        save_checkpoint(tmp_path / "a.pt", model, CONFIG, [*CLASSES[:6], "neutral"], SIZE, {})
    with pytest.raises(ValueError, match="unknown expression"):
        save_checkpoint(tmp_path / "a.pt", model, CONFIG, [*CLASSES[:6], "bored"], SIZE, {})
    with pytest.raises(TypeError, match=r"metrics\.fn"):
        save_checkpoint(tmp_path / "a.pt", model, CONFIG, CLASSES, SIZE, {}, metrics={"fn": object()})


def test_sha256_file(saved: Path) -> None:
    assert sha256_file(saved) == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.pt"
    with pytest.raises(CheckpointError, match=f"{path}: no such"):
        load_checkpoint(path)


class Payload:
    """A class a weights-only unpickler refuses."""


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data, path: path.write_bytes(data[: len(data) // 2]),
        lambda data, path: path.write_bytes(np.random.default_rng(0).bytes(4096)),
        lambda data, path: path.write_bytes(b""),
        lambda data, path: torch.save({"format": "fervid-checkpoint", "object": Payload()}, path),
    ],
    ids=["truncated", "random", "empty", "refused-pickle"],
)
def test_unreadable_file(saved: Path, corrupt) -> None:
    corrupt(saved.read_bytes(), saved)
    with pytest.raises(CheckpointError, match=f"{saved}: not a readable checkpoint"):
        load_checkpoint(saved)


def test_not_a_fervid_checkpoint(tmp_path: Path, model: nn.Module) -> None:
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match=f"{path}: not a fervid checkpoint"):
        load_checkpoint(path)


def rewrite(path: Path, edit) -> None:
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def test_unknown_format_version(saved: Path) -> None:
    rewrite(saved, lambda p: p.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"{saved}: unknown checkpoint format version {FORMAT_VERSION + 1}"):
        load_checkpoint(saved)


def test_malformed_metadata(saved: Path) -> None:
    rewrite(saved, lambda p: p["config"].update(attention="nope"))
    with pytest.raises(CheckpointError, match=f"{saved}: malformed"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["state_dict"].pop("classifier.bias"), "missing: classifier.bias"),
        (lambda p: p["state_dict"].update(extra=torch.zeros(1)), "unexpected: extra"),
        (lambda p: p["config"].update(width=0.5), r"shape mismatch: features\.0\.0\.weight \(16, 1, 3, 3\) != \(32"),
        (lambda p: p["config"].update(attention="none"), r"unexpected: .* and \d+ more"),
    ],
    ids=["missing", "unexpected", "shape", "many"],
)
def test_weights_that_do_not_fit(saved: Path, edit, message: str) -> None:
    rewrite(saved, edit)
    with pytest.raises(CheckpointError, match=f"{saved}: weights do not fit the architecture .*{message}"):
        load_checkpoint(saved)


def test_build_checks_in_memory_weights(saved: Path) -> None:
    checkpoint = load_checkpoint(saved)
    state = dict(checkpoint.state_dict)
    del state["classifier.weight"]
    broken = Checkpoint(**{**vars(checkpoint), "state_dict": state, "source": "<memory>"})
    with pytest.raises(CheckpointError, match="<memory>: weights do not fit .*missing: classifier.weight"):
        broken.build()
