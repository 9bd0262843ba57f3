"""``fervid train`` and ``fervid evaluate``: thin commands over :mod:`fervid.model.experiment`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fervid.cli.errors import handle_errors
from fervid.cli.jobs import TtaShift
from fervid.model.config import (
    ARCHS,
    ATTENTIONS,
    CROP_MODES,
    OPTIMIZERS,
    POSITIONS,
    PRECISIONS,
    SCHEDULES,
    ModelConfig,
    TrainConfig,
)
from fervid.settings import CROP_CONTEXTS, described, get_settings

console = Console(highlight=False)
#: The defaults of every network and training option (one source: fervid.model.config).
MODEL, TRAIN = ModelConfig(), TrainConfig()

DataDir = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="One sub-folder per class.")]
Size = Annotated[int, typer.Option(help="Input size in pixels (the paper: 128; 48 and 64 are faster).")]
Classes = Annotated[Optional[str], typer.Option(help="Comma-separated subset of classes, e.g. the paper's six.")]
SkipUnknown = Annotated[bool, typer.Option(metavar="", help="Skip class folders with unknown names instead of failing.")]
Detect = Annotated[Optional[str], typer.Option(help="Detect faces first (haar|centerface); off for face crops.")]
Attention = Annotated[str, typer.Option(help="|".join(ATTENTIONS))]
Position = Annotated[str, typer.Option(help="|".join(POSITIONS))]
Width = Annotated[float, typer.Option(help="Width multiplier of every layer (the VGG archs).")]
Arch = Annotated[str, typer.Option(help="|".join(ARCHS))]
Epochs = Annotated[int, typer.Option(help="Training epochs (per fold with --protocol).")]
BatchSize = Annotated[int, typer.Option(help="Images per optimiser step.")]
Lr = Annotated[float, typer.Option(help="Learning rate (the paper: Adam, 0.0005).")]
Schedule = Annotated[str, typer.Option(help="|".join(SCHEDULES))]
Optimizer = Annotated[str, typer.Option(help=f"{'|'.join(OPTIMIZERS)} (sgd: Nesterov momentum 0.9)")]
WeightDecay = Annotated[float, typer.Option(help="Weight decay.")]
Erasing = Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability of random erasing per image.")]
Rotation = Annotated[float, typer.Option(min=0.0, max=180.0, help="Augmentation: roll within ± this many degrees.")]
ScaleJitter = Annotated[float, typer.Option(min=0.0, help="Augmentation: scale within [1/(1+j), 1+j].")]
Mixup = Annotated[float, typer.Option(min=0.0, help="Mixup Beta(a, a) parameter; 0 is off.")]
Precision = Annotated[str, typer.Option(help=f"{'|'.join(PRECISIONS)} on CPU (auto: the faster, measured at start); CUDA: fp16.")]
Crop = Annotated[
    str,
    typer.Option(
        help=f"{'|'.join(CROP_MODES)}. aligned: cut every image with CenterFace and the calibrated crop, as jobs do; calibrated: train on the "
        "images as they are, record the crop that reproduces their framing; legacy: box plus 20 % margin."
    ),
]
Context = Annotated[
    str,
    typer.Option(
        help=f"{'|'.join(CROP_CONTEXTS)}: what surrounds a face crop where its aligned crop reaches beyond it (with --crop aligned or "
        "calibrated; recorded in the crop definition); reflect: the crop's mirror image, as real surroundings continue a face."
    ),
]
SoftLabels = Annotated[
    Optional[Path], typer.Option(exists=True, dir_okay=False, help="CSV of per-image label distributions (e.g. FER+ votes.csv).")
]
Smoothing = Annotated[float, typer.Option(help="Label smoothing.")]
Weighted = Annotated[bool, typer.Option(metavar="", help="Class-weighted cross-entropy.")]
Init = Annotated[
    Optional[str],
    typer.Option(help="Start from this checkpoint's weights (a shipped name or a path); shared classes keep their outputs."),
]
Teacher = Annotated[
    Optional[str],
    typer.Option(help="Distil from this trained checkpoint (a shipped name or a path): its predictions on each batch join the targets."),
]
Distill = Annotated[float, typer.Option(min=0.0, max=1.0, help="With --teacher: the teacher's share of each target, the labels' the rest.")]
Seed = Annotated[int, typer.Option(help="Random seed: initial weights, batch order, augmentation, splits.")]
Device = Annotated[str, typer.Option(help="auto|cpu|cuda")]
ValFraction = Annotated[
    float,
    typer.Option(
        min=0.0, max=0.5, help="Share of the training images held out to pick the best epoch; 0 keeps the last (the paper)."
    ),
]


def _classes(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _configs(arch, attention, position, width, **train):  # type: ignore[no-untyped-def]
    return ModelConfig(arch=arch, attention=attention, position=position, width=width), TrainConfig(**train)


class _Bars:
    """A progress bar over epochs (or folds) with the batch bar below it and one line per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.batches = progress.add_task("batches", total=None)

    def on_batch(self, done: int, total: int) -> None:
        self.progress.update(self.batches, completed=done, total=total)

    def on_epoch(self, s) -> None:  # type: ignore[no-untyped-def]
        self.progress.console.print(s.line())

    def on_fold(self, k: int, n: int) -> None:
        self.progress.console.print(f"[bold]fold {k}/{n}[/]")

    def on_skip(self, message: str) -> None:
        self.progress.console.print(f"[yellow]skipped:[/] {message}")

    def on_busy(self, k: int, message: str) -> None:
        self.progress.console.print(f"[yellow]fold {k} left to another process:[/] {message}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console,
    )


