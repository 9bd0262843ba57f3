"""Bad input end to end: every case ends in a clear message naming the file and a correct job state.

The corpus is generated here (``badinputs``, ``videos``); nothing is downloaded. Outcomes are asserted through
the library (:func:`fervid.worker.jobs.submit`) and, for representative cases, through the CLI. Every case runs
next to a job that is already stored, which must come out untouched.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from badinputs import (
    boxes,
    corrupt_copy,
    declared_raw_video,
    declared_size,
    garbled_packets,
    hostile_checkpoint,
    hostile_zip_checkpoint,
    remux,
    save_cmyk_jpeg,
    save_exif_rotated,
    save_image,
    save_png16,
    truncated,
    without_moov,
    zero_frame_video,
)
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner
from videos import make_audio_only, make_video

from fervid.cli.app import app
from fervid.cli.errors import redact
from fervid.db import database
from fervid.db.jobs import get_job, list_jobs
from fervid.db.reports import job_report
from fervid.db.schema import detections
from fervid.model.checkpoint import CheckpointError
from fervid.model.data import read_image
from fervid.settings import Settings, get_settings
from fervid.worker.decode import DecodeError
from fervid.worker.jobs import Submission, create, run_embedded, submit
from fervid.worker.labels import LabelsError
from fervid.worker.sources import image_samples

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("fervid", "cli", "worker", "model", "db", "alembic")
GARBLED = (20, 21, 22)  # packets of the 50-frame videos replaced by noise


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The damaged videos, all from one 2 s, 50-frame clip (MPEG-4 Part 2: no external encoder needed)."""
    root = tmp_path_factory.mktemp("corpus")
    good = make_video(root / "good.mp4", seconds=2.0, codec="mpeg4")  # index (moov) last, as cameras write it
    front = remux(good, root / "front.mp4", {"movflags": "faststart"})  # index first, as web uploads have it
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("these are meeting notes, not a video\n")
    (root / "abc.mp4").write_text("abc")  # shorter than one MP4 box header
    files = {"good": good, "front": front, "empty": root / "empty.mp4", "text": root / "notes.mp4", "tiny-text": root / "abc.mp4"}
    for percent in (10, 50, 90):
        files[f"cut-{percent}"] = truncated(good, root / f"cut {percent}.mp4", percent / 100)
        files[f"front-cut-{percent}"] = truncated(front, root / f"front cut {percent}.mp4", percent / 100)
    files["no-moov"] = without_moov(good, root / "no-moov.mp4")
    files["audio"] = make_audio_only(root / "audio.mp4")
    files["zero-frames"] = zero_frame_video(root / "zero.avi")
    files["bomb-header"] = declared_size(good, root / "bomb.mp4", 8000, 8000)
    files["huge-raw"] = declared_raw_video(root / "huge.y4m", 15000, 15000)
    files["garbled-mpeg4"] = garbled_packets(good, root / "garbled.mp4", GARBLED)
    h264 = make_video(root / "good-h264.mp4", seconds=2.0)
    files["garbled-h264"] = garbled_packets(h264, root / "garbled-h264.mp4", GARBLED)
    return files


@pytest.fixture
def settings(embedded_settings: Settings) -> Settings:
    """The embedded default with the whole frame as the one 'face': one row per decoded frame or image."""
    return embedded_settings.replace(detector="none")


@pytest.fixture
def stored(settings: Settings, corpus: dict[str, Path]) -> tuple[int, tuple[Any, ...]]:
    """A job already done in the database (10 rows) and its state, which no later failure may change."""
    job_id = submit(Submission(str(corpus["good"])), settings.replace(sample_fps=5.0))
    before = state(database(settings), job_id)
    assert before == ("done", None, 10, 10, 10)
    return job_id, before


def state(engine: Engine, job_id: int) -> tuple[Any, ...]:
    job = get_job(engine, job_id)
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(detections).where(detections.c.job_id == job_id))
    return job["status"], job["error"], job["frames_done"], job["faces"], rows


