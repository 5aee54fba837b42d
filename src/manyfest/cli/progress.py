"""Progress for ``publish``, on stderr: live bars on a terminal, plain lines otherwise.

What it shows, in both forms (see :func:`manyfest.cli.output.progress_mode`):

* the phase: ``resolving 800 sources`` (every distinct source, before any write), then
  ``publishing 200 lists``; counts done/total, rate and ETA of the phase;
* requests and retries so far (the transport's counters), throttling as it happens, the
  lists in flight (their names);
* one line per finished list (``[3/200] created REF DIGEST (5 requests, 0.12 s)``), which on
  a terminal is printed above the bars and stays in the scrollback;
* at the end (:func:`print_summary`): on a terminal a table (created / updated / unchanged /
  failed with the lists and their digests or errors, verification, requests, time); else one
  line. With ``-q`` only failed lists' lines; with ``--log-format json`` JSON objects.

The ``--dry-run`` diff is data: :func:`print_plan` writes it on stdout.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

from manyfest.cli import output
from manyfest.cli.output import plural
from manyfest.errors import VerificationError
from manyfest.events import (
    Event,
    Finished,
    Phase,
    Retried,
    SinceChecked,
    SourceDone,
    Started,
    Throttled,
    Warned,
)
from manyfest.ops.publish import PublishReport, result_json

if TYPE_CHECKING:  # rich only on a terminal (manyfest.cli.bars): a plain run never imports it
    from rich.console import Console
    from rich.progress import TaskID
    from rich.table import Table

    from manyfest.cli.bars import Bars
    from manyfest.engine import ListResult
    from manyfest.transport import RequestStats

STATUS_EVERY_S = 5.0
"""Plain lines: at most one status line (counts, rate, ETA, requests, in flight) this often,
in seconds, written when a source or a list finishes."""
SUMMARY_ROWS = 10
"""Terminal summary: lists named per status (failed lists: all of them)."""
IN_FLIGHT_NAMES = 3
"""Lists in flight named in the status (then ``+N more``)."""

_STYLE = {"created": "green", "updated": "blue", "unchanged": "dim", "failed": "red"}


def make_console() -> Console:
    """The stderr console of the live display (:func:`manyfest.cli.bars.make_console`)."""
    from manyfest.cli.bars import make_console as make

    return make()


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def list_line(result: ListResult, done: int, total: int, *, dry_run: bool) -> tuple[str, str]:
    """One finished list's line and its status word: ``[3/200] created REF DIGEST (5
    requests, 0.12 s)``; ``[1/1] failed REF: ERROR``; with ``--dry-run`` ``would be created``.
    """
    status: str = result.status
    word = f"would be {status}" if dry_run and status in ("created", "updated") else status
    head = f"[{done}/{total}] "
    if result.status == "failed" and result.error is not None:
        return f"{head}{word} {result.target}: {result.error.one_line()}", word
    verified = ", verified" if result.verified else ""
    copied = f" from {result.source}" if result.kind == "copy" else ""
    # --existing skip: the tags left at another digest are named (the status is the written
    # tags'; none written: unchanged), so the line never implies the target tag moved.
    kept = "".join(f"; kept {tag} at {held} (--existing skip)"
                   for tag, held in result.existing.items())
    tail = (f" {result.target} {result.digest}{copied} ({plural(result.requests, 'request')}, "
            f"{result.duration_s:.2f} s{verified}{kept})")
    return head + word + tail, word


class PublishProgress:
    """Turns engine and transport events into bars, or lines, on stderr.

    Args:
        total: lists in the run.
        mode: ``tty`` (live bars), ``plain`` (lines) or ``none``
            (:func:`manyfest.cli.output.progress_mode`).
        dry_run: say "would be created/updated" (nothing is written).
        errors_only: ``-q``: of all this, only failed lists' lines.
        status_every: plain lines: seconds between two status lines (0: after every source
            and list).
        console: the live display's console (default :func:`make_console`; tty only).

    Set :attr:`counters` to the transport's totals (``session.transport.total``) to show
    requests and retries so far.
    """

    def __init__(
        self, total: int, *, mode: str = "plain", dry_run: bool = False,
        errors_only: bool = False, status_every: float = STATUS_EVERY_S,
        console: Console | None = None,
    ) -> None:
        self.total = total
        self.mode = mode
        self.dry_run = dry_run
        self.errors_only = errors_only
        self.status_every = status_every
        self.counters: RequestStats | None = None
        self.phase = ""
        self.phase_total = 0
        self.phase_done = 0
        self.phase_started = time.monotonic()
        self.resolved_late = 0
        """Sources resolved after the publish phase began (a pipelined run)."""
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.throttling = ""
        self.in_flight: dict[str, None] = {}
        self._last_status = time.monotonic()
        self._bars: Bars | None = None
        self._tasks: dict[str, TaskID] = {}
        self.console: Console | None = None
        if mode == "tty":
            from manyfest.cli.bars import bars

            self.console = console or make_console()
            self._bars = bars(self.status, self.console)

    def __enter__(self) -> PublishProgress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._end_phase()
            self._bars.stop()

    # ------------------------------------------------------------------ what is shown

    def _noun(self) -> tuple[str, str]:
        if self.phase == "copy":
            return ("copy", "copies")
        return ("source", "sources") if self.phase == "resolve" else ("list", "lists")

    def _phase_text(self, *, past: bool = False) -> str:
        word, many = self._noun()
        verb = {"resolve": ("resolving", "resolved"),
                "publish": ("publishing", "published"),
                "since": ("checking", "checked"),
                "copy": ("copying", "copied")}.get(self.phase, (self.phase, self.phase))
        if self.dry_run and self.phase == "publish":
            verb = ("checking", "checked")
        text = f"{verb[past]} {plural(self.phase_total, word, many)}"
        return text + (" (--dry-run)" if self.dry_run and self.phase == "publish" else "")

    def requests_text(self) -> str:
        """``340 requests, 2 retries`` so far ('' before the counters are set)."""
        if self.counters is None:
            return ""
        retries = max(self.counters.retries, self.retries)
        return (f"{plural(self.counters.requests, 'request')}, "
                f"{plural(retries, 'retry', 'retries')}")

    def in_flight_text(self) -> str:
        """``in flight: a/b:1, a/c:2, a/d:3 +29 more`` ('' when none)."""
        if not self.in_flight:
            return ""
        names = list(self.in_flight)
        shown = ", ".join(names[:IN_FLIGHT_NAMES])
        more = len(names) - IN_FLIGHT_NAMES
        return f"in flight: {shown}" + (f" +{more} more" if more > 0 else "")

    def status(self) -> str:
        """The status: requests and retries so far, throttling, lists in flight."""
        parts = [self.requests_text(), self.throttling, self.in_flight_text()]
        return "; ".join(p for p in parts if p)

    def rate(self) -> tuple[float, float | None]:
        """The phase's rate (things per second) and ETA in seconds (None: not known yet)."""
        elapsed = max(time.monotonic() - self.phase_started, 1e-6)
        rate = self.phase_done / elapsed
        left = self.phase_total - self.phase_done
        return rate, (left / rate if rate > 0 else None)

    def status_line(self) -> str:
        """A plain status line: ``publishing: 12/200 lists, 3.2 lists/s, ETA 58 s; 340
        requests, 2 retries; in flight: ...``."""
        word, many = self._noun()
        rate, eta = self.rate()
        verb = self._phase_text().split(" ", 1)[0]
        head = (f"{verb}: {self.phase_done}/{plural(self.phase_total, word, many)}, "
                f"{rate:.1f} {many}/s, ETA {_duration(eta) if eta is not None else 'unknown'}")
        rest = self.status()
        return head + (f"; {rest}" if rest else "")

    # ------------------------------------------------------------------ events

    def __call__(self, event: Event) -> None:
        """The engine's and the transport's event sink (in the event loop's thread)."""
        if isinstance(event, Phase):
            self._phase(event)
        elif isinstance(event, SourceDone) and self.phase == "publish":
            self._late_source()
        elif isinstance(event, (SourceDone, SinceChecked)):
            self.phase_done += 1
            self._advance()
        elif isinstance(event, Started):
            self.in_flight[event.target] = None
        elif isinstance(event, Finished) and event.result is not None:
            self.in_flight.pop(event.target, None)
            self._finished(event.result)
        elif isinstance(event, Retried):
            self.retries += 1
        elif isinstance(event, Throttled):
            self._throttled(event)
        elif isinstance(event, Warned):
            self._warned(event)

    def _phase(self, event: Phase) -> None:
        self._end_phase()
        # Lists finished while sources were still resolving (a pipelined run) count.
        done = self.done if event.name == "publish" else 0
        self.phase, self.phase_total, self.phase_done = event.name, event.total, done
        self.phase_started = time.monotonic()
        if self._bars is not None:
            unit = self._noun()[1]
            self._tasks[event.name] = self._bars.add_task(
                self._phase_text(), total=event.total, unit=unit, completed=done
            )
        elif self.mode == "plain" and not self.errors_only:
            output.emit(self._phase_text(), event="phase",
                        fields={"phase": event.name, "total": event.total})

    def _late_source(self) -> None:
        """A source resolved after the publish phase began (a pipelined run starts lists
        as their own sources are in): the resolve bar advances; no line of its own."""
        self.resolved_late += 1
        task = self._tasks.get("resolve")
        if self._bars is not None and task is not None:
            self._bars.update(task, advance=1)

    def _end_phase(self) -> None:
        task = self._tasks.get(self.phase)
        if self._bars is not None and task is not None:
            self._bars.update(task, description=self._phase_text(past=True))

    def _advance(self) -> None:
        task = self._tasks.get(self.phase)
        if self._bars is not None and task is not None:
            self._bars.update(task, completed=self.phase_done)
            return
        if self.mode != "plain" or self.errors_only:
            return
        now = time.monotonic()
        if now - self._last_status >= self.status_every and self.phase_done < self.phase_total:
            self._last_status = now
            rate, eta = self.rate()
            counters = self.counters
            output.emit(self.status_line(), event="status", fields={
                "phase": self.phase, "done": self.phase_done, "total": self.phase_total,
                "rate": round(rate, 3), "eta_s": None if eta is None else round(eta, 1),
                "requests": counters.requests if counters else None,
                "retries": max(counters.retries if counters else 0, self.retries),
                "in_flight": list(self.in_flight),
            })

    def _finished(self, result: ListResult) -> None:
        self.done += 1
        failed = result.status == "failed"
        self.failed += failed
        if self.phase == "publish":
            self.phase_done = self.done
        if self._bars is not None:
            self._advance()  # the bars show this list done when its line is printed
        text, word = list_line(result, self.done, self.total, dry_run=self.dry_run)
        style = _STYLE.get(result.status, "")
        if self._bars is not None and self.console is not None:
            from rich.text import Text

            line = Text(f"[{self.done}/{self.total}] ", style="dim")
            line.append(word, style=style)
            line.append(text.split(word, 1)[1])
            self.console.print(line)
        elif self.mode == "plain" or (failed and self.errors_only):
            head = f"[{self.done}/{self.total}] "
            painted = head + output.paint(word, style) + text[len(head) + len(word):]
            output.emit(text, level="error" if failed else "info", event="list",
                        fields=result_json(result), painted=painted)
        if self._bars is None:
            self._advance()  # a status line, after the list's

    def _throttled(self, event: Throttled) -> None:
        text = event.detail + (f" ({event.reason})" if event.reason else "")
        self.throttling = text
        if self._bars is not None and self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style="yellow"))
        elif self.mode == "plain" and not self.errors_only:
            import msgspec

            output.emit(text, level="warning", event="throttled",
                        fields=msgspec.to_builtins(event), painted=output.paint(text, "yellow"))

    def _warned(self, event: Warned) -> None:
        if self.errors_only:
            return
        text = f"warning: {event.message}"
        if self._bars is not None and self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style="yellow"))
        else:
            output.emit(text, level="warning", event="warning",
                        fields={"target": event.target})