def train(
    data_dir: Annotated[
        Optional[Path], typer.Argument(exists=True, file_okay=False, help="One sub-folder per class (not with --resume).")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Run folder: run.json, images.npz, best.pt, last.pt [default: FERVID_DATA_DIR/runs/<DATA_DIR name>]."),
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option(exists=True, file_okay=False, help="Continue the run in this folder exactly as it was started.")
    ] = None,
    val: Annotated[Optional[Path], typer.Option(help="Validation folder (default: --val-fraction of DATA_DIR).")] = None,
    val_fraction: ValFraction = 0.1,
    size: Size = 128,
    classes: Classes = None,
    skip_unknown: SkipUnknown = False,
    crop: Crop = "aligned",
    context: Context = "black",
    soft_labels: SoftLabels = None,
    arch: Arch = MODEL.arch,
    attention: Attention = MODEL.attention,
    position: Position = MODEL.position,
    width: Width = MODEL.width,
    epochs: Epochs = TRAIN.epochs,
    batch_size: BatchSize = TRAIN.batch_size,
    optimizer: Optimizer = TRAIN.optimizer,
    lr: Lr = TRAIN.lr,
    weight_decay: WeightDecay = TRAIN.weight_decay,
    schedule: Schedule = TRAIN.schedule,
    smoothing: Smoothing = TRAIN.label_smoothing,
    weighted: Weighted = TRAIN.class_weighted,
    erasing: Erasing = TRAIN.erasing,
    rotation: Rotation = TRAIN.rotation,
    scale_jitter: ScaleJitter = TRAIN.scale_jitter,
    mixup: Mixup = TRAIN.mixup,
    init: Init = TRAIN.init,
    teacher: Teacher = TRAIN.teacher,
    distill: Distill = TRAIN.distill,
    seed: Seed = TRAIN.seed,
    device: Device = TRAIN.device,
    precision: Precision = TRAIN.precision,
) -> None:
    """Train fervid's network on a class-folder tree; the same command, or --resume OUT, continues an interrupted run."""
    from fervid.model.experiment import Callbacks, DataOptions, resume_run, train_folder

    if (data_dir is None) == (resume is None):
        raise typer.BadParameter("give DATA_DIR or --resume RUN_DIR")
    if resume is not None:
        with _progress() as progress:
            bars = _Bars(progress)
            result = handle_errors(resume_run)(resume, Callbacks(bars.on_epoch, bars.on_batch, None, bars.on_skip))
        _print_best(result)
        return
    assert data_dir is not None
    out = out or get_settings().data_dir / "runs" / data_dir.resolve().name
    run = handle_errors(train_folder)
    model, config = handle_errors(_configs)(
        arch, attention, position, width, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        optimizer=optimizer, schedule=schedule, label_smoothing=smoothing, class_weighted=weighted, erasing=erasing,
        rotation=rotation, scale_jitter=scale_jitter, mixup=mixup, init=init, teacher=teacher,
        distill=distill, seed=seed, device=device, precision=precision,
    )  # fmt: skip
    with _progress() as progress:
        bars = _Bars(progress)
        result = run(
            data_dir,
            out,
            model=model,
            train=config,
            data=handle_errors(DataOptions)(size, _classes(classes), skip_unknown, soft_labels=soft_labels, context=context),
            val_dir=val,
            val_fraction=val_fraction,
            crop=crop,
            command=shlex.join(["fervid", *sys.argv[1:]]),
            callbacks=Callbacks(bars.on_epoch, bars.on_batch, None, bars.on_skip),
        )
    _print_best(result)


def _print_best(result) -> None:  # type: ignore[no-untyped-def]
    best = f"{result.best_accuracy:.4f}" if result.best_accuracy is not None else "n/a"
    console.print(f"best checkpoint: {result.best_path} (validation accuracy {best})")


