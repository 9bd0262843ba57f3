"""Smoothed readings, face descriptors and persons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

* ``detections``: ``person_id`` and the smoothed reading (``label_smoothed``, ``confidence_smoothed``, ``ps_<label>``),
  set when a job is finalized; rows stored before this revision get their raw reading as the smoothed one.
* ``segments.first_thumbnail``, ``last_thumbnail``: the segment's first and last sample, small, for cuts at borders.
* ``track_descriptors``: face descriptors of a few samples per track; ``persons``: a video job's persons.
* The views: ``fervid_timeline`` and ``fervid_track_summary`` gain the new columns; ``fervid_person_summary``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
P_LIST = ", ".join(f"p_{name}" for name in EXPRESSIONS)
PS_COLUMNS = tuple(f"ps_{name}" for name in EXPRESSIONS)
PS_LIST = ", ".join(PS_COLUMNS)


def _initial_views() -> dict[str, str]:
    """The views as revision 0001 created them (its module, loaded from this folder)."""
    spec = importlib.util.spec_from_file_location("fervid_migration_0001", Path(__file__).with_name("0001_initial.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VIEWS


VIEWS: dict[str, str] = {
    "fervid_timeline": f"""
        SELECT job_id, person_id, track_id, t, frame_index, source_path, x1, y1, x2, y2,
               label, confidence, {P_LIST}, truth, label_smoothed, confidence_smoothed, {PS_LIST}
        FROM detections""",
    # dominant label: the most frequent raw one, ties going to the alphabetically first
    "fervid_track_summary": """
        WITH tracks AS (
            SELECT job_id, track_id, MIN(t) AS first_t, MAX(t) AS last_t, COUNT(*) AS faces,
                   AVG(confidence) AS mean_confidence, MIN(person_id) AS person_id
            FROM detections GROUP BY job_id, track_id
        ), ranked AS (
            SELECT job_id, track_id, label,
                   ROW_NUMBER() OVER (PARTITION BY job_id, track_id ORDER BY COUNT(*) DESC, label) AS position
            FROM detections GROUP BY job_id, track_id, label
        )
        SELECT tracks.job_id, tracks.track_id, tracks.first_t, tracks.last_t, tracks.faces,
               ranked.label AS dominant_label, tracks.mean_confidence, tracks.person_id
        FROM tracks JOIN ranked
          ON ranked.job_id = tracks.job_id
         AND (ranked.track_id = tracks.track_id OR (ranked.track_id IS NULL AND tracks.track_id IS NULL))
         AND ranked.position = 1""",
    "fervid_person_summary": """
        SELECT persons.job_id, jobs.source, persons.person_id, persons.tracks, persons.first_t, persons.last_t,
               persons.seconds, persons.faces, persons.dominant_label, persons.label_changes_per_minute,
               persons.label_changes_per_minute_raw
        FROM persons JOIN jobs ON jobs.id = persons.job_id""",
}


def upgrade() -> None:
    for name in ("fervid_timeline", "fervid_track_summary"):
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("detections") as batch:
        batch.add_column(sa.Column("person_id", sa.Integer()))
        batch.add_column(sa.Column("label_smoothed", sa.Text()))
        batch.add_column(sa.Column("confidence_smoothed", sa.Float()))
        for name in PS_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float()))
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("first_thumbnail", sa.LargeBinary()))
        batch.add_column(sa.Column("last_thumbnail", sa.LargeBinary()))
    copies = ", ".join(f"ps_{name} = p_{name}" for name in EXPRESSIONS)
    op.execute(f"UPDATE detections SET label_smoothed = label, confidence_smoothed = confidence, {copies}")
    op.create_table(
        "track_descriptors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("t", sa.Float()),
        sa.Column("quality", sa.Float()),
        sa.Column("descriptor", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_track_descriptors_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_track_descriptors"),
    )
    op.create_index("ix_track_descriptors_job_id_segment", "track_descriptors", ["job_id", "segment"])
    op.create_table(
        "persons",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("tracks", sa.Integer(), nullable=False),
        sa.Column("first_t", sa.Float()),
        sa.Column("last_t", sa.Float()),
        sa.Column("seconds", sa.Float()),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("dominant_label", sa.Text()),
        sa.Column("shares", sa.JSON()),
        sa.Column("label_changes_per_minute", sa.Float()),
        sa.Column("label_changes_per_minute_raw", sa.Float()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_persons_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "person_id", name="pk_persons"),
    )
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select}")


#: The views of revision 0001 that read ``detections``: SQLite's batch mode rebuilds the table under them.
_ON_DETECTIONS = ("fervid_timeline", "fervid_track_summary", "fervid_job_summary")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP VIEW fervid_job_summary")
    op.drop_table("persons")
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("last_thumbnail")
        batch.drop_column("first_thumbnail")
    op.drop_index("ix_track_descriptors_job_id_segment", table_name="track_descriptors")
    op.drop_table("track_descriptors")
    with op.batch_alter_table("detections") as batch:
        for name in ("person_id", "label_smoothed", "confidence_smoothed", *PS_COLUMNS):
            batch.drop_column(name)
    initial = _initial_views()
    for name in _ON_DETECTIONS:
        op.execute(f"CREATE VIEW {name} AS {initial[name]}")
