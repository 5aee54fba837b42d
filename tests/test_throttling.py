"""Throttling registries, end to end: ``manyfest publish`` through the quirk proxy's rate
limits (tests/ratelimit.py) in front of the real registry.

Every scenario asserts that every list lands (exit 0, ``created``, the tag names the list the
report names, the children and their blobs are in the target repository) and that the report
accounts exactly for what the proxy did: per list ``retries`` and ``throttled``, and in the
summary ``retries``, ``throttled`` and ``registries[host]`` (requests, retries, throttled)
equal to the proxy's counts. No timing, no ratio: those belong to
``python -m benchmarks.throttle``.

The sources are seeded straight into the registry (not through the proxy); the lists and
everything checked afterwards are computed from what was seeded, whatever the image sizes.
"""

from __future__ import annotations

import email.utils
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from manyfest import reference
from manyfest.content import Manifest
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests import quirk_proxy as quirks
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed
from tests.quirk_proxy import QuirkProxy
from tests.ratelimit import (
    Bucket,
    Policy,
    RateLimitProcess,
    Storm,
    TokenBucket,
    go_duration,
    http_date,
)
from tests.registry_server import RegistryServer

RUN_TIMEOUT_S = 1800.0
"""A publish run still going after this long is a hang (far above any expected duration on
a slow machine; never a timing assertion)."""


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


# ---------------------------------------------------------------------------- the policies


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_with_time_and_caps_at_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)  # one token every 1/10 s
    clock.now += 0.05
    assert bucket.take() == pytest.approx(0.05)  # none taken while empty
    clock.now += 0.05
    assert bucket.take() == 0.0
    clock.now += 60
    assert bucket.remaining() == 3  # never more than the burst
    assert bucket.reset_s() == 0


def test_bucket_answers() -> None:
    clock = FakeClock()
    plain = Bucket(5, 1, clock=clock)
    assert plain.check("GET", "/v2/") is None
    refusal = plain.check("GET", "/v2/")
    assert refusal is not None
    assert refusal.status == 429
    assert refusal.throttle
    assert refusal.headers["Retry-After"] == "1"
    assert refusal.headers["Content-Type"].startswith("text/plain")
    plain.forwarded(200)
    assert plain.counts.as_dict()["throttled_by_status"] == {"429": 1}
    assert plain.counts.as_dict()["forwarded_by_status"] == {"200": 1}
    assert (plain.counts.total, plain.counts.throttles, plain.counts.refused) == (2, 1, 1)

    dated = Bucket(5, 1, answer="date", clock=clock)
    dated.check("GET", "/v2/")
    refusal = dated.check("GET", "/v2/")
    assert refusal is not None
    assert email.utils.parsedate_to_datetime(refusal.headers["Retry-After"]).tzinfo is not None

    hint = Bucket(800, 1, answer="body-hint", clock=clock)
    hint.check("GET", "/v2/")
    clock.now += 0.00025  # 0.2 of a token: 1 ms left
    refusal = hint.check("GET", "/v2/")
    assert refusal is not None
    assert "Retry-After" not in refusal.headers
    [error] = json.loads(refusal.body)["errors"]
    assert error["code"] == "TOOMANYREQUESTS"
    assert error["message"] == "retry-after: 1ms, allowed: 48000/minute"

    remaining = Bucket(2, 4, remaining=True, clock=clock)
    assert remaining.extra_headers() == {"RateLimit-Limit": "4", "RateLimit-Remaining": "4",
                                         "RateLimit-Reset": "0"}
    remaining.check("GET", "/v2/")
    assert remaining.extra_headers()["RateLimit-Remaining"] == "3"
    assert remaining.extra_headers()["RateLimit-Reset"] == "1"


def test_storm_is_count_based() -> None:
    policy = Storm(4, 5)
    answers = [policy.check("GET", "/v2/x") for _ in range(20)]
    statuses = [a.status if a else 0 for a in answers]
    assert [i + 1 for i, s in enumerate(statuses) if s == 429] == [4, 8, 12, 16, 20]
    assert [i + 1 for i, s in enumerate(statuses) if s == 503] == [5, 10, 15]
    assert all(a is None or a.status != 503 or "Retry-After" not in a.headers for a in answers)
    assert (policy.counts.throttles, policy.counts.refused) == (5, 8)