def evaluate(
    data_dir: DataDir,
    model: Annotated[Optional[str], typer.Option(help="Checkpoint to test (a shipped name or a path).")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Train and test per split: holdout|kfold|subject-kfold.")] = None,
    folds: Annotated[int, typer.Option(help="Folds of the cross-validation protocols.")] = 10,
    fold: Annotated[
        Optional[list[int]],
        typer.Option(help="Train only this fold (repeatable), e.g. one process per core; rerun without it for the report."),
    ] = None,
    subject_pattern: Annotated[str, typer.Option(help="Regex for the subject id in file names.")] = r"S\d+",
    val_fraction: ValFraction = 0.1,
    out: Annotated[Path, typer.Option(help="Folder for fold runs and the report (report.json, report.md).")] = Path("runs/evaluate"),
    size: Size = 128,
    classes: Classes = None,
    skip_unknown: SkipUnknown = False,
    detect: Detect = None,
    flip: Annotated[
        Optional[bool],
        typer.Option(metavar="", help=described("flip", "With --model: average each face's probabilities with its mirror image's, as jobs do.")),
    ] = None,
    tta_shift: TtaShift = None,
    crop: Crop = "legacy",
    context: Context = "black",
    arch: Arch = MODEL.arch,
    attention: Attention = MODEL.attention,
    position: Position = MODEL.position,
    width: Width = MODEL.width,
    epochs: Epochs = TRAIN.epochs,
    batch_size: BatchSize = TRAIN.batch_size,
    optimizer: Optimizer = TRAIN.optimizer,
    lr: Lr = TRAIN.lr,
    weight_decay: WeightDecay = TRAIN.weight_decay,
    schedule: Schedule = TRAIN.schedule,
    smoothing: Smoothing = TRAIN.label_smoothing,
    weighted: Weighted = TRAIN.class_weighted,
    erasing: Erasing = TRAIN.erasing,
    rotation: Rotation = TRAIN.rotation,
    scale_jitter: ScaleJitter = TRAIN.scale_jitter,
    mixup: Mixup = TRAIN.mixup,
    init: Init = TRAIN.init,
    teacher: Teacher = TRAIN.teacher,
    distill: Distill = TRAIN.distill,
    seed: Seed = TRAIN.seed,
    device: Device = TRAIN.device,
    precision: Precision = TRAIN.precision,
    store: Annotated[
        Optional[bool], typer.Option(metavar="", help="Store the result as an evaluation run [default: when FERVID_DATABASE_URL is set].")
    ] = None,
) -> None:
    """Evaluate a checkpoint on DATA_DIR (--model), or run one of the paper's protocols on it (--protocol)."""
    from fervid.model.experiment import Callbacks, DataOptions, cross_validate, evaluate_checkpoint

    if (model is None) == (protocol is None):
        raise typer.BadParameter("give exactly one of --model or --protocol")
    settings = handle_errors(get_settings)(flip=flip, tta_shift=tta_shift)
    options = handle_errors(DataOptions)(size, _classes(classes), skip_unknown, detect, context=context)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        from fervid.model.weights import resolve_model

        report = handle_errors(evaluate_checkpoint)(
            handle_errors(resolve_model)(model), data_dir, data=options, device=device, flip=settings.flip,
            shift=settings.tta_shift,
        )
        payload = {**report.to_dict(), "params": {"flip": settings.flip, "tta_shift": settings.tta_shift}}
        views = f"Flip averaging: {'on' if settings.flip else 'off'}; shifted views: {settings.tta_shift:g} of the side"
        markdown, name = f"{views}\n\n{report.to_markdown()}", "checkpoint"
    else:
        net, config = handle_errors(_configs)(
            arch, attention, position, width, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            optimizer=optimizer, schedule=schedule, label_smoothing=smoothing, class_weighted=weighted, erasing=erasing,
            rotation=rotation, scale_jitter=scale_jitter, mixup=mixup, init=init, teacher=teacher,
        distill=distill, seed=seed, device=device, precision=precision,
        )  # fmt: skip
        with _progress() as progress:
            bars = _Bars(progress)
            result = handle_errors(cross_validate)(
                data_dir,
                out,
                protocol=protocol,
                model=net,
                train=config,
                data=options,
                folds=folds,
                subject_pattern=subject_pattern,
                val_fraction=val_fraction,
                crop=crop,
                only=fold,
                callbacks=Callbacks(bars.on_epoch, bars.on_batch, bars.on_fold, bars.on_skip, bars.on_busy),
            )
        if result is None:
            done = f"fold(s) {', '.join(map(str, fold))} done" if fold else "no report yet"
            console.print(f"{done} in {out}: other folds have no result yet; the same command without --fold writes the report once they do")
            return
        payload, markdown, name = result.to_dict(), result.report.to_markdown(), protocol
    (out / "report.json").write_text(json.dumps(payload, indent=2))
    (out / "report.md").write_text(markdown + "\n")
    console.print(markdown)
    if store or (store is None and settings.database_url):
        from fervid.worker.evaluations import store_report

        evaluation_id = handle_errors(store_report)(settings, payload, name=str(data_dir), protocol=name, model_name=model)
        console.print(f"stored as evaluation {evaluation_id}")
