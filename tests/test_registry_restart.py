"""The registry going away mid-run: restarted (every list lands), or gone for good.

Flow control without timing: manyfest runs with ``-D`` (a debug line per exchange on stderr)
and its stderr is a pipe shrunk to one page that this test reads line by line. While the test
does not read, manyfest blocks on its next write (the whole process: writes are synchronous),
so it can never be more than a page of log lines, a few exchanges, ahead of what the test has
seen; with two lists in flight (of 20), stopping the registry right after the ``[1/20]`` line
is therefore always mid-run, whatever the machine's speed.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from manyfest.platform import Platform
from tests.helpers import manyfest, seed
from tests.registry_server import RegistryServer, free_port

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

LISTS = 20
_F_SETPIPE_SZ = 1031
_AMD64 = Platform("linux", "amd64")
_ARM64 = Platform("linux", "arm64", "v8")


@pytest.fixture
def dedicated(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry of this test's own on a fixed port (it is stopped and started again).

    Stopped as an orderly restart does (SIGTERM, requests in flight drained): killed in the
    middle of a write, Distribution 2.8's filesystem storage can keep a half-written file (seen
    here: after the restart, GET of a tag manyfest had pushed answered 500 ``{"Offset":0}``).
    """
    server = RegistryServer(workdir=tmp_path / "registry", port=free_port(), drain_timeout=5)
    server.start()
    yield server
    server.stop()


def _plan(tmp_path: Path, host: str) -> Path:
    docs = []
    for i in range(1, LISTS + 1):
        docs.append(f"image: {host}/r/app:{i}\nmanifests:\n"
                    f"  - image: {host}/r/app-amd64:{i}\n  - image: {host}/r/app-arm64:{i}\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text("---\n".join(docs))
    return plan


def _seed(server: RegistryServer) -> None:
    names = []
    for i in range(1, LISTS + 1):
        names += [(f"r/app-amd64:{i}", _AMD64, f"restart-{i}"),
                  (f"r/app-arm64:{i}", _ARM64, f"restart-{i}")]
    seed(server.host, names)


class Run:
    """``manyfest -D publish`` with its stderr read line by line (see the module docstring)."""

    def __init__(self, plan: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "manyfest", "-D", "publish", "--lists-in-flight", "2",
             str(plan)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stderr is not None
        fcntl.fcntl(self.proc.stderr.fileno(), _F_SETPIPE_SZ, 4096)
        self.lines: list[str] = []

    def wait_for(self, test: Callable[[str], bool], what: str) -> str:
        """Read stderr until a line passes ``test``; fails if manyfest ends first."""
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if test(line):
                return line
        raise AssertionError(f"manyfest ended before {what}:\n" + "\n".join(self.lines[-40:]))

    def finish(self) -> tuple[int, str]:
        """Read the rest; (exit code, stdout)."""
        assert self.proc.stderr is not None
        assert self.proc.stdout is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
        out = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.wait(), out

    def progress(self) -> list[str]:
        """The ``[k/N] ...`` lines."""
        return [line for line in self.lines if re.match(r"\[\d+/\d+\] ", line)]


def _refused(host: str) -> Callable[[str], bool]:
    # A request that got no answer: refused, or cut by the registry going down.
    return lambda line: line.startswith("manyfest.transport: ") and f"://{host}/" in line and (
        "cannot connect" in line or "closed the connection" in line
    )


def test_registry_restarted_mid_run_every_list_lands(dedicated: RegistryServer,
                                                     tmp_path: Path) -> None:
    _seed(dedicated)
    run = Run(_plan(tmp_path, dedicated.host))
    try:
        run.wait_for(lambda line: line.startswith(f"[1/{LISTS}] created "), "the first list")
        dedicated.stop()
        run.wait_for(_refused(dedicated.host), "a request failing")
        dedicated.start()
    finally:
        code, _ = run.finish()
    assert code == 0, "\n".join(run.lines[-40:])
    assert "Traceback" not in "\n".join(run.lines)
    progress = run.progress()
    assert len(progress) == LISTS
    assert all(" created " in line for line in progress), progress
    for i in range(1, LISTS + 1):
        tag = f"{dedicated.host}/r/app:{i}"
        proc = manyfest("inspect", tag)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count('"digest"') == 2  # both platforms listed


def test_registry_gone_for_good_fails_the_lists(dedicated: RegistryServer,
                                                tmp_path: Path) -> None:
    _seed(dedicated)
    config = tmp_path / "manyfest.yaml"
    config.write_text("error_retry_deadline: 2\n")
    run = Run(_plan(tmp_path, dedicated.host), env={"MANYFEST_CONFIG": str(config)})
    try:
        run.wait_for(lambda line: line.startswith(f"[1/{LISTS}] created "), "the first list")
        dedicated.stop()
    finally:
        code, _ = run.finish()
    assert code == 3, "\n".join(run.lines[-40:])
    assert "Traceback" not in "\n".join(run.lines)
    progress = run.progress()
    assert len(progress) == LISTS
    failed = [line for line in progress if " failed " in line]
    assert failed, progress
    assert len(failed) + sum(" created " in line for line in progress) == LISTS
    for line in failed:
        target = re.match(r"\[\d+/\d+\] failed (\S+): ", line)
        assert target, line
        assert target.group(1).startswith(f"{dedicated.host}/r/app:"), line
        # What failed (the request and why), and that it was retried for the deadline.
        assert re.search(rf": (GET|HEAD|PUT|POST) http://{re.escape(dedicated.host)}/v2/r/app"
                         rf"\S*: (cannot connect to {re.escape(dedicated.host)}: Connection "
                         "refused|the server closed the connection)", line), line
        assert "still failing after 2 s of retries" in line, line


def test_inspect_of_a_dead_port_is_not_retried() -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = manyfest("-D", "inspect", f"{host}/r/app:1")
    assert proc.returncode == 1
    attempts = [line for line in proc.stderr.splitlines()
                if line.startswith("manyfest.transport: GET ") and "-> cannot connect" in line]
    # One attempt per scheme (HTTPS, then plain HTTP for a loopback registry), no retry.
    assert attempts == [
        f"manyfest.transport: GET https://{host}/v2/ -> cannot connect to {host}: "
        "Connection refused",
        f"manyfest.transport: GET http://{host}/v2/ -> cannot connect to {host}: "
        "Connection refused",
    ]
    plain = manyfest("inspect", f"{host}/r/app:1")
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [
        f"GET http://{host}/v2/: cannot connect to {host}: Connection refused; check that the "
        f"registry is running and listens on {host}"
    ], plain.stderr