def test_go_duration_and_http_date() -> None:
    assert go_duration(0.0125) == "12.5ms"
    assert go_duration(0.000260653) == "260.653µs"
    assert go_duration(1.5) == "1.5s"
    stamp = email.utils.parsedate_to_datetime(http_date(1.0, clock=lambda: 1_700_000_000.4))
    assert stamp.timestamp() == 1_700_000_001


@pytest.mark.slow
def test_proxy_process_limits_rewrites_and_counts(registry: RegistryServer) -> None:
    """``python -m tests.ratelimit``: port line, 429 from an empty bucket, Location
    rewritten to the proxy, ``/_stats`` never limited, the counters printed on exit."""
    # 0.01 tokens/s: no token comes back during the test, however slow the machine.
    with RateLimitProcess(registry.host, "bucket", rate=0.01, burst=2) as proxy:
        upload = urllib.request.Request(f"http://{proxy.host}/v2/proc/blobs/uploads/",
                                        method="POST")
        with urllib.request.urlopen(upload, timeout=30) as resp:
            assert resp.status == 202
            assert resp.headers["Location"].startswith(f"http://{proxy.host}/v2/proc/")
        with urllib.request.urlopen(f"http://{proxy.host}/v2/", timeout=30) as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{proxy.host}/v2/", timeout=30)
        assert refused.value.code == 429
        assert refused.value.headers["Retry-After"] == "1"
        assert refused.value.headers["Content-Type"].startswith("text/plain")
        refused.value.close()
        expected = {"requests": 3, "answered": 2, "throttled": 1, "refused": 1,
                    "forwarded_by_status": {"200": 1, "202": 1},
                    "throttled_by_status": {"429": 1}, "unavailable_by_status": {}}
        assert proxy.stats() == expected
        assert proxy.stats() == expected  # /_stats itself is not counted nor limited
    assert proxy.final == expected


# ---------------------------------------------------------------------------- end to end


@dataclass
class Seeded:
    """The lists of one scenario and what they must publish."""

    ns: str
    count: int
    same_repository: bool
    digests: dict[str, str]
    """{repository:tag of a source: its manifest digest}"""

    def source(self, i: int, suffix: str) -> str:
        """Source ``repository:tag`` of list ``i``'s ``suffix`` platform."""
        if self.same_repository:
            return f"{self.ns}/app:src-{i}-{suffix}"
        return f"{self.ns}/src-{suffix}:{i}"

    def children(self, i: int) -> list[str]:
        """List ``i``'s child digests, in platform order."""
        return [self.digests[self.source(i, platform_suffix(p))] for p in PLATFORMS]


def _seed(registry: RegistryServer, ns: str, count: int, *, same_repository: bool = False
          ) -> Seeded:
    """Seed ``count`` lists' worth of images straight into the registry.

    ``same_repository``: the sources are tags of the target repository itself (no mounts,
    no child PUTs: fewer requests per list, so a slow bucket scenario stays short whatever
    the images' layer count); else one repository per platform (mounts and child PUTs).
    """
    empty = Seeded(ns, count, same_repository, {})
    names = [(empty.source(i, platform_suffix(p)), p, f"{ns} {i}")
             for i in range(count) for p in PLATFORMS]
    return Seeded(ns, count, same_repository, seed(registry.host, names))


def _plan(host: str, seeded: Seeded, tmp_path: Path) -> Path:
    documents = []
    for i in range(seeded.count):
        lines = [f"image: {host}/{seeded.ns}/app:{i}", "manifests:"]
        lines += [f"  - image: {host}/{seeded.source(i, platform_suffix(p))}" for p in PLATFORMS]
        documents.append("\n".join(lines))
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n---\n".join(documents) + "\n")
    return plan


