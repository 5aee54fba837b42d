"""End to end: `manyfest publish` of 200 lists on the real registry, every tag checked."""

from __future__ import annotations

import json

import anyio
import pytest

from manyfest import digest as digests
from manyfest import mediatypes, reference
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import (
    PLATFORMS,
    REFERRERS_PROBE,
    manyfest,
    platform_suffix,
    referrers_lookups,
    seed,
    seed_built,
)
from tests.imagewriter import distinct_blobs
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

N_LISTS = 200


def _plan(host: str, ns: str, n: int) -> str:
    docs = []
    for i in range(n):
        lines = [f"image: {host}/{ns}/app:1.{i}", f"tags: [\"v1.{i}\", latest-{i}]"]
        lines.append("manifests:")
        for p in PLATFORMS:
            lines.append(f"  - image: {host}/{ns}/app-{platform_suffix(p)}:1.{i}")
            lines.append("    platform:")
            lines.append(f"      os: {p.os}")
            lines.append(f"      architecture: {p.architecture}")
            if p.variant:
                lines.append(f"      variant: {p.variant}")
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


def test_publish_200_lists(registry: RegistryServer, ns: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = registry.host
    built = seed_built(
        host,
        [
            (f"{ns}/app-{platform_suffix(p)}:1.{i}", p, f"{ns}-{i}")
            for i in range(N_LISTS)
            for p in PLATFORMS
        ],
        check_blobs=False,  # new repositories: nothing to skip
    )
    images = {name: image.manifest.digest for name, image in built.items()}
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan(host, ns, N_LISTS))
    before = registry.request_count()
    proc = manyfest("publish", "--json", str(plan), timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["lists"] == N_LISTS
    assert report["summary"]["created"] == N_LISTS
    assert report["summary"]["failed"] == 0
    results = {r["target"]: r for r in report["results"]}
    assert len(results) == N_LISTS
    # Requests counted by the registry match the report and the images' shape. Per list:
    # 4 x (GET manifest + GET config), 4 child PUTs, 3 PUTs (3 tags), no HEAD: the target
    # repository does not exist yet, which one GET of its tag list (404 NAME_UNKNOWN) says
    # for all 600 tags; one mount per blob the target repository needs, each blob once in
    # the run (images of one platform share their base layers); plus the ping once per run,
    # the referrers lookups once per run (the probe, a tag list per source repository), and
    # any retry.
    served = registry.request_count() - before
    summary = report["summary"]
    assert served + REFERRERS_PROBE == summary["requests"]
    blobs = distinct_blobs(built.values())
    assert len(blobs) < sum(len(image.blob_digests) for image in built.values())  # shared
    assert summary["requests"] == (
        1 + 1 + N_LISTS * (4 * 2 + 4 + 3) + len(blobs) + referrers_lookups(len(PLATFORMS))
        + summary["retries"]
    ), summary
    assert sum(r["manifest_heads"] for r in report["results"]) == 0
    for i, r in enumerate(report["results"]):
        names = [f"{ns}/app-{platform_suffix(p)}:1.{i}" for p in PLATFORMS]
        assert r["target"] == f"{host}/{ns}/app:1.{i}"
        own_blobs = len(distinct_blobs(built[name] for name in names))
        # (+ the run's referrers lookups and the target's tag-list GET, counted by the list
        # that asked first)
        bound = 8 + own_blobs + 4 + 3 + 1 + 1 + referrers_lookups(len(PLATFORMS))
        assert r["requests"] <= bound + r["retries"], r

    async def check() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)

            async def one(i: int) -> None:
                target = reference.parse(f"{host}/{ns}/app:1.{i}")
                entry = results[str(target)]
                assert entry["tags"] == [f"1.{i}", f"v1.{i}", f"latest-{i}"]
                listed = await client.get_manifest(target)
                assert listed.digest == entry["digest"]
                assert listed.media_type == mediatypes.DOCKER_LIST
                assert listed.raw.startswith(b'{\n   "schemaVersion": 2,')
                for tag in (f"v1.{i}", f"latest-{i}"):
                    head = await client.head_manifest(target.with_tag(tag))
                    assert head is not None
                    assert head.digest == listed.digest
                index = listed.index()
                assert [(m.platform.os, m.platform.architecture, m.platform.variant)
                        for m in index.manifests if m.platform] == [
                    (p.os, p.architecture, p.variant) for p in PLATFORMS
                ]
                for m, p in zip(index.manifests, PLATFORMS, strict=True):
                    assert m.digest == images[f"{ns}/app-{platform_suffix(p)}:1.{i}"]
                    child = await client.get_manifest(target.with_digest(m.digest))
                    assert child.size == m.size
                    assert digests.sha256(child.raw) == m.digest
                    assert [b.digest for b in child.blobs()] == list(
                        built[f"{ns}/app-{platform_suffix(p)}:1.{i}"].blob_digests)

            async def present(blob: str) -> None:
                assert await client.blob_exists(reference.parse(f"{host}/{ns}/app"), blob)

            async with anyio.create_task_group() as tg:
                for i in range(N_LISTS):
                    tg.start_soon(one, i)
                for blob in blobs:  # every blob of every child, each once
                    tg.start_soon(present, blob)

    anyio.run(check)

    # A second run changes nothing and writes nothing.
    again = manyfest("publish", "--json", str(plan), timeout=300)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["summary"]["unchanged"] == N_LISTS
    assert all(r["old_digest"] == r["digest"] for r in second["results"])


def test_publish_plain_lines_and_exit_3(registry: RegistryServer, ns: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = registry.host
    seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm64:1", PLATFORMS[2], ns)])
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/ok:1\nmanifests:\n"
        f"  - image: {host}/{ns}/app-amd64:1\n  - image: {host}/{ns}/app-arm64:1\n"
        "---\n"
        f"image: {host}/{ns}/bad:1\nmanifests:\n"
        f"  - image: {host}/{ns}/app-amd64:1\n  - image: {host}/{ns}/missing:1\n"
    )
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(
        line.startswith("[") and f"created {host}/{ns}/ok:1 sha256:" in line for line in lines
    ), lines
    bad = [line for line in lines if f"failed {host}/{ns}/bad:1" in line]
    assert len(bad) == 1
    assert f"no such manifest: {host}/{ns}/missing:1" in bad[0]
    assert "1 of 2 lists failed" in proc.stderr
    assert proc.stdout == ""


def test_publish_plan_error_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text("image: a/b:1\nmanifests:\n  - image: a/c:1\n    platfrom: {os: linux}\n")
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 2
    assert "document 1" in proc.stderr
    assert "platfrom" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", "---\n---\n"])
def test_publish_empty_plan(tmp_path, text: str) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 2
    assert "no list in the plan" in proc.stderr
