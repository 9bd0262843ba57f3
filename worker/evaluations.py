"""Evaluation runs of ``fervid evaluate`` stored in the configured database."""

from __future__ import annotations

from typing import Any

from fervid.db import database
from fervid.db.writes import store_evaluation
from fervid.settings import Settings


def store_report(settings: Settings, payload: dict[str, Any], *, name: str, protocol: str, model_name: str | None) -> int:
    """Store a :class:`ClassificationReport` or protocol result (their ``to_dict()``) as an evaluation run; its id."""
    pooled = payload.get("pooled", payload)
    return store_evaluation(
        database(settings),
        job_id=None,
        name=name,
        model_name=model_name or "trained per fold",
        protocol=protocol,
        classes=pooled["classes"],
        accuracy=payload.get("mean_accuracy", pooled["accuracy"]),
        accuracy_std=payload.get("std_accuracy"),
        folds=len(payload["folds"]) if "folds" in payload else None,
        confusion=pooled["confusion"],
        per_class=pooled["per_class"],
        params=payload.get("params"),
    )
