"""Run a child process and measure it: wall time, its own CPU time and peak resident set.

Used by the tests (``test_streaming_copy.py``: a 300 MiB copy stays in a few tens of MB) and
by the benchmarks (``benchmarks/harness.py`` measures every peer with it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the measured commands run from there."""
RUN_TIMEOUT_S = 600.0
"""A measured run still going after this long is killed (and reported as failed)."""


@dataclass(slots=True)
class Measured:
    """One child process, measured.

    Attributes:
        wall_s: spawn to reaped.
        user_s, sys_s: the child's CPU time (and its reaped children's).
        rss_mb: peak resident set of the child (or of the largest of its reaped children).
        exit_code: the child's exit status (negative: killed by that signal).
        stdout: what it printed on stdout.
        stderr_tail: the end of what it printed on stderr.
    """

    wall_s: float
    user_s: float
    sys_s: float
    rss_mb: float
    exit_code: int
    stdout: bytes = b""
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        """User + system CPU time."""
        return self.user_s + self.sys_s


# A fork of the harness (which holds the seeded registry's expectations, tens of MB) starts
# with the harness's resident set, and Linux carries that into the child's ru_maxrss across
# exec. So each peer is started by this small launcher (python -I -S, ~8 MB), which spawns the
# peer, reaps it with os.wait4 and writes the peer's own rusage: the peer's peak RSS then
# starts from the launcher's few MB, not the harness's.
_LAUNCHER = """\
import json, os, signal, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as fh:
    json.dump({"wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
               "maxrss_kb": ru.ru_maxrss, "exit_code": code}, fh)
sys.exit(code if 0 <= code < 256 else 1)
"""


def measure(
    cmd: Sequence[str], *, env: dict[str, str], workdir: Path, timeout: float = RUN_TIMEOUT_S
) -> Measured:
    """Run ``cmd`` as a child process and measure it.

    Wall time is from spawn to reaping; CPU and peak RSS are the child's own rusage from
    ``os.wait4`` on its pid (which, for a shell loop, includes every command it ran and
    reaped: CPU summed, RSS the largest), taken by :data:`_LAUNCHER`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    usage_path = workdir / "rusage.json"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(usage_path), *cmd],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's own process group
            proc.wait()
        wall = time.perf_counter() - started
    try:
        usage = json.loads(usage_path.read_text())
    except (OSError, ValueError):
        usage = {"wall_s": wall, "user_s": 0.0, "sys_s": 0.0, "maxrss_kb": 0,
                 "exit_code": proc.returncode or -9}
    return Measured(
        wall_s=usage["wall_s"],
        user_s=usage["user_s"],
        sys_s=usage["sys_s"],
        rss_mb=usage["maxrss_kb"] / 1024,  # kilobytes on Linux
        exit_code=usage["exit_code"],
        stdout=out_path.read_bytes(),
        stderr_tail=err_path.read_text(errors="replace")[-2000:],
    )
