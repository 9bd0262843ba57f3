"""fervid.db on SQLite and PostgreSQL: migrations, job bookkeeping, segment writes, statistics, reports and views."""

from __future__ import annotations

import json
import threading
from datetime import timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select

from fervid.db import (
    JobNotFoundError,
    begin_segment,
    create_job,
    current,
    downgrade,
    ensure_schema,
    fail_segment,
    finalize_job,
    get_engine,
    get_job,
    job_report,
    label_pairs,
    list_jobs,
    remap_tracks,
    set_status,
    store_evaluation,
    timeline_rows,
    unfinished_segments,
    upgrade,
    write_segment,
)
from fervid.db.migrate import head
from fervid.db.schema import (
    PROBABILITY_COLUMNS,
    detections,
    evaluation_classes,
    evaluations,
    fervid_job_summary,
    fervid_recall,
    fervid_timeline,
    fervid_track_summary,
    job_stats,
    metadata,
    views,
)

CLASSES = ["neutral", "happy", "sad"]


@pytest.fixture
def engine(db_url: str) -> Engine:
    upgrade(db_url)
    return get_engine(db_url)


def row(
    frame_index: int, t: float | None, track_id: int, label: str, probs: tuple[float, float, float], **extra: object
) -> dict[str, object]:
    """A detection with p_neutral, p_happy, p_sad set (the other classes missing: NULL)."""
    return {
        "frame_index": frame_index,
        "t": t,
        "track_id": track_id,
        "x1": 10.0,
        "y1": 20.0,
        "x2": 60.0,
        "y2": 80.0,
        "det_score": 0.9,
        "label": label,
        "confidence": max(probs),
        **{f"p_{name}": p for name, p in zip(CLASSES, probs, strict=True)},
        **extra,
    }


def new_job(engine: Engine, n_segments: int = 2, duration: float | None = 10.0, kind: str = "video") -> int:
    bounds = [(i * 5.0, (i + 1) * 5.0) for i in range(n_segments - 1)] + [((n_segments - 1) * 5.0, None)]
    return create_job(
        engine,
        source="clip.mp4",
        kind=kind,
        params={"sample_fps": 5.0},
        model_name="fer2013-csa",
        model_sha256="ab" * 32,
        classes=CLASSES,
        segments=bounds,
        duration=duration,
        frames_total=50,
    )


# Segment 0 has local tracks 0 (A) and 1 (B); segment 1 has local tracks 0 (B again) and 1 (C).
SEGMENT_0 = [
    row(0, 0.0, 0, "happy", (0.1, 0.8, 0.1), truth="happy"),
    row(5, 1.0, 0, "happy", (0.2, 0.7, 0.1)),
    row(5, 1.0, 1, "sad", (0.1, 0.2, 0.7)),
    row(10, 2.0, 0, "neutral", (0.6, 0.3, 0.1), truth="sad"),
]
SEGMENT_1 = [
    row(30, 6.0, 0, "happy", (0.1, 0.9, 0.0)),
    row(35, 7.0, 0, "happy", (0.3, 0.6, 0.1)),
    row(47, 9.5, 1, "sad", (0.2, 0.2, 0.6)),
    row(50, 10.0, 1, "sad", (0.1, 0.1, 0.8)),
]
# (1, 0) -> 1 then (1, 1) -> 2 would renumber B's rows twice if applied one after the other.
TRACKS = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}


@pytest.fixture
def finished_job(engine: Engine) -> int:
    job_id = new_job(engine)
    assert begin_segment(engine, job_id, 0, "w0")
    assert not write_segment(engine, job_id, 0, SEGMENT_0, frames=15, failed_frames=1, worker="w0")
    assert begin_segment(engine, job_id, 1, "w1")
    assert write_segment(engine, job_id, 1, SEGMENT_1, frames=25, warnings=2, worker="w1")
    remap_tracks(engine, job_id, TRACKS)
    finalize_job(engine, job_id, processing_seconds=4.0)
    return job_id


