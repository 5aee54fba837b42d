"""Interop with buildah and skopeo: they write their own list style, so compare child
digests and read each other's lists, not bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from benchmarks.registry_server import RegistryServer
from manyfest import digest as digests
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed

buildah = shutil.which("buildah")
skopeo = shutil.which("skopeo")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc


def _seed(host: str, ns: str) -> dict[str, str]:
    # buildah and skopeo insist on an auth file where DOCKER_CONFIG points
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    if not config.exists():
        config.write_text('{"auths": {}}')
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS]
    images = seed(host, names)
    return {f"{host}/{name}": digest for name, digest in images.items()}


@pytest.mark.skipif(buildah is None, reason="buildah is not installed on this machine")
def test_buildah_list_is_read_by_manyfest(registry: RegistryServer, ns: str,
                                          tmp_path: Path) -> None:
    assert buildah is not None
    host = registry.host
    images = _seed(host, ns)
    name = f"manyfest-test-{uuid.uuid4().hex[:8]}"
    _run(buildah, "manifest", "create", name)
    try:
        for ref in images:
            _run(buildah, "manifest", "add", "--tls-verify=false", name, f"docker://{ref}")
        _run(buildah, "manifest", "push", "--tls-verify=false", "--all", name,
             f"docker://{host}/{ns}/by-buildah:1")
    finally:
        subprocess.run([buildah, "manifest", "rm", name], capture_output=True, check=False)
    shown = manyfest("inspect", f"{host}/{ns}/by-buildah:1")
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert sorted(m["digest"] for m in listed["manifests"]) == sorted(images.values())
    # a buildah list is a valid index source for publish: flattened, same children
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/from-buildah:1\nmanifests:\n"
                    f"  - image: {host}/{ns}/by-buildah:1\n")
    proc = manyfest("publish", "--verify", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    republished = json.loads(manyfest("inspect", f"{host}/{ns}/from-buildah:1").stdout)
    assert [m["digest"] for m in republished["manifests"]] == [
        m["digest"] for m in listed["manifests"]
    ]


@pytest.mark.skipif(skopeo is None, reason="skopeo is not installed on this machine")
def test_skopeo_reads_and_copies_manyfest_lists(registry: RegistryServer, ns: str,
                                                tmp_path: Path) -> None:
    assert skopeo is not None
    host = registry.host
    images = _seed(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n"
                    + "".join(f"  - image: {ref}\n" for ref in images))
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    digest = json.loads(proc.stdout)["results"][0]["digest"]
    raw = subprocess.run([skopeo, "inspect", "--tls-verify=false", "--raw",
                          f"docker://{host}/{ns}/app:1"], capture_output=True, timeout=60,
                         check=True).stdout
    assert digests.sha256(raw) == digest
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == list(images.values())
    _run(skopeo, "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{host}/{ns}/app:1", f"docker://{host}/{ns}/copied:1")
    copied = manyfest("inspect", f"{host}/{ns}/copied:1")
    assert copied.returncode == 0, copied.stderr
    assert digests.sha256(copied.stdout.rstrip("\n").encode()) == digest
