"""Timeline exports (fervid.report.export) on SQLite and PostgreSQL: CSV, JSON Lines and Parquet, per frame and per
second, compared with SQL queries on the detections table.

Also holds the synthetic jobs that tests/test_figures.py draws.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from fervid.db import create_job, finalize_job, get_engine, store_evaluation, upgrade, write_segment
from fervid.db.jobs import JobNotFoundError
from fervid.db.schema import PROBABILITY_COLUMNS, detections
from fervid.expressions import EXPRESSIONS
from fervid.model.metrics import classification_report
from fervid.report import export as export_module
from fervid.report.export import IMAGE_COLUMNS, SECOND_COLUMNS, VIDEO_COLUMNS, export_timeline, per_second

#: The synthetic model lacks "contempt": its probability column stays NULL.
CLASSES = list(EXPRESSIONS[:7])
FPS = 5.0
DURATION = 20.0
SEGMENTS = [(0.0, 10.0), (10.0, None)]
#: (truth folder, prediction) of the labelled image job: 9 of 12 right.
IMAGES = [("neutral", "neutral")] * 3 + [("neutral", "happy")] + [("happy", "happy")] * 4
IMAGES += [("sad", "sad")] * 2 + [("sad", "neutral"), ("sad", "fear")]


def _probabilities(t: float, track: int) -> list[float]:
    logits = 3.0 * np.sin(0.3 * t + np.arange(len(CLASSES)) + 2.0 * track)
    p = np.exp(logits - logits.max())
    return (p / p.sum()).tolist()


def _prediction(p: list[float]) -> dict[str, Any]:
    best = int(np.argmax(p))
    return {"label": CLASSES[best], "confidence": p[best], **{f"p_{c}": v for c, v in zip(CLASSES, p)}}


def video_rows() -> list[dict[str, Any]]:
    """20 s sampled at 5 fps: track 0 throughout, track 1 from 5 s to 15 s."""
    rows = []
    for i in range(int(DURATION * FPS)):
        t = i / FPS
        for track in (0, 1) if 5.0 <= t < 15.0 else (0,):
            box = {"x1": 10.0 + 200 * track, "y1": 20.0, "x2": 90.0 + 200 * track, "y2": 110.0}
            rows.append({"frame_index": 6 * i, "t": t, "track_id": track, **box, "det_score": 0.9,
                         **_prediction(_probabilities(t, track))})  # fmt: skip
    return rows


def new_job(engine: Engine, kind: str, segments: list[tuple[float, float | None]], **fields: Any) -> int:
    fields.setdefault("source", "/data/interview.mp4" if kind == "video" else "/data/faces")
    return create_job(
        engine, kind=kind,
        params={"sample_fps": FPS}, model_name="fer2013-csa", model_sha256="ab" * 32, classes=CLASSES,
        segments=segments, **fields,
    )  # fmt: skip


def video_job(engine: Engine, **fields: Any) -> int:
    """A finished, unlabelled two-segment video job (:func:`video_rows`)."""
    job_id = new_job(engine, "video", SEGMENTS, duration=DURATION, frames_total=int(DURATION * 30), **fields)
    rows = video_rows()
    for idx, (start, end) in enumerate(SEGMENTS):
        part = [row for row in rows if start <= row["t"] and (end is None or row["t"] < end)]
        write_segment(engine, job_id, idx, part, frames=50)
    finalize_job(engine, job_id, processing_seconds=2.0)
    return job_id


def image_job(engine: Engine) -> int:
    """A finished image-folder job with class-folder ground truth (:data:`IMAGES`) and its evaluation."""
    job_id = new_job(engine, "images", [(0.0, None)], frames_total=len(IMAGES))
    rows = []
    for i, (truth, label) in enumerate(IMAGES):
        p = [0.7 if c == label else 0.05 for c in CLASSES]
        rows.append({"frame_index": i, "track_id": 0, "source_path": f"{truth}/img_{i:02d}.png", "truth": truth,
                     "x1": 0.0, "y1": 0.0, "x2": 48.0, "y2": 48.0, **_prediction(p)})  # fmt: skip
    write_segment(engine, job_id, 0, rows, frames=len(IMAGES))
    report = classification_report([t for t, _ in IMAGES], [p for _, p in IMAGES], CLASSES)
    store_evaluation(
        engine, job_id=job_id, name="/data/faces", model_name="fer2013-csa", protocol="job", classes=report.classes,
        accuracy=report.accuracy, confusion=report.confusion, per_class=report.per_class,
    )  # fmt: skip
    finalize_job(engine, job_id, processing_seconds=1.0)
    return job_id


@pytest.fixture
def engine(db_url: str) -> Engine:
    upgrade(db_url)
    return get_engine(db_url)


def expected_rows(engine: Engine, job_id: int, columns: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    d = detections.c
    query = select(*(d[name] for name, _ in columns)).where(d.job_id == job_id)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(d.t, d.track_id, d.frame_index, d.source_path)).mappings()
        return [dict(row) for row in rows]


def parse_csv(text: str, columns: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == [name for name, _ in columns]
    kinds = {"int": int, "float": float, "str": str}
    return [
        {name: None if value == "" else kinds[kind](value) for (name, kind), value in zip(columns, row)}
        for row in reader
    ]


def read_export(path: Path, fmt: str, columns: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    if fmt == "csv":
        return parse_csv(path.read_text(encoding="utf-8"), columns)
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(path)
    assert table.column_names == [name for name, _ in columns]
    return table.to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_frame_export_equals_the_detections(engine: Engine, tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    job_id = video_job(engine)
    target = tmp_path / f"timeline.{fmt}"
    count = export_timeline(engine, job_id, fmt, target)
    expected = expected_rows(engine, job_id, VIDEO_COLUMNS)
    assert count == len(expected) == len(video_rows())
    assert read_export(target, fmt, VIDEO_COLUMNS) == expected
    assert expected[0]["p_contempt"] is None and expected[0]["p_happy"] is not None


def test_image_export_has_paths_and_truth(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = image_job(engine)
    assert export_timeline(engine, job_id, "csv", None) == len(IMAGES)
    exported = parse_csv(capsys.readouterr().out, IMAGE_COLUMNS)
    assert exported == expected_rows(engine, job_id, IMAGE_COLUMNS)
    assert sorted((row["truth"], row["label"]) for row in exported) == sorted(IMAGES)
    assert all(row["source_path"].startswith(row["truth"] + "/") for row in exported)


def test_per_second_export_equals_sql_means(engine: Engine, tmp_path: Path) -> None:
    job_id = video_job(engine)
    target = tmp_path / "seconds.jsonl"
    count = export_timeline(engine, job_id, "jsonl", target, per="second")
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for row in expected_rows(engine, job_id, VIDEO_COLUMNS):
        groups[(math.floor(row["t"]), row["track_id"])].append(row)
    exported = read_export(target, "jsonl", SECOND_COLUMNS)
    assert count == len(exported) == len(groups) == 20 + 10  # track 1 lives 10 s
    assert [(r["second"], r["track_id"]) for r in exported] == sorted(groups)
    for record in exported:
        rows = groups[(record["second"], record["track_id"])]
        assert record["faces"] == len(rows) == FPS
        means = {c: sum(r[f"p_{c}"] for r in rows) / len(rows) for c in CLASSES}
        assert {c: record[f"p_{c}"] for c in CLASSES} == pytest.approx(means)
        assert record["p_contempt"] is None
        assert record["label"] == max(means, key=means.get)
        assert record["confidence"] == pytest.approx(means[record["label"]])


def test_per_second_hand_computed(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    job_id = new_job(engine, "video", [(0.0, None)], duration=2.0)

    def face(t: float, track: int, neutral: float, happy: float | None) -> dict[str, Any]:
        return {"frame_index": int(t * 10), "t": t, "track_id": track, "label": "neutral", "confidence": neutral,
                "p_neutral": neutral, "p_happy": happy}  # fmt: skip

    rows = [face(0.0, 0, 0.2, 0.8), face(0.5, 0, 0.6, 0.4), face(0.9, 1, 0.7, None), face(1.2, 0, 0.5, 0.5)]
    write_segment(engine, job_id, 0, rows, frames=4)
    finalize_job(engine, job_id, processing_seconds=1.0)
    target = tmp_path / "seconds.csv"
    assert export_timeline(engine, job_id, "csv", target, per="second") == 3
    got = [{k: v for k, v in row.items() if v is not None} for row in parse_csv(target.read_text(), SECOND_COLUMNS)]
    assert got == [
        {"job_id": job_id, "track_id": 0, "second": 0, "faces": 2, "label": "happy", "confidence": pytest.approx(0.6),
         "p_neutral": pytest.approx(0.4), "p_happy": pytest.approx(0.6)},
        {"job_id": job_id, "track_id": 1, "second": 0, "faces": 1, "label": "neutral", "confidence": 0.7,
         "p_neutral": 0.7},  # p_happy NULL: skipped like SQL's AVG
        {"job_id": job_id, "track_id": 0, "second": 1, "faces": 1, "label": "neutral", "confidence": 0.5,
         "p_neutral": 0.5, "p_happy": 0.5},  # a tie goes to the first class in canonical order
    ]  # fmt: skip


def test_per_second_streams() -> None:
    """A second's records come out as soon as the next second starts, before later rows are read."""

    def rows():
        for t in (0.1, 0.6, 1.3):
            yield {"job_id": 1, "track_id": 0, "t": t, "frame_index": 0, **dict.fromkeys(PROBABILITY_COLUMNS, 0.5)}
        raise AssertionError("read past the second that was asked for")

    records = per_second(rows())
    assert next(records)["faces"] == 2
    with pytest.raises(AssertionError, match="read past"):
        next(records)