def _verified(report: PublishReport) -> tuple[int, int]:
    """(lists verified, lists written): ``--verify`` checks the lists it wrote."""
    written = [r for r in report.results if r.status in ("created", "updated")]
    failed_verify = [r for r in report.results
                     if r.status == "failed" and isinstance(r.error, VerificationError)]
    return sum(r.verified for r in written), len(written) + len(failed_verify)


def summary_line(report: PublishReport, *, verify: bool = False) -> str:
    """The one-line summary: ``published 3 lists: 2 created, 0 updated, 1 unchanged, 0
    failed; 2 of 2 verified; 40 requests, 0 retries, 0 throttled in 1.20 s``."""
    verb = "would publish" if report.dry_run else "published"
    line = (
        f"{verb} {plural(len(report.results), 'list')}: {report.count('created')} created, "
        f"{report.count('updated')} updated, {report.count('unchanged')} unchanged, "
        f"{report.failed} failed; "
    )
    if report.since is not None:  # --since: how many the report proved unchanged
        line += f"{report.since_matched()} unchanged since {report.since}; "
    if verify and not report.dry_run:
        ok, written = _verified(report)
        line += f"{ok} of {written} verified; "
    return line + (
        f"{plural(report.requests, 'request')}, {plural(report.retries, 'retry', 'retries')}, "
        f"{report.throttled} throttled in {report.duration_s:.2f} s"
    )


