"""The paper's Tables 1–4 on CK+48 (six classes, contempt left out), reproduced with fervid's own training.

    python benchmarks/paper_tables.py            # full: 128 px, width 1, 10-fold everywhere; meant for a GPU
    python benchmarks/paper_tables.py --quick    # 2-core CPU, under 30 minutes; the output says what it reduces
    python benchmarks/paper_tables.py --smoke    # a few minutes: checks the script end to end

Table 1 compares the network with the reference networks (``vgg16_gap``, and MobileNetV2, DenseNet121 and
Xception from :mod:`fervid.model.backbones`), Table 2 the attention's position, Table 3 the CA / SA / CSA ablation,
Table 4 the attention modules; the ``subject`` rows put the subject-independent 10-fold figure beside the random
10-fold one. Every row runs :func:`fervid.model.experiment.cross_validate` in its own folder
``runs/paper_tables/<preset>/<row>/`` (one ``fold-K/`` per split, then ``row.json``); rerunning the same command
continues an interrupted run, and rows with the same network and protocol share one run. Writes ``benchmarks/results/paper_tables.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from fervid.model.augment import Augment
from fervid.model.backbones import BACKBONES
from fervid.model.data import ImageSet
from fervid.model.experiment import Callbacks, DataOptions, cross_validate
from fervid.model.infer import resolve_device
from fervid.model.network import POSITIONS, ModelConfig
from fervid.model.train import EpochStats, TrainConfig, fit, hardware

REPO = Path(__file__).resolve().parents[1]
CK48 = REPO.parent / "shared" / "datasets" / "ck48"
RUNS = REPO / "runs" / "paper_tables"
RESULTS = REPO / "benchmarks" / "results" / "paper_tables.md"

#: The paper's six CK+ classes (contempt left out).
SIX = ("happy", "sad", "surprise", "fear", "disgust", "anger")
#: The paper's CK+ (six classes) accuracies of its network; the other rows' figures are in the paper's tables.
PAPER = {"holdout": "98.86%", "kfold": "98.76 ± 1.89%"}
SEE_PAPER = "see paper"
TEST_FRACTION = 0.1
TABLES = ("1", "2", "3", "4", "subject")
TITLES = {
    "1": "Table 1: the network against the reference networks",
    "2": "Table 2: position of the attention module in each block",
    "3": "Table 3: channel / spatial attention ablation",
    "4": "Table 4: attention modules",
    "subject": "Subject-independent {folds}-fold beside the random {folds}-fold",
}
PROTOCOL_NAMES = {
    "holdout": f"holdout ({TEST_FRACTION:.0%} test)",
    "kfold": "{folds}-fold",
    "subject-kfold": "subject {folds}-fold",
}


@dataclass(frozen=True)
class Preset:
    """One version of the benchmark: input, width, optimisation, folds, and which protocols the rows use."""

    name: str
    size: int
    width: float
    epochs: int
    batch_size: int
    folds: int
    ablation_protocol: str  # Tables 2-4
    reference_protocols: tuple[str, ...]  # Table 1's reference networks
    note: str = ""


FULL = Preset("full", 128, 1.0, 60, 64, 10, "kfold", ("holdout", "kfold"))
PRESETS = {
    "full": FULL,
    "quick": Preset("quick", 48, 0.5, 8, 32, 5, "holdout", ("holdout",)),
    "smoke": Preset("smoke", 48, 0.125, 1, 32, 2, "holdout", ("holdout",), "a check of the script, not a result"),
}


def departures(preset: Preset) -> str:
    """How ``preset`` departs from the full run, in words ("" for the full run)."""
    fields = (("size", "input {} px"), ("width", "width {}"), ("epochs", "epochs {}"), ("batch_size", "batch {}"),
              ("folds", "folds {}"))
    parts = [
        f"{what.format(getattr(preset, f))} (full: {getattr(FULL, f)})"
        for f, what in fields
        if getattr(preset, f) != getattr(FULL, f)
    ]
    if preset.ablation_protocol != FULL.ablation_protocol:
        parts.append(f"Tables 2–4 with the {preset.ablation_protocol} only")
    if preset.reference_protocols != FULL.reference_protocols:
        parts.append(f"Table 1's reference networks with the {' and '.join(preset.reference_protocols)} only")
    return "; ".join(([preset.note] if preset.note else []) + parts)


@dataclass(frozen=True)
class Row:
    """One line of a table: a network, the protocol it is tested with, and the paper's figure for it."""

    table: str
    label: str
    model: ModelConfig
    protocol: str
    paper: str = SEE_PAPER

    @property
    def key(self) -> str:
        """The run folder's name; rows with the same network and protocol share it."""
        m = self.model
        net = f"{m.arch}-{m.attention}-{m.position}" if m.arch == "csa_vgg" else m.arch
        return f"{net}-{self.protocol}"


