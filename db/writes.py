"""Bulk writes: segment results, track remapping, job finalisation and evaluations.

A segment is written in one transaction that holds the job's lock (PostgreSQL: ``SELECT ... FOR UPDATE`` on the
job row; SQLite: ``BEGIN IMMEDIATE``), so re-running a segment replaces its rows and exactly one writer learns
that it finished the job's last segment. Detections go in with ``COPY`` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, delete, func, insert, literal, select, update

from fervid.db.engine import write_transaction
from fervid.db.jobs import job_row
from fervid.db.schema import (
    PROBABILITY_COLUMNS,
    SMOOTHED_COLUMNS,
    UTCDateTime,
    detections,
    evaluation_classes,
    evaluations,
    face_thumbnails,
    job_events,
    job_stats,
    jobs,
    segments,
    track_descriptors,
    utcnow,
)
from fervid.expressions import EXPRESSIONS, canonical_order

#: Columns set when the job is finalized, not by its segments.
FINALIZED_COLUMNS: frozenset[str] = frozenset({"person_id", "label_smoothed", "confidence_smoothed", *SMOOTHED_COLUMNS})
#: The columns of a detection row as a segment writes it, in table order (``id`` is generated).
DETECTION_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in detections.columns if c.name != "id" and c.name not in FINALIZED_COLUMNS
)
_BLANK_ROW: dict[str, None] = dict.fromkeys(DETECTION_COLUMNS)
_COPY_SQL = f"COPY detections ({', '.join(DETECTION_COLUMNS)}) FROM STDIN"


def write_segment(
    engine: Engine,
    job_id: int,
    idx: int,
    rows: Sequence[Mapping[str, Any]],
    *,
    frames: int,
    failed_frames: int = 0,
    warnings: int = 0,
    worker: str | None = None,
    events: Sequence[str] = (),
    descriptors: Sequence[Mapping[str, Any]] = (),
    thumbnails: tuple[bytes | None, bytes | None] = (None, None),
    face_images: Sequence[Mapping[str, Any]] = (),
) -> bool:
    """Store segment ``idx``'s detections, ``events`` (warning messages: files or frames skipped) and face
    ``descriptors`` (rows of ``track_id``, ``t``, ``quality``, ``descriptor`` bytes), replacing any earlier
    attempt's, with the ``thumbnails`` of its first and last sample and its ``face_images`` (rows of ``face_thumbnails``
    without job and segment); mark it done and recount the job.

    ``rows`` hold :data:`DETECTION_COLUMNS` keys with Python scalars (missing keys are NULL; ``job_id`` and
    ``segment`` are set from the arguments). True when this call finished the job's last unfinished segment:
    the caller then finalises the job. A cancelled job, or a segment another delivery already finished, is
    left untouched (False).
    """
    records = [_record(row, job_id, idx) for row in rows]
    seg = segments.c
    with write_transaction(engine) as conn:
        if job_row(conn, job_id, for_update=True)["status"] == "cancelled":
            return False
        previous = conn.scalar(select(seg.status).where(seg.job_id == job_id, seg.idx == idx))
        if previous is None:
            raise LookupError(f"job {job_id} has no segment {idx}")
        if previous == "done":  # a duplicate delivery: the first one's rows stand (and may be stitched already)
            return False
        conn.execute(delete(detections).where(detections.c.job_id == job_id, detections.c.segment == idx))
        _insert_detections(conn, records)
        for table, values in ((track_descriptors, descriptors), (face_thumbnails, face_images)):
            conn.execute(delete(table).where(table.c.job_id == job_id, table.c.segment == idx))
            if values:
                conn.execute(insert(table), [{**row, "job_id": job_id, "segment": idx} for row in values])
        conn.execute(delete(job_events).where(job_events.c.job_id == job_id, job_events.c.segment == idx))
        if events:
            rows = [{"job_id": job_id, "segment": idx, "level": "warning", "message": m} for m in events]
            conn.execute(insert(job_events), rows)
        conn.execute(
            update(segments)
            .where(seg.job_id == job_id, seg.idx == idx)
            .values(
                status="done",
                frames=frames,
                faces=len(records),
                failed_frames=failed_frames,
                warnings=warnings,
                worker=func.coalesce(worker, seg.worker),
                finished_at=literal(utcnow(), UTCDateTime()),
                error=None,
                first_thumbnail=thumbnails[0],
                last_thumbnail=thumbnails[1],
            )
        )
        remaining = _recount(conn, job_id, worker)
    return remaining == 0


def remap_tracks(engine: Engine, job_id: int, mapping: Mapping[tuple[int, int], int]) -> None:
    """Renumber tracks, of detections, descriptors and face thumbnails: ``(segment, track_id) -> global track id``; unmapped rows
    keep theirs.

    Track ids are non-negative: the new ids are first written negated (``-1 - new``) and then flipped in one
    statement, so that a new id equal to another pair's old id is never renumbered twice.
    """
    if not mapping:
        return
    if min(mapping.values()) < 0:
        raise ValueError("track ids must be non-negative")
    with write_transaction(engine) as conn:
        for table in (detections, track_descriptors, face_thumbnails):
            c = table.c
            conn.execute(
                update(table)
                .where(c.job_id == job_id, c.segment == bindparam("seg"), c.track_id == bindparam("old"))
                .values(track_id=bindparam("tmp")),
                [{"seg": segment, "old": old, "tmp": -1 - new} for (segment, old), new in mapping.items()],
            )
            conn.execute(update(table).where(c.job_id == job_id, c.track_id < 0).values(track_id=-1 - c.track_id))


def finalize_job(engine: Engine, job_id: int, *, processing_seconds: float) -> None:
    """Recompute the job's per-label statistics from its detections and mark it done (failed: an image job none of
    whose images could be read)."""
    with write_transaction(engine) as conn:
        job = job_row(conn, job_id, for_update=True)
        conn.execute(delete(job_stats).where(job_stats.c.job_id == job_id))
        stats = _label_stats(conn, job_id, job["classes"] or [])
        if stats:
            conn.execute(insert(job_stats), stats)
        # An image folder none of whose images could be read has failed, like a video of which no frame decodes.
        unreadable = job["kind"] == "images" and not job["frames_done"] and job["failed_frames"]
        error = f"{job['source']}: none of its {job['failed_frames']} images could be read" if unreadable else None
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                status="failed" if unreadable else "done",
                error=error,
                finished_at=literal(utcnow(), UTCDateTime()),
                processing_seconds=processing_seconds,
            )
        )


def label_pairs(engine: Engine, job_id: int) -> tuple[list[str], list[str]]:
    """``(truth, predicted)`` labels of the job's detections that have a ground truth, in insertion order."""
    d = detections.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.truth, d.label).where(d.job_id == job_id, d.truth.is_not(None)).order_by(d.id)
        ).all()
    return [truth for truth, _ in rows], [label for _, label in rows]


