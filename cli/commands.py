"""Typer's command classes with a ``--help`` that, like every other flag here, shows no ``<bool>`` type."""

from __future__ import annotations

from typing import Any

import typer.core


class _QuietHelp:
    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Command(_QuietHelp, typer.core.TyperCommand):
    """A fervid command."""


class Group(_QuietHelp, typer.core.TyperGroup):
    """A fervid command group."""
