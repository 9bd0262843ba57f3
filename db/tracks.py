"""What finalizing a video job reads and writes per track: face descriptors, co-occurrence, readings in time
order, and the smoothed readings, person ids and persons it computes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from itertools import groupby
from statistics import median
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, insert, select, update

from fervid.db.engine import write_transaction
from fervid.db.schema import PROBABILITY_COLUMNS, SMOOTHED_OF, detections, persons, segments, track_descriptors

#: The smoothed columns of a detection, each with the raw column it defaults to.
_SMOOTHED_FROM_RAW = {smoothed: raw for raw, smoothed in SMOOTHED_OF.items()}


def descriptors(engine: Engine, job_id: int) -> dict[tuple[int, int], list[bytes]]:
    """The stored face descriptors per ``(segment, track_id)``, best quality first."""
    c = track_descriptors.c
    query = select(c.segment, c.track_id, c.descriptor).where(c.job_id == job_id).order_by(c.quality.desc(), c.id)
    found: dict[tuple[int, int], list[bytes]] = defaultdict(list)
    with engine.connect() as conn:
        for segment, track, descriptor in conn.execute(query):
            found[(segment, track)].append(bytes(descriptor))
    return dict(found)


def segment_thumbnails(engine: Engine, job_id: int) -> dict[int, tuple[bytes | None, bytes | None]]:
    """Per segment, the thumbnails of its first and last sample (``None`` where it stored none)."""
    c = segments.c
    query = select(c.idx, c.first_thumbnail, c.last_thumbnail).where(c.job_id == job_id)
    with engine.connect() as conn:
        return {idx: (first and bytes(first), last and bytes(last)) for idx, first, last in conn.execute(query)}


def tracks_together(engine: Engine, job_id: int) -> set[tuple[int, int]]:
    """The pairs ``(a, b)``, ``a < b``, of tracks that have a face in one frame."""
    a, b = detections.alias("a"), detections.alias("b")
    query = (
        select(a.c.track_id, b.c.track_id)
        .distinct()
        .join(
            b,
            and_(
                b.c.job_id == a.c.job_id,
                b.c.segment == a.c.segment,
                b.c.frame_index == a.c.frame_index,
                b.c.track_id > a.c.track_id,
            ),
        )
        .where(a.c.job_id == job_id)
    )
    with engine.connect() as conn:
        return {(x, y) for x, y in conn.execute(query)}


def track_readings(engine: Engine, job_id: int, with_truth: bool = False) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Per track (in id order), its faces in time order: ``id``, ``t``, ``frame_index``, ``label``, the
    probability columns and, ``with_truth``, ``truth``."""
    d = detections.c
    extra = [d.truth] if with_truth else []
    query = (
        select(d.track_id, d.id, d.t, d.frame_index, d.label, *(d[name] for name in PROBABILITY_COLUMNS), *extra)
        .where(d.job_id == job_id, d.track_id.is_not(None), d.t.is_not(None))
        .order_by(d.track_id, d.t, d.id)
    )
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=5000).execute(query).mappings()
        for track, faces in groupby(rows, key=lambda row: row["track_id"]):
            yield track, [dict(face) for face in faces]


def sample_period(conn: Connection, job_id: int) -> float | None:
    """The job's sample period: the median step between its distinct sample times (``None``: fewer than two)."""
    d = detections.c
    times = conn.scalars(select(d.t).distinct().where(d.job_id == job_id, d.t.is_not(None)).order_by(d.t)).all()
    return median(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else None


def store_readings(
    engine: Engine,
    job_id: int,
    smoothed: Sequence[Mapping[str, Any]],
    person_of_track: Mapping[int, int],
    person_rows: Sequence[Mapping[str, Any]],
) -> None:
    """In one transaction: every face's smoothed reading (its raw one, then ``smoothed``: rows with ``id`` and
    the smoothed columns), ``person_id`` from ``person_of_track`` and the job's ``persons`` rows (replaced)."""
    d = detections.c
    with write_transaction(engine) as conn:
        conn.execute(
            update(detections)
            .where(d.job_id == job_id)
            .values({name: d[raw] for name, raw in _SMOOTHED_FROM_RAW.items()} | {"person_id": None})
        )
        if smoothed:
            conn.execute(
                update(detections)
                .where(d.id == bindparam("row_id"))
                .values({name: bindparam(f"new_{name}") for name in _SMOOTHED_FROM_RAW}),
                [{"row_id": row["id"], **{f"new_{name}": row[name] for name in _SMOOTHED_FROM_RAW}} for row in smoothed],
            )
        if person_of_track:
            conn.execute(
                update(detections)
                .where(d.job_id == job_id, d.track_id == bindparam("track"))
                .values(person_id=bindparam("person")),
                [{"track": track, "person": person} for track, person in person_of_track.items()],
            )
        conn.execute(delete(persons).where(persons.c.job_id == job_id))
        if person_rows:
            conn.execute(insert(persons), [{**row, "job_id": job_id} for row in person_rows])
