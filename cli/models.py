"""``fervid models``: the shipped models; ``fervid models package``: make a trained checkpoint a shipped one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from fervid.cli.commands import Command, Group
from fervid.cli.errors import handle_errors

console = Console(highlight=False)
app = typer.Typer(cls=Group, help="Shipped models: list them (no command), or package a checkpoint as one.", invoke_without_command=True)
#: The registry's metrics: the short name `fervid models` shows in its table, and what it measures (the legend).
METRICS = {
    "val_accuracy": ("val", "the validation set's faces"),
    "val_accuracy_flip": ("val + flip", "the same, each face averaged with its mirror image (as jobs and evaluate read faces)"),
    "pipeline_accuracy": ("end to end", "the validation faces placed in frames, upright, on those CenterFace found"),
    "posed_pipeline_accuracy": ("posed, end to end", "posed faces of unseen people (CK+) placed in frames, upright"),
    "cv10_accuracy": ("10-fold", "random 10-fold cross-validation"),
    "subject_cv10_accuracy": ("subject 10-fold", "subject-independent 10-fold cross-validation"),
}


@app.callback()
def models(ctx: typer.Context) -> None:
    """List the shipped models: name, classes, input size, measured accuracy, checksum, model card."""
    if ctx.invoked_subcommand is None:
        handle_errors(list_models)()


def list_models() -> None:
    from fervid.model.weights import DEFAULT, Weights

    table = Table("name", "classes", "input", "accuracy", "sha256", "default")
    for member in Weights:
        m = member.value
        measured = [(METRICS[k][0], m.metrics[k]) for k in METRICS if k in m.metrics]
        table.add_row(
            m.name,
            str(len(m.classes)),
            f"{m.input_size}px",
            "\n".join(f"{v:.1%} {what}" for what, v in measured) or "–",
            m.sha256[:12],
            "✓" if member is DEFAULT else "",
        )
    console.print(table)
    for short, meaning in METRICS.values():
        console.print(f"{short}: {meaning}", soft_wrap=True)
    console.print("classes, data, command and per-class figures: the model cards")
    for member in Weights:
        if member.value.card.exists():
            console.print(f"  {member.value.card}", soft_wrap=True)


@app.command(cls=Command)
@handle_errors
def package(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A trained best.pt or last checkpoint.")],
    name: Annotated[str, typer.Option(help="Shipped name, e.g. ferplus-csa.")],
    val: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Labelled folder the card's metrics are measured on.")],
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated subset of classes to evaluate.")] = None,
    notes: Annotated[str, typer.Option(help="Known limits and end-to-end figures (markdown) for the card.")] = "",
) -> None:
    """Write fervid/model/weights/NAME.pt (fp16) and its model card; prints the registry entry's values."""
    import json

    from fervid.model.package import package as run

    subset = [c.strip() for c in classes.split(",")] if classes else None
    console.print(json.dumps(run(checkpoint, name, str(val), notes, subset), indent=2))


@app.command(cls=Command)
@handle_errors
def recalibrate(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A checkpoint trained on face crops as they are.")],
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="The folder of crops it was trained on.")],
    out: Annotated[Path, typer.Option(help="Where to write the recalibrated checkpoint.")],
) -> None:
    """Give a checkpoint the crop definition calibrated on its training crops, so that jobs frame faces like them."""
    import json

    from fervid.model.experiment import recalibrate as run

    console.print(json.dumps(run(checkpoint, data, out), indent=2))
    console.print(f"wrote {out}")
