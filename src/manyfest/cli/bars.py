"""The live display of ``publish`` on a terminal: rich's bars with a status line under them.

Imported only when stderr is a terminal that gets bars (:mod:`manyfest.cli.progress`), so a
plain (CI) run never imports rich.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from manyfest.cli import output


def make_console() -> Console:
    """The stderr console of the live display: a terminal with cursor movement (the caller
    decided bars), colour as :func:`manyfest.cli.output.colour` says (``NO_COLOR``,
    ``FORCE_COLOR``, ``TERM``), never rich's own guesses."""
    coloured = output.colour()
    return Console(
        stderr=True, highlight=False, soft_wrap=True, force_terminal=True,
        force_interactive=True, no_color=not coloured,
        color_system="auto" if coloured else None,
    )


class Rate(ProgressColumn):
    """Things per second of a task (its unit in ``task.fields['unit']``)."""

    def render(self, task: Task) -> Text:
        """``3.2 lists/s`` (``- lists/s`` before the first)."""
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "")
        return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")


class Bars(Progress):
    """rich's progress, with a status line (requests, retries, throttling, in flight)
    under the bars; ``status()`` gives the line ('' for none)."""

    def __init__(self, status: Any, *columns: str | ProgressColumn, **kwargs: Any) -> None:
        self._status = status
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        """The bars, then the status line."""
        yield self.make_tasks_table(self.tasks)
        status = self._status()
        if status:
            yield Text(status, style="dim", overflow="ellipsis", no_wrap=True)


def bars(status: Any, console: Console) -> Bars:
    """The publish display's bars: description, bar, done/total, rate, ETA, elapsed."""
    return Bars(
        status,
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        redirect_stdout=False,
    )
