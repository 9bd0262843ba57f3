"""Package a trained checkpoint as a shipped model: compact fp16 weights, validation metrics, a model card.

``python -m fervid.model.package runs/fer2013-csa/best.pt --name fer2013-csa --val ../shared/datasets/fer2013/val``
writes ``model/weights/<name>.pt`` and ``model/cards/<name>.md`` and prints the registry entry's checksum and metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fervid.model.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from fervid.model.experiment import DataOptions, evaluate_checkpoint
from fervid.model.metrics import ClassificationReport
from fervid.model.summary import count_flops, count_parameters
from fervid.model.weights import CARDS_DIR, WEIGHTS_DIR


def _history_table(history: list[dict[str, Any]]) -> str:
    lines = ["| epoch | loss | train acc | val acc | seconds |", "|---:|---:|---:|---:|---:|"]
    for h in history:
        val = f"{h['val_accuracy']:.4f}" if h.get("val_accuracy") is not None else "–"
        lines.append(f"| {h['epoch']} | {h['loss']:.4f} | {h['train_accuracy']:.4f} | {val} | {h['seconds']:.0f} |")
    return "\n".join(lines)


def model_card(name: str, path: Path, report: ClassificationReport, val_dir: str, notes: str) -> str:
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
| input | {ckpt.input_size}×{ckpt.input_size}, {ckpt.config.in_chans} channel(s); preprocessing {json.dumps(ckpt.preprocessing)} |
| size | {count_parameters(model):,} parameters, {count_flops(model, ckpt.input_size, ckpt.config.in_chans) / 1e6:.1f} MFLOPs per face |
| training data | {training.get("data")} ({training.get("train_images")} images) |
| model selection | {selection} |
| command | `{training.get("command")}` |
| epochs | {training.get("epoch")} of {training.get("train_config", {}).get("epochs")}{" (best validation epoch)" if validated else ""} |
| hardware | {training.get("hardware", "CPU (not recorded)")} |
| {"time to the best epoch" if validated else "training time"} | {sum(h["seconds"] for h in history) / 60:.0f} min ({len(history)} epochs) |

## Accuracy on `{val_dir}`

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
    CARDS_DIR.mkdir(parents=True, exist_ok=True)
    (CARDS_DIR / f"{name}.md").write_text(model_card(name, out, report, val_dir, notes))
    recall = {c: round(m["recall"], 4) for c, m in report.per_class.items()}
    return {"sha256": sha256_file(out), "metrics": {"val_accuracy": round(report.accuracy, 4), "val_recall": recall}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True)
    parser.add_argument("--val", required=True, help="Labelled folder the card's metrics are measured on.")
    parser.add_argument("--classes", help="Comma-separated subset of classes to evaluate.")
    parser.add_argument("--notes", default="", help="Known limits (markdown).")
    args = parser.parse_args()
    classes = args.classes.split(",") if args.classes else None
    print(json.dumps(package(args.checkpoint, args.name, args.val, args.notes, classes), indent=2))


if __name__ == "__main__":
    main()
