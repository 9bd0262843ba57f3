"""Many inputs per command: `fervid submit a.mp4 folder/ images/ --batch NAME` makes one job per video and per image
folder, embedded and distributed; `fervid jobs --batch` and `fervid report --batch` (table, JSON, CSV, HTML)
compare the jobs of a batch; a bad input fails its own job only; a request that cannot be served stores nothing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import wait_for
from sqlalchemy import func, select
from test_pipeline import _image_folder
from typer.testing import CliRunner
from videos import make_video

from fervid.cli.app import app
from fervid.db import database
from fervid.db.jobs import list_jobs
from fervid.db.schema import jobs
from fervid.settings import Settings, get_settings
from fervid.worker.jobs import submit_many
from fervid.worker.sources import expand_inputs


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A loose video, a folder of two videos (one in a sub-folder, one not a video) and an image folder."""
    loose = make_video(tmp_path / "talk.mp4", seconds=1.0, fps=10)
    folder = tmp_path / "sessions"
    (folder / "day2").mkdir(parents=True)
    make_video(folder / "a.mp4", seconds=1.0, fps=10)
    make_video(folder / "b.mov", seconds=1.0, fps=10)
    make_video(folder / "day2" / "c.mp4", seconds=1.0, fps=10)
    (folder / "notes.txt").write_text("not a video")
    _image_folder(tmp_path / "faces")
    return {"loose": loose, "folder": folder, "images": tmp_path / "faces"}


