"""Attention modules for the lightweight VGG, chosen by name with :func:`create_attention`.

CSA is the paper's module: "Improved lightweight VGGNet with attention for multi-pose facial
expression recognition", ICJE 8(5), 2022 — an ECA channel branch and a spatial branch in parallel,
merged by element-wise sum ``F·Mc(F) + F·Ms(F)``. SE, CBAM and scSE are the paper's comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fervid.model.config import ATTENTIONS  # the names; the modules are here


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA's adaptive kernel size ``k = |log2(C)/γ + b/γ|_odd`` (the nearest odd number, rounding down, at least 1)."""
    t = int(abs(math.log2(channels) / gamma + beta / gamma))
    return max(t if t % 2 else t + 1, 1)


class ECAGate(nn.Module):
    """Channel attention map ``Mc`` of ECA-Net (Wang et al., CVPR 2020): GAP → 1-D conv → sigmoid."""

    def __init__(self, channels: int, gamma: float = 2.0, beta: float = 1.0) -> None:
        super().__init__()
        k = eca_kernel_size(channels, gamma, beta)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(2, 3)).unsqueeze(1)  # (N, 1, C)
        return torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (N, C, 1, 1)


class SpatialGate(nn.Module):
    """Spatial attention map ``Ms``: channel-wise max and mean → concat → conv → sigmoid.

    The paper uses a 1×1 conv; CBAM (Woo et al., ECCV 2018) uses 7×7.
    """

    def __init__(self, kernel_size: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))  # (N, 1, H, W)


class ChannelAttention(nn.Module):
    """The paper's "+CA" ablation: ECA channel attention alone, ``F·Mc(F)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = ECAGate(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)



class SpatialAttention(nn.Module):
    """The paper's "+SA" ablation: spatial attention alone, ``F·Ms(F)``."""

    def __init__(self, channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.gate = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CSA(nn.Module):
    """Channel-spatial attention of the paper: ``F·Mc(F) + F·Ms(F)`` with ECA and a 1×1 spatial branch in parallel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel = ECAGate(channels)
        self.spatial = SpatialGate(kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel(x) + x * self.spatial(x)


class SE(nn.Module):
    """Squeeze-and-Excitation (Hu et al., CVPR 2018): GAP → FC → ReLU → FC → sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True))


class CBAM(nn.Module):
    """CBAM (Woo et al., ECCV 2018): channel attention (shared MLP over avg and max pooling), then 7×7 spatial."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        x = x * torch.sigmoid(avg + mx)
        return x * self.spatial(x)


class SCSE(nn.Module):
    """Concurrent spatial and channel SE (Roy et al., MICCAI 2018): ``F·cSE(F) + F·sSE(F)``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.cse = SE(channels, reduction)
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cse(x) + x * self.sse(x)


_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda channels: nn.Identity(),
    "ca": ChannelAttention,
    "eca": ChannelAttention,
    "sa": SpatialAttention,
    "csa": CSA,
    "se": SE,
    "cbam": CBAM,
    "scse": SCSE,
}


def create_attention(name: str, channels: int) -> nn.Module:
    """The attention module called ``name`` (one of :data:`ATTENTIONS`) for ``channels`` channels."""
    try:
        factory = _FACTORIES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; choose from {', '.join(ATTENTIONS)}") from None
    return factory(channels)
