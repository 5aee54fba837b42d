"""Output conventions of every command: stdout carries data only; everything else is stderr.

stdout: digests, JSON, ``inspect``'s output, ``publish --dry-run``'s diff, and docker's own
stdout lines for docker's commands (``Created manifest list X``, ``Pushed ref ...``).
stderr: progress, per-list lines, summaries, warnings, logs and errors.

Global options, accepted anywhere on the command line (:func:`lift` moves them in front of
the command before click parses it):

* ``-D/--debug``: debug logs (each HTTP exchange with its headers, secrets redacted; retries
  with their cause and wait; throttling; engine events) and tracebacks;
* ``-q/--quiet``: data on stdout and errors on stderr, nothing else (no progress, summary,
  warnings or docker's ``Created``/``Pushed ref`` lines: ``push -q`` prints the digest alone);
* ``--progress auto|tty|plain|none``: bars when stderr is a terminal, lines otherwise (auto);
  bars (tty); lines (plain); no progress (none);
* ``--log-format text|json``: ``json`` makes every stderr line one JSON object
  (``time``, ``level``, ``event``, ``message``, ``fields``).

Colour: ``NO_COLOR`` (any non-empty value) turns it off; ``FORCE_COLOR`` (non-empty, not
``0``) turns it on even when stderr is not a terminal; ``TERM=dumb`` means no colour and no
cursor movement (plain lines, even with ``--progress tty``). Only ``publish`` draws in colour.

This module is light (the standard library only): every command imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from manyfest.words import plural as plural  # the CLI's name for it (one helper)

PROGRESS_MODES = ("auto", "tty", "plain", "none")
"""``--progress`` values."""
LOG_FORMATS = ("text", "json")
"""``--log-format`` values."""

_FLAGS = frozenset({"-D", "--debug", "-q", "--quiet"})
_VALUED = frozenset({"--progress", "--log-format"})


@dataclass(slots=True)
class Options:
    """The global output options of this run (set by :func:`lift`, then by the root callback).

    Attributes:
        debug: ``-D/--debug``.
        quiet: ``-q/--quiet``.
        progress: ``--progress`` (one of :data:`PROGRESS_MODES`).
        log_format: ``--log-format`` (one of :data:`LOG_FORMATS`).
    """

    debug: bool = False
    quiet: bool = False
    progress: str = "auto"
    log_format: str = "text"

    @property
    def json(self) -> bool:
        """True with ``--log-format json``: every stderr line is a JSON object."""
        return self.log_format == "json"


options = Options()
"""This process's output options."""


