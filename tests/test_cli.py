"""One contract for every command: bad requests are refused before anything is stored, with exit 2 and a one-line
message naming the option (and its environment variable) and the allowed values; no Python class names."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from fervid.cli.app import app
from fervid.db import database
from fervid.db.engine import database_url
from fervid.db.schema import jobs
from fervid.report.terminal import printable
from fervid.settings import SettingsError, get_settings


@pytest.fixture
def cli(embedded_settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FERVID_DATA_DIR", str(embedded_settings.data_dir))
    monkeypatch.setenv("FERVID_DATABASE_URL", embedded_settings.database_url)
    monkeypatch.setenv("FERVID_MODEL", embedded_settings.model)
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal: messages must still be one line
    return CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.full((48, 48, 3), 128, np.uint8))
    return tmp_path / "imgs"


def job_count(settings) -> int:
    with database(settings).connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs)).scalar_one()


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Error:" not in lines[0] and "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--detector", "mtcnn"], "detector (--detector, FERVID_DETECTOR): must be one of centerface, haar, none"),
        (["--sample-fps", "0"], "sample_fps (--sample-fps, FERVID_SAMPLE_FPS): must be a finite number > 0"),
        (["--sample-fps", "-2"], "FERVID_SAMPLE_FPS): must be a finite number > 0"),
        (["--sample-fps", "nan"], "got nan"),
        (["--sample-fps", "inf"], "got inf"),
        (["--detect-every", "0"], "detect_every (--detect-every, FERVID_DETECT_EVERY): must be a whole number >= 1"),
        (["--detect-every", "-3"], "must be a whole number >= 1"),
        (["--segment-seconds", "nan"], "segment_seconds (--segment-seconds, FERVID_SEGMENT_SECONDS)"),
        (["--segment-seconds", "-1"], "must be a finite number > 0"),
        (["--every-frame", "--sample-fps", "3"], "give --sample-fps or --every-frame, not both"),
    ],
)
def test_submit_refuses_bad_options_before_storing(cli: CliRunner, embedded_settings, folder: Path, args, expected) -> None:
    before = job_count(embedded_settings)
    result = cli.invoke(app, ["submit", str(folder), *args])
    assert result.exit_code == 2, result.output
    assert expected in one_line_error(result.output)
    assert job_count(embedded_settings) == before


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FERVID_SAMPLE_FPS", "abc", "FERVID_SAMPLE_FPS: 'abc' is not a valid float for sample_fps"),
        ("FERVID_DETECTOR", "dlib", "FERVID_DETECTOR): must be one of centerface, haar, none"),
        ("FERVID_FLIP", "maybe", "FERVID_FLIP: 'maybe' is not a valid bool for flip"),
        ("FERVID_DATABASE_URL", "mysql://u@h/db", "unsupported scheme; use one of postgresql://"),
    ],
)
def test_bad_environment_names_the_variable(cli: CliRunner, folder: Path, monkeypatch, variable, value, expected) -> None:
    monkeypatch.setenv(variable, value)
    result = cli.invoke(app, ["submit", str(folder)])
    assert result.exit_code == 2, result.output
    assert expected in one_line_error(result.output)


def test_settings_are_checked_in_one_place() -> None:
    with pytest.raises(SettingsError, match="detect_size"):
        get_settings(detect_size=8)
    with pytest.raises(SettingsError, match="detector_threshold"):
        get_settings(detector_threshold=1.5)
    assert get_settings(sample_fps=12.5).sample_fps == 12.5


@pytest.mark.parametrize(
    ("url", "mapped"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_schemes_map_to_the_installed_driver(url: str, mapped: str) -> None:
    assert database_url(url) == mapped


def test_unknown_database_scheme_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"'mysql://': unsupported scheme; use one of postgresql://, postgres://"):
        database_url("mysql://u:secret@h/db")


def test_train_refuses_an_unknown_schedule(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "data" / "happy").mkdir(parents=True)
    result = cli.invoke(app, ["train", str(tmp_path / "data"), "--schedule", "cosin", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "unknown schedule 'cosin'; choose one of: constant, cosine" in one_line_error(result.output)
    assert not (tmp_path / "run").exists()


def test_report_unknown_format_is_exit_2(cli: CliRunner, folder: Path) -> None:
    job = cli.invoke(app, ["submit", str(folder), "--detector", "none"])
    assert job.exit_code == 0, job.output
    result = cli.invoke(app, ["report", "--job", job.output.strip().splitlines()[-1], "--format", "xml"])
    assert result.exit_code == 2 and "unknown format 'xml'" in one_line_error(result.output)


def test_zero_face_job_reports(cli: CliRunner, tmp_path: Path) -> None:
    """A job in which no face was found reports (table, csv, plot, html) without inventing a dominant expression."""
    import cv2
    import numpy as np

    (tmp_path / "noise").mkdir()
    cv2.imwrite(str(tmp_path / "noise" / "n.png"), np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    job = cli.invoke(app, ["submit", str(tmp_path / "noise"), "--detector", "centerface"])
    assert job.exit_code == 0, job.output
    job_id = job.output.strip().splitlines()[-1]
    table = cli.invoke(app, ["report", "--job", job_id])
    assert table.exit_code == 0 and "–" in table.output, table.output
    csv = cli.invoke(app, ["report", "--job", job_id, "--format", "csv"])
    assert csv.exit_code == 0 and csv.output.splitlines()[1].startswith("all,,,,0,,"), csv.output
    for option, name in (("--plot", "t.png"), ("--html", "r.html")):
        result = cli.invoke(app, ["report", "--job", job_id, option, str(tmp_path / name)])
        assert result.exit_code == 0 and (tmp_path / name).stat().st_size > 0, result.output


def test_db_downgrade_needs_a_revision_and_yes(cli: CliRunner, embedded_settings) -> None:
    before = job_count(embedded_settings)
    missing = cli.invoke(app, ["db", "downgrade"])
    assert missing.exit_code == 2
    unconfirmed = cli.invoke(app, ["db", "downgrade", "base"])
    assert unconfirmed.exit_code == 2 and "--yes" in one_line_error(unconfirmed.output)
    assert job_count(embedded_settings) == before  # nothing dropped


def test_control_characters_are_escaped(cli: CliRunner, tmp_path: Path) -> None:
    name = str(tmp_path / "a\x1b[31mred\nx.mp4")
    result = cli.invoke(app, ["submit", name])
    assert result.exit_code == 2
    line = one_line_error(result.output)
    assert "\x1b" not in result.output and "\\x1b[31mred\\nx.mp4: no such file or directory" in line


def test_printable() -> None:
    assert printable("ok été 1.mp4") == "ok été 1.mp4"
    assert printable("a\tb\rc\x00") == "a\\tb\\rc\\x00"


def test_parquet_without_pyarrow_names_the_extra(cli: CliRunner, folder: Path, monkeypatch, tmp_path: Path) -> None:
    import sys

    job = cli.invoke(app, ["submit", str(folder), "--detector", "none"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    result = cli.invoke(app, ["export", "--job", job.output.strip().splitlines()[-1], "--format", "parquet", "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2
    assert "pip install 'fervid[parquet]'" in one_line_error(result.output) and "ImportError" not in result.output


def test_export_to_dash_writes_standard_output(cli: CliRunner, folder: Path, monkeypatch, tmp_path: Path) -> None:
    job = cli.invoke(app, ["submit", str(folder), "--detector", "none"]).output.strip().splitlines()[-1]
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["export", "--job", job, "--format", "csv", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("job_id,source_path,") and not (tmp_path / "-").exists()


def test_export_into_a_closed_pipe_is_quiet(embedded_settings, tmp_path: Path, monkeypatch) -> None:
    """`fervid export ... | head` closes the pipe early: no "service unavailable", exit 0."""
    import subprocess
    import sys

    from videos import make_video

    from fervid.worker.jobs import Submission, submit

    video = make_video(tmp_path / "v.mp4", seconds=12.0, fps=25)
    job_id = submit(Submission(str(video), every_frame=True), embedded_settings.replace(detector="none"))
    env = {"FERVID_DATA_DIR": str(embedded_settings.data_dir), "FERVID_DATABASE_URL": embedded_settings.database_url,
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    fervid = Path(sys.executable).with_name("fervid")
    done = subprocess.run(
        f"'{fervid}' export --job {job_id} --format csv | head -c 100 > /dev/null; echo \"${{PIPESTATUS[0]}}\"",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == "0", done.stderr
    assert "unavailable" not in done.stderr and "Error" not in done.stderr, done.stderr


def test_show_and_delete(cli: CliRunner, folder: Path, embedded_settings) -> None:
    """`fervid show N` has what the 80-column job list leaves out (the full path, the options, the segments);
    `fervid delete N` removes a finished job with everything stored for it and refuses one that is not finished."""
    from fervid.db.jobs import create_job

    job_id = int(cli.invoke(app, ["submit", str(folder), "--detector", "none"]).output.strip().splitlines()[-1])
    shown = cli.invoke(app, ["show", str(job_id)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert str(folder) in shown.stdout and "detector" in shown.stdout and "segments" in shown.stdout
    queued = create_job(
        database(embedded_settings), source="/x.mp4", kind="video", params={}, model_name="m", model_sha256="0" * 64,
        classes=["happy"], segments=[(0.0, None)],
    )  # fmt: skip
    refused = cli.invoke(app, ["delete", str(queued)])
    assert refused.exit_code == 2 and f"cancel it first (`fervid cancel {queued}`)" in one_line_error(refused.output)
    assert cli.invoke(app, ["delete", str(job_id)]).exit_code == 0
    assert job_count(embedded_settings) == 1
    with database(embedded_settings).connect() as conn:
        for table in ("detections", "segments", "face_thumbnails", "job_stats", "evaluations"):
            assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE job_id = :j"), {"j": job_id}).scalar() == 0
    gone = cli.invoke(app, ["show", str(job_id)])
    assert gone.exit_code == 2 and f"job {job_id} does not exist" in one_line_error(gone.output)


def _commands(group, path=()):  # every (sub)command of the app, as its argument path
    for name, command in getattr(group, "commands", {}).items():
        yield (*path, name)
        yield from _commands(command, (*path, name))


def test_every_option_has_help_and_flags_show_no_type(cli: CliRunner) -> None:
    """Each command's options have help text; flags (``--help`` too) show no ``<bool>`` type."""
    import typer.main

    root = typer.main.get_command(app)
    for path in [(), *_commands(root)]:
        page = cli.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert page.exit_code == 0, (path, page.output)
        assert "<bool>" not in page.stdout, path
    for path in _commands(root):
        command = root
        for name in path:
            command = command.commands[name]
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, (path, param.name)
