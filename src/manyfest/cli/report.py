"""``manyfest report``: the reports of publish runs (``merge``: one report of N shards)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from manyfest.cli import output
from manyfest.cli.app import CONTEXT_SETTINGS, command_app, fail
from manyfest.errors import ManyfestError, UsageError

app = command_app()
"""This module's commands (loaded by :mod:`manyfest.cli.main` when one runs)."""

report_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT_SETTINGS,
    no_args_is_help=True,
)
"""``manyfest report``'s subcommands."""
app.add_typer(report_app, name="report")


@report_app.callback()
def report() -> None:
    """Work on the reports of publish runs (merge the reports of sharded runs).

    A report is the JSON Lines file of `manyfest publish --report FILE` (one object per
    list), or publish's --json document.

    \b
    Example:
      manyfest report merge -o report.jsonl report-1.jsonl report-2.jsonl
    """


@report_app.command("merge")
def merge(
    reports: Annotated[
        list[Path],
        typer.Argument(
            metavar="REPORT...", show_default=False,
            hidden=True,  # no Arguments: section (as publish): the usage line names it
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE",
                     help="Write the merged report to FILE (atomically: a temporary file "
                     "renamed over it; an existing FILE keeps its permissions) instead of "
                     "stdout; - is stdout."),
    ] = None,
) -> None:
    """Merge the reports of the shards of one plan into one JSON Lines report.

    Each REPORT is a shard's --report file (or its --json document, or one list's object,
    pretty-printed or not). Every list's object is passed through unchanged (keys unknown
    to this version included), in the order of the files given, then of their lines (shard
    order, not the plan's). A list in two reports (the same target, or the same tag in two
    lists) is refused, exit 2, unless the two objects are identical (a report given twice:
    kept once); so are reports of --dry-run runs mixed with reports of real runs. The
    summary on stderr counts the lists per status, names the failed ones, adds up the
    requests and says "(dry run)" for --dry-run reports; failed lists do not change the
    exit status (each shard's publish exited 3 for them).

    \b
    Examples:
      manyfest report merge -o report.jsonl report-1.jsonl report-2.jsonl
      manyfest report merge report-*.jsonl > report.jsonl
    """
    from manyfest.ops import reports as ops

    try:
        merged = ops.merge([ops.read(path) for path in reports])
        data = merged.to_jsonl()
        if out is None or str(out) == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            try:
                ops.write(out, data)
            except OSError as exc:
                raise UsageError(f"--output {out}: cannot write it: {exc.strerror or exc}",
                                 hint="give a writable file path") from None
    except ManyfestError as exc:
        raise fail(exc) from None
    if not output.options.quiet:
        output.emit(merged.summary(), level="info", event="summary", fields=merged.fields())
