"""manyfest.interrupts on its own: an inherited ignored SIGINT is handled, and a signal received
during start-up gives the command a grace period of its own once it starts.

Each case runs in a fresh interpreter (the handler is process-wide); the end-to-end cases
(signals at every phase of a publish) are in tests/test_signals.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys

_IGNORED = """
import signal
from manyfest import interrupts
interrupts.install()
print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
      signal.getsignal(signal.SIGTERM) == interrupts._handler)
"""

_RESTART = """
import os, signal
from manyfest import interrupts
interrupts.install()
os.kill(os.getpid(), signal.SIGTERM)       # during start-up: recorded, grace period begins
first = interrupts._state.timer
interrupts.command_started()                # the command runs: its own grace period
second = interrupts._state.timer
print(interrupts.received() == signal.SIGTERM, first is not second,
      first.finished.is_set(), second.is_alive())
os._exit(0)
"""


def _run(code: str, *, ignore_sigint: bool = False) -> str:
    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, preexec_fn=ignore if ignore_sigint else None)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sigint_ignored_by_the_parent_is_handled_once_installed() -> None:
    """A script's background job (no job control) starts with SIGINT ignored: as docker's Go
    runtime does, manyfest handles it anyway once its handler is in, so `kill -INT` stops the
    job, whatever the disposition the tests themselves were started with."""
    assert _run(_IGNORED, ignore_sigint=True) == "False True"
    assert _run(_IGNORED) == "False True"


def test_a_signal_during_start_up_gets_a_new_grace_period_when_the_command_starts() -> None:
    assert _run(_RESTART) == "True True True True"