def test_migrations_upgrade_downgrade_upgrade(db_url: str) -> None:
    assert current(db_url) is None
    upgrade(db_url)
    assert current(db_url) == head() == "0004"
    engine = get_engine(db_url)
    inspector = inspect(engine)
    assert set(metadata.tables) <= set(inspector.get_table_names())
    assert set(views.tables) <= set(inspector.get_view_names())
    with engine.connect() as conn:  # schema.py describes exactly what the migrations create
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []

    downgrade(db_url)
    assert current(db_url) is None
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) <= {"alembic_version"}
    assert inspector.get_view_names() == []

    ensure_schema(db_url)
    assert current(db_url) == "0004"
    ensure_schema(db_url)  # already current: a no-op
    assert set(views.tables) <= set(inspect(engine).get_view_names())


def test_create_and_get_job(engine: Engine) -> None:
    job_id = new_job(engine, n_segments=3)
    job = get_job(engine, job_id)
    assert job["status"] == "queued"
    assert job["classes"] == CLASSES
    assert job["params"] == {"sample_fps": 5.0}
    assert (job["segments_total"], job["segments_done"], job["faces"], job["frames_done"]) == (3, 0, 0, 0)
    assert job["created_at"].tzinfo is not None and job["created_at"].utcoffset().total_seconds() == 0
    assert unfinished_segments(engine, job_id) == [0, 1, 2]
    other = new_job(engine)
    assert [j["id"] for j in list_jobs(engine)] == [other, job_id]
    assert [j["id"] for j in list_jobs(engine, limit=1)] == [other]


def test_job_not_found(engine: Engine) -> None:
    with pytest.raises(JobNotFoundError, match="job 12345 does not exist") as info:
        get_job(engine, 12345)
    assert isinstance(info.value, LookupError) and info.value.job_id == 12345
    for call in (
        lambda: set_status(engine, 12345, "running"),
        lambda: begin_segment(engine, 12345, 0, "w"),
        lambda: write_segment(engine, 12345, 0, [], frames=0),
        lambda: finalize_job(engine, 12345, processing_seconds=1.0),
        lambda: job_report(engine, 12345),
    ):
        with pytest.raises(JobNotFoundError):
            call()


def test_status_timestamps(engine: Engine) -> None:
    job_id = new_job(engine)
    set_status(engine, job_id, "running")
    started = get_job(engine, job_id)["started_at"]
    assert started.tzinfo == timezone.utc and get_job(engine, job_id)["finished_at"] is None
    set_status(engine, job_id, "running")
    assert get_job(engine, job_id)["started_at"] == started  # stamped once
    set_status(engine, job_id, "failed", error="decoder crashed")
    job = get_job(engine, job_id)
    assert (job["status"], job["error"]) == ("failed", "decoder crashed")
    assert job["finished_at"] >= started
    with pytest.raises(ValueError, match="unknown job status"):
        set_status(engine, job_id, "paused")


def test_begin_segment_claims(engine: Engine) -> None:
    job_id = new_job(engine)
    assert begin_segment(engine, job_id, 0, "w0")
    assert begin_segment(engine, job_id, 0, "w1")  # a retry counts a second attempt
    job = get_job(engine, job_id)
    assert (job["status"], job["worker"]) == ("running", "w1") and job["started_at"] is not None
    write_segment(engine, job_id, 0, SEGMENT_0, frames=15)
    assert not begin_segment(engine, job_id, 0, "w2")  # done
    assert unfinished_segments(engine, job_id) == [1]
    with pytest.raises(LookupError, match="no segment 7"):
        begin_segment(engine, job_id, 7, "w0")
    set_status(engine, job_id, "cancelled")
    assert not begin_segment(engine, job_id, 1, "w0")
    assert not write_segment(engine, job_id, 1, SEGMENT_1, frames=25)
    assert unfinished_segments(engine, job_id) == [1]
    with engine.connect() as conn:
        attempts = conn.scalar(select(func.max(detections.c.segment)).where(detections.c.job_id == job_id))
    assert attempts == 0  # nothing written for the cancelled job's segment