def outcome(settings: Settings, submission: Submission) -> tuple[dict[str, Any] | None, Exception | None]:
    """The job record the submission created (or ``None``) and the error it raised (or ``None``)."""
    engine = database(settings)
    before = {job["id"] for job in list_jobs(engine, 10_000)}
    try:
        submit(submission, settings)
        error = None
    except Exception as exc:  # noqa: BLE001 - the outcome under test
        error = exc
    created = [job for job in list_jobs(engine, 10_000) if job["id"] not in before]
    assert len(created) <= 1
    return (created[0] if created else None), error


def rows_of(settings: Settings, job_id: int) -> list[dict[str, Any]]:
    with database(settings).connect() as conn:
        query = select(detections.c.source_path, detections.c.truth).where(detections.c.job_id == job_id)
        return [dict(row) for row in conn.execute(query).mappings()]


# --- videos that cannot be processed: a failed job naming the file and the problem ---------------------------------

#: Videos that cannot be processed, with the problem their job's error names.
UNDECODABLE = [
    ("empty", "empty file"),
    ("text", r"not a video \(unrecognised format\)"),
    ("tiny-text", r"not a video \(unrecognised format\)"),
    ("cut-10", "truncated: its mdat box"),
    ("cut-50", "truncated: its mdat box"),
    ("cut-90", "truncated: its moov box"),
    ("front-cut-10", "truncated: its moov box"),
    ("front-cut-50", "truncated: its mdat box"),
    ("front-cut-90", "truncated: its mdat box"),
    ("no-moov", "no moov box"),
    ("audio", r"no video stream \(audio only\)"),
    ("zero-frames", "no frame decodes"),
    ("bomb-header", "unknown frame size"),
    # Refused by the limit on the header, before the decode that would fail with "no frame decodes".
    ("huge-raw", r"15000×15000, over the limit of \d+ pixels \(FERVID_MAX_PIXELS\)"),
]


@pytest.mark.parametrize(("name", "problem"), UNDECODABLE, ids=[name for name, _ in UNDECODABLE])
def test_undecodable_video_fails_its_job(
    settings: Settings, stored: tuple[int, tuple[Any, ...]], corpus: dict[str, Path], name: str, problem: str
) -> None:
    path = corpus[name]
    if "cut" in name:  # the file was cut inside the box the message names
        original = corpus["front" if name.startswith("front") else "good"].read_bytes()
        cut = path.stat().st_size
        assert any(kind.decode() in problem and offset < cut < offset + size for kind, offset, size in boxes(original))
    job, error = outcome(settings, Submission(str(path)))
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{path}: ")
    assert re.search(problem, str(error)), str(error)
    assert job is not None and job["status"] == "failed" and job["error"] == str(error)
    assert state(database(settings), job["id"])[2:] == (0, 0, 0)
    assert state(database(settings), stored[0]) == stored[1]


