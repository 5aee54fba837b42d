"""`--media-type docker|oci|auto` on create, push and publish (plan key `media_type`), the
mixed-list warning, and index annotations refused on a Docker manifest list.

Against the real registry, with real-size images (Docker schema2 children from `seed_built`,
OCI ones with `oci=True`); the expected bytes are built from the seeded images with
`encode_list`, so every digest is asserted exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from manyfest import mediatypes, reference
from manyfest.content import Entry, Manifest, encode_list
from manyfest.platform import Platform
from manyfest.reference import filesafe
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, manyfest, seed_built
from tests.imagewriter import Image
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

AMD64, ARM64 = PLATFORMS[0], PLATFORMS[2]


def _store() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "manifests"


def _seed(host: str, ns: str, *, oci: bool = False, tag: str = "1") -> dict[str, Image]:
    """app-amd64 and app-arm64 of ``ns``: {full reference: Image}."""
    names = [(f"{ns}/app-amd64:{tag}", AMD64, ns), (f"{ns}/app-arm64:{tag}", ARM64, ns)]
    built = seed_built(host, names, oci=oci)
    return {f"{host}/{name}": image for name, image in built.items()}


def _entries(images: dict[str, Image], order: list[str]) -> list[Entry]:
    platforms = {"amd64": AMD64, "arm64": ARM64}
    out = []
    for ref in order:
        m = images[ref].manifest
        arch = ref.rsplit("-", 1)[1].split(":")[0]
        out.append(Entry(m.media_type, m.size, m.digest, platforms[arch]))
    return out


def _store_order(images: dict[str, Image]) -> list[str]:
    """The references in the store's file-name order (docker's entry order at push)."""
    return sorted(images, key=lambda r: filesafe(reference.parse(r)))


def _get(ref: str) -> Manifest:
    async def run() -> Manifest:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).get_manifest(reference.parse(ref))

    return anyio.run(run)


def test_push_media_type_oci_over_docker_children_warns(registry: RegistryServer,
                                                        ns: str) -> None:
    host = registry.host
    images = _seed(host, ns)
    target = f"{host}/{ns}/app:1"
    created = manyfest("create", target, *images)
    assert (created.returncode, created.stderr) == (0, ""), created.stderr
    order = _store_order(images)
    docker_bytes = encode_list(_entries(images, order))

    pushed = manyfest("push", "--media-type", "oci", target)
    assert pushed.returncode == 0, pushed.stderr
    expected = encode_list(_entries(images, order), media_type=mediatypes.OCI_INDEX)
    assert pushed.stdout.splitlines()[-1] == expected.digest
    assert expected.digest != docker_bytes.digest
    first = images[order[0]].manifest.digest
    assert pushed.stderr == (
        f"warning: {target} is an OCI index with 2 Docker children of 2 (first {first}); "
        "some registries refuse mixed lists: --media-type sets the list's type\n"
    )
    assert _get(target).raw == expected.raw

    # auto (the default, and given explicitly): docker's bytes, no warning
    for args in ((), ("--media-type", "auto")):
        again = manyfest("push", *args, target)
        assert (again.returncode, again.stderr) == (0, ""), again.stderr
        assert again.stdout.splitlines()[-1] == docker_bytes.digest
        assert _get(target).raw == docker_bytes.raw


def test_create_media_type_oci_is_kept_until_push(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    images = _seed(host, ns, oci=True)
    target = f"{host}/{ns}/app:1"
    created = manyfest("create", "--media-type", "docker", target, *images)
    assert created.returncode == 0, created.stderr
    order = _store_order(images)
    # a Docker list of OCI children: allowed, warned about at create and at push
    first = images[order[0]].manifest.digest
    warning = (
        f"warning: {target} is a Docker manifest list with 2 OCI children of 2 (first "
        f"{first}); some registries refuse mixed lists: --media-type sets the list's type\n"
    )
    assert created.stderr == warning
    # the setting is kept outside the list directory: docker reads every file in it
    list_dir = _store() / filesafe(reference.parse(target))
    assert sorted(p.name for p in list_dir.iterdir()) == [
        filesafe(reference.parse(r)) for r in order
    ]
    sidecar = _store() / ".manyfest" / f"{filesafe(reference.parse(target))}.json"
    assert json.loads(sidecar.read_text())["media_type"] == "docker"

    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr == warning
    expected = encode_list(_entries(images, order), media_type=mediatypes.DOCKER_LIST)
    assert pushed.stdout.splitlines()[-1] == expected.digest
    assert _get(target).raw == expected.raw

    # push's flag overrides what create stored; --purge removes the settings with the list
    purged = manyfest("push", "--purge", "--media-type", "auto", target)
    assert (purged.returncode, purged.stderr) == (0, ""), purged.stderr
    oci = encode_list(_entries(images, order))
    assert oci.media_type == mediatypes.OCI_INDEX
    assert purged.stdout.splitlines()[-1] == oci.digest
    assert not list_dir.exists()
    assert not sidecar.exists()


def test_create_refuses_annotations_on_a_docker_list(registry: RegistryServer, ns: str) -> None:
    """The issue's failing case, for create: the annotations were dropped silently."""
    host = registry.host
    images = _seed(host, ns)
    target = f"{host}/{ns}/app:1"
    proc = manyfest("create", "--annotation", "org.opencontainers.image.version=1", target,
                    *images)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"{target}: index annotations asked for a Docker manifest list (its first entry is a "
        "Docker image), which has none; pass --media-type oci (plan key media_type: oci) to "
        "write an OCI index\n"
    )
    assert proc.stdout == ""
    assert not (_store() / filesafe(reference.parse(target))).exists()
    # --media-type docker with annotations: refused before any request
    forced = manyfest("create", "--media-type", "docker", "--annotation", "a=b", target,
                      *images)
    assert forced.returncode == 2
    assert forced.stderr == (
        f"{target}: --annotation given for a Docker manifest list (--media-type docker), "
        "which has none of them; use --media-type oci to write an OCI index\n"
    )
    # with --media-type oci it is an OCI index (of Docker children: warned)
    ok = manyfest("create", "--media-type", "oci", "--annotation", "a=b", target, *images)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.startswith(f"warning: {target} is an OCI index with 2 Docker children")
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    expected = encode_list(_entries(images, _store_order(images)),
                           media_type=mediatypes.OCI_INDEX, annotations={"a": "b"})
    assert pushed.stdout.splitlines()[-1] == expected.digest
    assert _get(target).raw == expected.raw
    # push --media-type docker over stored annotations: refused, the tag is not moved
    refused = manyfest("push", "--media-type", "docker", target)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"{target}: index annotations asked for a Docker manifest list (--media-type docker), "
        "which has none; pass --media-type oci (plan key media_type: oci) to write an OCI "
        "index\n"
    )
    assert _get(target).digest == expected.digest