def test_retried_segment_is_written_once(engine: Engine) -> None:
    job_id = new_job(engine)
    assert begin_segment(engine, job_id, 0, "w1")
    fail_segment(engine, job_id, 0, "killed")  # a first attempt that stored nothing
    assert begin_segment(engine, job_id, 0, "w9")
    assert not write_segment(engine, job_id, 0, SEGMENT_0[:3], frames=14, failed_frames=2, worker="w9")
    with engine.connect() as conn:
        count = conn.scalar(select(func.count()).select_from(detections).where(detections.c.job_id == job_id))
    assert count == 3
    job = get_job(engine, job_id)
    assert (job["faces"], job["frames_done"], job["failed_frames"], job["segments_done"]) == (3, 14, 2, 1)
    assert job["worker"] == "w9"


def test_duplicate_delivery_keeps_the_first_rows(engine: Engine) -> None:
    job_id = new_job(engine)
    assert not write_segment(engine, job_id, 0, SEGMENT_0, frames=15, failed_frames=1)
    assert not write_segment(engine, job_id, 0, SEGMENT_0[:3], frames=14, failed_frames=2, worker="w9")
    job = get_job(engine, job_id)
    assert (job["faces"], job["frames_done"], job["failed_frames"], job["segments_done"]) == (len(SEGMENT_0), 15, 1, 1)

    assert write_segment(engine, job_id, 1, SEGMENT_1, frames=25, warnings=2)
    assert not write_segment(engine, job_id, 1, SEGMENT_1, frames=25, warnings=2)  # already done: no second True
    job = get_job(engine, job_id)
    assert (job["faces"], job["frames_done"], job["warnings"], job["segments_done"]) == (len(SEGMENT_0) + len(SEGMENT_1), 40, 2, 2)
    assert unfinished_segments(engine, job_id) == []


def test_write_segment_rejects_unknown_columns(engine: Engine) -> None:
    job_id = new_job(engine)
    with pytest.raises(ValueError, match="unknown detection columns"):
        write_segment(engine, job_id, 0, [{**SEGMENT_0[0], "p_joy": 0.5}], frames=1)


def finish_concurrently(engine: Engine, job_id: int, indices: tuple[int, ...]) -> list[bool]:
    """Write the segments from one thread each, all released at once; the return values."""
    barrier = threading.Barrier(len(indices))
    results: dict[int, bool] = {}

    def finish(idx: int) -> None:
        barrier.wait()
        results[idx] = write_segment(engine, job_id, idx, SEGMENT_1, frames=10, worker=f"w{idx}")

    threads = [threading.Thread(target=finish, args=(idx,)) for idx in indices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[idx] for idx in indices]


def test_last_segment_reported_once_under_concurrency(engine: Engine) -> None:
    for _ in range(3):
        job_id = new_job(engine, n_segments=4)
        for idx in (0, 1):
            assert not write_segment(engine, job_id, idx, SEGMENT_0, frames=10)
        assert sorted(finish_concurrently(engine, job_id, (2, 3))) == [False, True]
        job = get_job(engine, job_id)
        assert (job["segments_done"], job["faces"], job["frames_done"]) == (4, 16, 40)


def test_remap_tracks(engine: Engine, finished_job: int) -> None:
    with engine.connect() as conn:
        pairs = conn.execute(
            select(detections.c.segment, detections.c.t, detections.c.track_id)
            .where(detections.c.job_id == finished_job)
            .order_by(detections.c.t, detections.c.track_id)
        ).all()
    assert [(s, t, k) for s, t, k in pairs] == [
        (0, 0.0, 0), (0, 1.0, 0), (0, 1.0, 1), (0, 2.0, 0), (1, 6.0, 1), (1, 7.0, 1), (1, 9.5, 2), (1, 10.0, 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="non-negative"):
        remap_tracks(engine, finished_job, {(0, 0): -1})


def test_finalize_stats(engine: Engine, finished_job: int) -> None:
    with engine.connect() as conn:
        stats = {
            r["label"]: r for r in conn.execute(select(job_stats).where(job_stats.c.job_id == finished_job)).mappings()
        }
    assert set(stats) == set(CLASSES)  # the model's classes; none for those it lacks
    # 8 faces: happy 4 (confidences .8 .7 .9 .6), sad 3 (.7 .6 .8), neutral 1 (.6)
    expected = {
        "neutral": (1, 0.125, 1.7 / 8, 0.6),
        "happy": (4, 0.5, 3.8 / 8, 0.75),
        "sad": (3, 0.375, 2.5 / 8, 0.7),
    }
    for label, (faces, share, mean_probability, mean_confidence) in expected.items():
        got = stats[label]
        assert got["faces"] == faces
        assert got["share"] == pytest.approx(share)
        assert got["mean_probability"] == pytest.approx(mean_probability)
        assert got["mean_confidence"] == pytest.approx(mean_confidence)
    job = get_job(engine, finished_job)
    assert (job["status"], job["processing_seconds"]) == ("done", 4.0) and job["finished_at"] is not None
    finalize_job(engine, finished_job, processing_seconds=5.0)  # recomputing replaces, never duplicates
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(job_stats).where(job_stats.c.job_id == finished_job)) == 3
    assert label_pairs(engine, finished_job) == (["happy", "sad"], ["happy", "neutral"])


