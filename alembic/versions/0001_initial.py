"""Initial schema: jobs, segments, detections, job_stats, evaluations and the fervid_* views.

Revision ID: 0001
Revises:
Create Date: 2025-11-27

A migration is a frozen snapshot: it spells out its columns (the eight canonical expressions included) instead of
importing them from the current code.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
P_COLUMNS = tuple(f"p_{name}" for name in EXPRESSIONS)
P_LIST = ", ".join(P_COLUMNS)

TIMESTAMP = sa.DateTime(timezone=True)

VIEWS: dict[str, str] = {
    "fervid_timeline": f"""
        SELECT job_id, track_id, t, frame_index, source_path, x1, y1, x2, y2,
               label, confidence, {P_LIST}, truth
        FROM detections""",
    # dominant label: the most frequent one, ties going to the alphabetically first
    "fervid_track_summary": """
        WITH tracks AS (
            SELECT job_id, track_id, MIN(t) AS first_t, MAX(t) AS last_t, COUNT(*) AS faces,
                   AVG(confidence) AS mean_confidence
            FROM detections GROUP BY job_id, track_id
        ), ranked AS (
            SELECT job_id, track_id, label,
                   ROW_NUMBER() OVER (PARTITION BY job_id, track_id ORDER BY COUNT(*) DESC, label) AS position
            FROM detections GROUP BY job_id, track_id, label
        )
        SELECT tracks.job_id, tracks.track_id, tracks.first_t, tracks.last_t, tracks.faces,
               ranked.label AS dominant_label, tracks.mean_confidence
        FROM tracks JOIN ranked
          ON ranked.job_id = tracks.job_id
         AND (ranked.track_id = tracks.track_id OR (ranked.track_id IS NULL AND tracks.track_id IS NULL))
         AND ranked.position = 1""",
    "fervid_job_summary": """
        SELECT jobs.id AS job_id, jobs.source, jobs.status, jobs.faces, COALESCE(counts.tracks, 0) AS tracks,
               jobs.frames_done AS frames, jobs.duration, jobs.model_name
        FROM jobs LEFT JOIN (
            SELECT job_id, COUNT(DISTINCT track_id) AS tracks FROM detections GROUP BY job_id
        ) counts ON counts.job_id = jobs.id""",
    "fervid_recall": """
        SELECT evaluations.job_id, evaluation_classes.evaluation_id, evaluation_classes.label,
               evaluation_classes.recall, evaluation_classes.precision, evaluation_classes.f1,
               evaluation_classes.support
        FROM evaluation_classes JOIN evaluations ON evaluations.id = evaluation_classes.evaluation_id""",
}


def _status_check(values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"status IN ({', '.join(repr(v) for v in values)})", name=name)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="queued"),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("params", sa.JSON()),
        sa.Column("model_name", sa.Text()),
        sa.Column("model_sha256", sa.Text()),
        sa.Column("classes", sa.JSON()),
        sa.Column("duration", sa.Float()),
        sa.Column("frames_total", sa.Integer()),
        sa.Column("frames_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("faces", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed_frames", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("warnings", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("segments_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("segments_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("processing_seconds", sa.Float()),
        sa.Column("error", sa.Text()),
        sa.Column("worker", sa.Text()),
        sa.CheckConstraint("kind IN ('video', 'images')", name="ck_jobs_kind"),
        _status_check(("queued", "running", "done", "failed", "cancelled"), "ck_jobs_status"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_table(
        "segments",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float()),
        sa.Column("status", sa.Text(), nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("worker", sa.Text()),
        sa.Column("frames", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("faces", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed_frames", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("warnings", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("error", sa.Text()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_segments_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "idx", name="pk_segments"),
        _status_check(("queued", "running", "done", "failed"), "ck_segments_status"),
    )
    op.create_table(
        "detections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("t", sa.Float()),
        sa.Column("track_id", sa.Integer()),
        sa.Column("x1", sa.Float()),
        sa.Column("y1", sa.Float()),
        sa.Column("x2", sa.Float()),
        sa.Column("y2", sa.Float()),
        sa.Column("det_score", sa.Float()),
        sa.Column("label", sa.Text()),
        sa.Column("confidence", sa.Float()),
        *(sa.Column(name, sa.Float()) for name in P_COLUMNS),
        sa.Column("truth", sa.Text()),
        sa.Column("source_path", sa.Text()),
        sa.Column("worker", sa.Text()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_detections_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
    )
    op.create_index("ix_detections_job_id_t", "detections", ["job_id", "t"])
    op.create_index("ix_detections_job_id_track_id", "detections", ["job_id", "track_id"])
    op.create_index("ix_detections_job_id_segment", "detections", ["job_id", "segment"])
    op.create_table(
        "job_stats",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("mean_probability", sa.Float()),
        sa.Column("mean_confidence", sa.Float()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_stats_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "label", name="pk_job_stats"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer()),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.Column("name", sa.Text()),
        sa.Column("model_name", sa.Text()),
        sa.Column("protocol", sa.Text()),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("accuracy_std", sa.Float()),
        sa.Column("folds", sa.Integer()),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("confusion", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_evaluations_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
    )
    op.create_index("ix_evaluations_job_id", "evaluations", ["job_id"])
    op.create_table(
        "evaluation_classes",
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("recall", sa.Float()),
        sa.Column("precision", sa.Float()),
        sa.Column("f1", sa.Float()),
        sa.Column("support", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name="fk_evaluation_classes_evaluation_id_evaluations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("evaluation_id", "label", name="pk_evaluation_classes"),
    )
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("evaluation_classes")
    op.drop_index("ix_evaluations_job_id", table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_table("job_stats")
    op.drop_index("ix_detections_job_id_segment", table_name="detections")
    op.drop_index("ix_detections_job_id_track_id", table_name="detections")
    op.drop_index("ix_detections_job_id_t", table_name="detections")
    op.drop_table("detections")
    op.drop_table("segments")
    op.drop_table("jobs")
