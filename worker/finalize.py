"""Finalizing a job once its last segment is stored: tracks stitched across segment borders and linked into
persons, each track's readings smoothed over time, recall statistics where ground truth exists, the job's
statistics; then the job is done."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine

from fervid.db.jobs import get_job
from fervid.db.reports import track_bounds
from fervid.db.tracks import (
    descriptors,
    sample_period,
    segment_thumbnails,
    store_readings,
    track_readings,
    tracks_together,
)
from fervid.db.writes import finalize_job, label_pairs, remap_tracks, store_evaluation
from fervid.expressions import EXPRESSIONS
from fervid.model.metrics import classification_report
from fervid.worker.cuts import is_cut
from fervid.worker.options import JobOptions
from fervid.worker.persons import link_persons, track_distance
from fervid.worker.smoothing import label_changes, smooth_probabilities
from fervid.worker.track import stitch

Descriptors = Mapping[tuple[int, int], np.ndarray]


def stored_descriptors(engine: Engine, job_id: int) -> dict[tuple[int, int], np.ndarray]:
    """The job's face descriptors per ``(segment, track_id)`` as ``(m, 128)`` arrays."""
    return {key: np.stack([np.frombuffer(b, dtype="<f4") for b in blobs]) for key, blobs in descriptors(engine, job_id).items()}


def stitch_tracks(
    engine: Engine,
    job_id: int,
    max_gap: float,
    faces: Descriptors | None = None,
    threshold: float = 0.6,
    cut_threshold: float = 1.0,
) -> dict[int, np.ndarray]:
    """Give tracks job-wide ids, joining each segment's tracks to the previous segment's across the border where
    no cut separates the segments (``cut_threshold``), the boxes continue and, when both tracks have descriptors
    (``faces``, per segment and local track), their faces are within ``threshold``. Returns the descriptors per
    job-wide track."""
    faces = faces or {}
    bounds = track_bounds(engine, job_id)  # {segment: {track: (first_t, first_box, last_t, last_box)}}
    thumbnails = segment_thumbnails(engine, job_id)
    mapping: dict[tuple[int, int], int] = {}
    joined_faces: dict[int, list[np.ndarray]] = defaultdict(list)
    next_id, previous = 0, {}
    for segment in sorted(bounds):
        tracks = bounds[segment]

        def same_face(old: int, new: int, segment: int = segment) -> bool:
            before, after = joined_faces.get(old), faces.get((segment, new))
            return not before or after is None or track_distance(np.concatenate(before), after) < threshold

        before, after = thumbnails.get(segment - 1, (None, None))[1], thumbnails.get(segment, (None, None))[0]
        cut = before is not None and after is not None and is_cut(before, after, cut_threshold)
        ends = {mapping[(segment - 1, t)]: (b[2], b[3]) for t, b in previous.items()} if previous and not cut else {}
        starts = {t: (b[0], b[1]) for t, b in tracks.items()}
        joined = stitch(ends, starts, max_gap=max_gap, same_face=same_face) if ends else {}
        for track in sorted(tracks):
            if track in joined:
                mapping[(segment, track)] = joined[track]
            else:
                mapping[(segment, track)], next_id = next_id, next_id + 1
            if (segment, track) in faces:
                joined_faces[mapping[(segment, track)]].append(faces[(segment, track)])
        previous = tracks if segment + 1 in bounds else {}
    remap_tracks(engine, job_id, mapping)
    return {track: np.concatenate(arrays) for track, arrays in joined_faces.items()}


@dataclass
class _Person:
    tracks: set[int] = field(default_factory=set)
    times: set[float] = field(default_factory=set)
    faces: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    changes: int = 0
    changes_raw: int = 0

    def row(self, person: int, period: float) -> dict[str, Any]:
        seconds = len(self.times) * period
        per_minute = 60.0 / seconds if seconds > 0 else 0.0
        return {
            "person_id": person,
            "tracks": len(self.tracks),
            "first_t": min(self.times),
            "last_t": max(self.times),
            "seconds": seconds,
            "faces": self.faces,
            "dominant_label": min(self.labels.items(), key=lambda item: (-item[1], item[0]))[0],
            "shares": {label: n / self.faces for label, n in self.labels.most_common()},
            "label_changes_per_minute": self.changes * per_minute,
            "label_changes_per_minute_raw": self.changes_raw * per_minute,
        }


