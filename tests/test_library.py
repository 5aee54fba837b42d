"""The README's library example runs as written, against a real registry."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

import manyfest
from tests.helpers import PLATFORMS, REPO_ROOT, seed
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


def _example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- library-example -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "README lost its library example"
    return match.group(1)


def test_readme_library_example_runs(registry: RegistryServer) -> None:
    seed(registry.host, [("demo/app-amd64:1.0.0", PLATFORMS[0], "lib"),
                         ("demo/app-arm64:1.0.0", PLATFORMS[2], "lib")])
    env = dict(os.environ, REGISTRY=registry.host)
    proc = subprocess.run([sys.executable, "-c", _example()], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"finished {registry.host}/demo/lib-example:1.0.0 created"
    target, status, digest, requests, word = lines[1].split()
    assert (target, status, word) == (
        f"{registry.host}/demo/lib-example:1.0.0", "created", "requests"
    )
    assert digest.startswith("sha256:")
    assert int(requests) > 0
    assert "'created': 1" in lines[2]


def test_readme_library_example_says_why_a_list_failed() -> None:
    """No registry there: the example prints the failure's one line, not a bare "failed"."""
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"127.0.0.1:{port}"
    env = dict(os.environ, REGISTRY=host)
    proc = subprocess.run([sys.executable, "-c", _example()], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"finished {host}/demo/lib-example:1.0.0 failed"
    assert lines[1] == (
        f"{host}/demo/lib-example:1.0.0 failed: GET http://{host}/v2/: cannot connect to "
        f"{host}: Connection refused; check that the registry is running and listens on {host}"
    )
    assert "'failed': 1" in lines[2]


def test_public_names() -> None:
    for name in manyfest.__all__:
        assert hasattr(manyfest, name), name
    assert manyfest.parse_reference("alpine").name == "docker.io/library/alpine"
    [plan] = manyfest.parse_plan("image: r.example/a:1\nmanifests:\n  - image: r.example/b:1\n")
    assert str(plan.target) == "r.example/a:1"


def test_session_takes_text_references(registry: RegistryServer) -> None:
    import anyio

    seed(registry.host, [("lib2/app-amd64:1", PLATFORMS[0], "lib2")])

    async def run() -> None:
        async with manyfest.Session() as session:
            shown = await session.inspect(f"{registry.host}/lib2/app-amd64:1")
            assert '"schemaVersion": 2' in shown
            await session.create(f"{registry.host}/lib2/app:1",
                                 [f"{registry.host}/lib2/app-amd64:1"])
            outcome = await session.push(f"{registry.host}/lib2/app:1", purge=True)
            assert outcome.digest.startswith("sha256:")

    anyio.run(run)


def test_publish_options_refuse_unknown_styles() -> None:
    import pytest

    with pytest.raises(ValueError, match="docker, manifest-tool or compact"):
        manyfest.PublishOptions(style="bogus")  # type: ignore[arg-type]
