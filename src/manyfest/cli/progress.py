"""Progress for ``publish``: rich bars on an interactive terminal, plain lines otherwise.

rich's live display prints nothing until it stops when stderr is not a terminal, so a CI log
gets one plain line per finished list instead.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from manyfest.events import Event, Finished, Throttled, Warned
from manyfest.ops.publish import PublishReport


class PublishProgress:
    """Turns engine events into a progress bar or plain lines on stderr.

    Args:
        total: lists in the run.
        console: the stderr console.
        quiet: print nothing (``--json`` keeps the lines; ``--quiet`` drops them).
        dry_run: say "would be created/updated" (nothing is written).
    """

    def __init__(
        self, total: int, console: Console, *, quiet: bool = False, dry_run: bool = False
    ) -> None:
        self.total = total
        self.dry_run = dry_run
        self.console = console
        self.quiet = quiet
        self.done = 0
        self.failed = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if console.is_interactive and not quiet:
            self._progress = Progress(
                TextColumn("[bold]publishing[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )

    def __enter__(self) -> PublishProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("publish", total=self.total, status="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Event) -> None:
        """The engine's and the transport's event sink.

        Finished lists advance the bar (or print a line); a registry throttling shows as it
        happens: ``throttled by REGISTRY, N in flight, waiting W s`` (the bar's status on a
        terminal, a line otherwise).
        """
        if isinstance(event, Throttled):
            self._throttled(event)
            return
        if isinstance(event, Warned):
            console = self._progress.console if self._progress is not None else self.console
            console.print(f"warning: {event.message}", highlight=False, markup=False,
                          soft_wrap=True)
            return
        if not isinstance(event, Finished) or event.result is None:
            return
        result = event.result
        self.done += 1
        if result.status == "failed":
            self.failed += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, advance=1, status=f"{self.failed} failed" if self.failed else ""
            )
            if result.status == "failed" and result.error is not None:
                self._progress.console.print(
                    f"[red]failed[/] {result.target}: {result.error.one_line()}",
                    highlight=False,
                    markup=True,
                )
            return
        if self.quiet:
            return
        status: str = result.status
        if self.dry_run and status in ("created", "updated"):
            status = f"would be {status}"
        line = f"[{self.done}/{self.total}] {status} {result.target}"
        if result.status == "failed" and result.error is not None:
            line += f": {result.error.one_line()}"
        else:
            line += f" {result.digest} ({result.requests} requests, {result.duration_s:.2f} s)"
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)


    def _throttled(self, event: Throttled) -> None:
        text = event.detail + (f" ({event.reason})" if event.reason else "")
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, status=text)
        elif not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)


def print_summary(report: PublishReport, console: Console) -> None:
    """The end of a publish: a table on a terminal, one line otherwise (stderr)."""
    verb = "would publish" if report.dry_run else "published"
    line = (
        f"{verb} {len(report.results)} lists: {report.count('created')} created, "
        f"{report.count('updated')} updated, {report.count('unchanged')} unchanged, "
        f"{report.failed} failed; {report.requests} requests, {report.retries} retries, "
        f"{report.throttled} throttled "
        f"in {report.duration_s:.2f} s"
    )
    if report.dry_run:
        for result in report.results:
            if result.status in ("created", "updated"):
                console.print(
                    f"{result.target}: {result.old_digest or '(none)'} -> {result.digest}",
                    markup=False,
                )
                for action in result.actions:
                    console.print(f"  {action}", markup=False)
    if not console.is_interactive:
        console.print(line, markup=False)
        return
    table = Table(title=f"manyfest publish{' --dry-run' if report.dry_run else ''}")
    table.add_column("")
    table.add_column("", justify="right")
    for status in ("created", "updated", "unchanged", "failed"):
        table.add_row(f"lists {status}", str(report.count(status)))
    table.add_row("requests", str(report.requests))
    table.add_row("retries", str(report.retries))
    table.add_row("throttled answers", str(report.throttled))
    table.add_row("seconds", f"{report.duration_s:.2f}")
    console.print(table)
    for result in report.results:
        if result.status == "failed" and result.error is not None:
            console.print(f"[red]failed[/] {result.target}: {result.error.one_line()}",
                          highlight=False)