def summary_table(report: PublishReport, *, verify: bool = False) -> Table:
    """The terminal summary: one row per status (its count, its lists with their digests,
    at most :data:`SUMMARY_ROWS` each; failed lists all, with their error), verification,
    requests, time. No header row."""
    from rich.table import Table
    from rich.text import Text

    title = "manyfest publish --dry-run: nothing was written" if report.dry_run else \
        "manyfest publish"
    table = Table(title=f"{title} ({plural(len(report.results), 'list')})", show_header=False,
                  title_justify="left", expand=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("lists", overflow="fold")
    labels = {"created": "would create", "updated": "would update", "failed": "would fail"}
    for status in ("created", "updated", "unchanged", "failed"):
        results = [r for r in report.results if r.status == status]
        shown = results if status == "failed" else results[:SUMMARY_ROWS]
        lines = []
        for r in shown:
            if status == "failed":
                lines.append(f"{r.target}: {r.error.one_line() if r.error else 'failed'}")
            elif status == "updated":
                lines.append(f"{r.target} {r.old_digest} -> {r.digest}")
            else:
                lines.append(f"{r.target} {r.digest}")
        if len(results) > len(shown):
            lines.append(f"... and {len(results) - len(shown)} more (see the lines above)")
        label = labels.get(status, status) if report.dry_run else status
        table.add_row(Text(label, style=_STYLE[status]), str(len(results)), "\n".join(lines))
    if verify and not report.dry_run:
        ok, written = _verified(report)
        result = ("every tag and child checked" if ok == written
                  else f"{written - ok} failed verification (see failed)")
        table.add_row("verified", f"{ok}/{written}", result)
    table.add_row("requests", str(report.requests),
                  f"{plural(report.retries, 'retry', 'retries')}, "
                  f"{plural(report.throttled, 'throttled answer')}; "
                  f"manifest GETs {report.manifest_gets}, HEADs {report.manifest_heads}")
    took = report.duration_s  # the exact seconds beside a rounded long time, not a short one
    table.add_row("time", _duration(took) if took >= 60 else f"{took:.2f} s",
                  f"{took:.1f} s" if took >= 60 else "")
    return table


def print_summary(report: PublishReport, *, mode: str, verify: bool = False,
                  console: Console | None = None) -> None:
    """The end of a publish, on stderr: the table on a terminal (``mode`` ``tty``), else the
    failed lists (``none``: they had no line yet) and the summary line; nothing with ``-q``
    (the failed lists had their line)."""
    if output.options.quiet:
        return
    if mode == "tty":
        (console or make_console()).print(summary_table(report, verify=verify))
        return
    if mode == "none":
        for r in report.results:
            if r.status == "failed" and r.error is not None:
                text = f"failed {r.target}: {r.error.one_line()}"
                output.emit(text, level="error", event="list", fields=result_json(r),
                            painted=output.paint("failed", "red") + text[len("failed"):])
    fields = report.summary()
    if verify and not report.dry_run:
        fields["verified"], fields["written"] = _verified(report)
    output.emit(summary_line(report, verify=verify), event="summary", fields=fields)


def _plan_head(r: ListResult) -> str:
    """A list's first line in a ``--dry-run`` diff: would create / update, unchanged, fail."""
    if r.status == "created":
        return f"would create {r.target} {r.digest}"
    if r.status == "updated":
        return f"would update {r.target} {r.old_digest} -> {r.digest}"
    if r.status == "unchanged":
        return f"unchanged {r.target} {r.digest}"
    return f"would fail {r.target}: {r.error.one_line() if r.error else ''}"


def plan_lines(report: PublishReport) -> list[str]:
    """The ``--dry-run`` diff, per list in plan order: what would be created or updated
    (digests, then each action indented), what is unchanged, what would fail and why."""
    lines: list[str] = []
    for r in report.results:
        lines.append(_plan_head(r))
        if r.mirror_of:
            lines.append(f"  mirror of {r.mirror_of} (the same list and tags)")
        if r.same_as and r.status != "failed":
            lines.append(f"  same list as {r.same_as} (its mounts and child pushes are there)")
        lines.extend(f"  {action}" for action in r.actions)
    return lines


def atomic_plan_lines(report: PublishReport) -> list[str]:
    """The ``--atomic --dry-run`` diff: phase 1 (per list: :func:`plan_lines`' first line,
    and what would be pushed by digest), then phase 2 (every tag move: the ``put`` actions,
    :func:`manyfest.ops.atomic.dry_run_actions`)."""
    lines = ["--atomic phase 1: push every child and list by digest (no tag moves)"]
    moves: list[str] = []
    for r in report.results:
        lines.append(_plan_head(r))
        if r.mirror_of:
            lines.append(f"  mirror of {r.mirror_of} (the same list and tags)")
        if r.same_as and r.status != "failed":
            lines.append(f"  same list as {r.same_as} (its mounts and list push are there)")
        lines.extend(f"  {a}" for a in r.actions if not a.startswith("put "))
        moves.extend(f"  {a}" for a in r.actions if a.startswith("put "))
    if report.failed:
        lines.append("--atomic phase 2: none (a list would fail in phase 1: no tag would move)")
        return lines
    lines.append(f"--atomic phase 2: move {plural(len(moves), 'tag')} (any failure moves "
                 "them back)")
    return lines + moves


def print_plan(report: PublishReport) -> None:
    """Write :func:`plan_lines` on stdout (data: ``publish --dry-run plan.yaml > diff.txt``)."""
    text = "".join(line + "\n" for line in plan_lines(report))
    sys.stdout.write(text)
    sys.stdout.flush()
