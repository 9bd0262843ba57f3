"""ONNX export parity with PyTorch for every attention, and the Classifier's two backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from fervid.expressions import EXPRESSIONS
from fervid.model.attention import ATTENTIONS
from fervid.model.checkpoint import load_checkpoint, save_checkpoint
from fervid.model.export import ParityError, check_parity, export_onnx, onnx_bytes
from fervid.model.infer import Classifier, softmax
from fervid.model.network import ModelConfig, build_model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 48


def realistic(config: ModelConfig, seed: int = 0) -> nn.Module:
    """A network whose BatchNorm statistics come from data, so activations do not vanish in eval mode.

    Random networks amplify float32 rounding about a thousandfold; the default classifier's small logits (~0.3)
    keep ONNX-vs-PyTorch differences near 1e-5, while any real export error changes them by ~0.1.
    """
    torch.manual_seed(seed)
    net = build_model(config)
    update_bn([torch.randn(16, config.in_chans, SIZE, SIZE) for _ in range(4)], net)
    return net.eval()


@pytest.mark.parametrize(
    "config",
    [ModelConfig(attention=a, width=0.25) for a in ATTENTIONS]
    + [ModelConfig(position=p, in_chans=3, width=0.25) for p in ("after_conv", "after_pool")]
    + [ModelConfig(arch="vgg16_gap", attention="none", width=0.25), ModelConfig(arch="mobilenetv2")],
    ids=[*ATTENTIONS, "csa-after_conv-rgb", "csa-after_pool-rgb", "vgg16_gap", "mobilenetv2"],
)
def test_onnx_matches_pytorch(tmp_path: Path, config: ModelConfig) -> None:
    model = realistic(config)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, SIZE, config.in_chans)
    onnx.checker.check_model(str(path))
    assert check_parity(model, path, SIZE, config.in_chans, atol=1e-4) <= 1e-4


def test_batch_dimension_is_dynamic_only_when_asked(tmp_path: Path) -> None:
    model = realistic(ModelConfig(width=0.25))
    for dynamic, expected in ((True, "batch"), (False, 1)):
        path = tmp_path / f"{dynamic}.onnx"
        export_onnx(model, path, SIZE, 1, dynamic_batch=dynamic)
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        first = dims[0].dim_param or dims[0].dim_value
        assert (first, *(d.dim_value for d in dims[1:])) == (expected, 1, SIZE, SIZE)


def test_parity_detects_a_different_model(tmp_path: Path) -> None:
    config = ModelConfig(width=0.25)
    path = tmp_path / "model.onnx"
    export_onnx(realistic(config, seed=0), path, SIZE, 1)
    with pytest.raises(ParityError, match="differ by"):
        check_parity(realistic(config, seed=1), path, SIZE, 1)


def test_export_needs_sizes_for_a_module() -> None:
    with pytest.raises(ValueError, match="input_size and in_chans"):
        onnx_bytes(build_model(ModelConfig(width=0.25)))


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = ModelConfig(width=0.25)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_checkpoint(path, realistic(config), config, list(EXPRESSIONS[:7]), SIZE, {})


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, SIZE, SIZE)).astype(np.float32)


def test_checkpoint_exports_with_its_sizes(checkpoint_path: Path) -> None:
    checkpoint = load_checkpoint(checkpoint_path)
    data = onnx_bytes(checkpoint)
    assert check_parity(checkpoint, data) <= 1e-4
    (logits,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": faces(2)})
    assert logits.shape == (2, 7)


def test_classifier_backends_agree(checkpoint_path: Path) -> None:
    onnx_clf = Classifier(checkpoint_path, backend="onnx", device="cpu", batch_size=4, threads=1)
    torch_clf = Classifier(load_checkpoint(checkpoint_path), backend="torch", device="cpu", batch_size=3)
    assert onnx_clf.classes == torch_clf.classes == list(EXPRESSIONS[:7])
    assert onnx_clf.input_size == SIZE
    x = faces(10)
    p_onnx, p_torch = onnx_clf.predict(x), torch_clf.predict(x)
    assert p_onnx.shape == (10, 7) and p_onnx.dtype == np.float32
    np.testing.assert_allclose(p_onnx.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    assert np.abs(p_onnx - p_torch).max() < 1e-4
    assert np.ptp(p_onnx, axis=0).max() > 1e-2, "the probabilities should depend on the face"
    single = np.concatenate([onnx_clf.predict(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(single, p_onnx, rtol=0, atol=1e-5)


def test_classifier_auto_backend_on_cpu(checkpoint_path: Path) -> None:
    classifier = Classifier(checkpoint_path, device="cpu")
    assert classifier.backend == "onnx"
    assert classifier.predict(np.zeros((0, 1, SIZE, SIZE), np.float32)).shape == (0, 7)


def test_classifier_rejects_bad_input(checkpoint_path: Path) -> None:
    classifier = Classifier(checkpoint_path, device="cpu")
    with pytest.raises(ValueError, match="faces must have shape"):
        classifier.predict(np.zeros((2, 1, SIZE + 1, SIZE + 1), np.float32))
    with pytest.raises(ValueError, match="faces must have shape"):
        classifier.predict(np.zeros((1, SIZE, SIZE), np.float32))
    with pytest.raises(ValueError, match="unknown backend"):
        Classifier(checkpoint_path, backend="tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_classifier_cuda_without_cuda_raises(checkpoint_path: Path) -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        Classifier(checkpoint_path, device="cuda")


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 1000.0], [0.0, -1000.0]], dtype=np.float32))
    np.testing.assert_allclose(p, [[0.5, 0.5], [1.0, 0.0]])


def test_onnx_export_is_cached_by_checksum(tmp_path, monkeypatch, tiny_checkpoint) -> None:
    """A cold classifier reads the export of the same checkpoint file from the cache instead of exporting again."""
    import shutil

    from fervid.model import infer
    from fervid.model.checkpoint import load_checkpoint

    monkeypatch.setenv("FERVID_DATA_DIR", str(tmp_path))
    path = shutil.copy(tiny_checkpoint, tmp_path / "m.pt")
    first = infer.cached_onnx(load_checkpoint(path))
    (cached,) = (tmp_path / "cache" / "onnx").iterdir()
    assert cached.read_bytes() == first
    monkeypatch.setattr(infer, "onnx_bytes", lambda _: pytest.fail("exported again"))
    assert infer.cached_onnx(load_checkpoint(path)) == first
