"""The `docker manifest` walkthrough, run with manyfest and with the docker CLI side by side.

docker talks plain HTTP to the loopback registry only with `--insecure` (without a daemon it
has no insecure-registry list), so docker is always given `--insecure` here; manyfest treats
loopback as insecure by itself.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from manyfest import digest as digests
from tests.helpers import docker, manyfest, requires_docker, seed_walkthrough
from tests.registry_server import RegistryServer

pytestmark = [requires_docker, pytest.mark.slow]  # end to end (see pyproject markers)


def _docker_env(tmp_path: Path) -> Path:
    """A separate DOCKER_CONFIG for docker's own store."""
    d = tmp_path / "docker-config"
    d.mkdir()
    return d


def _with_config(config: Path, fn, *args: str):  # type: ignore[no-untyped-def]
    old = os.environ["DOCKER_CONFIG"]
    os.environ["DOCKER_CONFIG"] = str(config)
    try:
        return fn(*args)
    finally:
        os.environ["DOCKER_CONFIG"] = old


def test_walkthrough_matches_docker(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    amd64, arm, arm64, win = seed_walkthrough(host, ns)
    sources = [arm64, amd64, win, arm]  # command-line order differs from the file-name order
    m_list, d_list = f"{host}/{ns}/app:m", f"{host}/{ns}/app:d"
    docker_config = _docker_env(tmp_path)

    # create
    created = manyfest("create", m_list, *sources)
    assert (created.returncode, created.stdout, created.stderr) == (
        0, f"Created manifest list {m_list}\n", ""
    )
    d_created = _with_config(docker_config, docker, "manifest", "create", "--insecure",
                             d_list, *sources)
    assert d_created.returncode == 0, d_created.stderr
    assert d_created.stdout == f"Created manifest list {d_list}\n"

    # create again without --amend: refused, in docker's words
    again = manyfest("create", m_list, amd64)
    assert again.returncode == 1
    assert again.stderr.startswith(
        "refusing to amend an existing manifest list with no --amend flag"
    )
    assert len(again.stderr.splitlines()) == 1

    # annotate arm with a variant (the config already says v7: set it explicitly as in the docs)
    ann = manyfest("annotate", "--arch", "arm", "--variant", "v7", m_list, arm)
    assert (ann.returncode, ann.stdout, ann.stderr) == (0, "", "")
    d_ann = _with_config(docker_config, docker, "manifest", "annotate", "--arch", "arm",
                         "--variant", "v7", d_list, arm)
    assert d_ann.returncode == 0, d_ann.stderr

    # the store files are byte-identical to docker's
    store = Path(os.environ["DOCKER_CONFIG"]) / "manifests"
    m_dir = store / f"127.0.0.1-{registry.port}_{ns}_app-m"
    d_dir = docker_config / "manifests" / f"127.0.0.1-{registry.port}_{ns}_app-d"
    assert sorted(p.name for p in m_dir.iterdir()) == sorted(p.name for p in d_dir.iterdir())
    for path in m_dir.iterdir():
        assert path.read_bytes() == (d_dir / path.name).read_bytes(), path.name

    # inspect (local list) and inspect -v print what docker prints
    for flags in ([], ["-v"]):
        mine = manyfest("inspect", *flags, m_list)
        theirs = _with_config(docker_config, docker, "manifest", "inspect", *flags, d_list)
        assert mine.returncode == theirs.returncode == 0
        assert mine.stdout == theirs.stdout
    # inspect LIST IMAGE (one local entry)
    for flags in ([], ["-v"]):
        mine = manyfest("inspect", *flags, m_list, arm)
        theirs = _with_config(docker_config, docker, "manifest", "inspect", *flags, d_list, arm)
        assert mine.returncode == theirs.returncode == 0
        assert mine.stdout == theirs.stdout

    # push: same lines (modulo the target tag), same list digest
    pushed = manyfest("push", m_list)
    assert pushed.returncode == 0, pushed.stderr
    d_pushed = _with_config(docker_config, docker, "manifest", "push", "--insecure", d_list)
    assert d_pushed.returncode == 0, d_pushed.stderr
    assert pushed.stdout == d_pushed.stdout
    lines = pushed.stdout.splitlines()
    assert len(lines) == 5
    digest = lines[-1]
    assert digests.is_valid(digest)
    for line in lines[:-1]:
        child = line.split("with digest: ")[1]
        assert line == f"Pushed ref {host}/{ns}/app@{child} with digest: {child}"

    # remote image inspect equals docker's too
    for flags in ([], ["-v"]):
        mine = manyfest("inspect", *flags, arm)
        theirs = docker("manifest", "inspect", "--insecure", *flags, arm)
        assert mine.returncode == theirs.returncode == 0
        assert mine.stdout == theirs.stdout

    # rm
    removed = manyfest("rm", m_list)
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, "", "")
    assert not m_dir.exists()
    _with_config(docker_config, docker, "manifest", "rm", d_list)

    # the remote lists (no local copy left): docker's inspect output, both tags, both tools
    for flags in ([], ["-v"]):
        for tag_ref in (m_list, d_list):
            mine = manyfest("inspect", *flags, tag_ref)
            theirs = _with_config(docker_config, docker, "manifest", "inspect", "--insecure",
                                  *flags, tag_ref)
            assert mine.returncode == theirs.returncode == 0
            assert mine.stdout == theirs.stdout
    remote = json.loads(manyfest("inspect", "-v", m_list).stdout)
    raw_children = [base64.b64decode(e["Raw"]) for e in remote]
    assert [digests.sha256(r) for r in raw_children] == [
        e["Descriptor"]["digest"] for e in remote
    ]
    assert [e["Descriptor"]["platform"]["architecture"] for e in remote] == [
        "amd64", "arm", "arm64", "amd64"
    ]
    gone = manyfest("rm", m_list)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"No such manifest: {m_list};")
    missing = manyfest("inspect", f"{host}/{ns}/app:nope")
    assert missing.returncode == 1
    assert f"{host}/{ns}/app:nope" in missing.stderr