def evaluate(engine: Engine, job_id: int | None, accuracy: float) -> int:
    return store_evaluation(
        engine,
        job_id=job_id,
        name="clip",
        model_name="fer2013-csa",
        protocol="holdout",
        classes=CLASSES,
        accuracy=accuracy,
        confusion=[[0, 0, 0], [0, 1, 0], [1, 0, 0]],
        per_class={
            "neutral": {"recall": 0.0, "precision": 0.0, "f1": 0.0, "support": 0},
            "happy": {"recall": 1.0, "precision": 1.0, "f1": 1.0, "support": 1},
            "sad": {"recall": 0.0, "precision": 0.0, "f1": 0.0, "support": 1},
        },
        params={"seed": 0},
    )


def test_store_evaluation_replaces_the_jobs_evaluation(engine: Engine, finished_job: int) -> None:
    standalone = evaluate(engine, None, 0.9)
    evaluate(engine, finished_job, 0.4)
    second = evaluate(engine, finished_job, 0.5)
    with engine.connect() as conn:
        kept = conn.execute(select(evaluations.c.id, evaluations.c.accuracy).order_by(evaluations.c.id)).all()
        classes = conn.scalars(select(evaluation_classes.c.evaluation_id).distinct()).all()
    assert [tuple(r) for r in kept] == [(standalone, 0.9), (second, 0.5)]
    assert sorted(classes) == sorted([standalone, second])  # the replaced evaluation's classes went with it


