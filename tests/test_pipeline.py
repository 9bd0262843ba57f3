"""The main job end to end on the embedded default: submit → rows in SQLite → statistics → report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared
from sqlalchemy import text
from typer.testing import CliRunner
from videos import frame_times, make_video

from fervid.db import database
from fervid.db.reports import job_report
from fervid.worker.jobs import Submission, submit


def _rows(settings, job_id: int, columns: str = "frame_index, t, track_id") -> list[dict]:
    query = text(f"SELECT {columns} FROM detections WHERE job_id = :j ORDER BY t, frame_index")
    with database(settings).connect() as conn:
        return [dict(r) for r in conn.execute(query, {"j": job_id}).mappings()]


@pytest.fixture
def whole_frame(embedded_settings):
    """Settings whose 'detector' takes every frame as one face, so each sampled frame gives exactly one row."""
    return embedded_settings.replace(detector="none")


@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
def test_video_job_samples_by_timestamp(tmp_path: Path, whole_frame, vfr: bool) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=3.0, fps=25, vfr=vfr)
    job_id = submit(Submission(str(video)), whole_frame.replace(sample_fps=5.0))
    times = [float(t) for t in frame_times(3.0, 25, vfr)]
    expected = [next(t for t in times if t >= k / 5 - 1e-9) for k in range(15)]
    expected = sorted(set(expected))
    rows = _rows(whole_frame, job_id)
    assert [r["t"] for r in rows] == pytest.approx(expected, abs=1e-6)
    job = job_report(database(whole_frame), job_id)
    assert job["status"] == "done" and job["frames_done"] == len(expected) == job["faces"]
    assert job["track_count"] == 1  # one whole-frame "face", stitched across the 1 s segments


def test_every_frame_and_segments_match_one_pass(tmp_path: Path, whole_frame) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=2.6, fps=10)
    segmented = submit(Submission(str(video), every_frame=True), whole_frame.replace(segment_seconds=0.7))
    whole = submit(Submission(str(video), every_frame=True), whole_frame.replace(segment_seconds=100.0))
    a, b = _rows(whole_frame, segmented), _rows(whole_frame, whole)
    assert len(a) == 26 and [r["frame_index"] for r in a] == list(range(26))
    assert [(r["frame_index"], r["t"]) for r in a] == [(r["frame_index"], r["t"]) for r in b]
    assert {r["track_id"] for r in a} == {0}
    segments = database(whole_frame).connect().execute(text("SELECT count(*) FROM segments WHERE job_id = :j"), {"j": segmented}).scalar()
    assert segments == 4


def _image_folder(root: Path) -> dict[str, int]:
    rng = np.random.default_rng(0)
    counts = {"happy": 5, "sadness": 4, "surprise": 3}  # "sadness" is an alias of sad
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / folder / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    return counts


def test_labelled_folder_statistics_equal_hand_computed(tmp_path: Path, embedded_settings) -> None:
    counts = _image_folder(tmp_path / "faces")
    job_id = submit(Submission(str(tmp_path / "faces")), embedded_settings)
    rows = _rows(embedded_settings, job_id, "truth, label")
    assert len(rows) == sum(counts.values())
    assert sorted({r["truth"] for r in rows}) == ["happy", "sad", "surprise"]
    report = job_report(database(embedded_settings), job_id)
    evaluation = report["evaluation"]
    classes = evaluation["classes"]
    confusion = np.zeros((len(classes), len(classes)), int)
    for truth, label in ((r["truth"], r["label"]) for r in rows):
        confusion[classes.index(truth), classes.index(label)] += 1
    assert evaluation["confusion"] == confusion.tolist()
    assert evaluation["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    for i, name in enumerate(classes):
        support = confusion[i].sum()
        assert evaluation["per_class"][name]["support"] == support
        recall = evaluation["per_class"][name]["recall"]
        assert recall == pytest.approx(confusion[i, i] / support) if support else recall is None  # no samples: NULL
    shares = {label: n / len(rows) for label, n in zip(*np.unique([r["label"] for r in rows], return_counts=True))}
    for label, share in shares.items():
        assert report["distribution"][label]["share"] == pytest.approx(share)


def test_video_labels_give_recall_statistics(tmp_path: Path, whole_frame) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=2.0, fps=10)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,label\n0,1,happy\n1.2,2,angry\n")
    job_id = submit(Submission(str(video), labels=str(labels)), whole_frame)
    rows = _rows(whole_frame, job_id, "t, truth")
    assert [r["truth"] for r in rows] == ["happy"] * 5 + [None] + ["anger"] * 4
    evaluation = job_report(database(whole_frame), job_id)["evaluation"]
    assert sum(map(sum, evaluation["confusion"])) == 9


def test_cli_submit_and_report_json(tmp_path: Path, whole_frame, monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.cli.app import app

    video = make_video(tmp_path / "v.mp4", seconds=1.0, fps=10)
    for name, value in [("FERVID_DATA_DIR", whole_frame.data_dir), ("FERVID_MODEL", whole_frame.model), ("FERVID_DETECTOR", "none")]:
        monkeypatch.setenv(name, str(value))
    runner = CliRunner()
    result = runner.invoke(app, ["submit", str(video)])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip().splitlines()[-1])
    result = runner.invoke(app, ["report", "--job", str(job_id), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "done" and data["frames_done"] == 5 and data["faces"] == 5
    assert sum(d["faces"] for d in data["distribution"].values()) == 5
    table = runner.invoke(app, ["report", "--job", str(job_id)])
    assert table.exit_code == 0 and "expression distribution" in table.stdout and "\x1b[" not in table.stdout
    listing = runner.invoke(app, ["jobs"])
    assert listing.exit_code == 0 and "done" in listing.stdout


@needs_shared
def test_face_clip_one_face_one_track(embedded_settings) -> None:
    job_id = submit(Submission(str(SHARED / "videos" / "face_clip.mp4")), embedded_settings.replace(segment_seconds=60.0))
    report = job_report(database(embedded_settings), job_id)
    frames_with_face = {r["frame_index"] for r in _rows(embedded_settings, job_id)}
    assert report["frames_done"] >= 20
    assert len(frames_with_face) >= 0.95 * report["frames_done"]
    biggest = max(report["tracks"], key=lambda t: t["faces"])
    assert biggest["faces"] >= 0.8 * report["frames_done"]


def test_a_job_whose_finalize_failed_is_finalized_by_a_redelivery(tmp_path: Path, whole_frame, monkeypatch) -> None:
    from fervid.db.jobs import get_job
    from fervid.worker import pipeline
    from fervid.worker.jobs import create

    video = make_video(tmp_path / "v.mp4", seconds=1.0, fps=10)
    engine = database(whole_frame)
    job_id = create(engine, Submission(str(video)), whole_frame)
    real = pipeline.finalize
    monkeypatch.setattr(pipeline, "finalize", lambda *a: (_ for _ in ()).throw(ConnectionError("database went away")))
    with pytest.raises(ConnectionError):
        pipeline.process_segment(engine, job_id, 0, whole_frame)
    assert get_job(engine, job_id)["status"] == "running"
    monkeypatch.setattr(pipeline, "finalize", real)
    assert pipeline.process_segment(engine, job_id, 0, whole_frame)  # the re-delivered message
    job = get_job(engine, job_id)
    assert job["status"] == "done" and job["faces"] == 5


def test_workers_resolve_the_job_model_by_name_and_checksum(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A worker on another machine does not have the submitter's path: shipped models come from its own install,
    custom ones from FERVID_MODEL_DIR by file name; the sha256 must be the job's."""
    import shutil

    from fervid.model.files import sha256_file
    from fervid.model.weights import Weights
    from fervid.worker.runtime import job_model

    shipped = Weights.FER2013_CSA.value
    assert job_model(shipped.name, "/elsewhere/fer2013-csa.pt", shipped.sha256, None) == str(shipped.path)
    sha = sha256_file(tiny_checkpoint)
    shared = tmp_path / "models"
    shared.mkdir()
    shutil.copy(tiny_checkpoint, shared / "custom.pt")
    gone = str(tmp_path / "submitter" / "custom.pt")
    assert job_model(gone, gone, sha, shared) == str(shared / "custom.pt")
    with pytest.raises(ValueError, match=r"is not on this worker: no .*custom.pt; set FERVID_MODEL_DIR"):
        job_model(gone, gone, sha, None)
    (shared / "custom.pt").write_bytes(b"another file")
    with pytest.raises(ValueError, match=r"custom.pt: sha256 .* but the job's model .* has sha256"):
        job_model(gone, gone, sha, shared)
    with pytest.raises(ValueError, match="sha256"):
        job_model(shipped.name, str(shipped.path), "0" * 64, None)
