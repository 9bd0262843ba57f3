"""Training on in-memory image sets: Adam (lr 0.0005, the paper's), AdamW or SGD with Nesterov momentum, constant
or cosine schedule, batch augmentation, label smoothing, soft labels (per-image label distributions), mixup,
knowledge distillation from a trained teacher, bf16 autocast with channels_last on CPUs that run it faster (picked by a short measurement), a best-on-validation
checkpoint (accuracy, ties broken by the lower loss), and exact resumption from the last finished epoch (model,
optimiser, schedule and random state)."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fervid.expressions import canonical
from fervid.model.augment import Augment
from fervid.model.checkpoint import load_checkpoint, save_checkpoint
from fervid.model.config import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
from fervid.model.data import ImageSet
from fervid.model.files import sha256_file
from fervid.model.infer import resolve_device
from fervid.model.lock import training_lock
from fervid.model.network import ModelConfig, build_model

__all__ = ["BEST", "LAST", "LOG", "OPTIMIZERS", "PRECISIONS", "SCHEDULES", "EpochStats", "TrainConfig", "TrainResult", "fit"]
from fervid.model.preprocess import PREPROCESSING
from fervid.model.tta import average, views
from fervid.model.weights import resolve_model

STATE_FORMAT = 2
LAST = "last.pt"
BEST = "best.pt"
LOG = "train.log"


@dataclass
class EpochStats:
    epoch: int
    epochs: int
    loss: float
    train_accuracy: float
    val_accuracy: float | None
    val_loss: float | None
    seconds: float
    best: bool
    images_per_second: float = 0.0
    eta_seconds: float = 0.0

    def line(self) -> str:
        """The epoch in one line, as the progress output and the run's ``train.log`` show it."""
        val = f"  val acc {self.val_accuracy:.4f}  val loss {self.val_loss:.4f}" if self.val_accuracy is not None else ""
        eta = f"  ETA {self.eta_seconds / 60:.0f} min" if self.epoch < self.epochs else ""
        return (
            f"epoch {self.epoch}/{self.epochs}  loss {self.loss:.4f}  train acc {self.train_accuracy:.4f}{val}  "
            f"{self.seconds:.1f}s  {self.images_per_second:.0f} img/s{eta}{' *' if self.best else ''}"
        )


