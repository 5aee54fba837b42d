"""The ``manyfest`` CLI: registers the commands (in ``manyfest --help`` order) and runs them.

See :mod:`manyfest.cli.app` for exit codes and interrupts.
"""

from __future__ import annotations

import sys

import typer

from manyfest import interrupts
from manyfest.cli import inspect as _inspect  # noqa: F401 - registers the command
from manyfest.cli import lists as _lists  # noqa: F401
from manyfest.cli import login as _login  # noqa: F401
from manyfest.cli import publish as _publish  # noqa: F401
from manyfest.cli.app import app, state, stderr
from manyfest.engine import first_error
from manyfest.errors import Interrupted, ManyfestError


def run() -> None:
    """Run the CLI: every usage error is one line on stderr, exit 2.

    The console script is :func:`manyfest.cli.entry.main`, which installs the signal
    handlers before importing this module; they are (re)installed here too, so ``run()``
    called directly (or by a console script installed before the entry module existed)
    still exits 130/143 with one line on SIGINT/SIGTERM.
    """
    from typer._click import exceptions as click_errors  # typer >= 0.26 vendors click

    interrupts.install()

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="manyfest", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        ctx = getattr(exc, "ctx", None)
        stderr.print(ctx.get_help() if ctx is not None else "", markup=False)
        sys.exit(2)
    except click_errors.UsageError as exc:
        ctx = getattr(exc, "ctx", None)
        sub = ctx.command.name if ctx is not None and ctx.parent is not None else None
        message = " ".join(exc.format_message().split()).rstrip(".")
        stderr.print(f"{message}; see `manyfest {sub + ' ' if sub else ''}--help`", markup=False)
        sys.exit(2)
    except click_errors.ClickException as exc:
        stderr.print(" ".join(exc.format_message().split()), markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print(Interrupted("interrupted").one_line(), markup=False)
        sys.exit(130)
    except Exception as exc:  # the last net: one line, never a traceback (unless -D)
        if state["debug"]:
            raise
        stderr.print(unexpected(exc), markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def unexpected(exc: BaseException) -> str:
    """One line for an exception no layer mapped to a :class:`ManyfestError`.

    An ``OSError`` (a local file or directory: the store, ``$DOCKER_CONFIG``) says which path
    and why; anything else is a manyfest bug, said so, with how to see the traceback.
    """
    if isinstance(exc, BaseExceptionGroup):
        exc = first_error(exc)
    if isinstance(exc, ManyfestError):
        return exc.one_line()
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}; check the path and its permissions"
    text = " ".join(str(exc).split()) or "no detail"
    return (f"internal error: {type(exc).__name__}: {text}; this is a manyfest bug: please "
            "report it with the output of the same command run with -D")