def test_missing_path_creates_no_job(settings: Settings, stored: tuple[int, tuple[Any, ...]], tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "clip.mp4"
    job, error = outcome(settings, Submission(str(path)))
    assert isinstance(error, FileNotFoundError) and str(path) in str(error)
    assert job is None
    assert state(database(settings), stored[0]) == stored[1]


def test_folder_without_images_creates_no_job(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    (folder / "happy").mkdir(parents=True)
    (folder / "notes.txt").write_text("no images here")
    job, error = outcome(settings, Submission(str(folder)))
    assert isinstance(error, ValueError) and str(error).startswith(f"{folder}: no images")
    assert job is None


@pytest.mark.parametrize("codec", ["mpeg4", "h264"])
def test_corrupt_frames_are_skipped_and_counted(settings: Settings, corpus: dict[str, Path], codec: str) -> None:
    job, error = outcome(settings, Submission(str(corpus[f"garbled-{codec}"]), every_frame=True))
    assert error is None and job is not None
    job = get_job(database(settings), job["id"])
    assert job["status"] == "done" and job["error"] is None
    assert job["failed_frames"] == len(GARBLED) and job["warnings"] == len(GARBLED)
    assert job["frames_done"] == job["faces"] == 50 - len(GARBLED) == len(rows_of(settings, job["id"]))


def test_source_damaged_after_submission_fails_the_job(
    settings: Settings, stored: tuple[int, tuple[Any, ...]], corpus: dict[str, Path], tmp_path: Path
) -> None:
    video = tmp_path / "copy.mp4"
    video.write_bytes(corpus["good"].read_bytes())
    engine = database(settings)
    job_id = create(engine, Submission(str(video)), settings)
    truncated(corpus["good"], video, 0.5)
    with pytest.raises(DecodeError, match="truncated"):
        run_embedded(engine, job_id, settings)
    job = get_job(engine, job_id)
    assert job["status"] == "failed" and str(video) in job["error"] and "truncated" in job["error"]
    assert state(engine, stored[0]) == stored[1]


# --- limits ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "over", "at", "problem"),
    [
        ("FERVID_MAX_DURATION", "1.5", "2.1", r"2\.0 s long, over the limit of 1\.5 s \(FERVID_MAX_DURATION\)"),
        ("FERVID_MAX_FRAMES", "49", "50", r"50 frames, over the limit of 49 \(FERVID_MAX_FRAMES\)"),
        ("FERVID_MAX_PIXELS", "19199", "19200", r"160×120, over the limit of 19199 pixels \(FERVID_MAX_PIXELS\)"),
    ],
    ids=["duration", "frames", "pixels"],
)
def test_video_limits_from_the_environment(
    settings: Settings,
    corpus: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    over: str,
    at: str,
    problem: str,
) -> None:
    """Just over a limit the job fails naming the file and the setting; at the limit it runs."""
    video = corpus["good"]  # 2 s, 50 frames of 160×120
    limited = dict(data_dir=settings.data_dir, database_url=settings.database_url, model=settings.model)
    monkeypatch.setenv(variable, over)
    job, error = outcome(get_settings(**limited, detector="none"), Submission(str(video)))
    assert isinstance(error, ValueError) and str(error).startswith(f"{video}: ")
    assert re.search(problem, str(error)), str(error)
    assert job is not None and job["status"] == "failed" and job["error"] == str(error)
    monkeypatch.setenv(variable, at)
    job, error = outcome(get_settings(**limited, detector="none"), Submission(str(video)))
    assert error is None and job is not None and get_job(database(settings), job["id"])["status"] == "done"


def test_image_count_limit(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        save_image(folder / f"{i}.png")
    job, error = outcome(settings.replace(max_frames=2), Submission(str(folder)))
    assert isinstance(error, ValueError)
    assert str(error) == f"{folder}: 3 images, over the limit of 2 (FERVID_MAX_FRAMES)"
    assert job is not None and job["status"] == "failed" and job["kind"] == "images"


# --- image folders ---------------------------------------------------------------------------------------------


def test_read_image_awkward_files(tmp_path: Path) -> None:
    rotated = read_image(save_exif_rotated(tmp_path / "rotated.jpg", (64, 48)))
    assert rotated.shape == (64, 48, 3)  # stored landscape, shown portrait
    assert rotated[2, 24, 2] > 200 and rotated[-3, 24, 0] > 200  # red (left half) turned to the top, blue below
    cmyk = read_image(save_cmyk_jpeg(tmp_path / "cmyk.jpg", (40, 30)))
    assert cmyk.shape == (30, 40, 3)
    np.testing.assert_allclose(cmyk[15, 5], (32, 32, 255), atol=40)
    np.testing.assert_allclose(cmyk[15, 35], (255, 32, 32), atol=40)
    deep = read_image(save_png16(tmp_path / "deep.png", (40, 30)))
    assert deep.dtype == np.uint8 and deep.shape == (30, 40, 3)
    np.testing.assert_allclose(deep[..., 0], np.linspace(0, 255, 30 * 40).reshape(30, 40), atol=1)
    assert read_image(save_image(tmp_path / "été 1.png", (8, 8))).shape == (8, 8, 3)
    ramp = np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40)
    cv2.imwrite(str(tmp_path / "float.tiff"), ramp)  # 32-bit float TIFF, [0, 1]
    floating = read_image(tmp_path / "float.tiff")
    assert floating.dtype == np.uint8 and floating.shape == (30, 40, 3)
    np.testing.assert_allclose(floating[..., 0], ramp * 255, atol=1)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda path: path.write_bytes(b""), "empty file"),
        (lambda path: path.write_text("not an image"), "not a decodable image"),
        (lambda path: truncated(save_image(path.with_name("whole.jpg"), (64, 64)), path, 0.5), "truncated JPEG"),
        (lambda path: corrupt_copy(save_image(path.with_name("whole.png"), (64, 64)), path), "not a decodable image"),
    ],
    ids=["empty", "text", "truncated-jpeg", "damaged-png"],
)
def test_read_image_names_the_file(tmp_path: Path, make, problem: str) -> None:
    from fervid.model.data import ImageReadError

    path = tmp_path / "bad file.jpg"
    make(path)
    with pytest.raises(ImageReadError, match=problem) as caught:
        read_image(path)
    assert str(caught.value).startswith(f"{path}: ")


