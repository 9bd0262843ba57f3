"""fervid.db: the schema, its migrations, job bookkeeping, bulk writes and reports (SQLite or PostgreSQL)."""

from fervid.db.engine import dispose_engines, get_engine
from fervid.db.jobs import (
    JobNotFoundError,
    begin_segment,
    create_job,
    fail_segment,
    get_job,
    list_jobs,
    set_status,
    unfinished_segments,
)
from fervid.db.migrate import current, database, downgrade, ensure_schema, upgrade
from fervid.db.reports import job_report, timeline_rows
from fervid.db.writes import finalize_job, label_pairs, remap_tracks, store_evaluation, write_segment

__all__ = [
    "JobNotFoundError",
    "begin_segment",
    "create_job",
    "current",
    "database",
    "dispose_engines",
    "downgrade",
    "ensure_schema",
    "fail_segment",
    "finalize_job",
    "get_engine",
    "get_job",
    "job_report",
    "label_pairs",
    "list_jobs",
    "remap_tracks",
    "set_status",
    "store_evaluation",
    "timeline_rows",
    "unfinished_segments",
    "upgrade",
    "write_segment",
]
