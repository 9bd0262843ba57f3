"""Training and evaluation on image folders: resumable fit, a learnable end-to-end task (API and CLI), and the
cross-validation protocols' per-fold results and resumability."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fervid.cli.app import app
from fervid.model import experiment
from fervid.model.checkpoint import load_checkpoint
from fervid.model.data import ImageSet
from fervid.model.experiment import Callbacks, DataOptions, cross_validate, evaluate_checkpoint, train_folder
from fervid.model.files import sha256_file
from fervid.model.lock import LOCK
from fervid.model.network import ModelConfig, build_model
from fervid.model.package import model_card
from fervid.model.train import BEST, LAST, Teacher, TrainConfig, fit, initial_weights

SIZE = 48
TINY = ModelConfig(width=0.125)
#: Two folds of the tiny model, one epoch each.
KFOLD2 = dict(
    protocol="kfold", model=TINY, train=TrainConfig(epochs=1, batch_size=16, device="cpu"), data=DataOptions(size=SIZE), folds=2
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_stripes(root: Path, per_class: int, seed: int) -> Path:
    """A trivially separable two-class tree: "happiness" images hold horizontal stripes, "sadness" images vertical
    ones (random period and phase, Gaussian noise), with CK+-style file names (the subject first)."""
    rng = np.random.default_rng(seed)
    for name, horizontal in (("happiness", True), ("sadness", False)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            wave = 127 + 100 * np.sin(2 * np.pi * np.arange(SIZE) / rng.uniform(5, 9) + rng.uniform(0, 2 * np.pi))
            image = np.tile(wave[:, None] if horizontal else wave[None, :], (1, SIZE) if horizontal else (SIZE, 1))
            image = np.clip(image + rng.normal(0, 15, image.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"S{i % 6:03d}_001_{i:08d}.png"), image)
    return root


@pytest.fixture(scope="module")
def stripes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A training tree and a held-out tree of the same task (different noise)."""
    root = tmp_path_factory.mktemp("stripes")
    return make_stripes(root / "train", 96, seed=0), make_stripes(root / "test", 30, seed=1)


def _image_set(n: int = 24, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1, SIZE, SIZE)).astype(np.float32)
    y = np.arange(n, dtype=np.int64) % 2
    return ImageSet(x, y, ["happy", "sad"], [f"img{i}.png" for i in range(n)])


def _without_time(history: list[dict]) -> list[dict]:
    """Epoch records without what differs between an interrupted and a straight run: time and the run's length."""
    return [{k: v for k, v in epoch.items() if k not in ("seconds", "epochs", "images_per_second", "eta_seconds")} for epoch in history]