def test_publish_plan_annotations_on_a_docker_list_refused(registry: RegistryServer, ns: str,
                                                          tmp_path: Path) -> None:
    """The issue's failing case: a plan asking for index annotations on a list that comes
    out as a Docker manifest list."""
    host = registry.host
    images = _seed(host, ns)
    oci_images = _seed(host, ns + "-oci", oci=True)
    order = list(images)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:1\nannotations: {{a: b}}\nmanifests:\n"
        + "".join(f"  - image: {r}\n" for r in order)
        + f"---\nimage: {host}/{ns}/oci:1\nannotations: {{a: b}}\nmanifests:\n"
        + "".join(f"  - image: {r}\n" for r in oci_images)
        + f"---\nimage: {host}/{ns}/forced:1\nmedia_type: oci\nannotations: {{a: b}}\n"
        "manifests:\n" + "".join(f"  - image: {r}\n" for r in order)
    )
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 3, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["status"] for r in results] == ["failed", "created", "created"]
    assert results[0]["error"] == (
        f"{host}/{ns}/app:1: index annotations asked for a Docker manifest list (its first "
        "entry is a Docker image), which has none; pass --media-type oci (plan key "
        "media_type: oci) to write an OCI index"
    )
    assert _head(f"{host}/{ns}/app:1") is None  # nothing written for the refused list
    oci = encode_list(_entries(oci_images, list(oci_images)), annotations={"a": "b"})
    assert oci.media_type == mediatypes.OCI_INDEX
    assert results[1]["digest"] == oci.digest
    assert _get(f"{host}/{ns}/oci:1").raw == oci.raw
    forced = encode_list(_entries(images, order), annotations={"a": "b"},
                         media_type=mediatypes.OCI_INDEX)
    assert results[2]["digest"] == forced.digest
    assert _get(f"{host}/{ns}/forced:1").raw == forced.raw
    assert f"warning: {host}/{ns}/forced:1 is an OCI index with 2 Docker children" in (
        proc.stderr
    )
    assert f"warning: {host}/{ns}/oci:1" not in proc.stderr


