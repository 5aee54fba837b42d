"""Registry quirks the stock registry can't show, through the quirk proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from manyfest import reference
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from manyfest.transport.throttle import MIN_PAUSE_S
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed, seed_built
from tests.imagewriter import distinct_blobs
from tests.quirk_proxy import (
    QuirkProxy,
    drop_digest_header,
    head_not_allowed,
    manifest_not_seen_yet,
    mount_answers_202,
    too_many_requests,
)
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


def _plan(host: str, ns: str, tmp_path: Path, tags: str = "") -> Path:
    lines = [f"image: {host}/{ns}/app:1", tags, "manifests:"]
    lines += [f"  - image: {host}/{ns}/app-{platform_suffix(p)}:1" for p in PLATFORMS]
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n".join(line for line in lines if line) + "\n")
    return plan


def _children_present(host: str, ns: str, digest: str) -> list[str]:
    async def run() -> list[str]:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            target = reference.parse(f"{host}/{ns}/app:1")
            listed = await client.get_manifest(target)
            assert listed.digest == digest
            out = []
            for m in listed.index().manifests:
                child = await client.get_manifest(target.with_digest(m.digest))
                for blob in child.blobs():
                    assert await client.blob_exists(target, blob.digest)
                out.append(m.digest)
            return out

    return anyio.run(run)


def test_mount_202_copies_the_bytes(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                    tmp_path: Path) -> None:
    built = seed_built(registry.host,
                       [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    blobs = len(distinct_blobs(built.values()))  # config + layers of each image, each once
    assert blobs == sum(len(image.blob_digests) for image in built.values())  # 4 platforms
    proxy.before.append(mount_answers_202(proxy))
    proc = manyfest("publish", "--json", str(_plan(proxy.host, ns, tmp_path)))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created"
    assert proxy.count("POST", "mount=") == blobs
    assert proxy.count("DELETE", "/blobs/uploads/") == blobs  # the opened sessions cancelled
    # every blob copied, plus each config read once more for its platform
    assert proxy.count("GET", "/blobs/sha256:") == blobs + len(built)
    children = _children_present(registry.host, ns, result["digest"])
    assert children == [built[f"{ns}/app-{platform_suffix(p)}:1"].manifest.digest
                        for p in PLATFORMS]


def test_429_with_retry_after_is_retried(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                         tmp_path: Path) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    proxy.before.append(too_many_requests(3, "0", match="/manifests/"))
    proc = manyfest("publish", "--json", str(_plan(proxy.host, ns, tmp_path)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["retries"] == 3
    assert report["results"][0]["retries"] == 3
    # The progress shows the throttling as it happens (a line when stderr is no terminal):
    # the first 429 halves the 64 requests in flight and pauses: `Retry-After: 0` is no
    # hint, so for the short pause that doubles while signals repeat.
    assert (f"throttled by {proxy.host}, 32 in flight, waiting {MIN_PAUSE_S:.1f} s "
            "(429 TOOMANYREQUESTS)"
            in proc.stderr.splitlines()), proc.stderr
    _children_present(registry.host, ns, report["results"][0]["digest"])


def test_429_storm_fails_with_a_clear_message(registry: RegistryServer, proxy: QuirkProxy,
                                              ns: str, tmp_path: Path) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    # Every request is throttled, however many are made: the deadline must end the run (a
    # count the client could reach within the deadline would make this depend on speed).
    proxy.before.append(too_many_requests(10**12, "0"))
    proc = manyfest("publish", "--retry-deadline", "2", str(_plan(proxy.host, ns, tmp_path)))
    assert proc.returncode == 3
    failed = [line for line in proc.stderr.splitlines() if "failed" in line and "429" in line]
    assert failed, proc.stderr
    assert "registry answered 429 (TOOMANYREQUESTS: slow down)" in failed[0]
    assert "the registry kept throttling for the whole retry deadline (2 s): raise " \
        "--retry-deadline" in failed[0]


def test_no_digest_header_and_head_405(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                       tmp_path: Path) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    proxy.after.append(drop_digest_header())
    proxy.before.append(head_not_allowed())
    plan = _plan(proxy.host, ns, tmp_path, tags='tags: ["latest"]')
    first = manyfest("publish", "--json", str(plan))
    assert first.returncode == 0, first.stderr
    [result] = json.loads(first.stdout)["results"]
    assert result["status"] == "created"
    _children_present(registry.host, ns, result["digest"])
    again = manyfest("publish", "--json", str(plan))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"][0]["status"] == "unchanged"


@pytest.mark.parametrize("code", ["MANIFEST_BLOB_UNKNOWN", "DIGEST_INVALID"])
def test_manifest_put_not_seen_yet_is_retried(registry: RegistryServer, proxy: QuirkProxy,
                                              ns: str, tmp_path: Path, code: str) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    proxy.before.append(manifest_not_seen_yet(3, code))
    proc = manyfest("publish", "--json", str(_plan(proxy.host, ns, tmp_path)))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created"
    _children_present(registry.host, ns, result["digest"])


def test_manifest_put_refused_for_good_fails_the_list(registry: RegistryServer,
                                                      proxy: QuirkProxy, ns: str,
                                                      tmp_path: Path) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    proxy.before.append(manifest_not_seen_yet(10_000))
    proc = manyfest("publish", str(_plan(proxy.host, ns, tmp_path)))
    assert proc.returncode == 3
    assert "MANIFEST_BLOB_UNKNOWN: blob unknown to registry" in proc.stderr
    assert proxy.count("PUT", f"/v2/{ns}/app/manifests/1") == 0  # the tag was never moved
