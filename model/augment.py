"""Batch augmentation on tensors: one random affine warp per image, brightness/contrast jitter and random erasing
(Zhong et al., "Random Erasing Data Augmentation", AAAI 2020).

Runs on whole batches on the training device, so training speed is bounded by the network, not by image loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Random horizontal flip, roll (degrees), scale, translation (fraction of size), brightness, contrast,
    Gaussian pixel noise (standard deviation in the [-1, 1] range) and, with probability ``erasing``, one erased
    rectangle (2–20 % of the image, aspect 0.3–3.3, filled with noise).

    The geometric ranges cover what the aligned crop (:mod:`fervid.model.align`) leaves: detector jitter in scale
    and position and residual roll."""

    flip: bool = True
    rotation: float = 15.0
    scale: tuple[float, float] = (0.8, 1.25)
    translate: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    noise: float = 0.0
    erasing: float = 0.0

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
        if self.erasing:
            out = self._erase(out, uniform)
        return out.clamp_(-1.0, 1.0)

    def _erase(self, x: torch.Tensor, uniform) -> torch.Tensor:  # type: ignore[no-untyped-def]
        n, _, height, width = x.shape
        area = uniform(0.02, 0.2) * height * width
        aspect = torch.exp(uniform(math.log(0.3), math.log(1 / 0.3)))
        h = torch.sqrt(area * aspect).clamp(1, height)
        w = torch.sqrt(area / aspect).clamp(1, width)
        top = uniform(0, 1) * (height - h)
        left = uniform(0, 1) * (width - w)
        rows = torch.arange(height, device=x.device).view(1, height, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, width)
        inside = (
            (rows >= top.view(n, 1, 1)) & (rows < (top + h).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1)) & (cols < (left + w).view(n, 1, 1))
            & (uniform(0, 1) < self.erasing).view(n, 1, 1)
        )  # fmt: skip
        fill = uniform(-1, 1).view(n, 1, 1, 1).expand_as(x)
        return torch.where(inside.unsqueeze(1), fill, x)