@dataclass
class TrainResult:
    best_path: Path
    best_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 256, flip: bool = False, shift: float = 0.0
) -> np.ndarray:
    """Softmax probabilities of ``model`` for the preprocessed images ``x`` (N, C, S, S), averaged over the views
    of :mod:`fervid.model.tta` (``flip``: mirror images; ``shift``: copies moved by that fraction of a side)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        faces = x[i : i + batch_size]
        batch = torch.from_numpy(views(faces, flip, shift)).to(device)
        if device.type == "cuda":
            batch = batch.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            probs = torch.cat([torch.softmax(model(part).float(), dim=1) for part in batch.split(batch_size)])
        out.append(average(probs.cpu().numpy(), len(faces)))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def hardware(device: torch.device) -> str:
    """The device that trained a model, for its provenance: GPU name or CPU model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _class_weights(y: np.ndarray, num_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = counts.sum() / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 dot products (AVX-512 BF16 or AMX), without which bf16 is emulated."""
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def pick_precision(config: TrainConfig, model_config: ModelConfig, x: torch.Tensor, device: torch.device) -> str:
    """``fp32`` or ``bf16`` (autocast with channels_last), the faster of the two for a few optimiser steps on this
    CPU, measured on a copy of the network; bf16 only where the CPU runs it natively. CUDA: ``fp16``."""
    if device.type == "cuda":
        return "fp16"
    if config.precision != "auto":
        return config.precision
    if not bf16_supported():
        return "fp32"
    runs = {}
    for precision in ("fp32", "bf16"):
        model = build_model(model_config).to(device)
        memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
        model = model.to(memory_format=memory_format).train()
        runs[precision] = (model, _optimizer(model, config), x[: config.batch_size].contiguous(memory_format=memory_format))
    timings: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(4):  # interleaved, so that other work on the machine slows both alike; the first round warms up
        for precision, (model, optimizer, batch) in runs.items():
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = nn.functional.cross_entropy(model(batch), torch.zeros(len(batch), dtype=torch.long))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            timings[precision].append(time.perf_counter() - started)
    return min(timings, key=lambda p: min(timings[p][1:]))


def initial_weights(model: nn.Module, model_config: ModelConfig, classes: list[str], init: str) -> dict[str, Any]:
    """Load the weights of the checkpoint ``init`` (a shipped model's name or a path) into ``model`` for
    fine-tuning: every layer as it is and, of the output layer, the rows of the classes both share by name (the
    other rows keep their random initialisation). The networks must be the same but for their classes. Returns
    the provenance a checkpoint records: the source, its sha256 and the shared classes."""
    path = resolve_model(init)
    source = load_checkpoint(path)
    same = {**source.config.to_dict(), "num_classes": model_config.num_classes}
    if same != model_config.to_dict():
        raise ValueError(f"{init}: a {source.config.to_dict()} network cannot start a {model_config.to_dict()} one")
    head = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]  # the output layer
    rows = {canonical(c): i for i, c in enumerate(source.classes)}
    pairs = [(i, rows[canonical(c)]) for i, c in enumerate(classes) if canonical(c) in rows]
    state = model.state_dict()
    for name, tensor in source.state_dict.items():
        if name.rpartition(".")[0] != head:
            state[name] = tensor.clone()
            continue
        for new, old in pairs:
            state[name][new] = tensor[old]
    model.load_state_dict(state)
    return {"model": init, "sha256": sha256_file(path), "shared_classes": [classes[new] for new, _ in pairs]}


class Teacher:
    """A trained network whose predictions on each training batch join the targets: knowledge distillation as in
    "Knowledge distillation: A good teacher is patient and consistent" (Beyer et al., CVPR 2022), the teacher
    seeing exactly the augmented (and mixed) images the student sees, at temperature 1.

    Its outputs are mapped to the student's classes by name (every student class must be one of the teacher's;
    the probabilities of the teacher's other classes are dropped and the rest renormalised). ``provenance`` is what
    a checkpoint records: the teacher, its sha256 and whether its crop definition is the student's images'.
    """

    def __init__(
        self,
        name: str,
        classes: list[str],
        input_size: int,
        preprocessing: dict[str, Any],
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        path = resolve_model(name)
        source = load_checkpoint(path)
        rows = {canonical(c): i for i, c in enumerate(source.classes)}
        missing = [c for c in classes if canonical(c) not in rows]
        if missing:
            raise ValueError(f"{name}: the teacher has no output for {', '.join(missing)} (its classes: {', '.join(source.classes)})")
        if source.input_size != input_size or source.config.in_chans != 1:
            raise ValueError(
                f"{name}: the teacher reads {source.input_size} px faces in {source.config.in_chans} channel(s), "
                f"the training images are {input_size} px gray"
            )
        self.model = source.build().to(device, memory_format=memory_format).eval()
        self.rows = torch.tensor([rows[canonical(c)] for c in classes], device=device)
        self.provenance = {
            "model": name,
            "sha256": sha256_file(path),
            "same_crop": source.preprocessing.get("crop") == preprocessing.get("crop"),
        }

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, autocast: torch.dtype | None) -> torch.Tensor:
        """The teacher's distributions over the student's classes for the batch ``x``."""
        with torch.autocast(x.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            probs = torch.softmax(self.model(x).float(), dim=1)[:, self.rows]
        return probs / probs.sum(1, keepdim=True).clamp_min(1e-12)


def _targets(train_set: ImageSet, num_classes: int) -> torch.Tensor:
    """Per-image target distributions: the soft labels where the set has them, else one-hot."""
    if train_set.soft is not None:
        return torch.from_numpy(train_set.soft.astype(np.float32))
    return nn.functional.one_hot(torch.from_numpy(train_set.y), num_classes).float()


def fit(
    model_config: ModelConfig,
    train_set: ImageSet,
    val_set: ImageSet | None,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    preprocessing: dict[str, Any] | None = None,
    training_info: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train, keeping ``best.pt`` (a :class:`~fervid.model.checkpoint.Checkpoint`: the epoch of the best validation
    accuracy, of those the one with the lowest validation loss; the last epoch without a validation set) and
    ``last.pt`` (full state: resuming continues after its epoch with the same random state). ``preprocessing``
    (default :data:`~fervid.model.preprocess.PREPROCESSING`) is recorded in the checkpoints: it holds the crop
    definition the training images were made with. Holds ``out_dir/lock`` meanwhile:
    :class:`~fervid.model.lock.FolderBusyError` if another process trains there."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with training_lock(out_dir):
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        x_train = torch.from_numpy(train_set.x)
        targets = _targets(train_set, model_config.num_classes)
        y_train = torch.from_numpy(train_set.y)
        last_path, best_path = out_dir / LAST, out_dir / BEST
        state = torch.load(last_path, map_location="cpu", weights_only=True) if resume and last_path.exists() else None
        if state is not None and state.get("model_config") != model_config.to_dict():
            raise ValueError(f"{last_path}: was trained with {state.get('model_config')}, not {model_config.to_dict()}")
        precision = state["precision"] if state and "precision" in state else pick_precision(config, model_config, x_train, device)
        autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        # channels_last with autocast only: in plain fp32 on CPU it was no faster here and its depthwise gradients
        # drifted ~3% from float64.
        memory_format = torch.channels_last if autocast is not None else torch.contiguous_format
        model = build_model(model_config).to(device, memory_format=memory_format)
        optimizer = _optimizer(model, config)
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
            if config.schedule == "cosine"
            else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        )
        weights = _class_weights(train_set.y, model_config.num_classes).to(device) if config.class_weighted else None
        scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        jitter = 1 + config.scale_jitter
        augment = Augment(rotation=config.rotation, scale=(1 / jitter, jitter), erasing=config.erasing) if config.augment else None
        generator = torch.Generator().manual_seed(config.seed)

        start_epoch, best_acc, best_loss, history = 0, None, math.inf, []
        init = None  # where the weights started: kept in last.pt, so that a resumed run records it too
        if config.init:
            init = state.get("init") if state is not None else initial_weights(model, model_config, train_set.classes, config.init)
        teacher = None
        if config.teacher:
            teacher = Teacher(
                config.teacher, train_set.classes, int(train_set.x.shape[-1]), preprocessing or PREPROCESSING, device, memory_format
            )
            started_with = (state or {}).get("teacher")
            if started_with and started_with["sha256"] != teacher.provenance["sha256"]:
                raise ValueError(f"{config.teacher}: not the teacher this run started with (sha256 {started_with['sha256'][:12]}…)")
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"].cpu())
            if "torch_rng" in state:
                torch.set_rng_state(state["torch_rng"].cpu())
            start_epoch, best_acc, history = state["epoch"] + 1, state["best_accuracy"], state["history"]
            best_loss = state.get("best_loss", math.inf)

        input_size = int(train_set.x.shape[-1])
        n = len(y_train)
        steps = (n + config.batch_size - 1) // config.batch_size
        beta = torch.distributions.Beta(config.mixup, config.mixup) if config.mixup > 0 else None
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=generator)
            total_loss, correct = 0.0, 0
            for step in range(steps):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                xb, tb = x_train[idx].to(device, non_blocking=True), targets[idx].to(device, non_blocking=True)
                yb = y_train[idx].to(device, non_blocking=True)
                if augment is not None:
                    xb = augment(xb, generator)
                if beta is not None:
                    lam = float(beta.sample())
                    mate = torch.randperm(len(idx), generator=generator).to(device)
                    xb, tb = lam * xb + (1 - lam) * xb[mate], lam * tb + (1 - lam) * tb[mate]
                xb = xb.contiguous(memory_format=memory_format)
                if teacher is not None:
                    tb = (1 - config.distill) * tb + config.distill * teacher(xb, autocast)
                with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                    logits = model(xb)
                loss = soft_cross_entropy(logits.float(), tb, config.label_smoothing, weights)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                if on_batch:
                    on_batch(step + 1, steps)
            scheduler.step()
            train_seconds = time.perf_counter() - started
            val_acc = val_loss = None
            if val_set is not None and len(val_set):
                probs = predict_probabilities(model, val_set.x, device)
                val_acc = float((probs.argmax(1) == val_set.y).mean())
                val_loss = float(-np.log(np.maximum(probs[np.arange(len(val_set)), val_set.y], 1e-12)).mean())
            is_best = val_acc is None or best_acc is None or (val_acc, -val_loss) > (best_acc, -best_loss)
            seconds = time.perf_counter() - started
            stats = EpochStats(
                epoch + 1, config.epochs, total_loss / n, correct / n, val_acc, val_loss, seconds, is_best,
                images_per_second=n / train_seconds, eta_seconds=seconds * (config.epochs - epoch - 1),
            )  # fmt: skip
            history.append(asdict(stats))
            if is_best:
                if val_acc is not None:
                    best_acc, best_loss = val_acc, val_loss
                save_checkpoint(
                    best_path,
                    model,
                    model_config,
                    classes=train_set.classes,
                    input_size=input_size,
                    preprocessing=preprocessing or PREPROCESSING,
                    training={
                        **(training_info or {}),
                        **({"init": init} if init else {}),
                        **({"teacher": teacher.provenance} if teacher else {}),
                        "train_config": asdict(config),
                        "precision": precision,
                        "epoch": epoch + 1,
                        "history": history,
                        "hardware": hardware(device),
                    },
                    metrics={"val_accuracy": val_acc} if val_acc is not None else {},
                )
            torch.save(
                {
                    "format": STATE_FORMAT,
                    "epoch": epoch,
                    "model_config": model_config.to_dict(),
                    "train_config": asdict(config),
                    "precision": precision,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "best_accuracy": best_acc,
                    "best_loss": best_loss,
                    "history": history,
                    "init": init,
                    "teacher": teacher.provenance if teacher else None,
                },
                last_path.with_suffix(".tmp"),
            )
            last_path.with_suffix(".tmp").replace(last_path)
            with open(out_dir / LOG, "a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {stats.line()}  [{precision}]\n")
            if on_epoch:
                on_epoch(stats)
        return TrainResult(best_path, best_acc, history)


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy against target distributions ``(N, C)`` (one-hot, soft labels or mixed), with label smoothing
    and optional per-class weights (weighted by each target's classes, normalised like ``nn.CrossEntropyLoss``)."""
    if smoothing:
        target = target * (1 - smoothing) + smoothing / target.shape[1]
    per_class = -torch.log_softmax(logits, dim=1) * target
    if weights is None:
        return per_class.sum(1).mean()
    sample_weight = target @ weights
    return (per_class * weights).sum(1).sum() / sample_weight.sum()
