"""Training and evaluation on labelled image folders: the functions behind ``fervid train`` and ``fervid evaluate``."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fervid.model.align import CropSpec, FaceCropper, calibrate
from fervid.model.checkpoint import Checkpoint, load_checkpoint
from fervid.model.config import CROP_MODES, check_context
from fervid.model.data import ImageSet, class_folders, list_images, load_image_folder, read_image, soft_labels
from fervid.model.detect import DETECTORS, FaceDetector, create_detector
from fervid.model.infer import resolve_device
from fervid.model.lock import FolderBusyError
from fervid.model.metrics import ClassificationReport, CrossValidationReport, classification_report, cross_validation_report
from fervid.model.network import ModelConfig
from fervid.model.preprocess import PREPROCESSING
from fervid.model.splits import make_splits, subject_of, validation_split
from fervid.model.train import EpochStats, TrainConfig, TrainResult, fit, predict_probabilities
from fervid.settings import get_settings

#: Images of the training folder the crop definition is calibrated on (a random sample).
CALIBRATION_IMAGES = 2000


def production_detector(name: str) -> FaceDetector:
    """The detector ``name`` exactly as jobs build it by default (threshold, detection size)."""
    settings = get_settings()
    return create_detector(name, threshold=settings.detector_threshold, max_side=settings.detect_size)


@dataclass
class DataOptions:
    """How a class-folder tree is read: input size, class subset, unknown folders, the face crop.

    ``detector`` ``None``: every image is the face, framed by ``crop`` (``None``: as it is); with a detector,
    faces are located and cut out as jobs do (:func:`~fervid.model.data.face_input`) with ``crop``.
    ``soft_labels``: a CSV of per-image label distributions (:func:`~fervid.model.data.soft_labels`).
    ``context``: what surrounds a face crop in its frame, for the crop definition :func:`calibrated` makes.
    """

    size: int = 128
    classes: Sequence[str] | None = None
    skip_unknown: bool = False
    detector: str | None = None
    crop: CropSpec | None = None
    soft_labels: str | Path | None = None
    context: str = "black"

    def __post_init__(self) -> None:
        check_context(self.context)

    def load(self, root: str | Path, on_skip: Callable[[str], None] | None = None) -> ImageSet:
        detector = production_detector(self.detector) if self.detector else None
        cropper = FaceCropper(self.size, self.detector or "none", self.crop)
        images = load_image_folder(
            root, self.size, classes=self.classes, skip_unknown=self.skip_unknown, detector=detector, cropper=cropper,
            on_skip=on_skip,
        )  # fmt: skip
        if self.soft_labels is not None:
            images.soft, _ = soft_labels(self.soft_labels, images)
        return images

    def preprocessing(self) -> dict[str, Any]:
        """What a checkpoint trained on these images records: the crop definition and how its images were cut."""
        if self.crop is None:
            return dict(PREPROCESSING)
        return {**PREPROCESSING, "crop": self.crop.to_dict(), "train_detector": self.detector or "none"}


def calibrated(data: DataOptions, root: str | Path, mode: str, seed: int = 0) -> tuple[DataOptions, dict[str, Any]]:
    """``data`` with the crop definition of ``mode`` (:data:`~fervid.model.align.CROP_MODES`): ``legacy`` keeps
    the old box-and-margin crop; ``calibrated`` calibrates a spec on a sample of ``root``'s images (so that job
    crops reproduce their framing) and trains on the images as they are; ``aligned`` also cuts every training and
    validation image with that spec and the production CenterFace detector, as jobs cut faces."""
    if mode not in CROP_MODES:
        raise ValueError(f"unknown crop mode {mode!r}; choose one of: {', '.join(CROP_MODES)}")
    if mode == "legacy":
        if data.context != "black":
            raise ValueError(f"a crop context ({data.context}) needs a crop definition: --crop aligned or calibrated")
        return data, {}
    files = [p for folders in class_folders(root, data.classes, data.skip_unknown).values() for f in folders for p in list_images(f)]
    sample = np.random.default_rng(seed).permutation(len(files))[:CALIBRATION_IMAGES]
    spec, report = calibrate((read_image(files[i]) for i in sample), {name: production_detector(name) for name in DETECTORS})
    detector = "centerface" if mode == "aligned" else None
    spec = replace(spec, context=data.context)
    return replace(data, detector=detector, crop=spec), report


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


#: A run folder's record of how it was started (:func:`train_folder`) and its cache of prepared images.
RUN_FILE = "run.json"
IMAGES_FILE = "images.npz"


class RunMismatchError(ValueError):
    """A run folder that holds a run started with other settings."""


def _cached_sets(out_dir: Path, load: Callable[[], tuple[ImageSet, ImageSet | None]]) -> tuple[ImageSet, ImageSet | None]:
    """The run's prepared training and validation images, from ``out_dir``'s cache or ``load`` (then cached), so
    that resuming a run does not cut every face again."""
    path = out_dir / IMAGES_FILE
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            sets = [
                ImageSet(z[f"{k}_x"], z[f"{k}_y"], meta["classes"], meta[f"{k}_paths"], undetected=meta[f"{k}_undetected"],
                         soft=z[f"{k}_soft"] if f"{k}_soft" in z.files else None)
                if f"{k}_x" in z.files else None
                for k in ("train", "val")
            ]  # fmt: skip
        return sets[0], sets[1]  # type: ignore[return-value]
    train_set, val_set = load()
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"classes": train_set.classes}
    for key, part in (("train", train_set), ("val", val_set)):
        if part is None:
            continue
        arrays.update({f"{key}_x": part.x, f"{key}_y": part.y})
        if part.soft is not None:
            arrays[f"{key}_soft"] = part.soft
        meta.update({f"{key}_paths": part.paths, f"{key}_undetected": part.undetected})
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    path.with_suffix(".tmp").replace(path)
    return train_set, val_set


def train_folder(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    model: ModelConfig,
    train: TrainConfig,
    data: DataOptions,
    val_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    crop: str = "legacy",
    command: str | None = None,
    callbacks: Callbacks | None = None,
) -> TrainResult:
    """Train on ``data_dir``; model selection on ``val_dir`` or on a stratified ``val_fraction`` of the training
    data; ``crop`` is the crop mode (:func:`calibrated`), the definition recorded in the checkpoints.

    ``out_dir`` keeps the run: ``run.json`` (these arguments, the crop definition), ``images.npz`` (the prepared
    images), ``last.pt`` and ``best.pt``. The same call continues an interrupted run after its last finished epoch
    (:func:`resume_run` needs only the folder); other settings in a folder that holds a run are
    :class:`RunMismatchError`.
    """
    callbacks = callbacks or Callbacks()
    out_dir = Path(out_dir)
    request = {
        "data_dir": str(Path(data_dir).resolve()),
        "val_dir": str(Path(val_dir).resolve()) if val_dir is not None else None,
        "val_fraction": val_fraction,
        "crop": crop,
        "model": model.to_dict(),
        "train": asdict(train),
        "data": {"size": data.size, "classes": list(data.classes) if data.classes else None,
                 "skip_unknown": data.skip_unknown,
                 "soft_labels": str(Path(data.soft_labels).resolve()) if data.soft_labels else None,
                 "context": data.context},
    }  # fmt: skip
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        saved = json.loads(run_file.read_text())
        # A run started before an option existed ran with its default: compare the settings as they are now read.
        before = {**saved["request"], "train": asdict(TrainConfig(**saved["request"]["train"])),
                  "data": {"context": "black", **saved["request"]["data"]}}  # fmt: skip
        if before != request:
            changed = sorted(k for k in request if before.get(k) != request[k])
            raise RunMismatchError(
                f"{out_dir}: holds a run started with other settings ({', '.join(changed)}); continue it with "
                f"`fervid train --resume {out_dir}` or train into another --out"
            )
        spec = CropSpec.from_dict(saved["crop_spec"]) if saved.get("crop_spec") else None
        detector = "centerface" if crop == "aligned" else None
        data = replace(data, detector=detector, crop=spec)
        calibration = saved.get("calibration", {})
        command = saved.get("command", command)
    else:
        data, calibration = calibrated(data, data_dir, crop, train.seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        record = {"request": request, "command": command, "crop_spec": data.crop.to_dict() if data.crop else None,
                  "calibration": calibration}  # fmt: skip
        run_file.write_text(json.dumps(record, indent=2))

    def load() -> tuple[ImageSet, ImageSet | None]:
        dataset = data.load(data_dir, callbacks.on_skip)
        if val_dir is not None:
            val_options = DataOptions(data.size, dataset.classes, True, data.detector, data.crop)
            return dataset, val_options.load(val_dir, callbacks.on_skip)
        if val_fraction > 0:
            train_idx, val_idx = validation_split(np.arange(len(dataset)), dataset.y, val_fraction, train.seed)
            return dataset.subset(train_idx), dataset.subset(val_idx)
        return dataset, None

    train_set, val_set = _cached_sets(out_dir, load)
    info = {
        "data": str(data_dir),
        "val_data": str(val_dir) if val_dir else f"{val_fraction:.0%} of the training data" if val_fraction else None,
        "train_images": len(train_set),
        "val_images": len(val_set) if val_set is not None else 0,
        "soft_labels": str(data.soft_labels) if data.soft_labels else None,
        "crop_mode": crop,
        "calibration": calibration,
        "undetected": {"train": train_set.undetected, "val": val_set.undetected if val_set is not None else 0},
        "command": command,
    }
    return fit(
        _model_config(model, len(train_set.classes)),
        train_set,
        val_set,
        train,
        out_dir,
        preprocessing=data.preprocessing(),
        training_info=info,
        on_epoch=callbacks.on_epoch,
        on_batch=callbacks.on_batch,
    )


def resume_run(out_dir: str | Path, callbacks: Callbacks | None = None) -> TrainResult:
    """Continue the run in ``out_dir`` exactly as it was started (its ``run.json``)."""
    run_file = Path(out_dir) / RUN_FILE
    if not run_file.exists():
        raise RunMismatchError(f"{out_dir}: no run to resume (no {RUN_FILE})")
    saved = json.loads(run_file.read_text())
    r = saved["request"]
    return train_folder(
        r["data_dir"], out_dir, model=ModelConfig(**r["model"]), train=TrainConfig(**r["train"]),
        data=DataOptions(**r["data"]), val_dir=r["val_dir"], val_fraction=r["val_fraction"], crop=r["crop"],
        command=saved.get("command"), callbacks=callbacks,
    )  # fmt: skip


def checkpoint_data(ckpt: Checkpoint, classes: Sequence[str] | None = None, detector: str | None = None) -> DataOptions:
    """How to read a folder for ``ckpt`` as its training images were read: its input size and crop definition,
    the detector its images were cut with unless ``detector`` is given, ``classes`` (default: all of its own)
    restricted to the checkpoint's, unknown folders skipped."""
    crop = ckpt.preprocessing.get("crop")
    trained_with = ckpt.preprocessing.get("train_detector")
    if detector is None and trained_with not in (None, "none"):
        detector = str(trained_with)
    wanted = [c for c in ckpt.classes if not classes or c in set(classes)]
    return DataOptions(ckpt.input_size, wanted, True, detector, CropSpec.from_dict(crop) if crop else None)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    data: DataOptions | None = None,
    device: str = "auto",
    flip: bool = False,
    shift: float = 0.0,
) -> ClassificationReport:
    """Accuracy, per-class metrics and confusion matrix of a checkpoint on a class-folder tree.

    Folders of classes the model lacks are skipped; the input size and the crop definition are the checkpoint's;
    with ``data.detector`` the faces are found and cut out as a job does; ``flip`` and ``shift`` average each face
    over its views (:mod:`fervid.model.tta`).
    """
    ckpt = load_checkpoint(checkpoint)
    options = data or DataOptions()
    dataset = checkpoint_data(ckpt, options.classes, options.detector).load(data_dir)
    probs = predict_probabilities(ckpt.build(), dataset.x, resolve_device(device), flip=flip, shift=shift)
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
    crop: str = "legacy",
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
    data, _ = calibrated(data, data_dir, crop, train.seed)
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
                config, dataset.subset(fit_idx), val_set, train, fold_dir, preprocessing=data.preprocessing(),
                on_epoch=callbacks.on_epoch, on_batch=callbacks.on_batch,
            )  # fmt: skip
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


def recalibrate(checkpoint: str | Path, data_dir: str | Path, out: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write to ``out`` a copy of ``checkpoint`` — trained on ``data_dir``'s face crops as they are — with the crop
    definition calibrated on those images (the ``calibrated`` crop mode after the fact), so that jobs reproduce
    the framing it was trained on; returns the calibration report."""
    from fervid.model.checkpoint import save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    data, report = calibrated(DataOptions(ckpt.input_size, ckpt.classes, True), data_dir, "calibrated", seed)
    training = {**ckpt.training, "crop_mode": "calibrated", "calibration": report}
    save_checkpoint(
        out, ckpt.build(), ckpt.config, ckpt.classes, ckpt.input_size, data.preprocessing(), training, ckpt.metrics
    )
    return report
