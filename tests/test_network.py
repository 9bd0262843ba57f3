"""The paper's network: shapes, attention modules, parameter budget, gradients and the Table 1 backbones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fervid.model.attention import ATTENTIONS, ECAGate, create_attention, eca_kernel_size
from fervid.model.backbones import BACKBONES, build_backbone
from fervid.model.network import ARCHS, POSITIONS, ConvBNReLU, DepthwiseSeparableConv, ModelConfig, build_model
from fervid.model.summary import count_flops, count_parameters, summarize

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_output_shape(attention: str, position: str, in_chans: int) -> None:
    model = build_model(ModelConfig(in_chans=in_chans, attention=attention, position=position, width=0.25)).eval()
    with torch.no_grad():
        for size in (48, 64, 128):
            assert model(torch.randn(1, in_chans, size, size)).shape == (1, 7)


def test_full_width_output_shape() -> None:
    model = build_model(ModelConfig(num_classes=8)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 48)).shape == (2, 8)


@pytest.mark.parametrize("arch", ["csa_vgg", "vgg16_gap"])
def test_input_smaller_than_32_raises(arch: str) -> None:
    model = build_model(ModelConfig(arch=arch, width=0.25)).eval()
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.zeros(1, 1, 31, 48))


@pytest.mark.parametrize(
    "overrides",
    [{"arch": "resnet"}, {"attention": "nope"}, {"position": "middle"}, {"in_chans": 2}, {"num_classes": 1}],
)
def test_invalid_config_raises(overrides: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**overrides)


@pytest.mark.parametrize(("channels", "kernel"), [(64, 3), (128, 5), (256, 5), (512, 5)])
def test_eca_kernel_size(channels: int, kernel: int) -> None:
    assert eca_kernel_size(channels) == kernel
    assert ECAGate(channels).conv.kernel_size == (kernel,)


@pytest.mark.parametrize(("cin", "cout"), [(64, 128), (256, 512)])
def test_depthwise_separable_parameter_ratio(cin: int, cout: int) -> None:
    def conv_weights(module: nn.Module) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))

    ratio = conv_weights(DepthwiseSeparableConv(cin, cout)) / conv_weights(ConvBNReLU(cin, cout))
    assert ratio == pytest.approx(1 / cout + 1 / 9)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_attention_keeps_shape(attention: str) -> None:
    x = torch.randn(2, 32, 7, 9)
    assert create_attention(attention, 32)(x).shape == x.shape


def test_csa_gates_weight_the_input() -> None:
    """CSA = F·Mc(F) + F·Ms(F): with both gates saturated open it returns 2F."""
    module = create_attention("csa", 64)
    nn.init.constant_(module.channel.conv.weight, 100.0)
    nn.init.constant_(module.spatial.conv.weight, 100.0)
    x = torch.rand(1, 64, 5, 5) + 0.5
    torch.testing.assert_close(module(x), 2 * x)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(position="after_conv")).train()
    model(torch.randn(2, 1, 48, 48)).logsumexp(dim=1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS if a not in ("none", "csa")])
def test_gradients_reach_every_attention_parameter(attention: str) -> None:
    torch.manual_seed(0)  # a batch of 8: with 2 random images a narrow SE/scSE hidden unit can stay dead
    model = build_model(ModelConfig(attention=attention, width=0.25)).train()
    model(torch.randn(8, 1, 48, 48)).logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_parameter_budget() -> None:
    csa = count_parameters(build_model(ModelConfig(in_chans=1, num_classes=7)))
    vgg = count_parameters(build_model(ModelConfig(arch="vgg16_gap", in_chans=1, num_classes=7)))
    assert csa < 2_000_000
    assert vgg >= 8 * csa


def test_flops_count_convolutions_and_linear() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    assert count_flops(model, 8, 1) == 2 * (4 * 9 * 64) + 2 * (256 * 5)


def test_summarize_ratios() -> None:
    rows = summarize([("small", ModelConfig(width=0.25)), ("vgg16_gap", ModelConfig(arch="vgg16_gap"))], 48)
    small, ref = rows
    assert ref["params_ratio"] == ref["flops_ratio"] == 1.0
    assert 0 < small["params_ratio"] < 0.1 and 0 < small["flops_ratio"] < 0.1
    assert small["params"] == count_parameters(build_model(ModelConfig(width=0.25)))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_output_shape(name: str) -> None:
    model = build_model(ModelConfig(arch=name, in_chans=1, num_classes=7)).eval()
    with torch.no_grad():
        for size in (48, 128):
            assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


@pytest.mark.parametrize(
    ("name", "params"),
    [("mobilenetv2", 3_504_872), ("densenet121", 7_978_856), ("xception", 22_855_952)],
)
def test_backbone_matches_the_published_parameter_count(name: str, params: int) -> None:
    """torchvision's mobilenet_v2 and densenet121, timm's legacy_xception: 3 channels, 1000 classes."""
    model = build_backbone(ModelConfig(arch=name, in_chans=3, num_classes=1000))
    assert count_parameters(model) == params


def test_unknown_arch_lists_the_choices() -> None:
    assert set(BACKBONES) < set(ARCHS)
    with pytest.raises(ValueError, match="choose from csa_vgg, vgg16_gap, mobilenetv2, densenet121, xception"):
        ModelConfig(arch="resnet")
    with pytest.raises(ValueError, match="choose from mobilenetv2, densenet121, xception"):
        build_backbone(ModelConfig(arch="csa_vgg"))


@pytest.mark.parametrize("arch", ["vgg16_gap", *BACKBONES])
def test_only_the_papers_network_records_attention(arch: str) -> None:
    assert ModelConfig(arch=arch, attention="csa").attention == "none"
    assert ModelConfig(attention="cbam").attention == "cbam"


def test_backbone_trains() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mobilenetv2")).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(8, 1, 48, 48), torch.arange(8) % 7
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2, losses
