"""Job reports aggregated in SQL, and the streamed timeline for exports."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Integer, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fervid.db.jobs import job_row
from fervid.db.schema import (
    detections,
    evaluations,
    fervid_recall,
    fervid_timeline,
    fervid_track_summary,
    job_events,
    job_stats,
    jobs,
    persons,
)
from fervid.db.tracks import sample_period
from fervid.expressions import EXPRESSIONS

Box = tuple[float, float, float, float]


def timeline_codes(labels: tuple[str, ...]) -> dict[str, str]:
    """One letter per label: its first letter, upper-cased when an earlier label took it."""
    codes: dict[str, str] = {}
    for label in labels:
        codes[label] = label[0] if label[0] not in codes.values() else label[0].upper()
    return codes


#: Timeline letters of the expressions (sad ``s``, surprise ``S``); other labels show as :data:`UNKNOWN_CODE`.
TIMELINE_CODES: dict[str, str] = timeline_codes(EXPRESSIONS)
UNKNOWN_CODE = "?"
#: The timeline character of a time bin in which the track has no face.
EMPTY_BIN = "."

_JOB_FIELDS = (
    "source",
    "kind",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "duration",
    "frames_total",
    "frames_done",
    "faces",
    "failed_frames",
    "warnings",
    "segments_total",
    "segments_done",
    "model_name",
    "model_sha256",
    "classes",
    "params",
    "processing_seconds",
    "error",
)


class _floor(FunctionElement[int]):
    """``floor(x)`` as an integer, for ``x >= 0``."""

    name = "floor"
    type = Integer()
    inherit_cache = True


@compiles(_floor)
def _floor_default(element: _floor, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_floor, "sqlite")
def _floor_sqlite(element: _floor, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"  # truncation is floor for x >= 0


def job_report(engine: Engine, job_id: int, timeline_width: int = 60) -> dict[str, Any]:
    """A JSON-serialisable report: the job's fields, label distribution, tracks, evaluation and events.

    Each track carries a ``timeline`` of ``timeline_width`` characters over the video (``0..duration``, or the
    detections' time span): per time bin the :data:`TIMELINE_CODES` letter of the track's most frequent smoothed
    label, :data:`EMPTY_BIN` where it has no face (``None`` for image jobs, which have no times); ``timeline_raw``
    the same of the raw labels; its ``dominant_label`` and ``shares`` of smoothed labels; its ``person_id`` and ``label_changes_per_minute`` (smoothed, and ``_raw``) over
    its time on screen (faces × the sample period). ``persons`` lists a video job's persons.
    """
    if timeline_width < 1:
        raise ValueError("timeline_width must be at least 1")
    with engine.connect() as conn:
        job = job_row(conn, job_id)
        width = min(timeline_width, max(job["frames_done"], 1))  # no wider than the sampled frames
        tracks = _tracks(conn, job_id, job["duration"], width)
        report = {"job_id": job_id, **{name: _jsonable(job[name]) for name in _JOB_FIELDS}}
        report["track_count"] = len(tracks)
        report["speed"] = _speed(job)
        report["distribution"] = _distribution(conn, job_id)
        report["tracks"] = tracks
        report["persons"] = _persons(conn, job_id, tracks)
        report["timeline_legend"] = {code: label for label, code in TIMELINE_CODES.items()}
        report["evaluation"] = _evaluation(conn, job_id)
        report["events"] = _events(conn, job_id)
    return report


def batch_report(engine: Engine, batch: str) -> dict[str, Any]:
    """The jobs of ``batch`` side by side: per job its source, status, duration, faces, persons, dominant
    expression and expression shares (of the job's faces), from :func:`job_report`; oldest job first."""
    with engine.connect() as conn:
        ids = conn.scalars(select(jobs.c.id).where(jobs.c.batch == batch).order_by(jobs.c.id)).all()
    if not ids:
        raise LookupError(f"no jobs in batch {batch!r} (`fervid jobs` shows the batches)")
    rows = []
    for job_id in ids:
        report = job_report(engine, job_id, timeline_width=1)
        distribution = report["distribution"]
        rows.append(
            {
                "job_id": job_id,
                **{name: report[name] for name in ("source", "kind", "status", "duration", "faces", "error")},
                "persons": len(report["persons"]) if report["kind"] == "video" else None,
                "tracks": report["track_count"],
                "dominant_label": max(distribution, key=lambda c: distribution[c]["faces"]) if distribution else None,
                "shares": {label: stats["share"] for label, stats in distribution.items()},
                "accuracy": report["evaluation"]["accuracy"] if report["evaluation"] else None,
            }
        )
    return {"batch": batch, "jobs": rows}


def stored_events(engine: Engine, job_id: int) -> list[dict[str, Any]]:
    """The job's stored warnings and errors, in segment order."""
    with engine.connect() as conn:
        job_row(conn, job_id)  # the job exists
        return _events(conn, job_id)


def _events(conn: Connection, job_id: int) -> list[dict[str, Any]]:
    """The job's stored warnings and errors (files or frames skipped), in segment order."""
    e = job_events.c
    query = select(e.segment, e.level, e.message).where(e.job_id == job_id).order_by(e.segment, e.id)
    return [dict(row) for row in conn.execute(query).mappings()]


def timeline_rows(engine: Engine, job_id: int, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """The job's ``fervid_timeline`` rows ordered by time and track, streamed ``batch`` rows at a time."""
    view = fervid_timeline.c
    query = (
        select(fervid_timeline)
        .where(view.job_id == job_id)
        .order_by(view.t, view.track_id, view.frame_index, view.source_path)
    )
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=batch).execute(query).mappings():
            yield dict(row)


def _speed(job: dict[str, Any]) -> float | None:
    """Seconds of video analysed per second of processing."""
    if job["kind"] != "video" or not job["duration"] or not job["processing_seconds"]:
        return None
    return job["duration"] / job["processing_seconds"]


def _distribution(conn: Connection, job_id: int) -> dict[str, dict[str, Any]]:
    stats = conn.execute(select(job_stats).where(job_stats.c.job_id == job_id)).mappings().all()
    order = {name: i for i, name in enumerate(EXPRESSIONS)}
    return {
        row["label"]: {
            "faces": row["faces"],
            "share": row["share"],
            "mean_probability": row["mean_probability"],
            "mean_confidence": row["mean_confidence"],
        }
        for row in sorted(stats, key=lambda row: (order.get(row["label"], len(order)), row["label"]))
    }


def _tracks(conn: Connection, job_id: int, duration: float | None, width: int) -> list[dict[str, Any]]:
    summary = fervid_track_summary.c
    d = detections.c
    smoothed = func.coalesce(d.label_smoothed, d.label)
    label_counts: dict[int | None, Counter[str]] = defaultdict(Counter)
    for track_id, label, faces in conn.execute(
        select(d.track_id, smoothed, func.count()).where(d.job_id == job_id).group_by(d.track_id, smoothed)
    ):
        label_counts[track_id][label] += faces
    timelines = _timelines(conn, job_id, duration, width, smoothed)
    timelines_raw = _timelines(conn, job_id, duration, width, d.label)
    changes = _label_changes(conn, job_id)
    period = sample_period(conn, job_id)
    tracks = []
    for row in conn.execute(
        select(fervid_track_summary).where(summary.job_id == job_id).order_by(summary.track_id)
    ).mappings():
        track_id = row["track_id"]
        per_minute = 60.0 / (row["faces"] * period) if period else None
        smooth_changes, raw_changes = changes.get(track_id, (0, 0))
        tracks.append(
            {
                "id": track_id,
                "person_id": row["person_id"],
                "first_t": row["first_t"],
                "last_t": row["last_t"],
                "faces": row["faces"],
                "dominant_label": _most_frequent(label_counts[track_id]) if label_counts[track_id] else None,
                "mean_confidence": row["mean_confidence"],
                "shares": {label: n / row["faces"] for label, n in label_counts[track_id].most_common()},
                "timeline": timelines.get(track_id, EMPTY_BIN * width) if timelines is not None else None,
                "timeline_raw": timelines_raw.get(track_id, EMPTY_BIN * width) if timelines_raw is not None else None,
                "label_changes_per_minute": smooth_changes * per_minute if per_minute else None,
                "label_changes_per_minute_raw": raw_changes * per_minute if per_minute else None,
            }
        )
    return tracks


def _label_changes(conn: Connection, job_id: int) -> dict[int, tuple[int, int]]:
    """Per track, how often its smoothed and its raw label change from one face to the next."""
    d = detections.c
    query = (
        select(d.track_id, func.coalesce(d.label_smoothed, d.label), d.label)
        .where(d.job_id == job_id, d.track_id.is_not(None), d.t.is_not(None))
        .order_by(d.track_id, d.t, d.id)
    )
    changes: dict[int, tuple[int, int]] = {}
    last: tuple[int, str, str] | None = None
    for track, smooth, raw in conn.execution_options(yield_per=5000).execute(query):
        count = changes.get(track, (0, 0))
        if last is not None and last[0] == track:
            count = (count[0] + (smooth != last[1]), count[1] + (raw != last[2]))
        changes[track] = count
        last = (track, smooth, raw)
    return changes


def _persons(conn: Connection, job_id: int, tracks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's persons (finalized video jobs), each with the ids of its tracks."""
    of_person: dict[int, list[int]] = defaultdict(list)
    for track in tracks:
        if track["person_id"] is not None:
            of_person[track["person_id"]].append(track["id"])
    p = persons.c
    rows = conn.execute(select(persons).where(p.job_id == job_id).order_by(p.person_id)).mappings()
    return [
        {
            "id": row["person_id"],
            "tracks": of_person.get(row["person_id"], []),
            **{name: row[name] for name in ("first_t", "last_t", "seconds", "faces", "dominant_label", "shares")},
            "label_changes_per_minute": row["label_changes_per_minute"],
            "label_changes_per_minute_raw": row["label_changes_per_minute_raw"],
        }
        for row in rows
    ]


def _timelines(
    conn: Connection, job_id: int, duration: float | None, width: int, label: ColumnElement[str]
) -> dict[int | None, str] | None:
    """Per track, one letter per time bin: the bin's most frequent ``label`` (ties: alphabetically first)."""
    d = detections.c
    first, last = conn.execute(select(func.min(d.t), func.max(d.t)).where(d.job_id == job_id)).one()
    if first is None:
        return None
    start, span = (0.0, duration) if duration else (first, last - first)
    scale = width / span if span > 0 else 0.0
    binned = (
        select(d.track_id, label.label("label"), _floor((d.t - start) * scale).label("bin"))
        .where(d.job_id == job_id, d.t.is_not(None))
        .subquery()
    )
    counts: dict[int | None, list[Counter[str]]] = defaultdict(lambda: [Counter() for _ in range(width)])
    for track_id, bin_index, label, faces in conn.execute(
        select(binned.c.track_id, binned.c.bin, binned.c.label, func.count()).group_by(
            binned.c.track_id, binned.c.bin, binned.c.label
        )
    ):
        counts[track_id][min(max(bin_index, 0), width - 1)][label] += faces
    return {
        track_id: "".join(
            TIMELINE_CODES.get(_most_frequent(counter), UNKNOWN_CODE) if counter else EMPTY_BIN for counter in bins
        )
        for track_id, bins in counts.items()
    }


def _most_frequent(counter: Counter[str]) -> str:
    """The most frequent label, ties going to the alphabetically first (as in ``fervid_track_summary``)."""
    return min(counter.items(), key=lambda item: (-item[1], item[0] or ""))[0]


def _evaluation(conn: Connection, job_id: int) -> dict[str, Any] | None:
    row = (
        conn.execute(select(evaluations).where(evaluations.c.job_id == job_id).order_by(evaluations.c.id.desc()))
        .mappings()
        .first()
    )
    if row is None:
        return None
    recall = fervid_recall.c
    order = {label: i for i, label in enumerate(row["classes"])}
    metrics = sorted(
        conn.execute(select(fervid_recall).where(recall.evaluation_id == row["id"])).mappings(),
        key=lambda r: (order.get(r["label"], len(order)), r["label"]),
    )
    return {
        "id": row["id"],
        "name": row["name"],
        "model_name": row["model_name"],
        "protocol": row["protocol"],
        "created_at": _jsonable(row["created_at"]),
        "accuracy": row["accuracy"],
        "accuracy_std": row["accuracy_std"],
        "folds": row["folds"],
        "classes": row["classes"],
        "confusion": row["confusion"],
        "per_class": {
            r["label"]: {"recall": r["recall"], "precision": r["precision"], "f1": r["f1"], "support": r["support"]}
            for r in metrics
        },
    }


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def track_bounds(engine: Engine, job_id: int) -> dict[int, dict[int, tuple[float, Box, float, Box]]]:
    """Per segment and per track (segment-local ids): first time, first box, last time, last box.

    The inputs of track stitching across segment borders.
    """
    d = detections.c
    spans = (
        select(d.segment, d.track_id, func.min(d.t).label("first"), func.max(d.t).label("last"))
        .where(d.job_id == job_id, d.t.is_not(None), d.track_id.is_not(None))
        .group_by(d.segment, d.track_id)
        .subquery()
    )
    query = select(d.segment, d.track_id, d.t, d.x1, d.y1, d.x2, d.y2, spans.c.first, spans.c.last).join(
        spans,
        (d.segment == spans.c.segment) & (d.track_id == spans.c.track_id) & ((d.t == spans.c.first) | (d.t == spans.c.last)),
    ).where(d.job_id == job_id)
    ends: dict[int, dict[int, dict[str, tuple[float, Box]]]] = defaultdict(lambda: defaultdict(dict))
    with engine.connect() as conn:
        for segment, track, t, x1, y1, x2, y2, first, last in conn.execute(query):
            if t == first:
                ends[segment][track].setdefault("first", (t, (x1, y1, x2, y2)))
            if t == last:
                ends[segment][track].setdefault("last", (t, (x1, y1, x2, y2)))
    return {
        segment: {track: (*b["first"], *b["last"]) for track, b in tracks.items()} for segment, tracks in ends.items()
    }