def store_evaluation(
    engine: Engine,
    *,
    job_id: int | None,
    name: str,
    model_name: str,
    protocol: str,
    classes: Sequence[str],
    accuracy: float,
    confusion: Sequence[Sequence[int]],
    per_class: Mapping[str, Mapping[str, float]],
    accuracy_std: float | None = None,
    folds: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> int:
    """Store an evaluation (replacing the job's earlier one) and its per-class metrics; its id.

    ``confusion`` rows are true classes, columns predictions; ``per_class`` maps a label to its
    ``recall``, ``precision``, ``f1`` and ``support``.
    """
    with write_transaction(engine) as conn:
        if job_id is not None:
            job_row(conn, job_id)
            conn.execute(delete(evaluations).where(evaluations.c.job_id == job_id))
        evaluation_id = conn.execute(
            insert(evaluations).values(
                job_id=job_id,
                created_at=utcnow(),
                name=name,
                model_name=model_name,
                protocol=protocol,
                classes=list(classes),
                accuracy=float(accuracy),
                accuracy_std=None if accuracy_std is None else float(accuracy_std),
                folds=folds,
                confusion=[[int(n) for n in row] for row in confusion],
                params=dict(params or {}),
            )
        ).inserted_primary_key[0]
        if per_class:
            conn.execute(
                insert(evaluation_classes),
                [
                    {
                        "evaluation_id": evaluation_id,
                        "label": label,
                        "recall": _float(metrics.get("recall")),
                        "precision": _float(metrics.get("precision")),
                        "f1": _float(metrics.get("f1")),
                        "support": int(metrics["support"]),
                    }
                    for label, metrics in per_class.items()
                ],
            )
    return evaluation_id


def _record(row: Mapping[str, Any], job_id: int, idx: int) -> dict[str, Any]:
    unknown = row.keys() - _BLANK_ROW.keys()
    if unknown:
        raise ValueError(f"unknown detection columns {sorted(unknown)}; known: {', '.join(DETECTION_COLUMNS)}")
    return {**_BLANK_ROW, **row, "job_id": job_id, "segment": idx}


def _insert_detections(conn: Connection, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(detections), records)
        return
    values = itemgetter(*DETECTION_COLUMNS)
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
        for record in records:
            copy.write_row(values(record))


def _recount(conn: Connection, job_id: int, worker: str | None) -> int:
    """Set the job's counters from its segments; the number of segments not done."""
    seg = segments.c
    done = seg.status == "done"

    def done_sum(column: ColumnElement[int]) -> ColumnElement[int]:
        return func.coalesce(func.sum(column).filter(done), 0)

    totals = conn.execute(
        select(
            func.count().filter(done),
            func.count().filter(~done),
            done_sum(seg.frames),
            done_sum(seg.faces),
            done_sum(seg.failed_frames),
            done_sum(seg.warnings),
        ).where(seg.job_id == job_id)
    ).one()
    segments_done, remaining, frames, faces, failed, warned = totals
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            segments_done=segments_done,
            frames_done=frames,
            faces=faces,
            failed_frames=failed,
            warnings=warned,
            worker=func.coalesce(worker, jobs.c.worker),
        )
    )
    return remaining


def _label_stats(conn: Connection, job_id: int, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One job_stats row per model class and predicted label: faces, share, mean p_<label>, mean confidence."""
    d = detections.c
    total, *means = conn.execute(
        select(func.count(), *(func.avg(d[name]) for name in PROBABILITY_COLUMNS)).where(d.job_id == job_id)
    ).one()
    mean_probability = dict(zip(EXPRESSIONS, means, strict=True))
    predicted = {
        label: (faces, confidence)
        for label, faces, confidence in conn.execute(
            select(d.label, func.count(), func.avg(d.confidence))
            .where(d.job_id == job_id, d.label.is_not(None))
            .group_by(d.label)
        )
    }
    known = canonical_order(classes)
    stats = []
    for label in known + sorted(predicted.keys() - set(known)):
        faces, confidence = predicted.get(label, (0, None))
        stats.append(
            {
                "job_id": job_id,
                "label": label,
                "faces": faces,
                "share": faces / total if total else 0.0,
                "mean_probability": mean_probability.get(label),
                "mean_confidence": confidence,
            }
        )
    return stats


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
