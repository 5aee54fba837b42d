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

from manyfest import digest as digests
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

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


def _buildah_image(ns: str, arch: str, variant: str, work: Path) -> tuple[str, list[str]]:
    """A real image built by buildah from scratch: 12 layers (a commit after each `buildah
    copy`), a config carrying 60 labels, 20 env entries and its history. Returns the image
    id and every image id made on the way (to remove)."""
    assert buildah is not None
    base, made = "scratch", []
    for i in range(12):
        container = _run(buildah, "from", base).stdout.strip().splitlines()[-1]
        try:
            path = work / f"{arch}-{i}.txt"
            path.write_text(f"{ns} {arch} layer {i}\n" * (200 + 50 * i))
            _run(buildah, "copy", container, str(path), f"/data/{i}.txt")
            if i == 11:
                config = [buildah, "config", "--arch", arch, "--os", "linux"]
                if variant:
                    config += ["--variant", variant]
                for n in range(60):
                    config += ["--label", f"org.example.label-{n}={ns}-{arch}-" + "x" * 60]
                for n in range(20):
                    config += ["--env", f"VAR_{n}={arch}-" + "y" * 80]
                _run(*config, container)
            base = _run(buildah, "commit", "--format", "oci", container
                        ).stdout.strip().splitlines()[-1]
            made.append(base)
        finally:
            subprocess.run([buildah, "rm", container], capture_output=True, check=False)
    return base, made


@pytest.mark.skipif(buildah is None, reason="buildah is not installed on this machine")
def test_buildah_built_index_is_an_index_source_for_create(registry: RegistryServer, ns: str,
                                                           tmp_path: Path) -> None:
    """Two images buildah built from scratch, pushed as one OCI index: `create` flattens it,
    `push` writes a list with the same children, each present in the target repository."""
    assert buildah is not None
    host = registry.host
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    if not config.exists():
        config.write_text('{"auths": {}}')
    built = [_buildah_image(ns, "amd64", "", tmp_path),
             _buildah_image(ns, "arm64", "v8", tmp_path)]
    image_ids = [image_id for image_id, _ in built]
    name = f"manyfest-test-{uuid.uuid4().hex[:8]}"
    _run(buildah, "manifest", "create", name)
    try:
        for image_id in image_ids:
            _run(buildah, "manifest", "add", name, image_id)
        _run(buildah, "manifest", "push", "--tls-verify=false", "--all", "--format", "oci",
             name, f"docker://{host}/{ns}/built:1")
    finally:
        subprocess.run([buildah, "manifest", "rm", name], capture_output=True, check=False)
        for _, made in built:
            subprocess.run([buildah, "rmi", *reversed(made)], capture_output=True, check=False)
    served = manyfest("inspect", "--raw", f"{host}/{ns}/built:1")
    assert served.returncode == 0, served.stderr
    source = json.loads(served.stdout)
    assert len(source["manifests"]) == 2
    for entry in source["manifests"]:
        child = json.loads(manyfest("inspect", "--raw",
                                    f"{host}/{ns}/built@{entry['digest']}").stdout)
        assert len(child["layers"]) == 12
        assert child["config"]["size"] > 5 * 1024  # a real-sized config
    target = f"{host}/{ns}/app:1"
    created = manyfest("create", target, f"{host}/{ns}/built:1")
    assert created.returncode == 0, created.stderr
    assert created.stderr == (f"warning: {host}/{ns}/built:1 is an index: added its 2 images\n")
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    listed = json.loads(manyfest("inspect", "--raw", target).stdout)
    assert [(m["digest"], m["size"], m["mediaType"], m["platform"])
            for m in listed["manifests"]] == sorted(
        [(m["digest"], m["size"], m["mediaType"], m["platform"]) for m in source["manifests"]],
        key=lambda t: f"{host}/{ns}/built:1@{t[0]}".replace(":", "-").replace("/", "_"),
    )
    assert pushed.stdout.splitlines()[-1] == digests.sha256(
        manyfest("inspect", "--raw", target).stdout.encode())
    for m in listed["manifests"]:
        assert manyfest("inspect", "--raw", f"{target.rsplit(':', 1)[0]}@{m['digest']}"
                        ).returncode == 0
