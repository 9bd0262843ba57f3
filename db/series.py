"""What figures and the HTML report draw: per-person probability series over time, an image job's predictions per
ground-truth class, and the face thumbnails stored with a job."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from fervid.db.schema import PROBABILITY_COLUMNS, face_thumbnails, fervid_timeline


@dataclass(frozen=True)
class Series:
    """One person's (or track's) readings in time order: ``t`` and, per sample, a probability per class."""

    key: int | None  # person id (track id for jobs stored before persons existed); None: untracked faces
    faces: int
    t: list[float]
    smoothed: list[list[float | None]]
    raw: list[list[float | None]]


@dataclass(frozen=True)
class Timeline:
    """A video job's readings for plotting: the classes its model has, whether ``series`` are persons or tracks,
    the largest ``series`` (most faces first) and how many there are in all."""

    classes: list[str]
    unit: str  # "person" or "track"
    series: list[Series]
    total: int
    first_t: float | None
    last_t: float | None


def timeline_series(engine: Engine, job_id: int, limit: int | None = None) -> Timeline:
    """The job's per-person series (per track before persons existed), the ``limit`` largest, raw and smoothed
    (a row without a smoothed reading repeats its raw one)."""
    view = fervid_timeline.c
    with engine.connect() as conn:
        present = conn.execute(
            select(*(func.count(view[name]) for name in PROBABILITY_COLUMNS)).where(view.job_id == job_id)
        ).one()
        classes = [name.removeprefix("p_") for name, n in zip(PROBABILITY_COLUMNS, present) if n]
        by_person = conn.scalar(select(func.count(view.person_id)).where(view.job_id == job_id)) > 0
        key = view.person_id if by_person else view.track_id
        groups = conn.execute(
            select(key, func.count(), func.min(view.t), func.max(view.t))
            .where(view.job_id == job_id, view.t.is_not(None))
            .group_by(key)
            .order_by(func.count().desc(), key)
        ).all()
        raw = [view[f"p_{c}"] for c in classes]
        smoothed = [func.coalesce(view[f"ps_{c}"], view[f"p_{c}"]) for c in classes]
        series = []
        for ident, faces, _, _ in groups[:limit]:
            rows = conn.execute(
                select(view.t, *smoothed, *raw)
                .where(view.job_id == job_id, key.is_(None) if ident is None else key == ident, view.t.is_not(None))
                .order_by(view.t, view.track_id)
            ).all()
            n = len(classes)
            series.append(
                Series(
                    ident, faces, [row[0] for row in rows], [list(row[1 : 1 + n]) for row in rows],
                    [list(row[1 + n :]) for row in rows],
                )
            )  # fmt: skip
    return Timeline(
        classes,
        "person" if by_person else "track",
        series,
        len(groups),
        min((g[2] for g in groups), default=None),
        max((g[3] for g in groups), default=None),
    )


def prediction_counts(engine: Engine, job_id: int) -> dict[str | None, dict[str | None, int]]:
    """An image job's faces per ground-truth class (``None``: unlabelled) and predicted label."""
    view = fervid_timeline.c
    counts: dict[str | None, dict[str | None, int]] = defaultdict(dict)
    query = select(view.truth, view.label, func.count()).where(view.job_id == job_id).group_by(view.truth, view.label)
    with engine.connect() as conn:
        for truth, label, faces in conn.execute(query):
            counts[truth][label] = faces
    return dict(counts)


def thumbnails(engine: Engine, job_id: int) -> list[dict[str, Any]]:
    """The job's face thumbnails (JPEG ``image`` bytes with ``track_id``, ``t``, ``frame_index``, ``source_path``,
    ``label``, ``probability``, ``truth``), with the ``person_id`` of their track, in time (or file) order."""
    c = face_thumbnails.c
    view = fervid_timeline.c
    query = (
        select(c.track_id, c.t, c.frame_index, c.source_path, c.label, c.probability, c.truth, c.image)
        .where(c.job_id == job_id)
        .order_by(c.t, c.source_path, c.frame_index, c.track_id, c.id)
    )
    with engine.connect() as conn:
        person_of = dict(
            conn.execute(
                select(view.track_id, func.min(view.person_id))
                .where(view.job_id == job_id, view.person_id.is_not(None))
                .group_by(view.track_id)
            ).all()
        )
        return [
            dict(row) | {"image": bytes(row["image"]), "person_id": person_of.get(row["track_id"])}
            for row in conn.execute(query).mappings()
        ]
