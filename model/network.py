"""The paper's lightweight attention VGG16 and its reference variants.

``csa_vgg``: VGG16's layout (64,64 | 128,128 | 256×3 | 512×3 | 512×3, 2×2 max-pool after each block) with every
3×3 conv after the first made depthwise-separable (3×3 depthwise + BatchNorm, 1×1 pointwise + BatchNorm + ReLU), an attention module at
``position`` in each block, and the three fully connected layers replaced by global average pooling and one
linear classifier. ``vgg16_gap``: the same with standard 3×3 convs and no attention, the parameter reference.
:func:`build_model` also builds the paper's Table 1 backbones (:mod:`fervid.model.backbones`).
"""

from __future__ import annotations

import torch
from torch import nn

from fervid.model.attention import create_attention
from fervid.model.config import ARCHS, POSITIONS, VGG_ARCHS, ModelConfig

__all__ = ["ARCHS", "POSITIONS", "VGG_ARCHS", "VGG16_BLOCKS", "ModelConfig", "build_model"]

VGG16_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
MIN_INPUT_SIZE = 32


class ConvBNReLU(nn.Sequential):
    """3×3 conv + BatchNorm + ReLU (the standard VGG conv, with BN)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DepthwiseSeparableConv(nn.Sequential):
    """3×3 depthwise conv + BatchNorm, then 1×1 pointwise conv + BatchNorm + ReLU.

    Parameters ``9·C + C·P`` instead of ``9·C·P``: a ratio of ``1/P + 1/9``. No ReLU between the two convs, as in
    Xception (Chollet, CVPR 2017): a ReLU on each single-filter depthwise channel discards half of it, and on CK+
    the network with it trained several times slower (val. accuracy 0.65 vs 0.96 after 6 epochs, same settings).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNetV2/ResNet initialisation: Kaiming-normal convs (fan_out; fan_in for depthwise),
    BatchNorm weight 1 and bias 0, linear layers N(0, 0.01) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            # A depthwise filter sees 9 inputs and feeds 9 outputs: fan_out would count every channel.
            mode = "fan_in" if m.groups > 1 else "fan_out"
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class VGG(nn.Module):
    """A VGG16-layout network with global average pooling and one linear classifier."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        conv = DepthwiseSeparableConv if config.arch == "csa_vgg" else ConvBNReLU
        layers: list[nn.Module] = []
        cin = config.in_chans
        for block in VGG16_BLOCKS:
            for i, channels in enumerate(block):
                cout = max(8, int(round(channels * config.width)))
                # The first conv stays standard (as in MobileNet): factorised over 1 or 3 input channels it saves
                # about 500 parameters but leaves a single 3×3 filter + ReLU as the network's whole view of a gray image.
                layers.append((ConvBNReLU if cin == config.in_chans else conv)(cin, cout))
                cin = cout
                if config.attention != "none" and config.position == "after_conv" and i < len(block) - 1:
                    layers.append(create_attention(config.attention, cout))
            if config.attention != "none" and config.position in ("after_conv", "before_pool"):
                layers.append(create_attention(config.attention, cin))
            layers.append(nn.MaxPool2d(2))
            if config.attention != "none" and config.position == "after_pool":
                layers.append(create_attention(config.attention, cin))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, config.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"input must be at least {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE}, got {tuple(x.shape[-2:])}")
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build_model(config: ModelConfig) -> nn.Module:
    """The network described by ``config``: a VGG variant, or a Table 1 backbone from :mod:`fervid.model.backbones`."""
    if config.arch in VGG_ARCHS:
        return VGG(config)
    from fervid.model.backbones import build_backbone  # backbones imports this module

    return build_backbone(config)
