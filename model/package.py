"""Package a trained checkpoint as a shipped model: compact fp16 weights, validation metrics, a model card.

``fervid models package RUN/best.pt --name fer2013-csa --val ../shared/datasets/fer2013/val`` writes
``model/weights/<name>.pt`` and ``model/cards/<name>.md`` and prints the registry entry's checksum and metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fervid.model.align import CropSpec
from fervid.model.checkpoint import load_checkpoint, save_checkpoint
from fervid.model.experiment import DataOptions, evaluate_checkpoint
from fervid.model.files import sha256_file
from fervid.model.metrics import ClassificationReport
from fervid.model.summary import count_flops, count_parameters
from fervid.model.weights import CARDS_DIR, WEIGHTS_DIR
from fervid.settings import CROP_CONTEXTS


def _history_table(history: list[dict[str, Any]]) -> str:
    lines = ["| epoch | loss | train acc | val acc | seconds | img/s |", "|---:|---:|---:|---:|---:|---:|"]
    for h in history:
        val = f"{h['val_accuracy']:.4f}" if h.get("val_accuracy") is not None else "–"
        speed = f"{h['images_per_second']:.0f}" if h.get("images_per_second") else "–"
        lines.append(f"| {h['epoch']} | {h['loss']:.4f} | {h['train_accuracy']:.4f} | {val} | {h['seconds']:.0f} | {speed} |")
    return "\n".join(lines)


def crop_description(preprocessing: dict[str, Any], training: dict[str, Any]) -> str:
    """The crop definition of a checkpoint in words, for its card."""
    crop = preprocessing.get("crop")
    if not crop:
        return f"legacy: the detector's box, squared and enlarged by {preprocessing.get('margin', 0.2):.0%} on each side"
    (lx, ly), (rx, ry), (mx, my) = crop["template"]
    boxes = ", ".join(f"{name} ({dx:+.3f}, {dy:+.3f}, ×{side:.3f})" for name, (dx, dy, side) in crop["boxes"].items())
    mode = training.get("crop_mode", "calibrated")
    how = (
        "training images cut with CenterFace and this crop, exactly as jobs cut faces"
        if mode == "aligned"
        else "trained on the crops as they are; the template reproduces their framing"
    )
    found = training.get("calibration", {}).get("found", {})
    images = training.get("calibration", {}).get("images")
    calibration = f"; calibrated on {images} training images (faces found: " + ", ".join(f"{k} {v}" for k, v in found.items()) + ")" if images else ""
    context = CropSpec.from_dict(crop).context
    return (
        f"{mode} ({how}): CenterFace landmarks → similarity onto eyes ({lx:.3f}, {ly:.3f}), ({rx:.3f}, {ry:.3f}) and "
        f"mouth centre ({mx:.3f}, {my:.3f}) of the crop; box rules (centre offset, side) {boxes}{calibration}; "
        f"face crops detected in a black border and cut with {CROP_CONTEXTS[context]} around them (context {context})"
    )


def _speed(history: list[dict[str, Any]]) -> str:
    rates = sorted(h["images_per_second"] for h in history if h.get("images_per_second"))
    return f"{rates[len(rates) // 2]:.0f} training images/s (median epoch)" if rates else "not recorded"


def model_card(
    name: str, path: Path, report: ClassificationReport, val_dir: str, notes: str, flipped: ClassificationReport | None = None
) -> str:
    """The markdown model card of a packaged checkpoint."""
    ckpt = load_checkpoint(path)
    training = ckpt.training
    model = ckpt.build()
    history = training.get("history", [])
    validated = bool(training.get("val_data"))
    c = ckpt.config
    network = (
        f"fervid's lightweight attention VGG ({c.arch}, attention `{c.attention}` {c.position},\nwidth {c.width})"
        if c.arch == "csa_vgg" else f"`{c.arch}`, a reference network of the paper's Table 1,"
    )
    selection = f"{training['val_data']} ({training.get('val_images')} images)" if validated else "none: the last epoch"
    return f"""# {name}

{network} for {len(ckpt.classes)} classes: {", ".join(ckpt.classes)}.

| | |
|---|---|
| file | `fervid/model/weights/{path.name}` (fp16 parameters), sha256 `{sha256_file(path)}` |
| input | {ckpt.input_size}×{ckpt.input_size}, {ckpt.config.in_chans} channel(s), gray, histogram-equalised, [-1, 1] |
| face crop | {crop_description(ckpt.preprocessing, training)} |
| size | {count_parameters(model):,} parameters, {count_flops(model, ckpt.input_size, ckpt.config.in_chans) / 1e6:.1f} MFLOPs per face |
| training data | {training.get("data")} ({training.get("train_images")} images) |
| model selection | {selection} |
| command | `{training.get("command")}` |
| epochs | {training.get("epoch")} of {training.get("train_config", {}).get("epochs")}{" (best validation epoch)" if validated else ""} |
| hardware | {training.get("hardware", "CPU (not recorded)")}{f", {training['precision']}" if training.get("precision") else ""} |
| speed | {_speed(history)} |
| {"time to the best epoch" if validated else "training time"} | {sum(h["seconds"] for h in history) / 60:.0f} min ({len(history)} epochs) |

## Accuracy on `{val_dir}`

{f"With flip averaging (each face and its mirror image, as jobs do by default): **{flipped.accuracy:.4f}**. Without:" if flipped else ""}

{report.to_markdown()}

## Training history

{_history_table(history)}

## Known limits

{notes}
"""


def package(checkpoint: str | Path, name: str, val_dir: str, notes: str, classes: list[str] | None = None) -> dict[str, Any]:
    """Write the fp16 shipped file and its card; returns the registry values (sha256, metrics)."""
    ckpt = load_checkpoint(checkpoint)
    out = WEIGHTS_DIR / f"{name}.pt"
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out, ckpt.build(), ckpt.config, ckpt.classes, ckpt.input_size, ckpt.preprocessing, ckpt.training, ckpt.metrics, half=True
    )
    report = evaluate_checkpoint(out, val_dir, data=DataOptions(classes=classes))
    flipped = evaluate_checkpoint(out, val_dir, data=DataOptions(classes=classes), flip=True)
    CARDS_DIR.mkdir(parents=True, exist_ok=True)
    (CARDS_DIR / f"{name}.md").write_text(model_card(name, out, report, val_dir, notes, flipped))
    recall = {c: None if m["recall"] is None else round(m["recall"], 4) for c, m in report.per_class.items()}
    metrics = {"val_accuracy": round(report.accuracy, 4), "val_accuracy_flip": round(flipped.accuracy, 4), "val_recall": recall}
    return {"sha256": sha256_file(out), "metrics": metrics}