def lift(argv: list[str]) -> list[str]:
    """``argv`` with the global options moved in front of the command, so that click reads
    them as the root's options wherever they were written (``publish plan.yaml -D``).

    ``--progress`` and ``--log-format`` take the next word (or ``=VALUE``). Nothing after a
    ``--`` is moved; an option value spelled like one of these words is written
    ``--option=-q``. :data:`options` is set from what was found (the root callback sets it
    again once click checked the values), so a usage error is already printed as asked.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest.extend(argv[i:])
            break
        name = word.split("=", 1)[0]
        if word in _FLAGS:
            front.append(word)
        elif word in _VALUED and i + 1 < len(argv):
            front.extend((word, argv[i + 1]))
            i += 1
        elif name in _VALUED and "=" in word:
            front.append(word)
        else:
            rest.append(word)
        i += 1
    _preset(front)
    return front + rest


def _preset(front: list[str]) -> None:
    """Set :data:`options` from the lifted words (valid values only)."""
    words = iter(front)
    for word in words:
        name, eq, value = word.partition("=")
        if name in _VALUED and not eq:
            value = next(words, "")
        if name in ("-D", "--debug"):
            options.debug = True
        elif name in ("-q", "--quiet"):
            options.quiet = True
        elif name == "--progress" and value in PROGRESS_MODES:
            options.progress = value
        elif name == "--log-format" and value in LOG_FORMATS:
            options.log_format = value




def _env(name: str) -> str:
    return os.environ.get(name, "")


def dumb_terminal() -> bool:
    """``TERM=dumb`` (or ``unknown``): no colour, no cursor movement."""
    return _env("TERM").strip().lower() in ("dumb", "unknown")


def colour() -> bool:
    """Whether stderr gets colour: never with ``NO_COLOR``; with ``FORCE_COLOR`` (not ``0``)
    always; otherwise when stderr is a terminal that is not dumb. Never in JSON logs."""
    if _env("NO_COLOR") or options.json:
        return False
    forced = _env("FORCE_COLOR").strip().lower()
    if forced and forced not in ("0", "false"):
        return True
    return _isatty() and not dumb_terminal()


def _isatty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_mode() -> str:
    """How ``publish`` shows progress: ``tty`` (live bars), ``plain`` (lines) or ``none``.

    ``-q`` and ``--progress none``: none. JSON logs and ``TERM=dumb``: never bars. ``auto``:
    bars when stderr is a terminal.
    """
    mode = options.progress
    if options.quiet or mode == "none":
        return "none"
    if mode == "plain" or options.json or dumb_terminal():
        return "plain"
    if mode == "tty":
        return "tty"
    return "tty" if _isatty() else "plain"


_ANSI = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}


def paint(text: str, style: str) -> str:
    """``text`` in ``style`` (a key of the ANSI table) when :func:`colour` is on."""
    code = _ANSI.get(style)
    if not code or not colour():
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def json_line(level: str, event: str, message: str,
              fields: Mapping[str, Any] | None = None) -> str:
    """One JSON log object (no newline): ``time`` (UTC, ISO 8601, milliseconds), ``level``,
    ``event``, ``message``, ``fields``."""
    import datetime
    import json

    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    doc = {"time": now.replace("+00:00", "Z"), "level": level, "event": event,
           "message": message, "fields": dict(fields or {})}
    return json.dumps(doc, default=str, ensure_ascii=False)


def emit(text: str, *, level: str = "info", event: str = "message",
         fields: Mapping[str, Any] | None = None, painted: str = "") -> None:
    """Write one stderr line: ``text`` (``painted``, its coloured form, when colour is on), or
    with ``--log-format json`` one JSON object carrying it."""
    if options.json:
        line = json_line(level, event, " ".join(text.split()), fields)
    else:
        line = painted if painted and colour() else text
    write_stderr(line + "\n")


def write_stderr(text: str) -> None:
    """Write ``text`` to stderr and flush it. A stderr that is closed or whose reader went
    away (``2>&-``, ``2>&1 | head -1``) loses the diagnostics, never the command's work:
    from the first failed write on, stderr is ``/dev/null`` for the rest of the process,
    so ``publish`` still publishes and writes ``--report``/``--json``, and exits with the
    status it would have had."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # EBADF, EPIPE; a closed file; None
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process's stderr from now on


def _handler() -> Any:
    """The ``manyfest`` loggers' handler: ``logger: message`` lines, or JSON objects
    (``event`` and ``fields`` from the record's ``extra`` when given), on the current
    ``sys.stderr`` (a live display's proxy while one runs). Made here so that ``logging``
    loads only when a command runs (not for ``--help``)."""
    import logging

    class Handler(logging.Handler):
        manyfest_stderr = True

        def emit(self, record: logging.LogRecord) -> None:
            try:
                message = record.getMessage()
                if options.json:
                    fields = getattr(record, "fields", None) or {}
                    event = getattr(record, "event", "") or record.name
                    line = json_line(record.levelname.lower(), event, message, fields)
                else:
                    line = f"{record.name}: {message}"
                write_stderr(line + "\n")
            except (OSError, ValueError, TypeError):  # pragma: no cover - never breaks it
                self.handleError(record)

    return Handler()


def configure_logging() -> None:
    """Route the ``manyfest`` loggers to stderr: debug level with ``-D``, else warnings."""
    import logging

    logger = logging.getLogger("manyfest")
    if not any(getattr(h, "manyfest_stderr", False) for h in logger.handlers):
        logger.addHandler(_handler())
    logger.propagate = False
    logger.setLevel(logging.DEBUG if options.debug else logging.WARNING)
