"""Training on in-memory image sets: Adam (lr 0.0005, the paper's), batch augmentation, best-on-validation
checkpoint (accuracy, ties broken by the lower loss), resumable from the last epoch's state."""

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

from fervid.model.augment import Augment
from fervid.model.checkpoint import save_checkpoint
from fervid.model.data import ImageSet
from fervid.model.infer import resolve_device
from fervid.model.lock import training_lock
from fervid.model.network import ModelConfig, build_model
from fervid.model.preprocess import PREPROCESSING

STATE_FORMAT = 1
LAST = "last.pt"
BEST = "best.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the paper's (Adam, lr 0.0005) plus fervid's augmentation."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    schedule: str = "constant"  # or "cosine"
    label_smoothing: float = 0.0
    class_weighted: bool = False
    augment: bool = True
    seed: int = 0
    device: str = "auto"


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


@dataclass
class TrainResult:
    best_path: Path
    best_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def predict_probabilities(model: nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities of ``model`` for the preprocessed images ``x`` (N, C, S, S)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        batch = torch.from_numpy(x[i : i + batch_size]).to(device)
        if device.type == "cuda":
            batch = batch.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(batch)
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
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


def fit(
    model_config: ModelConfig,
    train_set: ImageSet,
    val_set: ImageSet | None,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    training_info: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train, keeping ``best.pt`` (a :class:`~fervid.model.checkpoint.Checkpoint`: the epoch of the best validation
    accuracy, of those the one with the lowest validation loss; the last epoch without a validation set) and ``last.pt`` (full state: resuming continues after its epoch).
    Holds ``out_dir/lock`` meanwhile: :class:`~fervid.model.lock.FolderBusyError` if another process trains there."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with training_lock(out_dir):
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        cuda = device.type == "cuda"
        # channels_last only on CUDA: on CPU it was no faster here and its depthwise gradients drifted ~3% from float64.
        memory_format = torch.channels_last if cuda else torch.contiguous_format
        model = build_model(model_config).to(device, memory_format=memory_format)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
            if config.schedule == "cosine"
            else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        )
        weights = _class_weights(train_set.y, model_config.num_classes).to(device) if config.class_weighted else None
        criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        augment = Augment() if config.augment else None
        generator = torch.Generator().manual_seed(config.seed)

        start_epoch, best_acc, best_loss, history = 0, None, math.inf, []
        last_path, best_path = out_dir / LAST, out_dir / BEST
        if resume and last_path.exists():
            state = torch.load(last_path, map_location=device, weights_only=True)
            if state.get("model_config") != model_config.to_dict():
                raise ValueError(f"{last_path}: was trained with {state.get('model_config')}, not {model_config.to_dict()}")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"].cpu())
            start_epoch, best_acc, history = state["epoch"] + 1, state["best_accuracy"], state["history"]
            best_loss = state.get("best_loss", math.inf)

        x_train = torch.from_numpy(train_set.x)
        y_train = torch.from_numpy(train_set.y)
        input_size = int(train_set.x.shape[-1])
        n = len(y_train)
        steps = (n + config.batch_size - 1) // config.batch_size
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=generator)
            total_loss, correct = 0.0, 0
            for step in range(steps):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                xb, yb = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
                if augment is not None:
                    xb = augment(xb, generator)
                xb = xb.contiguous(memory_format=memory_format)
                with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                    logits = model(xb)
                    loss = criterion(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                if on_batch:
                    on_batch(step + 1, steps)
            scheduler.step()
            val_acc = val_loss = None
            if val_set is not None and len(val_set):
                probs = predict_probabilities(model, val_set.x, device)
                val_acc = float((probs.argmax(1) == val_set.y).mean())
                val_loss = float(-np.log(np.maximum(probs[np.arange(len(val_set)), val_set.y], 1e-12)).mean())
            is_best = val_acc is None or best_acc is None or (val_acc, -val_loss) > (best_acc, -best_loss)
            stats = EpochStats(
                epoch + 1, config.epochs, total_loss / n, correct / n, val_acc, val_loss, time.perf_counter() - started, is_best
            )
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
                    preprocessing=PREPROCESSING,
                    training={
                        **(training_info or {}),
                        "train_config": asdict(config),
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
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "best_accuracy": best_acc,
                    "best_loss": best_loss,
                    "history": history,
                },
                last_path.with_suffix(".tmp"),
            )
            last_path.with_suffix(".tmp").replace(last_path)
            if on_epoch:
                on_epoch(stats)
        return TrainResult(best_path, best_acc, history)