def _publish(proxy: QuirkProxy, seeded: Seeded, tmp_path: Path, *args: str
             ) -> tuple[int, dict[str, Any], str]:
    plan = _plan(proxy.host, seeded, tmp_path)
    proc = manyfest("publish", "--json", *args, str(plan), timeout=RUN_TIMEOUT_S)
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON report (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode, report, proc.stderr


def _read_back(registry: RegistryServer, seeded: Seeded) -> list[tuple[Manifest, list[Any]]]:
    """Each list tag as the registry has it, and for each child: (digest, platform, size,
    blobs present in the target repository)."""

    async def run() -> list[tuple[Manifest, list[Any]]]:
        out: list[tuple[Manifest, list[Any]] | None] = [None] * seeded.count
        async with Transport(Settings(concurrency=16)) as transport:
            client = RegistryClient(transport)
            limiter = anyio.CapacityLimiter(8)

            async def one(i: int) -> None:
                async with limiter:
                    target = reference.parse(f"{registry.host}/{seeded.ns}/app:{i}")
                    listed = await client.get_manifest(target)
                    children = []
                    for d in listed.index().manifests if listed.is_index else []:
                        child = await client.get_manifest(target.with_digest(d.digest))
                        present = [await client.blob_exists(target, b.digest)
                                   for b in child.blobs()]
                        children.append((d.digest, d.platform, d.size == child.size,
                                         len(present) > 0 and all(present)))
                    out[i] = (listed, children)

            async with anyio.create_task_group() as tg:
                for i in range(seeded.count):
                    tg.start_soon(one, i)
        return [item for item in out if item is not None]

    return anyio.run(run)


def _assert_landed(registry: RegistryServer, proxy: QuirkProxy, seeded: Seeded, code: int,
                   report: dict[str, Any], stderr: str) -> None:
    """Every list created, right on the registry."""
    results = report["results"]
    errors = [r["error"] for r in results if r["error"]]
    assert code == 0, f"exit {code}; {len(errors)} failed, first: {errors[:3]}; {stderr[-500:]}"
    assert [r["target"] for r in results] == [
        f"{proxy.host}/{seeded.ns}/app:{i}" for i in range(seeded.count)]
    assert [r["status"] for r in results] == ["created"] * seeded.count
    assert report["summary"]["created"] == seeded.count
    assert report["summary"]["failed"] == 0
    for i, (listed, children) in enumerate(_read_back(registry, seeded)):
        assert listed.is_index, f"list {i}: {listed.media_type}"
        assert listed.digest == results[i]["digest"], f"list {i}"
        assert [c[0] for c in children] == seeded.children(i), f"list {i}"
        for (_, platform, size_ok, blobs_ok), expected in zip(children, PLATFORMS, strict=True):
            assert platform is not None
            assert (platform.os, platform.architecture, platform.variant, platform.os_version) == (
                expected.os, expected.architecture, expected.variant, expected.os_version)
            assert size_ok, f"list {i}: a child's size is not its descriptor's"
            assert blobs_ok, f"list {i}: a child's blobs are missing"


def _assert_accounting(proxy: QuirkProxy, policy: Policy, report: dict[str, Any], *,
                       all_landed: bool = True) -> None:
    """The report counts exactly what the proxy saw and sent."""
    counts = policy.counts
    results, summary = report["results"], report["summary"]
    assert counts.total == sum(proxy.seen.values())  # the policy saw every request
    assert summary["requests"] == counts.total
    assert sum(r["requests"] for r in results) == counts.total
    if all_landed:
        # Every refused answer was tried again once, and the next try was answered.
        assert summary["retries"] == counts.refused
        assert sum(r["retries"] for r in results) == counts.refused
    else:
        assert summary["retries"] <= counts.refused
    # The fields of the throttle-aware transport.
    assert summary["throttled"] == counts.throttles
    assert sum(r["throttled"] for r in results) == counts.throttles
    if all_landed:
        for r in results:
            assert 0 <= r["throttled"] <= r["retries"] <= r["requests"], r
    assert summary["registries"] == {proxy.host: {
        "requests": counts.total, "retries": summary["retries"], "throttled": counts.throttles}}


def _scenario(registry: RegistryServer, proxy: QuirkProxy, policy: Policy, ns: str,
              tmp_path: Path, count: int, *, same_repository: bool = False) -> dict[str, Any]:
    seeded = _seed(registry, ns, count, same_repository=same_repository)
    code, report, stderr = _publish(proxy, seeded, tmp_path)
    _assert_landed(registry, proxy, seeded, code, report, stderr)
    _assert_accounting(proxy, policy, report)
    return report


@pytest.mark.slow
def test_bucket_100_per_second_24_lists(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                        tmp_path: Path) -> None:
    policy = quirks.token_bucket(proxy, 100)
    _scenario(registry, proxy, policy, ns, tmp_path, 24)


@pytest.mark.slow
def test_bucket_20_per_second_30_lists(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                       tmp_path: Path) -> None:
    policy = quirks.token_bucket(proxy, 20)
    _scenario(registry, proxy, policy, ns, tmp_path, 30, same_repository=True)


@pytest.mark.slow
def test_bucket_with_http_date_and_ratelimit_headers(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path
) -> None:
    # An HTTP date has whole seconds: every wait is 1-2 s, so few lists are enough.
    policy = quirks.token_bucket(proxy, 40, 5, answer="date", remaining=True)
    _scenario(registry, proxy, policy, ns, tmp_path, 3)


@pytest.mark.slow
def test_storm_every_4th_429_every_5th_503(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                           tmp_path: Path) -> None:
    policy = quirks.storm(proxy)
    _scenario(registry, proxy, policy, ns, tmp_path, 4)  # ~120 requests, ~30 throttled
    # Count-based: with >= 20 requests, both kinds were sent.
    assert policy.counts.throttled[429] > 0
    assert policy.counts.unavailable[503] > 0


@pytest.mark.slow
def test_wait_written_in_the_body(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                  tmp_path: Path) -> None:
    policy = quirks.body_hint(proxy, 50, 5)
    _scenario(registry, proxy, policy, ns, tmp_path, 10)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["html", "ecr", "aws"])