@dataclass
class Outcome:
    """A row's result: mean ± std accuracy over its folds and the run time."""

    mean: float
    std: float
    folds: int
    seconds: float


def paper_rows(preset: Preset, tables: Sequence[str] = TABLES) -> list[Row]:
    """The rows of the chosen tables for ``preset``."""
    ours = ModelConfig(num_classes=len(SIX), width=preset.width)  # CSA before pooling, the paper's network
    rows = [Row("1", "CSA-VGG (ours)", ours, p, PAPER[p]) for p in ("holdout", "kfold")]
    references = [("vgg16_gap", "VGG16-GAP (standard convs)")] + [(name, name) for name in BACKBONES]
    rows += [
        Row("1", label, replace(ours, arch=arch), p)
        for arch, label in references
        for p in preset.reference_protocols
    ]
    ablation = preset.ablation_protocol
    rows += [Row("2", position, replace(ours, position=position), ablation) for position in POSITIONS]
    rows += [
        Row("3", label, replace(ours, attention=a), ablation)
        for a, label in (("none", "Base"), ("ca", "+CA"), ("sa", "+SA"), ("csa", "+CSA"))
    ]
    rows += [
        Row("4", label, replace(ours, attention=a), ablation)
        for a, label in (("se", "SE"), ("eca", "ECA"), ("cbam", "CBAM"), ("scse", "scSE"), ("csa", "CSA"))
    ]
    rows += [
        Row("subject", "CSA-VGG (ours), random folds", ours, "kfold", PAPER["kfold"]),
        Row("subject", "CSA-VGG (ours), subject-independent folds", ours, "subject-kfold", "not reported"),
    ]
    return [row for row in rows if row.table in tables]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_vs_step(data: ImageSet, model: ModelConfig, train: TrainConfig, batches: int = 12) -> tuple[float, float]:
    """Images/s of the loader alone and of a whole training step, measured in the same run on ``train.device``.

    The loader is what :func:`~fervid.model.train.fit` does to get a batch: index the in-memory tensor, move it to
    the device and run the batch augmentation. The training step is one iteration of ``fit`` itself (that loading,
    forward, backward and the Adam update), timed between its ``on_batch`` calls; the first step is left out as
    warm-up.
    """
    device = resolve_device(train.device)
    batch = train.batch_size
    x, augment, generator = torch.from_numpy(data.x), Augment(), torch.Generator().manual_seed(0)

    def load() -> torch.Tensor:
        idx = torch.randint(len(x), (batch,), generator=generator)
        return augment(x[idx].to(device), generator)

    load()
    _sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        load()
    _sync(device)
    loader = batches * batch / (time.perf_counter() - started)

    n = min(len(data) // batch, batches + 1) * batch
    if n < 2 * batch:
        raise ValueError(f"need at least {2 * batch} images to time training steps, got {len(data)}")
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        subset = data.subset(np.arange(n))
        fit(model, subset, None, replace(train, epochs=1), out, resume=False,
            on_batch=lambda *_: stamps.append(time.perf_counter()))
    step = batch / float(np.median(np.diff(stamps)))
    return loader, step


def training_images(protocol: str, n: int, folds: int, val_fraction: float) -> float:
    """Images one epoch of a protocol's trainings sees, summed over its splits (for a time estimate)."""
    if protocol == "holdout":
        return n * (1 - TEST_FRACTION) * (1 - val_fraction)
    return n * (folds - 1) * (1 - val_fraction)


class Clock:
    """A row's run time summed over interrupted and resumed invocations, kept in the row's folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.before = json.loads(path.read_text())["seconds"] if path.exists() else 0.0
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def save(self) -> None:
        self.path.write_text(json.dumps({"seconds": self.seconds}))


def run_row(
    row: Row, data_dir: Path, out: Path, preset: Preset, train: TrainConfig, val_fraction: float, console: Console
) -> Outcome:
    """Train and test ``row`` in ``out`` (resumable); a finished row is read back from ``out/row.json``."""
    settings = {
        "preset": preset.name, "size": preset.size, "folds": preset.folds, "protocol": row.protocol,
        "model": row.model.to_dict(), "classes": list(SIX),
        "train": {k: v for k, v in asdict(train).items() if k != "device"}, "val_fraction": val_fraction,
    }
    out.mkdir(parents=True, exist_ok=True)
    saved_settings = out / "settings.json"
    if saved_settings.exists() and json.loads(saved_settings.read_text()) != settings:
        raise SystemExit(f"{out} holds a run with other settings ({saved_settings}); pass another --runs folder")
    saved_settings.write_text(json.dumps(settings, indent=2))
    done = out / "row.json"
    if done.exists():
        return Outcome(**json.loads(done.read_text())["outcome"])
    clock = Clock(out / "seconds.json")

    def on_epoch(s: EpochStats) -> None:
        clock.save()
        val = f"  val {s.val_accuracy:.4f}" if s.val_accuracy is not None else ""
        console.print(
            f"    epoch {s.epoch}/{s.epochs}  loss {s.loss:.4f}  train {s.train_accuracy:.4f}{val}  {s.seconds:.1f}s"
        )

    result = cross_validate(
        data_dir,
        out,
        protocol=row.protocol,
        model=row.model,
        train=train,
        data=DataOptions(preset.size, SIX),
        folds=preset.folds,
        test_fraction=TEST_FRACTION,
        val_fraction=val_fraction,
        callbacks=Callbacks(on_epoch=on_epoch, on_fold=lambda k, n: console.print(f"  {row.key}: fold {k}/{n}")),
    )
    if result is None:  # only while another process trains one of its folds (see fervid.model.lock)
        raise SystemExit(f"{out}: another process is training a fold of this row; rerun when it has finished")
    report = result.report
    outcome = Outcome(report.mean_accuracy, report.std_accuracy, len(report.folds), clock.seconds)
    done.write_text(json.dumps({"outcome": asdict(outcome), "result": result.to_dict()}, indent=2))
    return outcome


def _percent(o: Outcome, protocol: str) -> str:
    return f"{100 * o.mean:.2f}%" if protocol == "holdout" else f"{100 * o.mean:.2f} ± {100 * o.std:.2f}%"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def markdown(
    rows: Sequence[Row], outcomes: dict[str, Outcome], preset: Preset, train: TrainConfig, facts: dict[str, str]
) -> str:
    """The results file: the settings, then one table per paper table with fervid's figures beside the paper's."""
    lines = [
        "# The paper's Tables 1–4 on CK+48, reproduced with fervid",
        "",
        f"`{facts['command']}`, preset **{preset.name}**, finished {facts['finished']}; this invocation took "
        f"{facts['total']}, the rows' own run times (summed over resumed runs) add up to {facts['rows_total']}.",
        "",
        f"**Reduced from the full run:** {departures(preset)}." if departures(preset) else
        "**Full run** (the paper's protocols at 128 px, width 1.0), meant for a GPU.",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| data | `{facts['data']}`: six classes ({', '.join(SIX)}; contempt left out), {facts['images']} images |",
        f"| input | {preset.size}×{preset.size} gray, histogram-equalised, [-1, 1] (fervid's preprocessing) |",
        "| network | CSA-VGG: depthwise-separable VGG16, CSA before each pooling, GAP head; "
        f"width {preset.width:g} (VGG16-GAP too); Table 1's MobileNetV2, DenseNet121 and Xception as published "
        "(`fervid.model.backbones`: the width does not apply) |",
        f"| training | Adam lr {train.lr:g} ({train.schedule}), batch {train.batch_size}, epochs {train.epochs}, "
        f"fervid's batch augmentation, seed {train.seed} |",
        f"| model selection | {facts['selection']}; the test images are used once, at the end |",
        f"| holdout | one stratified random split, {TEST_FRACTION:.0%} test (the paper's) |",
        f"| k-fold | stratified random {preset.folds}-fold; mean ± sample std of the fold accuracies (the paper's) |",
        f"| subject k-fold | {preset.folds} folds with no subject (`S\\d+` in the file name) in both the training and "
        "the test set |",
        f"| hardware | {facts['hardware']}; torch {torch.__version__} |",
        f"| loader vs training step | {facts['loader']} |",
        "",
        "CK+48 holds the last frames of each sequence, so random splits put near-identical frames of one sequence on "
        "both sides; the subject-independent figure measures generalisation to new people. The paper's figures "
        "for rows other than its network's are in its tables (\"see paper\"). Rows with the same network and "
        "protocol share one run and its time. fervid's +CA (Table 3) and ECA (Table 4) are the same module, ECA "
        "channel attention, trained once for each row.",
    ]
    for table in dict.fromkeys(row.table for row in rows):
        lines += ["", f"## {TITLES[table].format(folds=preset.folds)}", ""]
        lines += ["| row | protocol | fervid | paper | run time |", "| --- | --- | ---: | ---: | ---: |"]
        for row in (r for r in rows if r.table == table):
            o = outcomes[row.key]
            protocol = PROTOCOL_NAMES[row.protocol].format(folds=o.folds)
            accuracy, seconds = _percent(o, row.protocol), _duration(o.seconds)
            lines.append(f"| {row.label} | {protocol} | {accuracy} | {row.paper} | {seconds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="preset", const="quick", help="the reduced CPU version")
    mode.add_argument("--smoke", action="store_const", dest="preset", const="smoke", help="a few-minute check")
    parser.add_argument("--data", type=Path, default=CK48, help="the CK+48 class folders")
    parser.add_argument("--runs", type=Path, default=RUNS, help="resumable run folders go under RUNS/<preset>/")
    parser.add_argument("--output", type=Path, help=f"markdown file (default {RESULTS.relative_to(REPO)}; "
                        "--smoke writes into its run folder)")
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated subset of 1,2,3,4,subject")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--folds", type=int, help="override the preset's number of folds")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (the paper's: 0.0005)")
    parser.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="share of each split's training images that picks the best epoch; 0 keeps the last (the paper)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset or "full"]
    preset = replace(
        preset,
        epochs=args.epochs or preset.epochs,
        batch_size=args.batch_size or preset.batch_size,
        folds=args.folds or preset.folds,
    )
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if unknown := sorted(set(tables) - set(TABLES)):
        parser.error(f"unknown tables {unknown}; choose from {', '.join(TABLES)}")
    if not args.data.is_dir():
        parser.error(f"{args.data}: no CK+48 folder (one sub-folder per class)")
    runs = args.runs / preset.name
    output = args.output or (runs / "paper_tables.md" if preset.name == "smoke" else RESULTS)
    train = TrainConfig(
        epochs=preset.epochs, batch_size=preset.batch_size, lr=args.lr, schedule=args.schedule, seed=args.seed,
        device=args.device,
    )
    device = resolve_device(args.device)
    console = Console(highlight=False)
    started = time.perf_counter()

    data = DataOptions(preset.size, SIX).load(args.data)
    ours = ModelConfig(num_classes=len(SIX), width=preset.width)
    loader, step = loader_vs_step(data, ours, train)
    loader_line = (
        f"{loader:,.0f} images/s for the loader alone (batch augmentation of in-memory tensors), {step:,.0f} "
        f"images/s for a training step of the network (batch {train.batch_size}, {device.type}): the loader is "
        f"{loader / step:.1f}× faster than training"
    )
    console.print(loader_line)

    rows = paper_rows(preset, tables)
    pending = {row.key: row for row in rows if not (runs / row.key / "row.json").exists()}
    images = sum(training_images(row.protocol, len(data), preset.folds, args.val_fraction) for row in pending.values())
    images *= train.epochs
    console.print(f"{len(pending)} runs to do: about {_duration(images / step)} of training at that step rate "
                  "(variants other than the network train at other rates)")
    outcomes: dict[str, Outcome] = {}
    for row in rows:
        if row.key in outcomes:
            continue
        console.print(f"[bold]{row.key}[/]: {escape(row.label)}")
        outcomes[row.key] = o = run_row(row, args.data, runs / row.key, preset, train, args.val_fraction, console)
        console.print(f"  {row.key}: {_percent(o, row.protocol)} in {_duration(o.seconds)}")

    cpu = hardware(torch.device("cpu"))
    facts = {
        "command": shlex.join(["python", "benchmarks/paper_tables.py", *(argv if argv is not None else sys.argv[1:])]),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "total": _duration(time.perf_counter() - started),
        "data": str(args.data),
        "images": str(len(data)),
        "hardware": f"{hardware(device)} (CPU: {cpu})" if device.type == "cuda" else cpu,
        "loader": loader_line,
        "rows_total": _duration(sum(o.seconds for o in outcomes.values())),
        "selection": f"best validation accuracy on a stratified {args.val_fraction:.0%} of each split's training images"
        if args.val_fraction else "none: trained on all of each split's training images, the last epoch is tested (the paper's)",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(rows, outcomes, preset, train, facts), encoding="utf-8")
    console.print(f"wrote {output}")


if __name__ == "__main__":
    main()
