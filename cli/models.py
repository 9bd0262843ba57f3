"""``fervid models``: the shipped models."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fervid.cli.errors import handle_errors

console = Console(highlight=False)


@handle_errors
def list_models() -> None:
    """List the shipped models: name, classes, input size, validation accuracy, checksum, model card."""
    from fervid.model.weights import DEFAULT, Weights

    table = Table("name", "classes", "input", "accuracy", "sha256", "default")
    for member in Weights:
        m = member.value
        measured = [(k, m.metrics[k]) for k in ("val_accuracy", "cv10_accuracy") if k in m.metrics]
        table.add_row(
            m.name,
            ", ".join(m.classes),
            f"{m.input_size}px",
            ", ".join(f"{v:.1%} ({'validation' if k == 'val_accuracy' else '10-fold'})" for k, v in measured) or "–",
            m.sha256[:12] if m.sha256 else "[yellow]not trained yet[/]",
            "✓" if member is DEFAULT else "",
        )
    console.print(table)
    console.print("model cards: " + ", ".join(str(member.value.card) for member in Weights if member.value.card.exists()))
