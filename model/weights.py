"""Shipped models, modelled on torchvision's weights enums: file, checksum, classes and provenance per model."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from importlib.resources import files
from pathlib import Path
from typing import Any

from fervid.model.files import CheckpointError, sha256_file
from fervid.settings import Settings

WEIGHTS_DIR = Path(str(files("fervid.model") / "weights"))
CARDS_DIR = Path(str(files("fervid.model") / "cards"))


@dataclass(frozen=True)
class ShippedModel:
    """Metadata of one shipped checkpoint; the file itself carries the full architecture and preprocessing."""

    name: str
    file: str
    sha256: str
    classes: tuple[str, ...]
    input_size: int
    width: float
    data: str
    command: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def card(self) -> Path:
        return CARDS_DIR / f"{self.name}.md"

    def verify(self) -> Path:
        """The file's path after checking its sha256; a missing or altered file is an error naming it."""
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: shipped model {self.name!r} is missing from the installation")
        digest = sha256_file(self.path)
        if digest != self.sha256:
            raise CheckpointError(
                f"{self.path}: checksum mismatch for model {self.name!r} (sha256 {digest[:12]}…, expected {self.sha256[:12]}…): "
                "the file is corrupt or was replaced"
            )
        return self.path


class Weights(Enum):
    """The models that ship with fervid. ``DEFAULT`` is the one jobs use unless told otherwise."""

    FER2013_CSA = ShippedModel(
        name="fer2013-csa",
        file="fer2013-csa.pt",
        sha256="3d033ab7d9a78b3a64fa30680da804b5103e43473b83ff0c7710f7f2e9bf2471",
        classes=("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"),
        input_size=48,
        width=1.0,
        data="FER2013 train (28,322 images cut with the aligned crop, reflect context), fine-tuned from ferplus-ck-csa-w1; model selection on FER2013 val (3,543)",
        command="fervid train ../shared/datasets/fer2013/train --val ../shared/datasets/fer2013/val --out ~/.local/share/fervid/runs/fer2013-w1-ft --size 48 --width 1.0 --crop aligned --context reflect --init ferplus-ck-csa-w1 --smoothing 0.1 --optimizer sgd --lr 0.005 --weight-decay 1e-4 --schedule cosine --epochs 20 --batch-size 64 --rotation 10 --scale-jitter 0.1 --precision auto",
        metrics={"val_accuracy": 0.6274, "val_accuracy_flip": 0.6404, "pipeline_accuracy": 0.640},
    )
    FERPLUS_CSA = ShippedModel(
        name="ferplus-csa",
        file="ferplus-csa.pt",
        sha256="95b721c048536c224b8fb91072759760e6ba189d417c63e0e49af954cb4cf463",
        classes=("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
        input_size=48,
        width=0.5,
        data="FER+ train (24,712 in-the-wild faces cut with the aligned crop), soft labels from votes.csv; selected on FER+ val (3,149)",
        command="fervid train ../shared/datasets/ferplus/train --val ../shared/datasets/ferplus/val --out ~/.local/share/fervid/runs/ferplus-csa-w05 --size 48 --width 0.5 --crop aligned --soft-labels ../shared/datasets/ferplus/votes.csv --optimizer sgd --lr 0.01 --weight-decay 1e-4 --schedule cosine --epochs 35 --batch-size 64 --erasing 0.25 --precision auto",
        metrics={"val_accuracy": 0.8053, "val_accuracy_flip": 0.8126, "pipeline_accuracy": 0.807},
    )
    FERPLUS_CK_CSA = ShippedModel(
        name="ferplus-ck-csa",
        file="ferplus-ck-csa.pt",
        sha256="6e8f8cc72af98b1784c56c8c526a5002a57ad6f7086a17ac3e76034d356d5b07",
        classes=("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
        input_size=48,
        width=0.5,
        data="ferplus-csa fine-tuned on FER+ train with the posed CK+ faces of 94 of its 118 subjects (benchmarks/mixed_set.py); selected on FER+ val with the other 24 subjects",
        command="fervid train ~/mix/train --val ~/mix/val --out ~/.local/share/fervid/runs/ferplus-ck-mix --size 48 --width 0.5 --crop aligned --init ferplus-csa --soft-labels ../shared/datasets/ferplus/votes.csv --optimizer sgd --lr 0.003 --weight-decay 1e-4 --schedule cosine --epochs 6 --batch-size 64 --erasing 0.25 --precision auto",
        metrics={"val_accuracy": 0.7971, "val_accuracy_flip": 0.8158, "pipeline_accuracy": 0.804, "posed_pipeline_accuracy": 0.805},
    )
    FERPLUS_CK_CSA_W1 = ShippedModel(
        name="ferplus-ck-csa-w1",
        file="ferplus-ck-csa-w1.pt",
        sha256="013589e79c9410cd2433a731869848fb73836df5cad7c74be370f378bcd90bd5",
        classes=("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
        input_size=48,
        width=1.0,
        data="FER+ train with the posed CK+ faces of 94 of its 118 subjects (benchmarks/mixed_set.py), from random weights; selected on FER+ val with the other 24 subjects",
        command="fervid train ~/mix/train --val ~/mix/val --out ~/.local/share/fervid/runs/ferplus-ck-w1 --size 48 --width 1.0 --crop aligned --soft-labels ../shared/datasets/ferplus/votes.csv --optimizer sgd --lr 0.01 --weight-decay 1e-4 --schedule cosine --epochs 34 --batch-size 64 --rotation 10 --scale-jitter 0.1 --precision auto",
        metrics={"val_accuracy": 0.8288, "val_accuracy_flip": 0.8415, "pipeline_accuracy": 0.834, "posed_pipeline_accuracy": 0.843},
    )
    FERPLUS_CK_CSA_KD = ShippedModel(
        name="ferplus-ck-csa-kd",
        file="ferplus-ck-csa-kd.pt",
        sha256="fd22de57860adef255ad34b00f3d6a10f60b4756e36c765a49ae56db4d9e5c95",
        classes=("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
        input_size=48,
        width=0.5,
        data="FER+ train with the posed CK+ faces of 94 of its 118 subjects (benchmarks/mixed_set.py), from random weights, distilled from ferplus-ck-csa-w1; selected on FER+ val with the other 24 subjects",
        command="fervid train ~/mix/train --val ~/mix/val --out ~/.local/share/fervid/runs/ferplus-ck-kd --size 48 --width 0.5 --crop aligned --soft-labels ../shared/datasets/ferplus/votes.csv --teacher ferplus-ck-csa-w1 --distill 0.5 --optimizer sgd --lr 0.01 --weight-decay 1e-4 --schedule cosine --epochs 34 --batch-size 64 --rotation 10 --scale-jitter 0.1 --precision auto",
        metrics={"val_accuracy": 0.8177, "val_accuracy_flip": 0.826, "pipeline_accuracy": 0.815, "posed_pipeline_accuracy": 0.848},
    )
    FERPLUS_CK_CSA_KD_REFLECT = ShippedModel(
        name="ferplus-ck-csa-kd-reflect",
        file="ferplus-ck-csa-kd-reflect.pt",
        sha256="bbcd4050d37577c62a1503c621895328763dc7fb6fb228f14dbb615d4a5a2fb6",
        classes=("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
        input_size=48,
        width=0.5,
        data="FER+ train with the posed CK+ faces of 94 of its 118 subjects (benchmarks/mixed_set.py), face crops framed in their reflection, fine-tuned from ferplus-ck-csa-kd while distilling ferplus-ck-csa-w1; selected on FER+ val with the other 24 subjects",
        command="fervid train ~/mix/train --val ~/mix/val --out ~/.local/share/fervid/runs/kd-ft-reflect --size 48 --width 0.5 --crop aligned --context reflect --soft-labels ../shared/datasets/ferplus/votes.csv --init ferplus-ck-csa-kd --teacher ferplus-ck-csa-w1 --distill 0.5 --optimizer sgd --lr 0.002 --weight-decay 1e-4 --schedule cosine --epochs 8 --batch-size 64 --rotation 10 --scale-jitter 0.1 --precision auto",
        metrics={"val_accuracy": 0.8234, "val_accuracy_flip": 0.8263, "pipeline_accuracy": 0.821, "posed_pipeline_accuracy": 0.857},
    )
    CKPLUS_CSA = ShippedModel(
        name="ckplus-csa",
        file="ckplus-csa.pt",
        sha256="79c3a92f9913815c4f6c9c38abfb3ed76b5d7c71e665c8bf8111d0cbefaa6044",
        classes=("happy", "sad", "surprise", "fear", "disgust", "anger"),
        input_size=48,
        width=0.5,
        data="CK+ 48×48 crops, six classes (927 images), all used for training, fine-tuned from ferplus-csa; the last epoch (no model selection)",
        command="fervid train ../shared/datasets/ck48 --classes happy,sad,surprise,fear,disgust,anger --size 48 --width 0.5 --crop calibrated --init ferplus-csa --epochs 30 --batch-size 32 --lr 0.0005 --schedule cosine --val-fraction 0 --out ~/.local/share/fervid/runs/ckplus-csa-init-cal",
        metrics={"cv10_accuracy": 0.9914, "subject_cv10_accuracy": 0.9418},
    )

    @classmethod
    def get(cls, name: str) -> ShippedModel:
        for member in cls:
            if member.value.name == name:
                return member.value
        raise LookupError(f"unknown model {name!r}; shipped models: {', '.join(m.value.name for m in cls)}")


#: The shipped model jobs use unless told otherwise: the settings' default (``FERVID_MODEL``), their one source.
DEFAULT = next(member for member in Weights if member.value.name == Settings().model)


def shipped_models() -> list[ShippedModel]:
    """Every shipped model."""
    return [member.value for member in Weights]


def resolve_model(name_or_path: str | Path) -> Path:
    """A checkpoint path for a shipped model's name (checksum verified) or an existing file path."""
    text = str(name_or_path)
    if any(member.value.name == text for member in Weights):
        return Weights.get(text).verify()
    path = Path(text).expanduser()
    if not path.exists():
        names = ", ".join(m.name for m in shipped_models()) or "none"
        raise CheckpointError(f"{path}: no such checkpoint file, and not a shipped model name (shipped: {names})")
    return path