def smooth_and_link(engine: Engine, job_id: int, classes: list[str], options: JobOptions, faces: Mapping[int, np.ndarray]) -> int:
    """Smooth every track's readings, link the tracks into persons (with identity off, each track is a person)
    and store both with the persons' statistics; the number of persons.

    A person's ``seconds`` on screen are its distinct sample times × the job's sample period
    (:func:`~fervid.db.tracks.sample_period`).
    """
    readings = list(track_readings(engine, job_id))
    first_seen = sorted(readings, key=lambda item: (item[1][0]["t"], item[0]))
    order = [track for track, _ in first_seen]
    if options.identity:
        person_of = link_persons(order, faces, tracks_together(engine, job_id), options.identity_threshold)
    else:
        person_of = {track: i for i, track in enumerate(order)}
    columns = [f"p_{c}" for c in classes]
    smoothed_rows: list[dict[str, Any]] = []
    people: dict[int, _Person] = defaultdict(_Person)
    for track, rows in readings:
        times = [row["t"] for row in rows]
        probs = np.array([[row[c] if row[c] is not None else 0.0 for c in columns] for row in rows])
        smooth = smooth_probabilities(times, probs, options.smooth_seconds)
        labels = [classes[i] for i in smooth.argmax(axis=1)]
        if options.smooth_seconds > 0:
            for row, p, label in zip(rows, smooth, labels):
                values = dict(zip((f"ps_{c}" for c in classes), map(float, p)))
                smoothed_rows.append(
                    {"id": row["id"], "label_smoothed": label, "confidence_smoothed": float(p.max()),
                     **{f"ps_{name}": values.get(f"ps_{name}") for name in EXPRESSIONS}}
                )  # fmt: skip
        else:
            labels = [row["label"] for row in rows]
        person = people[person_of[track]]
        person.tracks.add(track)
        person.times.update(times)
        person.faces += len(rows)
        person.labels.update(labels)
        person.changes += label_changes(labels)
        person.changes_raw += label_changes([row["label"] for row in rows])
    with engine.connect() as conn:
        period = sample_period(conn, job_id) or (1.0 / options.sample_fps if options.sample_fps else 0.0)
    person_rows = [people[p].row(p, period) for p in sorted(people)]
    store_readings(engine, job_id, smoothed_rows, person_of, person_rows)
    return len(person_rows)


def finalize(engine: Engine, job_id: int) -> None:
    """Stitch, link and smooth the tracks of a video job, store recall statistics where ground truth exists,
    compute statistics, mark the job done."""
    job = get_job(engine, job_id)
    options = JobOptions.from_params(job["params"])
    classes = list(job["classes"] or [])
    if job["kind"] == "video":
        faces = stored_descriptors(engine, job_id) if options.identity else {}
        joined = stitch_tracks(engine, job_id, options.max_gap, faces, options.identity_threshold, options.cut_threshold)
        smooth_and_link(engine, job_id, classes, options, joined)
    else:
        store_readings(engine, job_id, [], {}, [])
    truth, predicted = label_pairs(engine, job_id)
    if truth:
        known = [c for c in EXPRESSIONS if c in set(classes) | set(truth)]
        report = classification_report(truth, predicted, known)
        store_evaluation(
            engine,
            job_id=job_id,
            name=job["source"],
            model_name=job["model_name"],
            protocol="job",
            classes=report.classes,
            accuracy=report.accuracy,
            confusion=report.confusion,
            per_class=report.per_class,
        )
    started = job["started_at"] or job["created_at"]
    finalize_job(engine, job_id, processing_seconds=time.time() - started.timestamp())
