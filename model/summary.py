"""Model size: parameters and FLOPs of network variants, as in the paper's Tables 1 and 4.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`: ``2 × multiply-accumulates`` of the
convolutions (depthwise included) and matrix products for one image; BatchNorm, activations, pooling and the
attention's element-wise products are not counted. Papers that quote "FLOPs" as MACs report half of this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fervid.model.attention import ATTENTIONS
from fervid.model.backbones import BACKBONES
from fervid.model.network import POSITIONS, ModelConfig, build_model

REFERENCE = "vgg16_gap"


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_size: int, in_chans: int) -> int:
    """FLOPs (``2 × MACs`` of convs and matmuls) of one forward pass on a ``(1, in_chans, S, S)`` input."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, input_size, input_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


def paper_variants(num_classes: int = 7, in_chans: int = 1) -> list[tuple[str, ModelConfig]]:
    """The paper's comparisons: CSA-VGG with each attention (at the default position), CSA at each position,
    the ``vgg16_gap`` reference, and the Table 1 backbones."""
    base = ModelConfig(num_classes=num_classes, in_chans=in_chans)
    variants = [(f"csa_vgg/{'base' if a == 'none' else a}", replace(base, attention=a)) for a in ATTENTIONS]
    variants += [(f"csa_vgg/csa@{p}", replace(base, position=p)) for p in POSITIONS if p != base.position]
    variants.append((REFERENCE, replace(base, arch=REFERENCE)))
    variants += [(name, replace(base, arch=name)) for name in BACKBONES]
    return variants


def summarize(
    variants: Iterable[tuple[str, ModelConfig]], input_size: int, reference: str | None = REFERENCE
) -> list[dict]:
    """One row per variant: name, arch, attention, position, params, flops, and, when ``reference`` is one of the
    variants, ``params_ratio`` and ``flops_ratio`` (the variant's count divided by the reference's)."""
    rows = []
    for name, config in variants:
        model = build_model(config)
        rows.append(
            {
                "name": name,
                "arch": config.arch,
                "attention": config.attention,
                "position": config.position,
                "params": count_parameters(model),
                "flops": count_flops(model, input_size, config.in_chans),
            }
        )
    ref = next((r for r in rows if r["name"] == reference), None)
    if ref is not None:
        for row in rows:
            row["params_ratio"] = row["params"] / ref["params"]
            row["flops_ratio"] = row["flops"] / ref["flops"]
    return rows
