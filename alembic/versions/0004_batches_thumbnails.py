"""Batches of jobs and face thumbnails.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

* ``jobs.batch``: the name of the batch a job was submitted in (``fervid submit --batch``), indexed.
* ``face_thumbnails``: small JPEG crops of each track's faces at its expression peaks (image jobs: one per face).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("batch", sa.Text()))
    op.create_index("ix_jobs_batch", "jobs", ["batch"])
    op.create_table(
        "face_thumbnails",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer()),
        sa.Column("t", sa.Float()),
        sa.Column("frame_index", sa.Integer()),
        sa.Column("source_path", sa.Text()),
        sa.Column("label", sa.Text()),
        sa.Column("probability", sa.Float()),
        sa.Column("truth", sa.Text()),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_face_thumbnails_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_face_thumbnails"),
    )
    op.create_index("ix_face_thumbnails_job_id_segment", "face_thumbnails", ["job_id", "segment"])


def downgrade() -> None:
    op.drop_index("ix_face_thumbnails_job_id_segment", table_name="face_thumbnails")
    op.drop_table("face_thumbnails")
    op.drop_index("ix_jobs_batch", table_name="jobs")
    op.drop_column("jobs", "batch")  # SQLite 3.35+ drops a column in place, leaving the views on jobs standing
