"""SIGINT and SIGTERM for the whole life of a ``manyfest`` process, start-up included.

One process-wide handler (installed by :mod:`manyfest.cli.entry` before any heavy import)
serves three modes:

* **at once** (start-up: imports, argument parsing): nothing has been written yet, so the
  handler prints one line on stderr and ends the process with the signal's code.
* **deferred** (a command runs): the signal is recorded; when a stopper is set (an event
  loop is running), it is called with the signal number so the run can stop gracefully
  (:func:`set_stopper`). The command then reports what was done and exits with the code.
* a **second** signal in either mode: one line, and the process ends at once with the code
  of the first signal.

Exit codes: 130 for SIGINT, 143 for SIGTERM (128 + signal number, as shells report them).

The handler is a Python-level ``signal.signal`` handler for the process's whole life. An
event loop is reached through ``loop.call_soon_threadsafe`` by the stopper, the pattern
``asyncio.Runner`` uses for SIGINT; ``loop.add_signal_handler`` is not used because removing
it resets SIGINT to ``default_int_handler`` and SIGTERM to ``SIG_DFL``, which leaves a window
after every run where a signal gives a traceback or a death by signal.

This module imports only the standard library's ``os``, ``signal`` and ``threading``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals handled: Ctrl-C and what CI systems send on cancel."""

Stopper = Callable[[int], None]


class _State:
    received: int | None = None
    deferred: bool = False
    stopper: Stopper | None = None
    reported: bool = False
    at_once: str = "nothing was done; re-run the command"
    again: str = "stopped at once; re-run to finish"


_state = _State()
_lock = threading.Lock()
_temporaries: set[str] = set()


def exit_code(signum: int) -> int:
    """The exit status for a signal: 128 + its number (SIGINT 130, SIGTERM 143)."""
    return 128 + signum


def name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``... for a signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def received() -> int | None:
    """The first signal received (its number), or ``None``."""
    return _state.received


def _write_line(text: str) -> None:
    data = (" ".join(text.split()) + "\n").encode("utf-8", "replace")
    with contextlib.suppress(OSError):
        os.write(2, data)


@contextlib.contextmanager
def temporary(path: str) -> Iterator[None]:
    """Mark ``path`` as a temporary file being written (then renamed over its target).

    An exit at once (a second signal) removes the temporary files marked at that moment, so
    an atomic write cut short leaves no half-written file behind. Safe from any thread.
    """
    with _lock:
        _temporaries.add(path)
    try:
        yield
    finally:
        with _lock:
            _temporaries.discard(path)


def _remove_temporaries() -> None:
    for path in list(_temporaries):
        with contextlib.suppress(OSError):
            os.unlink(path)


def exit_now(signum: int, text: str) -> None:
    """Print ``interrupted by <SIG>: <text>`` on stderr and end the process at once.

    ``os._exit``: no cleanup handlers run and buffered output is dropped (used only where
    nothing has been written, or on a second signal); temporary files marked with
    :func:`temporary` are removed first.
    """
    _remove_temporaries()
    _write_line(f"interrupted by {name(signum)}: {text}")
    os._exit(exit_code(signum))


def _handler(signum: int, frame: FrameType | None) -> None:
    with _lock:
        first = _state.received
        if first is None:
            _state.received = signum
    if first is not None:
        if _state.reported:  # the line is out: only the exit is left
            _remove_temporaries()
            os._exit(exit_code(first))
        exit_now(first, f"{name(signum)} received while stopping; {_state.again}")
        return
    if not _state.deferred:
        exit_now(signum, _state.at_once)
        return
    stopper = _state.stopper
    if stopper is not None:
        stopper(signum)


def install(*, at_once: str | None = None) -> None:
    """Install the handler for SIGINT and SIGTERM (main thread only), in at-once mode.

    Args:
        at_once: the text after ``interrupted by <SIG>:`` printed in at-once mode.
    """
    if at_once is not None:
        _state.at_once = at_once
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def defer(*, again: str | None = None) -> None:
    """Switch to deferred mode: signals are recorded (and passed to the stopper, if any).

    Args:
        again: the text printed when a second signal ends the process at once.
    """
    _state.deferred = True
    if again is not None:
        _state.again = again


def set_stopper(stopper: Stopper | None) -> Stopper | None:
    """Set the callable a signal is passed to in deferred mode; returns the previous one.

    The stopper runs in the main thread, inside the signal handler: it must only schedule
    work (e.g. ``loop.call_soon_threadsafe``), never block or raise.
    """
    previous, _state.stopper = _state.stopper, stopper
    return previous


def mark_reported() -> None:
    """Record that the interruption's line was printed (the entry point prints none then)."""
    _state.reported = True


def reported() -> bool:
    """True when the interruption's line was printed."""
    return _state.reported
