"""The ``fervid`` command line: thin Typer commands over fervid's library functions."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fervid import __version__
from fervid.cli import database, jobs, models, training
from fervid.cli.errors import set_debug

app = typer.Typer(
    name="fervid",
    help="Facial expression recognition for videos and image folders, stored in a database you query with SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fervid {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", metavar="", callback=_version, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """fervid: batch facial expression recognition."""
    set_debug(debug)


app.command()(jobs.submit)
app.command(name="jobs")(jobs.list_jobs)
app.command()(jobs.show)
app.command()(jobs.report)
app.command()(jobs.export)
app.command()(jobs.cancel)
app.command()(jobs.delete)
app.command()(jobs.retry)
app.command()(jobs.recover)
app.command()(jobs.worker)
app.command()(training.train)
app.command()(training.evaluate)
app.add_typer(models.app, name="models")
app.add_typer(database.app, name="db")


def main() -> None:
    app()
