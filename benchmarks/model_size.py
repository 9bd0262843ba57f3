"""Parameters and FLOPs of every network variant, compared with the ``vgg16_gap`` reference.

    python benchmarks/model_size.py --size 48 --size 128 [--classes 7 --chans 1]

Prints one table per input size and writes them all to ``benchmarks/results/model_size.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from fervid.model.summary import REFERENCE, paper_variants, summarize

RESULTS = Path(__file__).resolve().parent / "results" / "model_size.md"
HEADERS = ("variant", "params", "MFLOPs", "params ratio", "FLOPs ratio")
NOTES = (
    f"Ratios are the variant's count divided by {REFERENCE}'s. "
    "FLOPs = 2 × multiply-accumulates of convs and matmuls (torch.utils.flop_counter), one image."
)


def table_cells(rows: list[dict]) -> list[tuple[str, ...]]:
    """Each row formatted as the table's cells."""
    return [
        (
            r["name"],
            f"{r['params']:,}",
            f"{r['flops'] / 1e6:,.2f}",
            f"{r['params_ratio']:.3f}",
            f"{r['flops_ratio']:.3f}",
        )
        for r in rows
    ]


def markdown(title: str, cells: list[tuple[str, ...]]) -> str:
    """A markdown table under a heading."""
    lines = [f"## {title}", "", "| " + " | ".join(HEADERS) + " |", "| --- |" + " ---: |" * (len(HEADERS) - 1)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, action="append", help="input size (repeatable; default 48 and 128)")
    parser.add_argument("--classes", type=int, default=7, help="number of classes")
    parser.add_argument("--chans", type=int, default=1, choices=(1, 3), help="input channels")
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    sizes = args.size or [48, 128]

    console = Console()
    variants = paper_variants(args.classes, args.chans)
    command = shlex.join(["python", "benchmarks/model_size.py", *(argv if argv is not None else sys.argv[1:])])
    sections = [
        "# Model size\n",
        f"`{command}` — torch {torch.__version__}, {args.classes} classes, {args.chans} input channel(s).\n",
        NOTES + "\n",
    ]
    for size in sizes:
        title = f"{size}×{size} input"
        cells = table_cells(summarize(variants, size))
        table = Table(title=f"{title} (ratios to {REFERENCE})")
        for i, header in enumerate(HEADERS):
            table.add_column(header, justify="right" if i else "left", no_wrap=True)
        for c in cells:
            table.add_row(*c)
        console.print(table)
        sections.append(markdown(title, cells))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(sections), encoding="utf-8")
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