def _head(ref: str) -> str | None:
    async def run() -> str | None:
        async with Transport(Settings()) as transport:
            found = await RegistryClient(transport).head_manifest(reference.parse(ref))
            return found.digest if found else None

    return anyio.run(run)


def test_publish_media_type_flag_overrides_the_plan(registry: RegistryServer, ns: str,
                                                    tmp_path: Path) -> None:
    host = registry.host
    images = _seed(host, ns, oci=True)
    order = list(images)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:1\nmedia_type: oci\nmanifests:\n"
        + "".join(f"  - image: {r}\n" for r in order)
    )
    proc = manyfest("publish", "--media-type", "docker", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    expected = encode_list(_entries(images, order), media_type=mediatypes.DOCKER_LIST)
    assert result["digest"] == expected.digest
    assert _get(f"{host}/{ns}/app:1").raw == expected.raw
    assert f"warning: {host}/{ns}/app:1 is a Docker manifest list with 2 OCI children" in (
        proc.stderr
    )
    # the plan's media_type: docker with annotations is refused before any request (exit 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"image: {host}/{ns}/app:2\nmedia_type: docker\nannotations: {{a: b}}\nmanifests:\n"
        + "".join(f"  - image: {r}\n" for r in order)
    )
    before = registry.request_count()
    refused = manyfest("publish", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"{bad}: document 1: annotations given for a Docker manifest list (media_type: "
        "docker), which has none of them; use media_type: oci to write an OCI index"
    )
    assert registry.request_count() == before
    # --media-type docker over a plan asking for annotations: refused, exit 2
    flag = tmp_path / "flag.yaml"
    flag.write_text(
        f"image: {host}/{ns}/app:3\nannotations: {{a: b}}\nmanifests:\n"
        + "".join(f"  - image: {r}\n" for r in order)
    )
    over = manyfest("publish", "--media-type", "docker", str(flag))
    assert over.returncode == 2
    assert over.stderr.strip().splitlines()[-1] == (
        f"{host}/{ns}/app:3: annotations given for a Docker manifest list (--media-type "
        "docker), which has none of them; use --media-type oci to write an OCI index"
    )
    assert registry.request_count() == before


def test_docker_default_bytes_unchanged_by_the_new_fields() -> None:
    # No artifactType, subject or annotations: byte for byte what docker writes.
    entry = Entry(mediatypes.DOCKER_MANIFEST, 7, "sha256:" + "a" * 64, Platform("linux", "amd64"))
    assert encode_list([entry]).raw == (
        b'{\n   "schemaVersion": 2,\n'
        b'   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",\n'
        b'   "manifests": [\n      {\n'
        b'         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
        b'         "size": 7,\n         "digest": "sha256:' + b"a" * 64 + b'",\n'
        b'         "platform": {\n            "architecture": "amd64",\n'
        b'            "os": "linux"\n         }\n      }\n   ]\n}'
    )