def awkward_folder(root: Path) -> dict[str, list[Path]]:
    """A folder mixing good, awkward and damaged images; returns the paths by expected outcome."""
    (root / "happy").mkdir(parents=True)
    (root / "hapy").mkdir()  # a typo: no expression
    (root / ".cache").mkdir()
    good = [
        save_image(root / "été 1.png"),
        save_image(root / "tiny 8x8.png", (8, 8)),
        save_png16(root / "deep.png"),
        save_cmyk_jpeg(root / "cmyk.jpg"),
        save_exif_rotated(root / "rotated.JPG"),
        save_image(root / "happy" / "a b.png"),
        save_image(root / "happy" / "ö.jpg"),
        save_image(root / "hapy" / "x.png"),
        save_image(root / "hapy" / "y.png"),
    ]
    (root / "fake.jpg").write_text("not an image")
    bad = [
        root / "fake.jpg",
        truncated(save_image(root / ".cache" / "whole.jpg", (64, 64)), root / "happy" / "cut.jpg", 0.5),
        corrupt_copy(save_image(root / ".cache" / "whole.png", (64, 64)), root / "happy" / "damaged.png"),
    ]
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return {"good": good, "bad": bad}


def test_image_folder_with_bad_files_completes(embedded_settings: Settings, stored, tmp_path: Path) -> None:
    folder = tmp_path / "mixed folder"
    files = awkward_folder(folder)
    job, error = outcome(embedded_settings, Submission(str(folder)))  # the real face detector, on tiny images too
    assert error is None and job is not None
    job = get_job(database(embedded_settings), job["id"])
    assert job["status"] == "done" and job["frames_total"] == len(files["good"]) + len(files["bad"])
    assert job["failed_frames"] == len(files["bad"]) and job["frames_done"] == len(files["good"])
    rows = rows_of(embedded_settings, job["id"])
    assert sorted(r["source_path"] for r in rows) == sorted(str(p) for p in files["good"])
    truth = {Path(r["source_path"]).parent.name: r["truth"] for r in rows}
    assert truth == {"mixed folder": None, "happy": "happy", "hapy": None}
    events = job_report(database(embedded_settings), job["id"])["events"]  # stored with the job, not only logged
    for bad in files["bad"]:
        assert any(e["message"].startswith(f"{bad}: ") and e["level"] == "warning" for e in events), bad
    assert any("hapy" in e["message"] and "no ground truth" in e["message"] for e in events)
    assert state(database(embedded_settings), stored[0]) == stored[1]


