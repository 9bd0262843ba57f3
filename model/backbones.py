"""Table 1's reference backbones (MobileNetV2, DenseNet121, Xception) from timm, an optional extra.

``pip install 'fervid[backbones]'`` installs timm. A backbone is chosen with ``ModelConfig(arch="timm:<name>")``,
where ``<name>`` is a key of :data:`BACKBONES` or any timm model name; ``attention``, ``position`` and ``width``
do not apply to them. Weights are never downloaded (``pretrained=False``): they are trained like the VGG.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from fervid.model.network import ModelConfig

#: The paper's comparison backbones, by the name used in fervid, and their timm model names.
BACKBONES: dict[str, str] = {
    "mobilenetv2": "mobilenetv2_100",
    "densenet121": "densenet121",
    "xception": "legacy_xception",
}


def timm_available() -> bool:
    """True when the ``backbones`` extra (timm) is installed."""
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def timm_name(arch: str) -> str:
    """The timm model name for ``arch`` (``"timm:xception"`` → ``"legacy_xception"``)."""
    name = arch.removeprefix("timm:")
    return BACKBONES.get(name, name)


def build_backbone(config: ModelConfig) -> nn.Module:
    """The timm model for ``config.arch = "timm:<name>"`` with ``num_classes`` outputs and ``in_chans`` inputs."""
    try:
        import timm
    except ImportError as e:
        raise ImportError(
            f"arch {config.arch!r} needs timm, the 'backbones' extra: pip install 'fervid[backbones]'"
        ) from e
    name = timm_name(config.arch)
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; the paper's backbones: {', '.join(BACKBONES)}")
    return timm.create_model(name, pretrained=False, num_classes=config.num_classes, in_chans=config.in_chans)
