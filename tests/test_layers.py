"""The package layers: imports flow one way, cli → worker → (db, model) and cli → report → db; db and model never
import worker, report or cli, model never imports db, report never imports worker or model; and read-only commands
load no machine-learning code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Package folder → the fervid packages its modules may not import.
FORBIDDEN = {
    "db": {"worker", "cli", "report"},
    "model": {"worker", "cli", "db", "report"},
    "worker": {"cli", "report"},
    "report": {"worker", "cli", "model"},
    "fervid": {"worker", "cli", "db", "model", "report"},
}


def imported_packages(path: Path) -> set[str]:
    """The ``fervid.<package>`` names a module imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "fervid" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fervid.worker.jobs import submit\n    import fervid.cli.app\n")
    assert imported_packages(module) == {"worker", "cli"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose embedded database holds one finished image job (made without any ML code)."""
    from test_timeline_export import image_job

    from fervid.db import database
    from fervid.settings import get_settings

    folder = tmp_path_factory.mktemp("data")
    image_job(database(get_settings(data_dir=folder, database_url=None, broker_url=None)))
    return folder


READ_ONLY = [
    ["jobs"], ["models"], ["--help"], ["report", "--help"], ["export", "--help"], ["report", "--job", "1"],
    ["report", "--job", "1", "--format", "json"], ["report", "--job", "1", "--format", "csv"],
    ["export", "--job", "1", "--format", "csv"], ["export", "--job", "1", "--format", "jsonl"],
]  # fmt: skip


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_load_no_ml_code(command: list[str], data_dir: Path) -> None:
    """`fervid jobs`, `models`, `report`, `export` and `--help` import no torch, onnxruntime, PyAV, OpenCV or
    matplotlib, so they start in a fraction of a second."""
    code = (
        "import sys; from fervid.cli.app import main; sys.argv = ['fervid', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    print('EXIT', exit.code)\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'av', 'cv2', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)"
    )
    env = {"FERVID_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "EXIT 0" in done.stdout or "EXIT" not in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def test_sql_lives_in_db() -> None:
    """Outside db/ (and its migrations) SQLAlchemy is a type (``Engine``) and a family of errors, never a query."""
    allowed = {"sqlalchemy.Engine", "sqlalchemy.exc"}
    offenders = {}
    for package in ("cli", "worker", "model", "report", "fervid"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                    used = {f"{node.module}.{a.name}" if node.module == "sqlalchemy" else node.module for a in node.names}
                elif isinstance(node, ast.Import):
                    used = {a.name for a in node.names if a.name.startswith("sqlalchemy")}
                else:
                    continue
                if used - allowed:
                    offenders[str(path.relative_to(ROOT))] = sorted(used - allowed)
    assert offenders == {}