def test_image_folder_whose_images_all_fail_fails(embedded_settings: Settings, stored, tmp_path: Path) -> None:
    """Every image unreadable: the job fails (like a video of which no frame decodes), naming the folder."""
    folder = tmp_path / "broken"
    (folder / "happy").mkdir(parents=True)
    (folder / "a.jpg").write_text("not an image")
    truncated(save_image(tmp_path / "whole.jpg", (64, 64)), folder / "happy" / "cut.jpg", 0.5)
    job, error = outcome(embedded_settings, Submission(str(folder)))
    assert error is None and job is not None
    job = get_job(database(embedded_settings), job["id"])
    assert job["status"] == "failed" and job["failed_frames"] == 2 and job["frames_done"] == 0
    assert job["error"] == f"{folder}: none of its 2 images could be read"
    assert state(database(embedded_settings), stored[0]) == stored[1]


def test_unknown_class_folder_warns_once(tmp_path: Path) -> None:
    """Images of a folder named after no expression are read without ground truth; one warning per folder,
    given with its first image, so a job split into segments counts it once."""
    folder = tmp_path / "faces"
    files = awkward_folder(folder)
    total = len(files["good"]) + len(files["bad"])
    warnings: list[Exception] = []
    errors: list[Exception] = []
    samples = [s for k in range(total) for s in image_samples(str(folder), k, k + 1, errors.append, warnings.append)]
    assert len(samples) == len(files["good"]) and len(errors) == len(files["bad"])
    expected = f"{folder / 'hapy'}: not an expression name, its 2 images have no ground truth"
    assert [str(w) for w in warnings] == [expected]
    assert all(s.truth is None for s in samples if "hapy" in s.source_path)


def test_unknown_class_folder_counts_a_job_warning(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "faces"
    for name in ("happy", "hapy"):
        (folder / name).mkdir(parents=True)
        save_image(folder / name / "1.png")
    job_id = submit(Submission(str(folder)), settings)
    job = get_job(database(settings), job_id)
    assert job["status"] == "done" and job["failed_frames"] == 0 and job["warnings"] == 1


# --- labels and checkpoints: refused at submit, nothing stored -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (b"start,end,label\n0,1,happy\n3,2,sad\n", 3, "end 2 is not after start 3"),
        (b"start,end,label\n0,1,happy\n1,2,bored\n", 3, "unknown label 'bored'"),
        (b"start,end,label\n0,2,happy\n5,6,sad\n1,3,fear\n", 4, "overlaps line 2"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", None, "not UTF-8 text"),
    ],
    ids=["end-before-start", "unknown-label", "overlap", "binary"],
)
def test_bad_labels_are_refused_at_submit(
    settings: Settings, stored, corpus: dict[str, Path], tmp_path: Path, text: bytes, line: int | None, problem: str
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_bytes(text)
    job, error = outcome(settings, Submission(str(corpus["good"]), labels=str(labels)))
    assert isinstance(error, LabelsError) and problem in str(error)
    assert str(error).startswith(f"{labels}:{line}: " if line else f"{labels}: ")
    assert job is None
    assert state(database(settings), stored[0]) == stored[1]


def _wrong_shape(tiny: Path, path: Path) -> None:
    payload = torch.load(tiny, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.zeros(3)
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tiny, path: path.write_bytes(np.random.default_rng(0).bytes(2048)), "not a readable checkpoint"),
        (lambda tiny, path: truncated(tiny, path, 0.5), "not a readable checkpoint"),
        (lambda tiny, path: path.write_text("weights"), "not a readable checkpoint"),
        (_wrong_shape, "weights do not fit the architecture"),
        (lambda tiny, path: hostile_checkpoint(path, path.with_name("pwned")), "refused"),
        (lambda tiny, path: hostile_zip_checkpoint(path, path.with_name("pwned"), tiny), "refused"),
    ],
    ids=["random", "truncated", "text", "wrong-shape", "hostile-pickle", "hostile-zip"],
)
def test_bad_checkpoint_is_refused_at_submit(
    settings: Settings, stored, corpus: dict[str, Path], tiny_checkpoint: Path, tmp_path: Path, make, problem: str
) -> None:
    model = tmp_path / "model.pt"
    make(tiny_checkpoint, model)
    job, error = outcome(settings.replace(model=str(model)), Submission(str(corpus["good"])))
    assert isinstance(error, CheckpointError) and problem in str(error)
    assert str(error).startswith(f"{model}: ")
    assert job is None
    assert not (tmp_path / "pwned").exists()
    assert state(database(settings), stored[0]) == stored[1]