def test_throttle_answers_registries_write(kind: str, registry: RegistryServer,
                                           proxy: QuirkProxy, ns: str, tmp_path: Path) -> None:
    """nginx's HTML 429 page; ECR's 429 ``TOOMANYREQUESTS: Rate exceeded`` (no Retry-After);
    AWS's 400 ``ThrottlingException``: every 3rd request."""
    make = {"html": quirks.html_storm, "ecr": quirks.ecr_storm,
            "aws": quirks.throttling_exception_storm}[kind]
    policy = make(proxy, 3)
    _scenario(registry, proxy, policy, ns, tmp_path, 2)
    assert policy.counts.throttles > 0


@pytest.mark.slow
def test_503_without_retry_after(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                 tmp_path: Path) -> None:
    policy = quirks.unavailable(proxy, 3, match="/manifests/")
    report = _scenario(registry, proxy, policy, ns, tmp_path, 2)
    assert policy.counts.unavailable[503] == 3
    assert report["summary"]["retries"] == 3
    assert report["summary"]["throttled"] == 0  # a 503 without a wait is no throttle signal


@pytest.mark.slow
def test_endless_429_ends_at_the_retry_deadline(registry: RegistryServer, proxy: QuirkProxy,
                                                ns: str, tmp_path: Path) -> None:
    message = "rate limit exceeded, try again later"
    policy = quirks.endless_429(proxy, message)
    seeded = _seed(registry, ns, 3)
    code, report, stderr = _publish(proxy, seeded, tmp_path, "--retry-deadline", "1")
    assert code == 3, stderr[-2000:]
    assert [r["status"] for r in report["results"]] == ["failed"] * 3
    for r in report["results"]:
        error = r["error"]
        assert "\n" not in error
        assert proxy.host in error
        assert "429" in error, error
        assert "TOOMANYREQUESTS" in error, error
        assert message in error, error
    assert report["summary"]["failed"] == 3
    assert policy.counts.answered == 0
    _assert_accounting(proxy, policy, report, all_landed=False)
    assert report["summary"]["throttled"] == policy.counts.total  # every answer was a 429