def test_job_report(engine: Engine, finished_job: int) -> None:
    evaluate(engine, finished_job, 0.5)
    report = job_report(engine, finished_job, timeline_width=10)
    json.dumps(report)
    assert (report["source"], report["kind"], report["status"]) == ("clip.mp4", "video", "done")
    assert (report["faces"], report["track_count"], report["frames_done"]) == (8, 3, 40)
    assert (report["failed_frames"], report["warnings"], report["model_sha256"]) == (1, 2, "ab" * 32)
    assert report["speed"] == pytest.approx(10.0 / 4.0)
    assert list(report["distribution"]) == CLASSES
    assert report["distribution"]["happy"]["faces"] == 4
    assert report["distribution"]["happy"]["mean_probability"] == pytest.approx(0.475)
    tracks = {t["id"]: t for t in report["tracks"]}
    assert (tracks[0]["first_t"], tracks[0]["last_t"], tracks[0]["faces"]) == (0.0, 2.0, 3)
    assert tracks[0]["dominant_label"] == "happy"
    assert tracks[0]["shares"] == pytest.approx({"happy": 2 / 3, "neutral": 1 / 3})
    assert tracks[1]["dominant_label"] == "happy" and tracks[2]["dominant_label"] == "sad"
    # one-second bins over the 10 s video; t = 10.0 falls into the last bin
    assert tracks[0]["timeline"] == "hhn......."
    assert tracks[1]["timeline"] == ".s....hh.."
    assert tracks[2]["timeline"] == ".........s"
    evaluation = report["evaluation"]
    assert evaluation["accuracy"] == 0.5 and evaluation["classes"] == CLASSES
    assert evaluation["confusion"] == [[0, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert evaluation["per_class"]["happy"] == {"recall": 1.0, "precision": 1.0, "f1": 1.0, "support": 1}


def test_views_match_report(engine: Engine, finished_job: int) -> None:
    evaluate(engine, finished_job, 0.5)
    report = job_report(engine, finished_job)
    with engine.connect() as conn:
        summary = (
            conn.execute(select(fervid_job_summary).where(fervid_job_summary.c.job_id == finished_job)).mappings().one()
        )
        tracks = (
            conn.execute(select(fervid_track_summary).where(fervid_track_summary.c.job_id == finished_job))
            .mappings()
            .all()
        )
        recall = conn.execute(select(fervid_recall).where(fervid_recall.c.job_id == finished_job)).mappings().all()
        timeline_count = conn.scalar(
            select(func.count()).select_from(fervid_timeline).where(fervid_timeline.c.job_id == finished_job)
        )
    assert (summary["faces"], summary["tracks"], summary["frames"]) == (
        report["faces"],
        report["track_count"],
        report["frames_done"],
    )
    assert (summary["status"], summary["duration"], summary["model_name"]) == ("done", 10.0, "fer2013-csa")
    assert sorted((t["track_id"], t["first_t"], t["last_t"], t["faces"], t["dominant_label"]) for t in tracks) == [
        (t["id"], t["first_t"], t["last_t"], t["faces"], t["dominant_label"]) for t in report["tracks"]
    ]
    assert {r["label"]: r["recall"] for r in recall} == {
        label: m["recall"] for label, m in report["evaluation"]["per_class"].items()
    }
    assert timeline_count == report["faces"]


def test_timeline_rows_streams_in_order(engine: Engine, finished_job: int) -> None:
    rows = list(timeline_rows(engine, finished_job, batch=3))
    assert [(r["t"], r["track_id"]) for r in rows] == [
        (0.0, 0), (1.0, 0), (1.0, 1), (2.0, 0), (6.0, 1), (7.0, 1), (9.5, 2), (10.0, 2)
    ]  # fmt: skip
    assert rows[0]["p_happy"] == 0.8 and rows[0]["p_contempt"] is None
    assert set(PROBABILITY_COLUMNS) <= set(rows[0])


def test_image_job_report(engine: Engine) -> None:
    job_id = new_job(engine, n_segments=1, duration=None, kind="images")
    rows = [
        row(i, None, i, label, probs, source_path=f"faces/{i}.png", truth="happy")
        for i, (label, probs) in enumerate([("happy", (0.1, 0.8, 0.1)), ("sad", (0.1, 0.1, 0.8))])
    ]
    assert write_segment(engine, job_id, 0, rows, frames=2)
    finalize_job(engine, job_id, processing_seconds=1.0)
    report = job_report(engine, job_id)
    assert report["speed"] is None and report["track_count"] == 2
    assert all(track["timeline"] is None for track in report["tracks"])
    assert [r["source_path"] for r in timeline_rows(engine, job_id)] == ["faces/0.png", "faces/1.png"]
    assert label_pairs(engine, job_id) == (["happy", "happy"], ["happy", "sad"])


def test_migration_0002_keeps_rows_stored_under_a_duplicate_key(db_url: str) -> None:
    """An older release could store two frames under one index; 0002 keeps both rows (the later one gets
    ``frame_index = -id``) and from then on the schema refuses a second row for one face in one frame."""
    import sqlalchemy.exc
    from sqlalchemy import insert, text

    upgrade(db_url, "0001")
    engine = get_engine(db_url)
    with engine.begin() as conn:
        job = conn.execute(
            text("INSERT INTO jobs (source, kind, status) VALUES ('v.mp4', 'video', 'done') RETURNING id")
        ).scalar_one()
        for t in (1.64, 1.68, 1.72):
            conn.execute(
                text("INSERT INTO detections (job_id, segment, frame_index, t, track_id) VALUES (:j, 0, :f, :t, 0)"),
                {"j": job, "f": 41 if t < 1.7 else 42, "t": t},
            )
    upgrade(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, frame_index, t FROM detections ORDER BY t")).all()
    assert [(r[1], r[2]) for r in rows] == [(41, 1.64), (-rows[1][0], 1.68), (42, 1.72)]
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert(detections).values(job_id=job, segment=0, frame_index=41, t=1.64, track_id=0))


def test_migration_0003_gives_stored_rows_their_raw_reading_as_the_smoothed_one(db_url: str) -> None:
    """Rows stored before smoothing existed read the same through every view after 0003; a downgrade to 0002
    restores the earlier views."""
    from sqlalchemy import text

    upgrade(db_url, "0002")
    engine = get_engine(db_url)
    with engine.begin() as conn:
        job = conn.execute(
            text("INSERT INTO jobs (source, kind, status) VALUES ('v.mp4', 'video', 'done') RETURNING id")
        ).scalar_one()
        conn.execute(
            text("INSERT INTO detections (job_id, segment, frame_index, t, track_id, label, confidence, p_happy, p_sad) "
                 "VALUES (:j, 0, 0, 0.0, 0, 'happy', 0.8, 0.8, 0.2)"),
            {"j": job},
        )  # fmt: skip
    upgrade(db_url)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT label_smoothed, confidence_smoothed, ps_happy, ps_sad, ps_fear, person_id FROM fervid_timeline")
        ).one()
    assert tuple(row) == ("happy", 0.8, 0.8, 0.2, None, None)
    downgrade(db_url, "0002")
    inspector = inspect(engine)
    assert "persons" not in inspector.get_table_names() and "fervid_person_summary" not in inspector.get_view_names()
    assert "label_smoothed" not in {c["name"] for c in inspector.get_columns("fervid_timeline")}


def test_stale_segments_are_claimed_once(db_url: str) -> None:
    """A running segment whose heartbeat stopped is claimed by one caller only; a beating one is not claimed."""
    from datetime import timedelta

    from sqlalchemy import update

    from fervid.db.jobs import beat, claim_stale_segments
    from fervid.db.schema import segments, utcnow

    engine = get_engine(db_url)
    ensure_schema(db_url)
    job_id = create_job(engine, source="v.mp4", kind="video", params={}, model_name="m", model_sha256="0" * 64,
                        classes=["happy"], segments=[(0.0, 1.0), (1.0, None)])  # fmt: skip
    assert begin_segment(engine, job_id, 0, "host:1") and begin_segment(engine, job_id, 1, "host:2")
    old = utcnow() - timedelta(seconds=120)
    with engine.begin() as conn:
        conn.execute(update(segments).where(segments.c.job_id == job_id).values(heartbeat_at=old))
    assert beat(engine, job_id, 1, "host:2")  # the second worker is alive
    assert not beat(engine, job_id, 1, "host:3")  # not its segment
    assert claim_stale_segments(engine, 60.0) == {job_id: [0]}
    assert claim_stale_segments(engine, 60.0) == {}  # claimed: its heartbeat was renewed


def test_readme_sql_examples_run(db_url: str, tmp_path, tiny_checkpoint) -> None:
    """Every SQL example in the README runs on SQLite and PostgreSQL, against job 1 — a labelled video job."""
    import re
    from pathlib import Path

    from sqlalchemy import text

    from fervid.db import database
    from fervid.settings import get_settings
    from fervid.worker.jobs import Submission, submit

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", readme, re.S)
    statements = [
        sql for block in blocks for part in block.split(";")
        if (sql := "\n".join(line for line in part.splitlines() if not line.strip().startswith("--")).strip())
    ]  # fmt: skip
    assert len(statements) >= 5
    from videos import make_video

    video = make_video(tmp_path / "v.mp4", seconds=3.0, fps=10)
    (tmp_path / "labels.csv").write_text("start,end,label\n0,1.5,happy\n1.5,3,sad\n")
    settings = get_settings(data_dir=tmp_path, database_url=db_url, broker_url="", model=str(tiny_checkpoint), detector="none")
    assert submit(Submission(str(video), labels=str(tmp_path / "labels.csv")), settings) == 1
    with database(settings).connect() as conn:
        for statement in statements:
            conn.execute(text(statement)).all()
        assert conn.execute(text("SELECT count(*) FROM fervid_recall WHERE job_id = 1")).scalar() > 0


def test_head_is_alembics_head() -> None:
    """The cheap head (the highest-numbered migration file) is the head of Alembic's revision graph."""
    from alembic.script import ScriptDirectory

    from fervid.db.migrate import script_location

    assert head() == ScriptDirectory(str(script_location())).get_current_head()
