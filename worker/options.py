"""A job's processing options, stored with the job (as JSON) so that every worker processes it alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobOptions:
    """Detector, sampling, batching and tracking options, plus the ground-truth ranges of a video.

    Every value comes from the settings at submission (:func:`fervid.worker.jobs.create`), the one source of
    defaults; the defaults here are what jobs stored before an option existed did.
    """

    model_path: str
    sample_fps: float | None  # None: every frame
    detector: str
    detect_size: int
    detect_every: int
    threshold: float
    batch_size: int
    photo_floor: float = 0.0  # image jobs: see fervid.settings (jobs before it: off)
    flip: bool = False  # average each face with its mirror image (jobs before it: off)
    tta_shift: float = 0.0  # and with copies moved this fraction of its side (jobs before it: none)
    max_gap: float = 1.0  # seconds a track may go unseen (jobs before FERVID_TRACK_GAP: 1 s)
    cut_threshold: float = 1.0  # scene cuts end tracks (jobs before: never)
    smooth_seconds: float = 0.0  # temporal smoothing (jobs before: none)
    identity: bool = False  # face descriptors and persons (jobs before: none)
    identity_threshold: float = 0.6
    labels: list[tuple[float, float, str]] | None = field(default=None)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JobOptions:
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        if known.get("labels"):
            known["labels"] = [tuple(r) for r in known["labels"]]
        return cls(**known)
