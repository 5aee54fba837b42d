"""The ``manyfest`` console script and ``python -m manyfest``: signal handlers first.

SIGINT and SIGTERM handlers (:mod:`manyfest.interrupts`) are installed before the heavy
imports (aiohttp, rich, typer take most of start-up), so a signal at any moment of start-up
is recorded and handled by the command once it runs (``publish`` then writes its report,
every list "not published"), or, when start-up takes longer than the grace period, ends the
process with one line: exit 130 / 143 either way, never a ``KeyboardInterrupt`` traceback or
a death by signal. Only the interpreter's own start-up, before this module runs, is not
covered.
"""

from __future__ import annotations

import contextlib
import os
import sys

from manyfest import interrupts


def main() -> None:
    """Install the signal handlers, then import and run the CLI (:func:`manyfest.cli.main.run`).

    Exits with the CLI's status; after a signal the run did not report itself, with 130
    (SIGINT) or 143 (SIGTERM) and one line on stderr. After an interruption the command
    reported, the process ends right after flushing stdout and stderr (``os._exit``): every
    file it wrote is closed, and the interpreter's teardown would only delay the exit.
    """
    interrupts.install()
    if sys.stderr is None:  # started with fd 2 closed (2>&-): diagnostics go nowhere
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process's stderr
    from manyfest.cli.main import run

    try:
        run()
    except SystemExit as done:
        signum = interrupts.received()
        if signum is None:
            raise
        if not interrupts.reported():
            interrupts.exit_now(signum, "stopped; re-run the command to finish")
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(done.code if isinstance(done.code, int) else interrupts.exit_code(signum))
    finally:
        signum = interrupts.received()
        if signum is not None and not interrupts.reported():
            interrupts.exit_now(signum, "stopped; re-run the command to finish")


if __name__ == "__main__":  # pragma: no cover - `python -m manyfest.cli.entry`
    main()
