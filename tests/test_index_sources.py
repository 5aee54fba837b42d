"""Index sources (buildx with provenance, docker's containerd store) are flattened."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from manyfest import mediatypes, reference
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, manyfest
from tests.imagewriter import build_attested_index, push_attested_index
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


def test_attested_indexes_are_flattened(registry: RegistryServer, ns: str,
                                        tmp_path: Path) -> None:
    host = registry.host
    platforms = [PLATFORMS[0], PLATFORMS[2]]
    items = {p.architecture: build_attested_index(p, ns) for p in platforms}

    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for arch, item in items.items():
                await push_attested_index(
                    client, reference.parse(f"{host}/{ns}/app-{arch}:1"), item
                )

    anyio.run(push)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:1\nmanifests:\n"
        f"  - image: {host}/{ns}/app-amd64:1\n"
        f"  - image: {host}/{ns}/app-arm64:1\n"
        "    platform: {os: linux, architecture: arm64, variant: v9}\n"  # ignored for indexes
    )
    proc = manyfest("publish", "--verify", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created"
    assert result["verified"] is True

    async def check() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            target = reference.parse(f"{host}/{ns}/app:1")
            listed = await client.get_manifest(target)
            assert listed.digest == result["digest"]
            assert listed.media_type == mediatypes.OCI_INDEX
            entries = json.loads(listed.raw)["manifests"]
            expected = [json.loads(items[a].index.raw)["manifests"][0] for a in ("amd64", "arm64")]
            expected += [json.loads(items[a].index.raw)["manifests"][1] for a in ("amd64", "arm64")]
            assert entries == expected  # exact descriptors: images first, then attestations
            for entry in entries:
                child = await client.get_manifest(target.with_digest(entry["digest"]))
                assert child.size == entry["size"]
                for blob in child.blobs():
                    assert await client.blob_exists(target, blob.digest)

    anyio.run(check)


def test_attestations_never_count_as_platforms(registry: RegistryServer, ns: str,
                                               tmp_path: Path) -> None:
    """Two indexes of the same platform are a duplicate; their attestations are not."""
    host = registry.host
    a = build_attested_index(PLATFORMS[0], ns + "a")
    b = build_attested_index(PLATFORMS[0], ns + "b")

    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            await push_attested_index(client, reference.parse(f"{host}/{ns}/a:1"), a)
            await push_attested_index(client, reference.parse(f"{host}/{ns}/b:1"), b)

    anyio.run(push)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/dup:1\nmanifests:\n"
        f"  - image: {host}/{ns}/a:1\n  - image: {host}/{ns}/b:1\n"
    )
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 3
    [result] = json.loads(proc.stdout)["results"]
    a_image = f"{host}/{ns}/a:1@{a.image.manifest.digest}"
    b_image = f"{host}/{ns}/b:1@{b.image.manifest.digest}"
    assert result["error"].startswith(
        f"{a_image} and {b_image} have the same platform linux/amd64; "
    )
    # create flattens index sources, and refuses the same pair (attestations do not count)
    create = manyfest("create", f"{host}/{ns}/x:1", f"{host}/{ns}/a:1", f"{host}/{ns}/b:1")
    assert create.returncode == 2
    assert create.stderr.splitlines()[-1].startswith(
        f"{a_image} and {b_image} have the same platform linux/amd64; "
    )
