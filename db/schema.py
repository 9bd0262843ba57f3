"""fervid's tables (SQLAlchemy Core) and the read-only views the migrations create.

The tables are created only by the Alembic migrations in ``alembic/versions``; this module describes them for
queries and for ``alembic revision --autogenerate``. :data:`views` holds the SQL views separately so that
autogenerate never mistakes them for tables.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    func,
)

from fervid.expressions import EXPRESSIONS

JOB_KINDS: tuple[str, ...] = ("video", "images")
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATUSES: tuple[str, ...] = ("done", "failed", "cancelled")
SEGMENT_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed")

#: The probability column of each canonical expression, in :data:`~fervid.expressions.EXPRESSIONS` order.
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in EXPRESSIONS)
#: The same after temporal smoothing (:mod:`fervid.worker.smoothing`), with ``label_smoothed`` and
#: ``confidence_smoothed``; equal to the raw ones where nothing is smoothed (images, a track's only face).
SMOOTHED_COLUMNS: tuple[str, ...] = tuple(f"ps_{name}" for name in EXPRESSIONS)
#: Each raw reading column and the smoothed column beside it.
SMOOTHED_OF: dict[str, str] = {
    "label": "label_smoothed",
    "confidence": "confidence_smoothed",
    **dict(zip(PROBABILITY_COLUMNS, SMOOTHED_COLUMNS, strict=True)),
}

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if getattr(dialect, "name", "") == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _check_in(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=name)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow, server_default=func.now()),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("params", JSON),
    Column("model_name", Text),
    Column("model_sha256", Text),
    Column("classes", JSON),
    Column("duration", Float),
    Column("frames_total", Integer),
    Column("frames_done", Integer, nullable=False, server_default="0"),
    Column("faces", Integer, nullable=False, server_default="0"),
    Column("failed_frames", Integer, nullable=False, server_default="0"),
    Column("warnings", Integer, nullable=False, server_default="0"),
    Column("segments_total", Integer, nullable=False, server_default="0"),
    Column("segments_done", Integer, nullable=False, server_default="0"),
    Column("processing_seconds", Float),
    Column("error", Text),
    Column("worker", Text),
    Column("batch", Text, index=True),  # the name of the batch the job was submitted in (fervid submit --batch)
    _check_in("kind", JOB_KINDS, "kind"),
    _check_in("status", JOB_STATUSES, "status"),
)

segments = Table(
    "segments",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("worker", Text),
    Column("frames", Integer, nullable=False, server_default="0"),
    Column("faces", Integer, nullable=False, server_default="0"),
    Column("failed_frames", Integer, nullable=False, server_default="0"),
    Column("warnings", Integer, nullable=False, server_default="0"),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("error", Text),
    Column("heartbeat_at", UTCDateTime),  # refreshed by the worker running the segment
    # the segment's first and last sample as small gray thumbnails (fervid.worker.cuts), for cuts at its borders
    Column("first_thumbnail", LargeBinary),
    Column("last_thumbnail", LargeBinary),
    PrimaryKeyConstraint("job_id", "idx"),
    _check_in("status", SEGMENT_STATUSES, "status"),
)

detections = Table(
    "detections",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("segment", Integer, nullable=False),
    Column("frame_index", Integer, nullable=False),
    Column("t", Float),
    Column("track_id", Integer),
    Column("x1", Float),
    Column("y1", Float),
    Column("x2", Float),
    Column("y2", Float),
    Column("det_score", Float),
    Column("label", Text),
    Column("confidence", Float),
    *(Column(name, Float) for name in PROBABILITY_COLUMNS),
    Column("truth", Text),
    Column("source_path", Text),
    Column("worker", Text),
    Column("person_id", Integer),  # set when the job is finalized (fervid.worker.persons)
    Column("label_smoothed", Text),
    Column("confidence_smoothed", Float),
    *(Column(name, Float) for name in SMOOTHED_COLUMNS),
    Index(None, "job_id", "t"),
    Index(None, "job_id", "track_id"),
    Index(None, "job_id", "segment"),
    # one face (track) once per frame
    Index("uq_detections_job_id_segment_frame_index_track_id", "job_id", "segment", "frame_index", "track_id", unique=True),
)

#: Face descriptors of a few good samples per track (fervid.model.identity), written with the segment's detections.
track_descriptors = Table(
    "track_descriptors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("segment", Integer, nullable=False),
    Column("track_id", Integer, nullable=False),
    Column("t", Float),
    Column("quality", Float),
    Column("descriptor", LargeBinary, nullable=False),  # float32 values, little-endian
    Index(None, "job_id", "segment"),
)

#: A few small JPEG crops of each track's faces, at its expression peaks (image jobs: one per face), for reports.
face_thumbnails = Table(
    "face_thumbnails",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("segment", Integer, nullable=False),
    Column("track_id", Integer),
    Column("t", Float),
    Column("frame_index", Integer),
    Column("source_path", Text),
    Column("label", Text),
    Column("probability", Float),
    Column("truth", Text),
    Column("image", LargeBinary, nullable=False),  # JPEG
    Index(None, "job_id", "segment"),
)

#: The persons of a finalized video job: its tracks linked by face identity, with their statistics.
persons = Table(
    "persons",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("person_id", Integer, nullable=False),
    Column("tracks", Integer, nullable=False),
    Column("first_t", Float),
    Column("last_t", Float),
    Column("seconds", Float),
    Column("faces", Integer, nullable=False),
    Column("dominant_label", Text),
    Column("shares", JSON),  # smoothed labels: {label: share of the person's faces}
    Column("label_changes_per_minute", Float),
    Column("label_changes_per_minute_raw", Float),
    PrimaryKeyConstraint("job_id", "person_id"),
)

#: Warnings and errors of a job, per file or frame (kept with the job, shown by ``fervid report``).
EVENT_LEVELS = ("warning", "error")
job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("segment", Integer),
    Column("level", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow, server_default=func.now()),
    Index(None, "job_id"),
    _check_in("level", EVENT_LEVELS, "level"),
)

job_stats = Table(
    "job_stats",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, nullable=False),
    Column("faces", Integer, nullable=False),
    Column("share", Float, nullable=False),
    Column("mean_probability", Float),
    Column("mean_confidence", Float),
    PrimaryKeyConstraint("job_id", "label"),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), index=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow, server_default=func.now()),
    Column("name", Text),
    Column("model_name", Text),
    Column("protocol", Text),
    Column("accuracy", Float, nullable=False),
    Column("accuracy_std", Float),
    Column("folds", Integer),
    Column("classes", JSON, nullable=False),
    Column("confusion", JSON, nullable=False),
    Column("params", JSON),
)

evaluation_classes = Table(
    "evaluation_classes",
    metadata,
    Column("evaluation_id", Integer, ForeignKey("evaluations.id", ondelete="CASCADE"), nullable=False),
    Column("label", Text, nullable=False),
    Column("recall", Float),
    Column("precision", Float),
    Column("f1", Float),
    Column("support", Integer, nullable=False),
    PrimaryKeyConstraint("evaluation_id", "label"),
)

#: The SQL views (created by the migrations; query them, never create them from here).
views = MetaData()

fervid_timeline = Table(
    "fervid_timeline",
    views,
    Column("job_id", Integer),
    Column("person_id", Integer),
    Column("track_id", Integer),
    Column("t", Float),
    Column("frame_index", Integer),
    Column("source_path", Text),
    Column("x1", Float),
    Column("y1", Float),
    Column("x2", Float),
    Column("y2", Float),
    Column("label", Text),
    Column("confidence", Float),
    *(Column(name, Float) for name in PROBABILITY_COLUMNS),
    Column("truth", Text),
    Column("label_smoothed", Text),
    Column("confidence_smoothed", Float),
    *(Column(name, Float) for name in SMOOTHED_COLUMNS),
)

fervid_track_summary = Table(
    "fervid_track_summary",
    views,
    Column("job_id", Integer),
    Column("track_id", Integer),
    Column("first_t", Float),
    Column("last_t", Float),
    Column("faces", Integer),
    Column("dominant_label", Text),
    Column("mean_confidence", Float),
    Column("person_id", Integer),
)

fervid_person_summary = Table(
    "fervid_person_summary",
    views,
    Column("job_id", Integer),
    Column("source", Text),
    Column("person_id", Integer),
    Column("tracks", Integer),
    Column("first_t", Float),
    Column("last_t", Float),
    Column("seconds", Float),
    Column("faces", Integer),
    Column("dominant_label", Text),
    Column("label_changes_per_minute", Float),
    Column("label_changes_per_minute_raw", Float),
)

fervid_job_summary = Table(
    "fervid_job_summary",
    views,
    Column("job_id", Integer),
    Column("source", Text),
    Column("status", Text),
    Column("faces", Integer),
    Column("tracks", Integer),
    Column("frames", Integer),
    Column("duration", Float),
    Column("model_name", Text),
)

fervid_recall = Table(
    "fervid_recall",
    views,
    Column("job_id", Integer),
    Column("evaluation_id", Integer),
    Column("label", Text),
    Column("recall", Float),
    Column("precision", Float),
    Column("f1", Float),
    Column("support", Integer),
)
