"""Training and evaluation on labelled image folders: the functions behind ``fervid train`` and ``fervid evaluate``."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fervid.model.checkpoint import load_checkpoint
from fervid.model.data import ImageSet, load_image_folder
from fervid.model.detect import create_detector
from fervid.model.metrics import ClassificationReport, CrossValidationReport, classification_report, cross_validation_report
from fervid.model.network import ModelConfig
from fervid.model.splits import make_splits, subject_of, validation_split
from fervid.model.infer import resolve_device
from fervid.model.lock import FolderBusyError
from fervid.model.train import EpochStats, TrainConfig, TrainResult, fit, predict_probabilities


@dataclass
class DataOptions:
    """How a class-folder tree is read: input size, class subset, unknown folders, optional face detection."""

    size: int = 128
    classes: Sequence[str] | None = None
    skip_unknown: bool = False
    detector: str | None = None  # None: the folders already hold face crops

    def load(self, root: str | Path, on_skip: Callable[[str], None] | None = None) -> ImageSet:
        detector = create_detector(self.detector) if self.detector else None
        return load_image_folder(
            root, self.size, classes=self.classes, skip_unknown=self.skip_unknown, detector=detector, on_skip=on_skip
        )


@dataclass
class Callbacks:
    on_epoch: Callable[[EpochStats], None] | None = None
    on_batch: Callable[[int, int], None] | None = None
    on_fold: Callable[[int, int], None] | None = None
    on_skip: Callable[[str], None] | None = None
    on_busy: Callable[[int, str], None] | None = None  # fold number, why it was left to another process


@dataclass
class ProtocolResult:
    report: CrossValidationReport
    protocol: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "params": self.params, **self.report.to_dict()}


def _model_config(base: ModelConfig, num_classes: int) -> ModelConfig:
    return ModelConfig(**{**base.to_dict(), "num_classes": num_classes})


def train_folder(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    model: ModelConfig,
    train: TrainConfig,
    data: DataOptions,
    val_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    command: str | None = None,
    callbacks: Callbacks | None = None,
) -> TrainResult:
    """Train on ``data_dir``; model selection on ``val_dir`` or on a stratified ``val_fraction`` of the training data."""
    callbacks = callbacks or Callbacks()
    dataset = data.load(data_dir, callbacks.on_skip)
    if val_dir is not None:
        val_set = DataOptions(data.size, dataset.classes, True, data.detector).load(val_dir, callbacks.on_skip)
        train_set = dataset
    elif val_fraction > 0:
        train_idx, val_idx = validation_split(np.arange(len(dataset)), dataset.y, val_fraction, train.seed)
        train_set, val_set = dataset.subset(train_idx), dataset.subset(val_idx)
    else:
        train_set, val_set = dataset, None
    info = {
        "data": str(data_dir),
        "val_data": str(val_dir) if val_dir else f"{val_fraction:.0%} of the training data" if val_fraction else None,
        "train_images": len(train_set),
        "val_images": len(val_set) if val_set is not None else 0,
        "command": command,
    }
    return fit(
        _model_config(model, len(dataset.classes)),
        train_set,
        val_set,
        train,
        out_dir,
        training_info=info,
        on_epoch=callbacks.on_epoch,
        on_batch=callbacks.on_batch,
    )


def evaluate_checkpoint(
    checkpoint: str | Path, data_dir: str | Path, *, data: DataOptions | None = None, device: str = "auto"
) -> ClassificationReport:
    """Accuracy, per-class metrics and confusion matrix of a checkpoint on a class-folder tree.

    Folders of classes the model lacks are skipped; the input size is the checkpoint's.
    """
    ckpt = load_checkpoint(checkpoint)
    options = data or DataOptions()
    classes = [c for c in ckpt.classes if not options.classes or c in set(options.classes)]
    dataset = DataOptions(ckpt.input_size, classes, True, options.detector).load(data_dir)
    probs = predict_probabilities(ckpt.build(), dataset.x, resolve_device(device))
    predicted = [ckpt.classes[i] for i in probs.argmax(1)]
    truth = [dataset.classes[i] for i in dataset.y]
    return classification_report(truth, predicted, ckpt.classes)


def cross_validate(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    protocol: str,
    model: ModelConfig,
    train: TrainConfig,
    data: DataOptions,
    folds: int = 10,
    test_fraction: float = 0.1,
    subject_pattern: str = r"S\d+",
    val_fraction: float = 0.1,
    only: Collection[int] | None = None,
    callbacks: Callbacks | None = None,
) -> ProtocolResult | None:
    """Train and test one model per split of ``protocol`` (``holdout``, ``kfold``, ``subject-kfold``).

    Each fold trains in ``out_dir/fold-K`` (resumable) and stores its test predictions in ``fold-K/result.json``;
    finished folds are not trained again. Model selection uses a validation split of the fold's training data,
    never its test data. ``only`` (fold numbers from 1) trains just those folds, so that several processes or
    machines sharing ``out_dir`` split the work; a fold another process is training is left to it (its lock, see
    :mod:`fervid.model.lock`). The result is ``None`` while any fold has no predictions yet.
    """
    callbacks = callbacks or Callbacks()
    dataset = data.load(data_dir, callbacks.on_skip)
    groups = [subject_of(p, subject_pattern) for p in dataset.paths] if protocol == "subject-kfold" else None
    splits = make_splits(protocol, dataset.y, folds=folds, test_fraction=test_fraction, groups=groups, seed=train.seed)
    config = _model_config(model, len(dataset.classes))
    device = resolve_device(train.device)
    if only is not None and not set(only) <= set(range(1, len(splits) + 1)):
        raise ValueError(f"no fold {sorted(set(only) - set(range(1, len(splits) + 1)))} in {len(splits)} fold(s)")
    results: list[tuple[list[int], list[int]]] = []
    for k, (train_idx, test_idx) in enumerate(splits):
        fold_dir = Path(out_dir) / f"fold-{k + 1}"
        result_path = fold_dir / "result.json"
        if result_path.exists():
            saved = json.loads(result_path.read_text())
            results.append((saved["y_true"], saved["y_pred"]))
            continue
        if only is not None and k + 1 not in only:
            continue
        if callbacks.on_fold:
            callbacks.on_fold(k + 1, len(splits))
        fit_idx, val_idx = validation_split(train_idx, dataset.y, val_fraction, train.seed) if val_fraction else (train_idx, None)
        val_set = dataset.subset(val_idx) if val_idx is not None else None
        try:
            outcome = fit(
                config, dataset.subset(fit_idx), val_set, train, fold_dir, on_epoch=callbacks.on_epoch, on_batch=callbacks.on_batch
            )
        except FolderBusyError as busy:
            if callbacks.on_busy:
                callbacks.on_busy(k + 1, str(busy))
            continue
        probs = predict_probabilities(load_checkpoint(outcome.best_path).build().to(device), dataset.x[test_idx], device)
        y_true, y_pred = dataset.y[test_idx].tolist(), probs.argmax(1).tolist()
        result_path.write_text(json.dumps({"test_idx": test_idx.tolist(), "y_true": y_true, "y_pred": y_pred}))
        results.append((y_true, y_pred))
    if len(results) < len(splits):
        return None
    report = cross_validation_report(results, dataset.classes)
    params = {
        "folds": len(splits),
        "images": len(dataset),
        "size": data.size,
        "model": config.to_dict(),
        "epochs": train.epochs,
        "val_fraction": val_fraction,
        "seed": train.seed,
    }
    return ProtocolResult(report, protocol, params)
