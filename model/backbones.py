"""Table 1's reference backbones in plain PyTorch: MobileNetV2, DenseNet121 and Xception.

Each follows a reference layout module for module — torchvision's ``mobilenet_v2`` and ``densenet121``, timm's
``legacy_xception`` — and has its parameter count (3,504,872, 7,978,856 and 22,855,952 for 3 input channels and
1000 classes). A backbone is built from a :class:`~fervid.model.network.ModelConfig` whose ``arch`` is a key of
:data:`BACKBONES`: ``num_classes`` and ``in_chans`` (1 or 3) apply; ``width``, ``attention`` and ``position`` do
not (the paper compares the published networks). Weights are initialised by
:func:`~fervid.model.network.init_weights` (Kaiming-normal convs, as torchvision) and trained from scratch.

The standard strides (32 in all) fit fervid's 48 px faces, so no padding or stride is changed: the last feature
maps are 2×2 (MobileNetV2, Xception) and 1×1 (DenseNet121) at 48 px, 4×4 for all three at 128 px.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fervid.model.network import ModelConfig, init_weights


def conv_bn(
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    act: Callable[..., nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (``(kernel - 1) // 2`` padding unless given, no bias) + BatchNorm, then ``act`` unless ``None``."""
    pad = (kernel - 1) // 2 if padding is None else padding
    layers = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act(inplace=True)] if act else []))


class Backbone(nn.Module):
    """``features``, then global average pooling, dropout and a linear classifier."""

    def __init__(self, features: nn.Sequential, num_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(num_features, num_classes)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expansion + ReLU6, 3×3 depthwise + ReLU6, linear 1×1 projection, and a residual
    connection when the input and output shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


#: MobileNetV2's stages: expansion t, channels c, blocks n, first stride s (the paper's Table 2).
MOBILENETV2_STAGES = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
)


class MobileNetV2(Backbone):
    """MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018), width 1."""

    def __init__(self, config: ModelConfig) -> None:
        layers: list[nn.Module] = [conv_bn(config.in_chans, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in MOBILENETV2_STAGES:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
        super().__init__(nn.Sequential(*layers), 1280, config.num_classes, dropout=0.2)


def bn_relu_conv(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    """DenseNet's pre-activation composite: BatchNorm, ReLU, conv (same padding, no bias)."""
    return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)]


class DenseLayer(nn.Sequential):
    """DenseNet-BC's layer: a 1×1 bottleneck to ``bn_size·growth`` channels, a 3×3 conv to ``growth``, and the
    result concatenated to the input."""

    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__(*bn_relu_conv(cin, bn_size * growth, 1), *bn_relu_conv(bn_size * growth, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


#: DenseNet121: layers per dense block, growth rate k, bottleneck width factor, stem channels.
DENSENET121_BLOCKS, DENSENET_GROWTH, DENSENET_BN_SIZE, DENSENET_STEM = (6, 12, 24, 16), 32, 4, 64


class DenseNet121(Backbone):
    """DenseNet-BC 121 (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017): a 7×7 stride-2 stem
    and max-pool, four dense blocks, and between them transitions that halve the channels (1×1 conv) and the size
    (2×2 average pooling)."""

    def __init__(self, config: ModelConfig) -> None:
        layers: list[nn.Module] = [conv_bn(config.in_chans, DENSENET_STEM, 7, 2), nn.MaxPool2d(3, 2, 1)]
        c = DENSENET_STEM
        for b, n in enumerate(DENSENET121_BLOCKS):
            layers += [DenseLayer(c + i * DENSENET_GROWTH, DENSENET_GROWTH, DENSENET_BN_SIZE) for i in range(n)]
            c += n * DENSENET_GROWTH
            if b < len(DENSENET121_BLOCKS) - 1:
                layers += [*bn_relu_conv(c, c // 2, 1), nn.AvgPool2d(2, 2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        super().__init__(nn.Sequential(*layers), c, config.num_classes)


class SeparableConv(nn.Sequential):
    """Xception's separable conv: 3×3 depthwise then 1×1 pointwise, nothing between them."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False))


class XceptionBlock(nn.Module):
    """``reps`` × (ReLU, separable conv, BatchNorm), a 3×3 max-pool when ``stride`` > 1, plus a shortcut (a strided
    1×1 conv + BatchNorm when the shape changes). ``grow_first`` widens at the first conv, else at the last."""

    def __init__(
        self, cin: int, cout: int, reps: int, stride: int = 1, start_with_relu: bool = True, grow_first: bool = True
    ) -> None:
        super().__init__()
        channels = [cin] + [cout] * reps if grow_first else [cin] * reps + [cout]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(channels, channels[1:])):
            if i or start_with_relu:
                layers.append(nn.ReLU(inplace=i > 0))  # the block's input also feeds the shortcut
            layers += [SeparableConv(a, b), nn.BatchNorm2d(b)]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)
        reshape = cin != cout or stride != 1
        self.skip = conv_bn(cin, cout, 1, stride, act=None) if reshape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep(x) + self.skip(x)


class Xception(Backbone):
    """Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017): an unpadded
    two-conv stem, the entry flow's three downsampling blocks, the middle flow's eight 728-channel blocks and the
    exit flow, as timm's ``legacy_xception``."""

    def __init__(self, config: ModelConfig) -> None:
        layers: list[nn.Module] = [
            conv_bn(config.in_chans, 32, 3, 2, padding=0),
            conv_bn(32, 64, 3, padding=0),
            XceptionBlock(64, 128, 2, 2, start_with_relu=False),
            XceptionBlock(128, 256, 2, 2),
            XceptionBlock(256, 728, 2, 2),
            *(XceptionBlock(728, 728, 3) for _ in range(8)),
            XceptionBlock(728, 1024, 2, 2, grow_first=False),
            SeparableConv(1024, 1536),
            nn.BatchNorm2d(1536),
            nn.ReLU(inplace=True),
            SeparableConv(1536, 2048),
            nn.BatchNorm2d(2048),
            nn.ReLU(inplace=True),
        ]
        super().__init__(nn.Sequential(*layers), 2048, config.num_classes)


#: The paper's comparison backbones by their fervid arch name.
BACKBONES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "mobilenetv2": MobileNetV2,
    "densenet121": DenseNet121,
    "xception": Xception,
}


def build_backbone(config: ModelConfig) -> nn.Module:
    """The backbone named by ``config.arch``, with ``config.num_classes`` outputs and ``config.in_chans`` inputs."""
    if config.arch not in BACKBONES:
        raise ValueError(f"unknown backbone {config.arch!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[config.arch](config)
