"""A job's processing options, stored with the job (as JSON) so that every worker processes it alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobOptions:
    """Detector, sampling, batching and tracking options, plus the ground-truth ranges of a video."""

    model_path: str
    sample_fps: float | None = 5.0  # None: every frame
    detector: str = "centerface"
    detect_size: int = 480
    detect_every: int = 1
    threshold: float = 0.5
    flip: bool = False  # average each face with its mirror image (older jobs: off)
    batch_size: int = 64
    max_gap: float = 1.0
    labels: list[tuple[float, float, str]] | None = field(default=None)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JobOptions:
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        if known.get("labels"):
            known["labels"] = [tuple(r) for r in known["labels"]]
        return cls(**known)
