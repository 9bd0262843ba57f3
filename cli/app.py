"""The ``fervid`` command line: thin Typer commands over fervid's library functions."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fervid import __version__
from fervid.cli import database, jobs, models, training
from fervid.cli.commands import Command, Group
from fervid.cli.errors import set_debug

app = typer.Typer(
    cls=Group,
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


app.command(cls=Command)(jobs.submit)
app.command(cls=Command, name="jobs")(jobs.list_jobs)
app.command(cls=Command)(jobs.show)
app.command(cls=Command)(jobs.report)
app.command(cls=Command)(jobs.export)
app.command(cls=Command)(jobs.cancel)
app.command(cls=Command)(jobs.delete)
app.command(cls=Command)(jobs.retry)
app.command(cls=Command)(jobs.recover)
app.command(cls=Command)(jobs.worker)
app.command(cls=Command)(training.train)
app.command(cls=Command)(training.evaluate)
app.add_typer(models.app, name="models")
app.add_typer(database.app, name="db")


def main() -> None:
    app()