def test_parquet_is_written_in_record_batches(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(export_module, "BATCH_ROWS", 40)
    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    job_id = video_job(engine)
    target = tmp_path / "timeline.parquet"
    assert export_timeline(engine, job_id, "parquet", target) == len(video_rows()) == 150
    metadata = pq.ParquetFile(target).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [40, 40, 40, 30]
    assert pq.read_table(target).to_pylist() == expected_rows(engine, job_id, VIDEO_COLUMNS)


def test_export_errors(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    images = image_job(engine)
    video = video_job(engine)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        export_timeline(engine, video, "csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_timeline(engine, video, "csv", tmp_path / "missing" / "timeline.csv")
    with pytest.raises(ValueError, match="unknown export format"):
        export_timeline(engine, video, "xlsx", tmp_path / "timeline.xlsx")
    with pytest.raises(ValueError, match="granularity"):
        export_timeline(engine, video, "csv", tmp_path / "timeline.csv", per="minute")
    with pytest.raises(ValueError, match="output file"):
        export_timeline(engine, video, "parquet", None)
    with pytest.raises(ValueError, match="no times"):
        export_timeline(engine, images, "csv", tmp_path / "timeline.csv", per="second")
    with pytest.raises(JobNotFoundError):
        export_timeline(engine, 999, "csv", tmp_path / "timeline.csv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match=r"fervid\[parquet\]"):
        export_timeline(engine, video, "parquet", tmp_path / "timeline.parquet")
    assert list(tmp_path.glob("timeline.*")) == []
