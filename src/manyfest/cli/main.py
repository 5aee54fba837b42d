"""The ``manyfest`` CLI: the root command, its commands (loaded when used) and :func:`run`.

See :mod:`manyfest.cli.app` for exit codes and interrupts.

Start-up: a command's module (and what it imports) is loaded only when that command runs or
its help is shown; ``manyfest --help`` lists the commands from :data:`COMMANDS` without
loading any of them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping
from typing import Any

import click
import typer
import typer.core

from manyfest import interrupts
from manyfest.cli import output
from manyfest.cli.app import CONTEXT_SETTINGS, EXIT_CODES, main, state, stderr
from manyfest.errors import Interrupted, ManyfestError, first_error

COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("manyfest.cli.inspect", "Display an image manifest, or manifest list."),
    "create": ("manyfest.cli.lists",
               "Create a local manifest list for annotating and pushing to a registry."),
    "annotate": ("manyfest.cli.lists", "Add additional information to a local image manifest."),
    "push": ("manyfest.cli.lists", "Push a manifest list to a repository."),
    "rm": ("manyfest.cli.lists", "Delete one or more manifest lists from local storage."),
    "publish": ("manyfest.cli.publish",
                "Publish every manifest list of a plan, concurrently."),
    "copy": ("manyfest.cli.copy",
             "Copy an image or a whole index to other repositories, digests unchanged."),
    "report": ("manyfest.cli.report",
               "Work on the reports of publish runs (merge the reports of sharded runs)."),
    "login": ("manyfest.cli.login", "Authenticate to a registry."),
    "logout": ("manyfest.cli.login", "Log out from a registry."),
    "completion": ("manyfest.cli.completion",
                   "Print the shell completion script for bash, zsh or fish."),
}
"""Command name -> (its module, the one-line summary ``manyfest --help`` shows), in
``--help`` order. The summary is the first paragraph of the command's docstring, checked by
``tests/test_startup.py``."""


class LazyGroup(typer.core.TyperGroup):
    """The root command: its commands are built from their module on first use.

    ``list_commands`` and the help listing read :data:`COMMANDS` alone; ``get_command`` imports
    the command's module and builds its click command (typer's conversion), once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, click.Command] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The command names, in ``--help`` order."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The click command ``cmd_name`` (its module imported now), or None if no such."""
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self._loaded:
            module = importlib.import_module(COMMANDS[cmd_name][0])
            group = typer.main.get_group(module.app)
            assert isinstance(group, click.Group)
            self._loaded.update(group.commands)
        return self._loaded.get(cmd_name)

    def shell_complete(
        self, ctx: click.Context, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        """Completion at the root: the commands starting with ``incomplete`` (their summaries
        from :data:`COMMANDS`, no command module loaded), then the root's flags."""
        from click.shell_completion import CompletionItem

        items = [CompletionItem(name, help=summary) for name, (_, summary) in COMMANDS.items()
                 if name.startswith(incomplete)]
        items.extend(click.Command.shell_complete(self, ctx, incomplete))
        return items

    def _main_shell_completion(
        self, ctx_args: MutableMapping[str, Any], prog_name: str,
        complete_var: str | None = None,
    ) -> None:
        """click's completion protocol (``_MANYFEST_COMPLETE=bash_source``, then
        ``bash_complete`` with ``COMP_WORDS``/``COMP_CWORD``; zsh and fish likewise), not
        typer's variant of it (``source_bash`` and its own environment variables)."""
        click.Command._main_shell_completion(self, ctx_args, prog_name, complete_var)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The ``Commands:`` section of ``manyfest --help``: each summary whole, from
        :data:`COMMANDS` (click would load every command and cut its summary short)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


app = typer.Typer(
    name="manyfest",
    cls=LazyGroup,
    help="Publish multi-architecture manifest lists / OCI indexes, fast; a drop-in for "
    "`docker manifest`.\n\nstdout carries data only (digests, JSON, inspect's output, "
    "publish --dry-run's diff; docker's commands keep docker's stdout lines); progress, "
    "logs, warnings and errors go to stderr. NO_COLOR, FORCE_COLOR and TERM=dumb are "
    "honoured.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
    epilog=EXIT_CODES,
)
app.callback()(main)


def run() -> None:
    """Run the CLI: every usage error is one line on stderr, exit 2.

    The console script is :func:`manyfest.cli.entry.main`, which installs the signal
    handlers before importing this module; they are (re)installed here too, so ``run()``
    called directly (or by a console script installed before the entry module existed)
    still exits 130/143 with one line on SIGINT/SIGTERM.
    """
    interrupts.install()

    # The global options (-D, -q, --progress, --log-format) anywhere on the line.
    args = output.lift(sys.argv[1:])
    state["debug"] = output.options.debug
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="manyfest", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        ctx = getattr(exc, "ctx", None)
        stderr.print(ctx.get_help() if ctx is not None else "", markup=False)
        sys.exit(2)
    except click.exceptions.UsageError as exc:
        from manyfest.cli.usage import usage_line

        args = sys.argv[1:]
        ctx = getattr(exc, "ctx", None)
        sub = ctx.command.name if ctx is not None and ctx.parent is not None else None
        if ctx is not None and ctx.parent is not None and ctx.parent.parent is not None:
            sub = " ".join(ctx.command_path.split()[1:])  # a group's command: `report merge`
        if sub is None:  # the parser's errors carry no context: the command named in args
            sub = next((a for a in args if a in COMMANDS), None)
        group = command if isinstance(command, click.Group) else None
        found = group.get_command(click.Context(command), sub) if group and sub else None
        about = click.Context(found, info_name=sub, parent=click.Context(
            command, info_name="manyfest")) if found is not None else None
        message = usage_line(exc, args, list(COMMANDS), about)
        stderr.print(f"{message}; see `manyfest {sub + ' ' if sub else ''}--help`", markup=False,
                     level="error", event="error")
        sys.exit(2)
    except click.exceptions.ClickException as exc:
        stderr.print(" ".join(exc.format_message().split()), markup=False, level="error",
                     event="error")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print(Interrupted("interrupted").one_line(), markup=False, level="error",
                     event="interrupted")
        sys.exit(130)
    except Exception as exc:  # the last net: one line, never a traceback (unless -D)
        if state["debug"]:
            raise
        stderr.print(unexpected(exc), markup=False, level="error", event="error")
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
