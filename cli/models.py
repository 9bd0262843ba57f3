"""``fervid models``: the shipped models."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from fervid.cli.errors import handle_errors

console = Console(highlight=False)


@handle_errors
def list_models() -> None:
    """List the shipped models: name, classes, input size, validation metrics, checksum."""
    from fervid.model.weights import DEFAULT, Weights

    table = Table("name", "classes", "input", "data", "metrics", "sha256", "default")
    for member in Weights:
        m = member.value
        metrics = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.metrics.items())
        status = m.sha256[:12] if m.sha256 else "[yellow]not trained yet[/]"
        table.add_row(m.name, " ".join(m.classes), f"{m.input_size}px", m.data, metrics, status, "✓" if member is DEFAULT else "")
    console.print(table)
    if not any(member.value.sha256 for member in Weights):
        raise typer.Exit(0)
