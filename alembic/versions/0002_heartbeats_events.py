"""Segment heartbeats, job events, one row per face per frame.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

* ``segments.heartbeat_at``: a running segment's worker refreshes it; a stale one marks a dead worker (recovery).
* ``job_events``: the per-file warnings and errors of a job, stored with it (not only logged).
* ``uq_detections_job_id_segment_frame_index_track_id``: one face (track) once per frame. Rows that an older
  release stored under a duplicate key (two frames given one index where a video's average rate is not its frame
  rate) keep their data and get ``frame_index = -id``, so that every row stays and the key is unique.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
UNIQUE = "uq_detections_job_id_segment_frame_index_track_id"


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("heartbeat_at", TIMESTAMP))
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer()),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"),
        sa.CheckConstraint("level IN ('warning', 'error')", name="ck_job_events_level"),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])
    op.execute(
        """UPDATE detections SET frame_index = -id WHERE id IN (
               SELECT d.id FROM detections d JOIN detections e
               ON e.job_id = d.job_id AND e.segment = d.segment AND e.frame_index = d.frame_index
                  AND e.track_id = d.track_id AND e.id < d.id)"""
    )
    op.create_index(UNIQUE, "detections", ["job_id", "segment", "frame_index", "track_id"], unique=True)


def downgrade() -> None:
    op.drop_index(UNIQUE, table_name="detections")
    op.drop_index("ix_job_events_job_id", table_name="job_events")
    op.drop_table("job_events")
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("heartbeat_at")