def test_expand_inputs(inputs: dict[str, Path], tmp_path: Path) -> None:
    folder = inputs["folder"]
    assert expand_inputs([str(folder)]) == [str(folder / "a.mp4"), str(folder / "b.mov")]
    assert expand_inputs([str(folder)], recursive=True) == [str(folder / "a.mp4"), str(folder / "b.mov"), str(folder / "day2" / "c.mp4")]
    assert expand_inputs([str(folder)], recursive=True, pattern="*.mp4") == [str(folder / "a.mp4"), str(folder / "day2" / "c.mp4")]
    both = expand_inputs([str(inputs["loose"]), str(inputs["images"]), str(inputs["loose"]), "rtsp://cam/1"])
    assert both == [str(inputs["loose"]), str(inputs["images"]), "rtsp://cam/1"]  # repeats dropped, URLs kept
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        expand_inputs([str(inputs["loose"]), str(tmp_path / "missing.mp4")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos or images"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="no files matching '\\*.avi' or images"):
        expand_inputs([str(folder)], pattern="*.avi")


@pytest.fixture
def cli(embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name, value in [("FERVID_DATA_DIR", embedded_settings.data_dir), ("FERVID_MODEL", embedded_settings.model),
                        ("FERVID_DETECTOR", "none"), ("FERVID_SAMPLE_FPS", "5")]:  # fmt: skip
        monkeypatch.setenv(name, str(value))
    return CliRunner()


def job_count(settings: Settings) -> int:
    with database(settings).connect() as conn:
        return conn.scalar(select(func.count()).select_from(jobs))


def test_embedded_batch_submit_and_report(cli: CliRunner, inputs: dict[str, Path], tmp_path: Path) -> None:
    result = cli.invoke(app, ["submit", str(inputs["loose"]), str(inputs["folder"]), str(inputs["images"]), "--batch", "week1"])
    assert result.exit_code == 0, result.output
    ids = [int(line) for line in result.stdout.split() if line.isdigit()]
    assert len(ids) == 4  # talk.mp4, a.mp4, b.mov, the image folder
    assert "batch week1: 4 jobs" in result.stderr
    listing = cli.invoke(app, ["jobs", "--batch", "week1"])  # not a terminal: rich renders 80 columns
    assert listing.exit_code == 0 and listing.stdout.count("done") == 4 and "talk.mp4" in listing.stdout
    assert max(len(line) for line in listing.stdout.splitlines()) <= 80
    data = json.loads(cli.invoke(app, ["report", "--batch", "week1", "--format", "json"]).stdout)
    assert data["batch"] == "week1" and [job["job_id"] for job in data["jobs"]] == ids
    assert [Path(job["source"]).name for job in data["jobs"]] == ["talk.mp4", "a.mp4", "b.mov", "faces"]
    for job in data["jobs"]:
        assert job["status"] == "done" and job["faces"] > 0
        assert sum(job["shares"].values()) == pytest.approx(1.0)
        assert job["persons"] is None if job["kind"] == "images" else job["persons"] >= 0
    assert data["jobs"][3]["accuracy"] is not None  # the image folder has class sub-folders
    rows = list(csv.DictReader(io.StringIO(cli.invoke(app, ["report", "--batch", "week1", "--format", "csv"]).stdout)))
    assert [int(r["job"]) for r in rows] == ids and {r["batch"] for r in rows} == {"week1"}
    table = cli.invoke(app, ["report", "--batch", "week1"])
    assert table.exit_code == 0 and "batch week1" in table.stdout and "b.mov" in table.stdout
    page = tmp_path / "week1.html"
    html = cli.invoke(app, ["report", "--batch", "week1", "--format", "json", "--html", str(page)])
    assert html.exit_code == 0 and 'Plotly.newPlot(' in page.read_text(encoding="utf-8")
    assert "fervid batch week1 · 4 jobs" in page.read_text(encoding="utf-8")
    missing = cli.invoke(app, ["report", "--batch", "nope"])
    assert missing.exit_code == 2 and "no jobs in batch 'nope'" in missing.output


def test_a_bad_video_fails_its_own_job_only(cli: CliRunner, inputs: dict[str, Path], tmp_path: Path, embedded_settings) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    result = cli.invoke(app, ["submit", str(inputs["loose"]), str(broken), str(inputs["images"])])
    assert result.exit_code == 1, result.output
    assert "broken.mp4" in result.stderr and result.stderr.count("failed:") == 1
    statuses = {Path(job["source"]).name: job["status"] for job in list_jobs(database(embedded_settings))}
    assert statuses == {"talk.mp4": "done", "broken.mp4": "failed", "faces": "done"}
    batches = {job["batch"] for job in list_jobs(database(embedded_settings))}
    assert len(batches) == 1 and next(iter(batches)).startswith("batch-")  # a name is given to an unnamed batch


def test_a_request_that_cannot_be_served_stores_nothing(cli: CliRunner, inputs: dict[str, Path], tmp_path: Path, embedded_settings) -> None:
    for args, message in [
        ([str(inputs["loose"]), str(tmp_path / "gone.mp4")], "gone.mp4: no such file"),
        ([str(inputs["loose"]), str(inputs["folder"]), "--labels", str(tmp_path / "l.csv")], "one video"),
        ([str(inputs["loose"]), str(inputs["images"]), "--model", str(tmp_path / "nothing.pt")], "nothing.pt"),
    ]:
        result = cli.invoke(app, ["submit", *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert job_count(embedded_settings) == 0


@pytest.mark.services
@pytest.mark.slow
def test_distributed_batch_is_processed_like_the_embedded_one(
    inputs: dict[str, Path], tmp_path: Path, pg_url: str, broker_url: str, tiny_checkpoint: Path, embedded_settings
) -> None:
    from conftest import Workers

    common = dict(detector="none", sample_fps=5.0, model=str(tiny_checkpoint), segment_seconds=0.5)
    settings = get_settings(data_dir=tmp_path, database_url=pg_url, broker_url=broker_url, **common)
    local = embedded_settings.replace(**common)
    sources = expand_inputs([str(inputs["folder"]), str(inputs["images"])])
    pool = Workers(settings, tmp_path)
    try:
        pool.start(2)
        ids = submit_many(sources, settings, batch="remote")
        engine = database(settings)
        wait_for(lambda: all(j["status"] == "done" for j in list_jobs(engine, batch="remote")) and len(ids) == 3, "the batch", pool)
    finally:
        pool.stop_all()
    local_ids = submit_many(sources, local, batch="here")
    from fervid.db.reports import batch_report

    remote, here = batch_report(database(settings), "remote"), batch_report(database(local), "here")
    keys = ("source", "kind", "status", "faces", "persons", "dominant_label")
    assert [{k: j[k] for k in keys} for j in remote["jobs"]] == [{k: j[k] for k in keys} for j in here["jobs"]]
    for a, b in zip(remote["jobs"], here["jobs"]):
        assert a["shares"] == pytest.approx(b["shares"])
    assert len(local_ids) == len(ids) == 3
