"""Batch augmentation on tensors: one random affine warp per image plus brightness/contrast jitter.

Runs on whole batches on the training device, so training speed is bounded by the network, not by image loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Random horizontal flip, rotation (degrees), scale, translation (fraction of size), brightness, contrast and
    Gaussian pixel noise (standard deviation in the [-1, 1] range)."""

    flip: bool = True
    rotation: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.08
    brightness: float = 0.2
    contrast: float = 0.2
    noise: float = 0.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch ``(N, C, H, W)`` normalised to [-1, 1]."""
        n = x.shape[0]

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator, device="cpu").to(x.device) * (high - low) + low

        angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
        scale = uniform(*self.scale)
        flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n, device=x.device)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, uniform(-self.translate, self.translate) * 2], dim=1),
                torch.stack([sin * flip, cos, uniform(-self.translate, self.translate) * 2], dim=1),
            ],
            dim=1,
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        contrast = uniform(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1).to(x.dtype)
        brightness = uniform(-self.brightness, self.brightness).view(n, 1, 1, 1).to(x.dtype)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean + brightness
        if self.noise:
            out = out + torch.randn(out.shape, generator=generator).to(out.device, out.dtype) * self.noise
        return out.clamp_(-1.0, 1.0)
