"""SIGINT and SIGTERM for the whole life of a ``manyfest`` process, start-up included.

One process-wide handler (installed by :mod:`manyfest.cli.entry` before any heavy import)
records the first signal and passes it to the stopper of the running command, if any
(:func:`set_stopper`: the CLI's event loop, which stops the run gracefully). The command
then writes what it must (``publish``: ``--json``, ``--report``), prints one line saying
what was done and what was not, and exits with the signal's code. So a signal during
start-up (imports, argument parsing) is handled by the command as soon as it runs: the
publish report is written then too.

Two things end the process at once, with the first signal's code, one line, and the
temporary files of atomic writes removed (:func:`temporary`):

* a **second** signal while stopping;
* the **grace period** running out: the process has not ended :data:`GRACE` seconds after
  the first signal (start-up still importing on a very slow machine, a command blocked).
  Work that must not be cut short once begun (``publish --atomic`` moving tags back) runs
  inside :func:`undoing`, whose grace period is its own (longer) one.

A SIGINT ignored when the process starts (``SIG_IGN`` inherited: a background job of a
script without job control) is handled too once the handler is installed, as docker's Go
runtime does for the signals it is asked to notify: ``kill -INT`` stops such a job (one sent
before the handler is installed, in the first ~0.1 s, is discarded by the kernel). A signal
received during start-up gives the command a grace period of its
own from the moment it starts its work (:func:`command_started`).

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

GRACE = 1.5
"""Seconds the process has to end after the first signal before it is ended at once."""

Stopper = Callable[[int], None]


class _State:
    received: int | None = None
    timer: threading.Timer | None = None
    started: bool = False
    stopper: Stopper | None = None
    reported: bool = False
    at_once: str = "during start-up, before any work: nothing was written; re-run the command"
    again: str = "stopped at once; re-run to finish"
    grace: float = GRACE
    notice: Callable[[int], str] | None = None
    last: Callable[[], str] | None = None


_state = _State()
_lock = threading.RLock()  # the handler runs in the main thread, maybe inside a holder
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


def _say(text: Callable[..., str] | None, *args: int) -> None:
    """Print the line a hook of :func:`undoing` gives (nothing when it fails: the process
    is being stopped, a hook's bug must not stop that)."""
    if text is None:
        return
    try:
        line = text(*args)
    except Exception:  # noqa: BLE001 - best effort while stopping
        return
    if line:
        _write_line(line)


def _write_line(text: str) -> None:
    data = (" ".join(text.split()) + "\n").encode("utf-8", "replace")
    with contextlib.suppress(OSError):
        os.write(2, data)


@contextlib.contextmanager
def temporary(path: str) -> Iterator[None]:
    """Mark ``path`` as a temporary file being written (then renamed over its target).

    An exit at once (a second signal, the grace period over) removes the temporary files
    marked at that moment, so an atomic write cut short leaves no half-written file behind.
    Safe from any thread.
    """
    with _lock:
        _temporaries.add(path)
    try:
        yield
    finally:
        with _lock:
            _temporaries.discard(path)


def _remove_temporaries() -> None:
    with _lock:
        paths = list(_temporaries)
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def exit_now(signum: int, text: str) -> None:
    """Print ``interrupted by <SIG>: <text>`` on stderr and end the process at once.

    ``os._exit``: no cleanup handlers run and buffered output is dropped (a second signal,
    the grace period over, or a signal no command reported); temporary files marked with
    :func:`temporary` are removed first.
    """
    _remove_temporaries()
    _write_line(f"interrupted by {name(signum)}: {text}")
    _say(_state.last)
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
    _start_grace(signum)
    _say(_state.notice, signum)
    stopper = _state.stopper
    if stopper is not None:
        stopper(signum)


def _start_grace(signum: int) -> None:
    """(Re)start the grace period: :data:`GRACE` seconds from now to end the process (or
    the period of the :func:`undoing` block running)."""
    with _lock:
        if _state.timer is not None:
            _state.timer.cancel()
        _state.timer = threading.Timer(_state.grace, _overdue, (signum,))
        _state.timer.daemon = True
        _state.timer.start()


def _overdue(signum: int) -> None:
    """The grace period ran out (timer thread): end the process at once."""
    if _state.reported:
        _remove_temporaries()
        os._exit(exit_code(signum))
    if not _state.started:
        exit_now(signum, _state.at_once)
        return
    exit_now(signum, f"not stopped {_state.grace:g} s after the signal; {_state.again}")


@contextlib.contextmanager
def undoing(seconds: float, *, notice: Callable[[int], str] | None = None,
            last: Callable[[], str] | None = None) -> Iterator[None]:
    """Run a block that undoes work (an atomic release moving its tags back) with a grace
    period of ``seconds`` instead of :data:`GRACE`: a first signal received before or during
    the block ends the process only ``seconds`` after the block began (or after the signal),
    so a slow registry or machine does not cut the undoing short. A second signal still ends
    the process at once. After the block, a signal received gets :data:`GRACE` seconds again
    from then (to write the report and exit).

    Args:
        seconds: the block's grace period.
        notice: called with the signal's number when the first signal comes during the
            block (or came before it): the line it returns is printed on stderr at once,
            from the signal handler (whatever the verbosity: it says what happens next).
        last: called when the process is ended at once during the block (a second signal,
            the grace period over; maybe from the timer thread): the line it returns is
            printed after the ``interrupted by`` line, as the process's last.
            Both must only read state (no locks, no blocking) and may return ``""``.
    """
    with _lock:
        _state.grace = seconds
        _state.notice, _state.last = notice, last
        signum = _state.received
    if signum is not None and not _state.reported:
        _start_grace(signum)
        _say(notice, signum)
    try:
        yield
    finally:
        with _lock:
            _state.grace = GRACE
            _state.notice = _state.last = None
            signum = _state.received
        if signum is not None and not _state.reported:
            _start_grace(signum)


def install(*, at_once: str | None = None) -> None:
    """Install the handler for SIGINT and SIGTERM (main thread only; again is harmless).

    Args:
        at_once: the text after ``interrupted by <SIG>:`` when the grace period runs out
            before a command started (:func:`command_started`).
    """
    if at_once is not None:
        _state.at_once = at_once
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def command_started(*, again: str | None = None) -> None:
    """Record that a command runs: from now on it reports an interruption itself.

    A signal received before (during start-up: imports, argument parsing) gets a new grace
    period from now: the command reports it itself, and has :data:`GRACE` seconds to stop
    from the moment it can.

    Args:
        again: the text printed when the process is ended at once (second signal, grace
            period over).
    """
    with _lock:
        first = _state.started
        _state.started = True
        if again is not None:
            _state.again = again
        signum = _state.received
    if not first and signum is not None and not _state.reported:
        _start_grace(signum)


def set_stopper(stopper: Stopper | None) -> Stopper | None:
    """Set the callable the first signal is passed to; returns the previous one.

    The stopper runs in the main thread, inside the signal handler: it must only schedule
    work (e.g. ``loop.call_soon_threadsafe``), never block or raise. A command that sets it
    must also check :func:`received` once it is set (a signal may have come before).
    """
    previous, _state.stopper = _state.stopper, stopper
    return previous


def mark_reported() -> None:
    """Record that the interruption's line was printed (the entry point prints none then)."""
    _state.reported = True


def reported() -> bool:
    """True when the interruption's line was printed."""
    return _state.reported