# --- resumable fit ---------------------------------------------------------------------------------------------


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    config = ModelConfig(num_classes=2, width=0.125)
    train, val = _image_set(24, 0), _image_set(8, 1)
    # One precision for both runs: "auto" picks by a timing, which a busy machine can tip either way.
    two = TrainConfig(epochs=2, batch_size=8, device="cpu", seed=3, precision="fp32")
    straight = fit(config, train, val, two, tmp_path / "straight")
    first = fit(config, train, val, replace(two, epochs=1), tmp_path / "resumed")
    assert len(first.history) == 1
    resumed = fit(config, train, val, two, tmp_path / "resumed")

    assert [e["epoch"] for e in resumed.history] == [1, 2]
    assert _without_time(resumed.history) == _without_time(straight.history)
    assert resumed.best_accuracy == straight.best_accuracy
    a = torch.load(tmp_path / "straight" / LAST, weights_only=True)
    b = torch.load(tmp_path / "resumed" / LAST, weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    torch.testing.assert_close(b["model"], a["model"], rtol=0, atol=1e-6)
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"], rtol=0, atol=1e-6)
    best_a, best_b = load_checkpoint(straight.best_path), load_checkpoint(resumed.best_path)
    torch.testing.assert_close(best_b.state_dict, best_a.state_dict, rtol=0, atol=1e-6)
    assert best_b.training["epoch"] == best_a.training["epoch"]


def test_finished_run_is_not_trained_again(tmp_path: Path) -> None:
    config, train = ModelConfig(num_classes=2, width=0.125), _image_set(16)
    settings = TrainConfig(epochs=1, batch_size=8, device="cpu")
    done = fit(config, train, None, settings, tmp_path)
    stamp = (tmp_path / LAST).stat().st_mtime_ns
    again = fit(config, train, None, settings, tmp_path)
    assert (tmp_path / LAST).stat().st_mtime_ns == stamp
    assert _without_time(again.history) == _without_time(done.history)
    assert again.best_accuracy is None and again.best_path == tmp_path / BEST  # no validation set: last epoch


def test_resume_with_another_model_config_is_an_error(tmp_path: Path) -> None:
    train = _image_set(16)
    original = ModelConfig(num_classes=2, width=0.125)
    fit(original, train, None, TrainConfig(epochs=1, batch_size=8, device="cpu"), tmp_path)
    other = ModelConfig(num_classes=2, width=0.125, attention="se")
    with pytest.raises(ValueError, match=r"last\.pt: was trained with .*'attention': 'csa'.*not .*'attention': 'se'"):
        fit(other, train, None, TrainConfig(epochs=2, batch_size=8, device="cpu"), tmp_path)
    fresh = fit(other, train, None, TrainConfig(epochs=1, batch_size=8, device="cpu"), tmp_path, resume=False)
    assert len(fresh.history) == 1


def test_init_starts_from_a_checkpoint_with_its_outputs_mapped_by_class(tmp_path: Path) -> None:
    source = fit(ModelConfig(num_classes=2, width=0.125), _image_set(16), None,
                 TrainConfig(epochs=1, batch_size=8, device="cpu", precision="fp32"), tmp_path / "source")  # fmt: skip
    trained = load_checkpoint(source.best_path).state_dict
    target = ModelConfig(num_classes=3, width=0.125)
    model = build_model(target)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    info = initial_weights(model, target, ["sadness", "neutral", "happy"], str(source.best_path))

    state = model.state_dict()
    assert info["shared_classes"] == ["sadness", "happy"] and len(info["sha256"]) == 64
    for name, tensor in trained.items():
        if not name.startswith("classifier."):
            torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)
    for part in ("weight", "bias"):  # rows by class name: sadness <- sad (1), happy <- happy (0), neutral stays
        head, old = state[f"classifier.{part}"], trained[f"classifier.{part}"]
        torch.testing.assert_close(head[0], old[1], rtol=0, atol=0)
        torch.testing.assert_close(head[2], old[0], rtol=0, atol=0)
        torch.testing.assert_close(head[1], fresh[f"classifier.{part}"][1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="cannot start"):
        initial_weights(build_model(ModelConfig(num_classes=3, width=0.25)), ModelConfig(num_classes=3, width=0.25),
                        ["sad", "neutral", "happy"], str(source.best_path))  # fmt: skip

    three = _image_set(12)
    three = ImageSet(three.x, np.arange(12, dtype=np.int64) % 3, ["sadness", "neutral", "happy"], three.paths)
    run = fit(target, three, None, TrainConfig(epochs=1, batch_size=8, device="cpu", init=str(source.best_path)), tmp_path / "tuned")
    assert load_checkpoint(run.best_path).training["init"]["shared_classes"] == ["sadness", "happy"]


# --- end to end ------------------------------------------------------------------------------------------------


def test_train_folder_learns_and_evaluates(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, test_dir = stripes
    epochs: list[int] = []
    result = train_folder(
        train_dir,
        tmp_path / "run",
        model=TINY,
        train=TrainConfig(epochs=4, batch_size=8, lr=2e-3, device="cpu"),
        data=DataOptions(size=SIZE),
        command="pytest",
        callbacks=Callbacks(on_epoch=lambda s: epochs.append(s.epoch)),
    )
    assert epochs == [1, 2, 3, 4]
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.classes == ["happy", "sad"] and ckpt.input_size == SIZE and ckpt.config.num_classes == 2
    assert ckpt.training["command"] == "pytest" and ckpt.training["train_images"] + ckpt.training["val_images"] == 192
    best = max(ckpt.training["history"], key=lambda h: (h["val_accuracy"], -h["val_loss"]))  # the first of equals
    assert ckpt.training["epoch"] == best["epoch"]  # best accuracy, ties to the lower loss
    report = evaluate_checkpoint(result.best_path, test_dir, device="cpu")
    assert report.classes == ["happy", "sad"]
    assert sum(map(sum, report.confusion)) == 60
    assert report.accuracy >= 0.9, report.to_markdown()


def test_a_student_learns_from_its_teacher_against_wrong_labels(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    """Distillation: a student whose folders name every class wrongly, its targets all teacher (distill 1), reads
    the held-out images as the teacher does; the teacher's outputs are mapped by class name and recorded."""
    train_dir, test_dir = stripes
    fast = TrainConfig(epochs=4, batch_size=8, lr=2e-3, device="cpu", precision="fp32")
    teacher = train_folder(train_dir, tmp_path / "teacher", model=TINY, train=fast, data=DataOptions(size=SIZE), command="pytest")
    assert evaluate_checkpoint(teacher.best_path, test_dir, device="cpu").accuracy >= 0.9
    swapped = tmp_path / "swapped"  # horizontal stripes filed as sadness, vertical as happiness
    swapped.mkdir()
    (swapped / "sadness").symlink_to(train_dir / "happiness")
    (swapped / "happiness").symlink_to(train_dir / "sadness")

    # no validation images (the last epoch is kept): the swapped folders would select the epoch that learned least
    student = train_folder(swapped, tmp_path / "student", model=TINY, data=DataOptions(size=SIZE), command="pytest", val_fraction=0,
                           train=replace(fast, teacher=str(teacher.best_path), distill=1.0))  # fmt: skip
    assert evaluate_checkpoint(student.best_path, test_dir, device="cpu").accuracy >= 0.9
    recorded = load_checkpoint(student.best_path).training["teacher"]
    assert recorded == {"model": str(teacher.best_path), "sha256": sha256_file(teacher.best_path), "same_crop": True}
    with pytest.raises(ValueError, match="distill"):
        replace(fast, teacher=str(teacher.best_path), distill=0.0)

    ckpt = load_checkpoint(teacher.best_path)  # classes happy, sad
    x = torch.from_numpy(_image_set(6).x)
    mapped = Teacher(str(teacher.best_path), ["sad", "happy"], SIZE, ckpt.preprocessing, torch.device("cpu"))(x, None)
    expected = torch.softmax(ckpt.build().eval()(x), dim=1)
    torch.testing.assert_close(mapped, expected[:, [1, 0]])
    with pytest.raises(ValueError, match="no output for neutral"):
        Teacher(str(teacher.best_path), ["happy", "neutral"], SIZE, ckpt.preprocessing, torch.device("cpu"))
    # a resumed run goes on with the teacher it started with, or not at all
    tiny = ModelConfig(num_classes=2, width=0.125)
    one = replace(fast, epochs=1, teacher=str(teacher.best_path), distill=0.5)
    fit(tiny, _image_set(16), None, one, tmp_path / "resumed")
    other = tmp_path / "other.pt"
    other.write_bytes(student.best_path.read_bytes())
    with pytest.raises(ValueError, match="not the teacher this run started with"):
        fit(tiny, _image_set(16), None, replace(one, epochs=2, teacher=str(other)), tmp_path / "resumed")


def test_a_run_from_before_an_option_existed_resumes_with_its_default(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    """run.json of a run started before --rotation, --scale-jitter and --context existed: resuming it is not a
    mismatch."""
    train_dir, _ = stripes
    two = TrainConfig(epochs=2, batch_size=8, device="cpu")
    options = dict(model=TINY, train=two, data=DataOptions(size=SIZE), command="pytest")

    def interrupt(stats: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_folder(train_dir, tmp_path / "run", callbacks=Callbacks(on_epoch=interrupt), **options)
    run_file = tmp_path / "run" / "run.json"
    record = json.loads(run_file.read_text())
    for name in ("rotation", "scale_jitter"):
        del record["request"]["train"][name]
    del record["request"]["data"]["context"]
    run_file.write_text(json.dumps(record))
    epochs: list[int] = []
    train_folder(train_dir, tmp_path / "run", callbacks=Callbacks(on_epoch=lambda s: epochs.append(s.epoch)), **options)
    assert epochs == [2]  # the run goes on after its first epoch


def test_cli_train_then_evaluate(stripes: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERVID_DATABASE_URL", raising=False)
    train_dir, test_dir = stripes
    run, out = tmp_path / "run", tmp_path / "eval"
    runner = CliRunner()
    trained = runner.invoke(
        app,
        ["train", str(train_dir), "--out", str(run), "--crop", "legacy", "--size", "48", "--width", "0.125", "--epochs", "4",
         "--batch-size", "8", "--lr", "0.002", "--device", "cpu"],
    )
    assert trained.exit_code == 0, trained.output
    assert "epoch 4/4" in trained.output and (run / BEST).is_file() and (run / LAST).is_file()
    evaluated = runner.invoke(
        app, ["evaluate", str(test_dir), "--model", str(run / BEST), "--out", str(out), "--device", "cpu"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"] >= 0.9, evaluated.output
    assert report["params"] == {"flip": True, "tta_shift": 0.0}  # as jobs read faces (Settings.flip, tta_shift)
    assert "Accuracy" in (out / "report.md").read_text() and "Flip averaging: on" in evaluated.output
    unflipped = runner.invoke(
        app,
        ["evaluate", str(test_dir), "--model", str(run / BEST), "--out", str(out), "--device", "cpu", "--no-flip",
         "--tta-shift", "0.06"],
    )  # fmt: skip
    assert unflipped.exit_code == 0, unflipped.output
    assert json.loads((out / "report.json").read_text())["params"] == {"flip": False, "tta_shift": 0.06}
    assert "shifted views: 0.06 of the side" in unflipped.output


def test_cli_unknown_class_folder_exits_2(tmp_path: Path) -> None:
    make_stripes(tmp_path / "data", 2, seed=0)
    (tmp_path / "data" / "bored").mkdir()
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--size", "48"])
    assert result.exit_code == 2
    assert "'bored'" in result.output and not (tmp_path / "run" / LAST).exists()


def test_cli_crop_context_without_a_crop_definition_exits_2_before_anything_is_stored(tmp_path: Path) -> None:
    make_stripes(tmp_path / "data", 2, seed=0)
    args = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--size", "48", "--crop", "legacy"]
    result = CliRunner().invoke(app, [*args, "--context", "reflect"])
    assert result.exit_code == 2 and "--crop aligned or calibrated" in result.output
    assert not (tmp_path / "run").exists()
    unknown = CliRunner().invoke(app, [*args[:-2], "--crop", "calibrated", "--context", "zeros"])
    assert unknown.exit_code == 2 and "unknown crop context 'zeros'" in unknown.output
    assert not (tmp_path / "run").exists()


# --- protocols -------------------------------------------------------------------------------------------------


def test_cross_validate_kfold_per_fold_results_and_resume(
    stripes: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_dir, _ = stripes
    folds: list[tuple[int, int]] = []
    on_fold = Callbacks(on_fold=lambda k, n: folds.append((k, n)))
    result = cross_validate(train_dir, tmp_path, callbacks=on_fold, **KFOLD2)
    assert folds == [(1, 2), (2, 2)]
    assert result.protocol == "kfold" and result.params["folds"] == 2 and result.params["images"] == 192
    assert len(result.report.folds) == 2 and result.report.classes == ["happy", "sad"]
    saved = [json.loads((tmp_path / f"fold-{k}" / "result.json").read_text()) for k in (1, 2)]
    tests = np.sort(np.concatenate([s["test_idx"] for s in saved]))
    assert np.array_equal(tests, np.arange(192))  # the test sets partition the data
    for fold, s in zip(result.report.folds, saved):
        assert sum(map(sum, fold.confusion)) == len(s["test_idx"]) == len(s["y_pred"])
        assert fold.accuracy == pytest.approx(np.mean(np.array(s["y_true"]) == np.array(s["y_pred"])))
    assert result.report.mean_accuracy == pytest.approx(np.mean([f.accuracy for f in result.report.folds]))

    def no_training(*args: object, **kw: object) -> None:
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(experiment, "fit", no_training)
    again = cross_validate(train_dir, tmp_path, **KFOLD2)
    assert again.to_dict() == result.to_dict()


def test_cross_validate_folds_split_between_runs(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    """``only`` trains the folds given; the run that completes the set returns the report over all of them."""
    train_dir, _ = stripes
    with pytest.raises(ValueError, match="no fold"):
        cross_validate(train_dir, tmp_path, only={3}, **KFOLD2)
    assert cross_validate(train_dir, tmp_path, only={2}, **KFOLD2) is None
    assert (tmp_path / "fold-2" / "result.json").exists() and not (tmp_path / "fold-1").exists()
    result = cross_validate(train_dir, tmp_path, only={1}, **KFOLD2)
    assert result is not None and len(result.report.folds) == 2
    tested = [json.loads((tmp_path / f"fold-{k}" / "result.json").read_text())["test_idx"] for k in (1, 2)]
    assert sorted(tested[0] + tested[1]) == list(range(192))


def test_cross_validate_leaves_a_fold_another_process_trains_to_it(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, _ = stripes
    (tmp_path / "fold-1").mkdir()
    (tmp_path / "fold-1" / LOCK).write_text(f"{socket.gethostname()} {os.getppid()}")  # a live process holds fold 1
    busy: list[int] = []
    assert cross_validate(train_dir, tmp_path, callbacks=Callbacks(on_busy=lambda k, _: busy.append(k)), **KFOLD2) is None
    assert busy == [1] and (tmp_path / "fold-2" / "result.json").exists()
    assert not (tmp_path / "fold-1" / "result.json").exists() and not (tmp_path / "fold-1" / LAST).exists()
    assert not (tmp_path / "fold-2" / LOCK).exists()
    (tmp_path / "fold-1" / LOCK).unlink()  # that process finished
    assert len(cross_validate(train_dir, tmp_path, **KFOLD2).report.folds) == 2


def test_evaluate_cli_writes_the_report_once_every_fold_ran(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, _ = stripes
    command = ["evaluate", str(train_dir), "--protocol", "kfold", "--folds", "2", "--size", str(SIZE), "--width", "0.125"]
    command += ["--epochs", "1", "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path), "--no-store"]
    command += ["--val-fraction", "0"]  # the paper's protocol: train on the whole training split, keep the last epoch
    first = CliRunner().invoke(app, [*command, "--fold", "2"])
    assert first.exit_code == 0, first.output
    assert "other folds have no result yet" in first.output and not (tmp_path / "report.json").exists()
    assert CliRunner().invoke(app, [*command, "--fold", "5"]).exit_code == 2
    second = CliRunner().invoke(app, command)
    assert second.exit_code == 0, second.output
    params = json.loads((tmp_path / "report.json").read_text())["params"]
    assert params["folds"] == 2 and params["val_fraction"] == 0
    fold = load_checkpoint(tmp_path / "fold-1" / BEST)
    assert fold.metrics == {} and [e["val_accuracy"] for e in fold.training["history"]] == [None]


def test_cli_train_without_validation_keeps_every_image_and_the_last_epoch(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, _ = stripes
    command = ["train", str(train_dir), "--out", str(tmp_path), "--crop", "legacy", "--size", str(SIZE), "--width", "0.125", "--epochs", "2"]
    result = CliRunner().invoke(app, [*command, "--batch-size", "16", "--device", "cpu", "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    training = load_checkpoint(tmp_path / BEST).training
    assert (training["train_images"], training["val_images"], training["epoch"]) == (192, 0, 2)
    card = model_card("stripes", tmp_path / BEST, evaluate_checkpoint(tmp_path / BEST, train_dir, device="cpu"), "train", "")
    assert "| model selection | none: the last epoch |" in card and "| epochs | 2 of 2 |" in card
    assert "| training time |" in card and "best epoch" not in card
    assert CliRunner().invoke(app, [*command, "--val-fraction", "0.9"]).exit_code == 2


def test_cross_validate_subject_folds_never_share_a_subject(stripes: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, _ = stripes
    result = cross_validate(
        train_dir,
        tmp_path,
        protocol="subject-kfold",
        model=TINY,
        train=TrainConfig(epochs=1, batch_size=16, device="cpu"),
        data=DataOptions(size=SIZE),
        folds=2,
    )
    assert len(result.report.folds) == 2
    paths = sorted(str(p) for p in train_dir.rglob("*.png"))  # load order: class folder, then name
    subject = [Path(p).name[:4] for p in paths]
    for k in (1, 2):
        test = set(json.loads((tmp_path / f"fold-{k}" / "result.json").read_text())["test_idx"])
        assert {subject[i] for i in test}.isdisjoint(subject[i] for i in range(len(paths)) if i not in test)


def test_augmentation_ranges_are_checked() -> None:
    assert TrainConfig(rotation=10, scale_jitter=0.1).rotation == 10
    for bad in ({"rotation": -1.0}, {"rotation": 181.0}, {"scale_jitter": -0.1}):
        with pytest.raises(ValueError, match="rotation must be"):
            TrainConfig(**bad)
