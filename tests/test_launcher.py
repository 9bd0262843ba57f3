"""The GPU-pinned worker launcher and the docker-compose deployment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fervid.settings import get_settings
from fervid.worker.launcher import plan_workers, settings_env, spawn

ROOT = Path(__file__).resolve().parents[1]
BROKER = "redis://broker:6379/0"


@pytest.fixture
def settings(tmp_path: Path):
    return get_settings(data_dir=tmp_path, broker_url=BROKER, database_url="postgresql+psycopg://db/fervid", queue="fervid")


def test_one_worker_per_gpu_pinned(settings) -> None:
    specs = plan_workers("0,1", cpu=False, concurrency=2, queues=None, settings=settings, visible_gpus=2, pid=7)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1"]
    assert [s.hostname for s in specs] == ["fervid-gpu0-7@%h", "fervid-gpu1-7@%h"]
    for spec in specs:
        assert spec.queues == "fervid" and spec.env["FERVID_BROKER_URL"] == BROKER
        argv = spec.argv
        assert argv[argv.index("-Q") + 1] == "fervid" and argv[argv.index("-n") + 1] == spec.hostname
        assert argv[argv.index("-c") + 1] == "2" and argv[argv.index("-A") + 1] == "fervid.worker.celery_app"


def test_cpu_worker_hides_gpus(settings) -> None:
    (spec,) = plan_workers(None, cpu=True, concurrency=1, queues="fast,slow", settings=settings, visible_gpus=4, pid=7)
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "" and spec.queues == "fast,slow" and spec.hostname == "fervid-cpu-7@%h"
    # No flag: every visible GPU, or the CPU when there is none.
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_workers(None, False, 1, None, settings, visible_gpus=3)] == ["0", "1", "2"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_workers(None, False, 1, None, settings, visible_gpus=0)] == [""]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_workers("1", True, 1, None, settings, visible_gpus=2)] == ["1", ""]


@pytest.mark.parametrize("gpus", ["0,x", "2", "0,0"])
def test_bad_gpu_lists_are_refused(settings, gpus: str) -> None:
    with pytest.raises(ValueError):
        plan_workers(gpus, cpu=False, concurrency=1, queues=None, settings=settings, visible_gpus=2)


def test_settings_reach_the_child(settings) -> None:
    env = settings_env(settings)
    assert env["FERVID_BROKER_URL"] == BROKER and env["FERVID_SEGMENT_TIMEOUT"] == str(settings.segment_timeout)
    assert "FERVID_RESULT_BACKEND" not in env  # unset stays unset


def test_spawned_child_sees_its_own_device(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # the launcher's own view must not leak through
    code = "import json, os; print(json.dumps([os.environ['CUDA_VISIBLE_DEVICES'], os.environ['FERVID_BROKER_URL']]))"
    specs = plan_workers("1", cpu=True, concurrency=1, queues=None, settings=settings, visible_gpus=2)
    for spec in specs:
        child = spawn([sys.executable, "-c", code], spec.env, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = child.communicate(timeout=60)
        finally:
            child.kill()
        assert child.returncode == 0 and json.loads(out) == [spec.env["CUDA_VISIBLE_DEVICES"], BROKER]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["1", ""]


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "worker-gpu", "worker-cpu", "cli"} <= services.keys()
    (device,) = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1 and device["capabilities"] == ["gpu"]
    assert services["worker-gpu"]["command"] == "fervid worker --gpus 0"
    assert services["worker-cpu"]["command"] == "fervid worker --cpu"
    assert "cli" in services["cli"]["profiles"]
    for name in ("worker-gpu", "worker-cpu", "cli"):
        env = services[name]["environment"]
        assert env["FERVID_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["FERVID_DATABASE_URL"]
        assert env["FERVID_BROKER_URL"].startswith("redis://redis:6379/")
        assert any(volume.endswith(":/data") for volume in services[name]["volumes"])
