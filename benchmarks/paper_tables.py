"""The paper's Tables 1–4 on CK+48 (six classes, contempt left out), reproduced with fervid's own training.

    python benchmarks/paper_tables.py            # converged: 48 px, 80 epochs, random and subject 10-fold (CPU-hours; a GPU: --device cuda)
    python benchmarks/paper_tables.py --full     # the paper's 128 px, width 1, 60 epochs; a GPU run
    python benchmarks/paper_tables.py --quick    # 2-core CPU, under 30 minutes; the output says what it reduces
    python benchmarks/paper_tables.py --smoke    # a few minutes: checks the script end to end

Table 1 compares the network with the reference networks (``vgg16_gap``, and MobileNetV2, DenseNet121 and
Xception from :mod:`fervid.model.backbones`), Table 2 the attention's position, Table 3 the CA / SA / CSA ablation,
Table 4 the attention modules; the ``subject`` rows put the subject-independent 10-fold figure beside the random
10-fold one. Every comparison the paper makes (its network against each other row of a table, tested on the same
folds) is judged by the per-fold accuracy differences: a sign test and a paired t-test
(:func:`fervid.model.metrics.paired_comparison`), so that a ranking is stated only where it exceeds the noise.

Every row runs :func:`fervid.model.experiment.cross_validate` in its own folder ``<runs>/<preset>/<row>/`` (one
``fold-K/`` per split, then ``row.json``; ``<runs>`` defaults to ``FERVID_DATA_DIR/runs/paper_tables``, outside the
work tree); rerunning the same command continues an interrupted run, rows with the same network and protocol share
one run, and two processes started with the same command share the folds (each trains the folds the other is not
training, then waits for the other's). Writes ``benchmarks/results/paper_tables.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
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
from fervid.model.config import PRECISIONS, SCHEDULES
from fervid.model.data import ImageSet
from fervid.model.experiment import Callbacks, DataOptions, cross_validate
from fervid.model.infer import resolve_device
from fervid.model.metrics import paired_comparison
from fervid.model.network import POSITIONS, ModelConfig
from fervid.model.train import EpochStats, TrainConfig, fit, hardware
from fervid.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
CK48 = REPO.parent / "shared" / "datasets" / "ck48"
#: How long a process waits between looks at a row whose last folds another process is training.
POLL_SECONDS = 30.0
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
#: A table's row that is the paper's network: the other rows of the table are compared with it.
OURS = {"1": "CSA-VGG (ours)", "2": "before_pool", "3": "+CSA", "4": "CSA"}
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
    ablation_protocols: tuple[str, ...]  # Tables 2-4
    reference_protocols: tuple[str, ...]  # Table 1's reference networks
    lr: float = 5e-4  # Adam; the paper's
    schedule: str = "constant"
    note: str = ""


FULL = Preset("full", 128, 1.0, 60, 64, 10, ("kfold",), ("holdout", "kfold"))
#: The configuration that converged in the CK+ protocols (benchmarks/results/ck48_protocols.md: 99.35 % random
#: 10-fold), on every row, with the subject-independent folds beside the random ones in Tables 2-4.
CONVERGED = Preset(
    "converged", 48, 0.5, 80, 32, 10, ("kfold", "subject-kfold"), ("kfold",), lr=1e-3, schedule="cosine",
    note="the converged CK+ protocol configuration",
)
PRESETS = {
    "full": FULL,
    "converged": CONVERGED,
    "quick": Preset("quick", 48, 0.5, 8, 32, 5, ("holdout",), ("holdout",)),
    "smoke": Preset("smoke", 48, 0.125, 2, 32, 3, ("kfold", "subject-kfold"), ("kfold",), note="a check of the script, not a result"),
}


def departures(preset: Preset) -> str:
    """How ``preset`` departs from the full run, in words ("" for the full run)."""
    fields = (("size", "input {} px"), ("width", "width {}"), ("epochs", "epochs {}"), ("batch_size", "batch {}"),
              ("folds", "folds {}"), ("lr", "lr {}"), ("schedule", "{} schedule"))
    parts = [
        f"{what.format(getattr(preset, f))} (full: {getattr(FULL, f)})"
        for f, what in fields
        if getattr(preset, f) != getattr(FULL, f)
    ]
    if preset.ablation_protocols != FULL.ablation_protocols:
        parts.append(f"Tables 2–4 with the {' and '.join(preset.ablation_protocols)}")
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
    """A row's result: mean ± std accuracy over its folds, each fold's accuracy, and the run time."""

    mean: float
    std: float
    folds: int
    seconds: float
    accuracies: tuple[float, ...] = ()

    @classmethod
    def read(cls, path: Path) -> Outcome:
        """A finished row's outcome from its ``row.json``."""
        saved = json.loads(path.read_text())
        accuracies = tuple(fold["accuracy"] for fold in saved["result"]["folds"])
        return cls(**{**saved["outcome"], "accuracies": accuracies})


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
    for ablation in preset.ablation_protocols:
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
    """This process's time on a row, kept in the row's folder in a file of its own, so that the times of
    processes sharing the row's folds and of invocations resumed after an interruption add up (:meth:`total`)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"seconds-{socket.gethostname()}-{os.getpid()}.json"
        self.before = json.loads(self.path.read_text())["seconds"] if self.path.exists() else 0.0
        self.started = time.perf_counter()

    def save(self) -> None:
        self.path.write_text(json.dumps({"seconds": self.before + time.perf_counter() - self.started}))

    @staticmethod
    def total(folder: Path) -> float:
        """The row's run time: every process's time on it."""
        return sum(json.loads(p.read_text())["seconds"] for p in folder.glob("seconds-*.json"))


def run_row(
    row: Row, data_dir: Path, out: Path, preset: Preset, train: TrainConfig, val_fraction: float, console: Console
) -> Outcome | None:
    """Train and test ``row`` in ``out`` (resumable); a finished row is read back from ``out/row.json``. ``None``
    while another process trains one of its folds (see :mod:`fervid.model.lock`)."""
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
        return Outcome.read(done)
    clock = Clock(out)

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
        callbacks=Callbacks(
            on_epoch=on_epoch,
            on_fold=lambda k, n: console.print(f"  {row.key}: fold {k}/{n}"),
            on_busy=lambda k, _: console.print(f"  {row.key}: fold {k} is being trained by another process"),
        ),
    )
    clock.save()
    if result is None:
        return None
    report = result.report
    summary = {"mean": report.mean_accuracy, "std": report.std_accuracy, "folds": len(report.folds), "seconds": Clock.total(out)}
    done.write_text(json.dumps({"outcome": summary, "result": result.to_dict()}, indent=2))
    return Outcome.read(done)


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
        f"**Differs from the full run:** {departures(preset)}." if departures(preset) else
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
        f"fervid's batch augmentation, seed {train.seed}, precision {train.precision} (auto: bf16 autocast + "
        "channels_last where a few steps measured at each fold's start run faster; fp16 on CUDA) |",
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
        "channel attention, trained once for each row. The paper's multi-pose result (RaFD, 8 classes, 97.48 %) is "
        "not reproduced: RaFD is not available to fervid.",
        "",
        "Under each table the paper's network is compared with every other row tested on the same folds: the mean ± "
        "sample std of the per-fold accuracy differences (points), the folds it wins, loses and ties, the exact "
        "two-sided sign test (ties left out) and the two-sided paired t-test. A row is ranked above or below the "
        "paper's network only where both tests give p below 0.05 (k-fold training sets overlap, which makes the t-test "
        "alone too ready to rank); otherwise the two are within noise.",
    ]
    for table in dict.fromkeys(row.table for row in rows):
        lines += ["", f"## {TITLES[table].format(folds=preset.folds)}", ""]
        lines += ["| row | protocol | fervid | paper | run time |", "| --- | --- | ---: | ---: | ---: |"]
        for row in (r for r in rows if r.table == table):
            o = outcomes[row.key]
            accuracy, seconds = _percent(o, row.protocol), _duration(o.seconds)
            lines.append(f"| {row.label} | {_protocol(row, o)} | {accuracy} | {row.paper} | {seconds} |")
        lines += comparisons(table, rows, outcomes)
    return "\n".join(lines) + "\n"


def _protocol(row: Row, outcome: Outcome) -> str:
    return PROTOCOL_NAMES[row.protocol].format(folds=outcome.folds)


def comparisons(table: str, rows: Sequence[Row], outcomes: dict[str, Outcome]) -> list[str]:
    """The table's paired comparisons (:func:`~fervid.model.metrics.paired_comparison`) of the paper's network with
    each other row on the same folds, as markdown lines ([] where there are none, as for a holdout)."""
    ours = {r.protocol: r for r in rows if r.table == table and r.label == OURS.get(table)}
    pairs = [
        (ours[row.protocol], row) for row in rows
        if row.table == table and row.protocol in ours and row is not ours[row.protocol] and row.protocol != "holdout"
    ]  # fmt: skip
    if not pairs:
        return []
    lines = [
        "",
        "| comparison | protocol | difference (points) | won / lost / tied | sign test p | paired t-test p | verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for mine, other in pairs:
        c = paired_comparison(outcomes[mine.key].accuracies, outcomes[other.key].accuracies)
        verdict = {"a better": f"{mine.label} better", "b better": f"{other.label} better"}.get(c.verdict(), "within noise")
        lines.append(
            f"| {mine.label} − {other.label} | {_protocol(other, outcomes[other.key])} | "
            f"{100 * c.mean_difference:+.2f} ± {100 * c.std_difference:.2f} | {c.wins} / {c.losses} / {c.ties} | "
            f"{c.sign_p:.3f} | {c.t_p:.3f} | {verdict} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_const", dest="preset", const="full", help="the paper's 128 px, width 1: a GPU run")
    mode.add_argument("--quick", action="store_const", dest="preset", const="quick", help="the reduced CPU version")
    mode.add_argument("--smoke", action="store_const", dest="preset", const="smoke", help="a few-minute check")
    parser.add_argument("--data", type=Path, default=CK48, help="the CK+48 class folders")
    parser.add_argument("--runs", type=Path, default=get_settings().data_dir / "runs" / "paper_tables",
                        help="resumable run folders go under RUNS/<preset>/ (default: FERVID_DATA_DIR/runs/paper_tables)")
    parser.add_argument("--output", type=Path, help=f"markdown file (default {RESULTS.relative_to(REPO)}; "
                        "--smoke writes into its run folder)")
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated subset of 1,2,3,4,subject")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--folds", type=int, help="override the preset's number of folds")
    parser.add_argument("--lr", type=float, help="override the preset's Adam learning rate (the paper's: 0.0005)")
    parser.add_argument("--schedule", choices=SCHEDULES, help="override the preset's learning-rate schedule")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="CPU precision (auto: the faster, measured)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="share of each split's training images that picks the best epoch; 0 keeps the last (the paper)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset or "converged"]
    preset = replace(
        preset,
        epochs=args.epochs or preset.epochs,
        batch_size=args.batch_size or preset.batch_size,
        folds=args.folds or preset.folds,
        lr=args.lr or preset.lr,
        schedule=args.schedule or preset.schedule,
    )
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if unknown := sorted(set(tables) - set(TABLES)):
        parser.error(f"unknown tables {unknown}; choose from {', '.join(TABLES)}")
    if not args.data.is_dir():
        parser.error(f"{args.data}: no CK+48 folder (one sub-folder per class)")
    runs = args.runs / preset.name
    output = args.output or (runs / "paper_tables.md" if preset.name == "smoke" else RESULTS)
    train = TrainConfig(
        epochs=preset.epochs, batch_size=preset.batch_size, lr=preset.lr, schedule=preset.schedule, seed=args.seed,
        device=args.device, precision=args.precision,
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
    waiting = list({row.key: row for row in rows}.values())
    while waiting:
        for row in list(waiting):
            console.print(f"[bold]{row.key}[/]: {escape(row.label)}")
            o = run_row(row, args.data, runs / row.key, preset, train, args.val_fraction, console)
            if o is not None:
                outcomes[row.key] = o
                waiting.remove(row)
                console.print(f"  {row.key}: {_percent(o, row.protocol)} in {_duration(o.seconds)}")
        if waiting:
            console.print(f"waiting for another process to finish folds of {', '.join(row.key for row in waiting)}")
            time.sleep(POLL_SECONDS)

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
