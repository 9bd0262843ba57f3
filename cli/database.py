"""``fervid db``: schema migrations of the configured database."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from fervid.cli.commands import Command, Group
from fervid.cli.errors import handle_errors, redact
from fervid.settings import get_settings

app = typer.Typer(cls=Group, help="Database schema: upgrade, downgrade, current revision.", no_args_is_help=True)
console = Console(highlight=False)
DatabaseUrl = Annotated[Optional[str], typer.Option(envvar="FERVID_DATABASE_URL", help="Database URL (default: embedded SQLite).")]


@app.command(cls=Command)
@handle_errors
def upgrade(
    revision: Annotated[str, typer.Option(help="Revision to go up to (head: the newest).")] = "head", database_url: DatabaseUrl = None
) -> None:
    """Run the Alembic migrations up to REVISION."""
    from fervid.db.migrate import current
    from fervid.db.migrate import upgrade as run_upgrade

    url = get_settings(database_url=database_url).effective_database_url
    run_upgrade(url, revision)
    console.print(f"{redact(url)} at revision {current(url)}")


@app.command(cls=Command)
@handle_errors
def downgrade(
    revision: Annotated[str, typer.Argument(help="Revision to go down to; base drops every table fervid created.")],
    yes: Annotated[bool, typer.Option("--yes", metavar="", help="Confirm: a downgrade deletes the data of what it undoes.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Undo migrations down to REVISION (base: drop everything fervid created); needs --yes."""
    from fervid.db.migrate import current
    from fervid.db.migrate import downgrade as run_downgrade

    url = get_settings(database_url=database_url).effective_database_url
    if not yes:
        raise typer.BadParameter(f"a downgrade to {revision} deletes the data it undoes; add --yes to confirm")
    run_downgrade(url, revision)
    console.print(f"{redact(url)} at revision {current(url) or 'base'}")


@app.command(cls=Command, name="current")
@handle_errors
def show_current(database_url: DatabaseUrl = None) -> None:
    """Show the database's schema revision."""
    from fervid.db.migrate import current

    url = get_settings(database_url=database_url).effective_database_url
    console.print(f"{redact(url)} at revision {current(url) or 'base (empty)'}")
