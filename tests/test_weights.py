"""Shipped models: checksums, metadata against the files, a corrupt file, and the built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fervid.model import weights
from fervid.model.checkpoint import CheckpointError, load_checkpoint
from fervid.model.weights import Weights, resolve_model, shipped_models

REPO = Path(__file__).resolve().parents[1]


def test_at_least_the_default_model_ships() -> None:
    assert weights.DEFAULT.value in shipped_models()


@pytest.mark.parametrize("model", shipped_models(), ids=lambda m: m.name)
def test_registry_matches_the_file(model: weights.ShippedModel) -> None:
    path = resolve_model(model.name)  # verifies the checksum
    ckpt = load_checkpoint(path)
    assert tuple(ckpt.classes) == model.classes
    assert ckpt.input_size == model.input_size and ckpt.config.width == model.width
    assert model.card.is_file() and model.sha256 in model.card.read_text()


def test_corrupt_file_is_refused_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = weights.DEFAULT.value
    damaged = tmp_path / model.file
    data = bytearray(model.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match=rf"{damaged}: checksum mismatch for model '{model.name}'"):
        resolve_model(model.name)
    damaged.unlink()
    with pytest.raises(CheckpointError, match="missing from the installation"):
        resolve_model(model.name)


def test_unknown_name_lists_the_shipped_models() -> None:
    with pytest.raises(CheckpointError, match="not a shipped model name"):
        resolve_model("no-such-model")
    with pytest.raises(LookupError, match="fer2013-csa"):
        Weights.get("no-such-model")


@pytest.mark.slow
def test_wheel_carries_weights_cards_and_migrations(tmp_path: Path) -> None:
    build = tmp_path / "src"
    shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(".venv", "runs", ".git", "build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(build)],
        check=True,
    )
    wheel = next((tmp_path / "dist").glob("fervid-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in shipped_models():
        assert f"fervid/model/weights/{model.file}" in names and f"fervid/model/cards/{model.name}.md" in names
    assert "fervid/db/migrations/versions/0001_initial.py" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "import fervid, sys; from fervid.cli.app import main; print(fervid.__file__, file=sys.stderr); sys.argv[1:] = ['models']; main()"
    result = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(site), "PATH": ""}, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert str(site) in result.stderr  # the installed wheel, not the checkout
    assert weights.DEFAULT.value.sha256[:12] in result.stdout


@pytest.mark.parametrize("model", shipped_models(), ids=lambda m: m.name)
def test_fervid_models_shows_every_registered_figure(model: weights.ShippedModel) -> None:
    from fervid.cli.models import METRICS

    assert set(model.metrics) <= set(METRICS), f"`fervid models` would leave out {set(model.metrics) - set(METRICS)}"