# --- the command line: exit 2, the file named, no traceback unless --debug ---------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FERVID_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FERVID_MODEL", settings.model)
    monkeypatch.setenv("FERVID_DETECTOR", "none")
    monkeypatch.setenv("COLUMNS", "400")  # `fervid jobs` shows whole error messages
    return CliRunner()


def test_cli_bad_video(cli_env: CliRunner, corpus: dict[str, Path]) -> None:
    path = corpus["cut-50"]
    result = cli_env.invoke(app, ["submit", str(path)])
    assert result.exit_code == 2 and str(path) in result.output and "truncated" in result.output
    assert "Traceback" not in result.output
    listing = cli_env.invoke(app, ["jobs"])
    assert listing.exit_code == 0 and "failed" in listing.output and "truncated: its mdat box" in listing.output
    debug = cli_env.invoke(app, ["--debug", "submit", str(path)])
    assert debug.exit_code == 2 and "Traceback" in debug.output and str(path) in debug.output


@pytest.mark.parametrize("case", ["missing", "labels", "checkpoint"])
def test_cli_bad_request(cli_env: CliRunner, corpus: dict[str, Path], tmp_path: Path, case: str) -> None:
    bad = tmp_path / f"bad [bold] {case}"  # shown as written, not taken for console markup
    args = ["submit", str(corpus["good"])]
    if case == "missing":
        args = ["submit", str(bad)]
    elif case == "labels":
        bad.write_text("start,end,label\n2,1,happy\n")
        args += ["--labels", str(bad)]
    else:
        bad.write_text("not weights")
        args += ["--model", str(bad)]
    result = cli_env.invoke(app, args)
    assert result.exit_code == 2 and str(bad) in result.output
    assert "Traceback" not in result.output
    assert "Traceback" in cli_env.invoke(app, ["--debug", *args]).output


def test_cli_damaged_frames_still_succeed(cli_env: CliRunner, corpus: dict[str, Path]) -> None:
    result = cli_env.invoke(app, ["submit", "--every-frame", str(corpus["garbled-mpeg4"])])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip().splitlines()[-1])
    assert "done" in cli_env.invoke(app, ["jobs"]).output
    assert get_job(database(get_settings()), job_id)["failed_frames"] == len(GARBLED)