@pytest.mark.parametrize("first", ["docker", "manyfest"])
def test_store_interop(registry: RegistryServer, ns: str, tmp_path: Path, first: str) -> None:
    """Each tool reads, annotates and pushes what the other created; digests agree."""
    host = registry.host
    amd64, arm, arm64, win = seed_walkthrough(host, ns)
    target = f"{host}/{ns}/app:interop"
    if first == "docker":
        docker("manifest", "create", "--insecure", target, amd64, arm, arm64, win, check=True)
        manyfest("annotate", "--os-features", "sse4,avx", "--os-features", "x",
                 target, amd64, check=True)
        pushed = manyfest("push", "--purge", target, check=True)
        digest = pushed.stdout.splitlines()[-1]
        # docker builds the same list from the same store: re-create and compare
        docker("manifest", "create", "--insecure", target, amd64, arm, arm64, win, check=True)
        docker("manifest", "annotate", "--os-features", "sse4,avx", "--os-features", "x",
               target, amd64, check=True)
        d_pushed = docker("manifest", "push", "--insecure", "--purge", target, check=True)
        assert d_pushed.stdout.splitlines()[-1] == digest
    else:
        manyfest("create", target, amd64, arm, arm64, win, check=True)
        docker("manifest", "annotate", "--os-version", "10.0.1", target, win, check=True)
        mine = manyfest("inspect", target, check=True).stdout
        theirs = docker("manifest", "inspect", target, check=True).stdout
        assert mine == theirs
        assert '"os.version": "10.0.1"' in mine
        d_pushed = docker("manifest", "push", "--insecure", target, check=True)
        pushed = manyfest("push", target, check=True)
        assert pushed.stdout == d_pushed.stdout
        assert not pushed.stderr
    assert not (Path(os.environ["DOCKER_CONFIG"]) / "manifests" / "x").exists()
