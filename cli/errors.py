"""Map exceptions to one-line messages and exit codes; tracebacks only with ``--debug``."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.traceback import Traceback

from fervid.report.terminal import printable

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1  # the job ran and failed
EXIT_BAD_INPUT = 2  # bad input or arguments (also Typer's usage errors)
EXIT_UNAVAILABLE = 3  # database or broker unreachable

#: Click's UsageError as Typer ships it (Typer vendors Click): typer.BadParameter and its kin.
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]

#: soft_wrap: a message is one line however narrow the terminal (or when stderr is no terminal at all).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
_debug = False


def set_debug(value: bool) -> None:
    global _debug
    _debug = value


#: ``scheme://user:password@`` with any scheme (``postgresql+psycopg``) and an empty user (``redis://:password@``).
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@\s]*@")


def redact(text: str) -> str:
    """Hide passwords in URLs (``scheme://user:secret@host`` → ``scheme://user:***@host``)."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def _unavailable(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"OperationalError", "InterfaceError", "ConnectionError", "OperationalException", "TimeoutError"})


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command; known errors become a red message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except _USAGE_ERROR as exc:  # a bad option found inside a command (typer.BadParameter)
            error, code, message = exc, EXIT_BAD_INPUT, exc.format_message()
        except (ValueError, LookupError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            error, code, message = exc, EXIT_BAD_INPUT, str(exc)
        except ImportError as exc:  # an optional dependency: the message names the pip command
            error, code, message = exc, EXIT_BAD_INPUT, str(exc)
        except BrokenPipeError:  # the reader closed the pipe (`fervid export ... | head`): it has what it wants
            _quiet_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt as exc:
            error, code, message = exc, 130, "interrupted"
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
            error = exc
            if _unavailable(exc):
                code, message = EXIT_UNAVAILABLE, f"service unavailable: {str(exc).splitlines()[0]}"
            else:
                code, message = EXIT_FAILED, f"{str(exc).strip() or 'unexpected error'} (fervid --debug shows the traceback)"
        if _debug:
            _print_traceback(error)
        err_console.print(f"[bold red]error:[/] {escape(printable(redact(message)))}")
        raise typer.Exit(code)

    return wrapper


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit does not fail on the closed pipe again."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_traceback(error: BaseException) -> None:
    """``error``'s traceback; the messages it quotes are redacted like the one-line message."""
    with err_console.capture() as captured:
        err_console.print(Traceback.from_exception(type(error), error, error.__traceback__))
    err_console.print(Text.from_ansi(redact(captured.get())))
