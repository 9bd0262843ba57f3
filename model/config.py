"""The configurations of a network and of its training, without PyTorch: the one source of their defaults and
choices, which the command line reads without loading ML code."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fervid.settings import CROP_CONTEXTS

ATTENTIONS: tuple[str, ...] = ("none", "ca", "sa", "csa", "se", "eca", "cbam", "scse")
POSITIONS: tuple[str, ...] = ("after_conv", "before_pool", "after_pool")
VGG_ARCHS: tuple[str, ...] = ("csa_vgg", "vgg16_gap")
#: Every network: the VGG variants and the paper's Table 1 backbones (:mod:`fervid.model.backbones`).
ARCHS: tuple[str, ...] = (*VGG_ARCHS, "mobilenetv2", "densenet121", "xception")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "cosine")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: How training defines the face crop (:func:`fervid.model.experiment.calibrated`).
CROP_MODES: tuple[str, ...] = ("aligned", "calibrated", "legacy")


def check_context(context: str) -> None:
    """Raise ``ValueError`` unless ``context`` is one of :data:`CROP_CONTEXTS`."""
    if context not in CROP_CONTEXTS:
        raise ValueError(f"unknown crop context {context!r}; choose one of: {', '.join(CROP_CONTEXTS)}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture arguments: everything needed to rebuild a network for its weights."""

    arch: str = "csa_vgg"
    num_classes: int = 7
    in_chans: int = 1
    attention: str = "csa"
    position: str = "before_pool"
    width: float = 1.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.arch != "csa_vgg":  # only the paper's network has attention: record what is built
            object.__setattr__(self, "attention", "none")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; choose from {', '.join(ATTENTIONS)}")
        if self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}; choose from {', '.join(POSITIONS)}")
        if self.num_classes < 2 or self.in_chans not in (1, 3) or self.width <= 0:
            raise ValueError(f"invalid model config {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the paper's (Adam, lr 0.0005) plus fervid's augmentation."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"  # one of OPTIMIZERS
    schedule: str = "constant"  # one of SCHEDULES
    label_smoothing: float = 0.0
    class_weighted: bool = False
    augment: bool = True
    erasing: float = 0.0  # probability of random erasing per image
    rotation: float = 15.0  # augmentation: roll within ± this many degrees
    scale_jitter: float = 0.25  # augmentation: scale within [1 / (1 + j), 1 + j]
    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0: off
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # one of PRECISIONS; on CUDA float16 autocast always
    init: str | None = None  # checkpoint whose weights the network starts from (fine-tuning); None: random
    teacher: str | None = None  # checkpoint whose predictions join the targets (knowledge distillation); None: off
    distill: float = 0.5  # with a teacher: its predictions' share of each target, the labels' being the rest

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
        if not (0 <= self.rotation <= 180 and self.scale_jitter >= 0):
            raise ValueError(f"rotation must be 0-180 degrees and scale jitter >= 0 (got {self.rotation}, {self.scale_jitter})")
        if not 0 < self.distill <= 1:
            raise ValueError(f"the teacher's share of the targets (distill) must be in (0, 1], got {self.distill}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"epochs, batch size and learning rate must be positive (got {self.epochs}, {self.batch_size}, {self.lr})")
