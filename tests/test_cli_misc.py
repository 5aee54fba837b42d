"""CLI behaviour: usage errors, proxies, entry points (interrupts: tests/test_signals.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyfest.transport.proxy import proxy_for as _proxy_for
from tests.helpers import manyfest

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_usage_errors_exit_2() -> None:
    few = manyfest("create", "a/b:1")
    assert few.returncode == 2
    assert '"create" requires at least 2 arguments' in few.stderr
    many = manyfest("inspect", "a", "b", "c")
    assert many.returncode == 2
    unknown = manyfest("push", "--nope", "a/b:1")
    assert unknown.returncode == 2
    bad_ref = manyfest("inspect", "127.0.0.1:9/Upper/Case:1")
    assert bad_ref.returncode == 2
    assert "invalid reference format" in bad_ref.stderr


def test_entry_points() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "manyfest", "--version"], capture_output=True, text=True,
        check=False,
    )
    assert (version.returncode, version.stdout) == (0, "manyfest 0.1.0\n")
    script = Path(sys.executable).parent / "manyfest"
    assert script.exists()
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0
    for command in ("inspect", "create", "annotate", "push", "rm", "publish"):
        assert command in helped.stdout


def test_proxy_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plainproxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    assert _proxy_for("https://registry.example/v2/") == "http://proxy.example:3128"
    assert _proxy_for("http://registry.example/v2/") == "http://plainproxy.example:3128"
    assert _proxy_for("https://internal.example/v2/") is None
    assert _proxy_for("https://reg.corp.example:5000/v2/") is None
    # loopback never goes through a proxy, as in Go's ProxyFromEnvironment
    assert _proxy_for("https://127.0.0.1:5000/v2/") is None
    assert _proxy_for("http://localhost:5000/v2/") is None
    assert _proxy_for("https://[::1]:5000/v2/") is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    assert _proxy_for("https://registry.example/v2/") is None


def test_usage_errors_are_one_line() -> None:
    for args, phrase in (
        (["rm"], "missing MANIFEST_LIST"),
        (["bogus"], "unknown command 'bogus'"),
        (["publish", "--json-style", "bogus", "x"], "--json-style 'bogus': expected one of"),
        (["publish", "--concurrency", "0", "x"], "--concurrency 0: expected a whole number"),
        (["push", "--nope", "a/b:1"], "unknown flag '--nope' (did you mean '--purge'?); see "
                                        "`manyfest push --help`"),
    ):
        proc = manyfest(*args)
        assert proc.returncode == 2, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert phrase in lines[0]
        assert lines[0].endswith("--help`")


def test_read_timeout_from_the_configuration(blackhole: int, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that accepts and never answers fails after read_timeout, in one line."""
    config = tmp_path / "manyfest.yaml"
    config.write_text("read_timeout: 1\nerror_retry_deadline: 0.1\n")
    monkeypatch.setenv("MANYFEST_CONFIG", str(config))
    monkeypatch.setenv("MANYFEST_LOOPBACK_INSECURE", "0")
    proc = manyfest("inspect", "--insecure", f"127.0.0.1:{blackhole}/app:1")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"GET https://127.0.0.1:{blackhole}/v2/: no complete answer within 1 s; check that "
        "the registry is up; if it is only slow, raise read_timeout in the configuration "
        "file\n"
    )