@pytest.mark.parametrize("debug", [[], ["--debug"]], ids=["plain", "debug"])
def test_cli_unreachable_database_hides_the_password(cli_env: CliRunner, debug: list[str]) -> None:
    url = "postgresql+psycopg://fervid:hunter2-s3cret@127.0.0.1:1/fervid"
    result = cli_env.invoke(app, [*debug, "jobs", "--database-url", url])
    assert result.exit_code == 3, result.output
    assert "unavailable" in result.output and "hunter2-s3cret" not in result.output


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql+psycopg://fervid:s3cret@db:5432/x failed", "postgresql+psycopg://fervid:***@db:5432/x failed"),
        ("broker redis://:s3cret@cache:6379/0 down", "broker redis://:***@cache:6379/0 down"),
        ("amqp://user:s3:cr/et@rabbit//", "amqp://user:***@rabbit//"),
        ("'sqlite:////tmp/f.db' and https://host:8080/x", "'sqlite:////tmp/f.db' and https://host:8080/x"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


# --- security: properties of the package's source --------------------------------------------------------------


@functools.cache
def package_trees() -> list[tuple[Path, ast.AST]]:
    files = [p for d in PACKAGE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 30  # the scan sees the package
    return [(p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in files]


def calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call with its dotted name (``torch.load``, ``subprocess.run``, ``conn.execute``...)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.append((ast.unparse(node.func), node))
    return found


def test_no_pickle_anywhere_in_the_package() -> None:
    banned = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "joblib"}
    offenders = []
    for path, tree in package_trees():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


def test_checkpoints_are_loaded_weights_only() -> None:
    loads = [(path, call) for path, tree in package_trees() for name, call in calls(tree) if name == "torch.load"]
    assert loads  # the checkpoint loader is among them
    for path, call in loads:
        weights_only = [k.value for k in call.keywords if k.arg == "weights_only"]
        assert len(weights_only) == 1 and isinstance(weights_only[0], ast.Constant) and weights_only[0].value is True, (
            f"{path}:{call.lineno}"
        )


def test_hostile_checkpoint_never_runs(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from fervid.model.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    plain = hostile_checkpoint(tmp_path / "a.pt", marker)
    zipped = hostile_zip_checkpoint(tmp_path / "b.pt", marker, tiny_checkpoint)
    for path in (plain, zipped):
        with pytest.raises(CheckpointError, match=f"{path}: not a readable checkpoint: refused.*weights_only=True") as info:
            load_checkpoint(path)
        assert "contains code" in str(info.value) and "weights_only=False" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_checkpoint_with_non_finite_weights_is_refused(tmp_path: Path, tiny_checkpoint: Path, value: float) -> None:
    """A checkpoint whose weights hold NaN or inf (e.g. bytes flipped in the middle) is refused at load, naming the
    tensor, instead of storing NaN probabilities."""
    import torch

    from fervid.model.checkpoint import load_checkpoint

    payload = torch.load(tiny_checkpoint, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    payload["state_dict"][name].view(-1)[3] = value
    path = tmp_path / "broken.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"{path}: corrupt weights: NaN or infinite values in {name}"):
        load_checkpoint(path)


def test_sql_only_with_bound_parameters() -> None:
    """No SQLAlchemy SQL text built from strings (f-strings, ``%``/``+``, ``.format``): values go in as bound
    parameters. (DDL that takes no parameters, such as a migration's ``CREATE VIEW`` or a PRAGMA, is built from
    constants in code and runs through ``op.execute`` / the DBAPI cursor, outside this rule.)"""
    offenders = []
    for path, tree in package_trees():
        for name, call in calls(tree):
            if name.split(".")[-1] in {"text", "exec_driver_sql"} and call.args:
                sql = call.args[0]
                built = isinstance(sql, (ast.JoinedStr, ast.BinOp)) or (
                    isinstance(sql, ast.Call) and isinstance(sql.func, ast.Attribute) and sql.func.attr == "format"
                )
                if built:
                    offenders.append(f"{path}:{call.lineno}")
    assert offenders == []
    source = "".join(p.read_text(encoding="utf-8") for p, _ in package_trees())
    assert 'text(f"' not in source and "text(f'" not in source


def test_no_shell_execution() -> None:
    offenders = []
    for path, tree in package_trees():
        for name, call in calls(tree):
            shell = [k.value for k in call.keywords if k.arg == "shell"]
            shell_on = any(not (isinstance(value, ast.Constant) and value.value is False) for value in shell)
            if shell_on or name in {"os.system", "os.popen", "eval", "exec"} or name.startswith("os.spawn"):
                offenders.append(f"{path}:{call.lineno}: {name}")
    assert offenders == []


def test_task_messages_are_json_only() -> None:
    from fervid.worker.celery_app import make_app

    conf = make_app(get_settings(broker_url="redis://127.0.0.1:6379/15")).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == conf.result_serializer == "json"


@pytest.mark.timeout(60)  # without the URL timeouts the silent server hangs the submit for ever
def test_url_that_sends_nothing_fails_its_job(settings: Settings, stored, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection and then sends nothing: the job fails after FERVID_URL_TIMEOUT."""
    import socket

    monkeypatch.setenv("FERVID_URL_TIMEOUT", "1.5")
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/lecture.mp4"
        job, error = outcome(settings.replace(url_timeout=1.5), Submission(url))
    assert isinstance(error, ValueError) and str(error) == f"{url}: no answer within 1.5 s (FERVID_URL_TIMEOUT)"
    assert job is not None and job["status"] == "failed" and job["error"] == str(error)
    assert state(database(settings), stored[0]) == stored[1]
