"""The package layers: imports flow one way, cli → worker → (db, model); db and model never import worker or
cli, model never imports db; and read-only commands load no machine-learning code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Package folder → the fervid packages its modules may not import.
FORBIDDEN = {
    "db": {"worker", "cli"},
    "model": {"worker", "cli", "db"},
    "worker": {"cli"},
    "fervid": {"worker", "cli", "db", "model"},
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


@pytest.mark.parametrize("command", [["jobs"], ["models"], ["--help"], ["report", "--help"], ["export", "--help"]])
def test_read_only_commands_load_no_ml_code(command: list[str], tmp_path: Path) -> None:
    """`fervid jobs`, `models`, `--help` (and the help of report and export) import no torch, onnxruntime,
    PyAV or OpenCV, so they start in a fraction of a second."""
    code = (
        "import sys; from fervid.cli.app import main; sys.argv = ['fervid', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'av', 'cv2', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)"
    )
    env = {"FERVID_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def test_sql_lives_in_db() -> None:
    """Outside db/ (and its migrations) SQLAlchemy is a type (``Engine``) and a family of errors, never a query."""
    allowed = {"sqlalchemy.Engine", "sqlalchemy.exc"}
    offenders = {}
    for package in ("cli", "worker", "model", "fervid"):
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
