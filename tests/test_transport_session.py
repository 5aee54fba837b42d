"""Unit tests of manyfest.transport.session against aioresponses (no socket is opened).

The registry's name ends in ``.invalid`` (RFC 2606: never resolvable), so a request that
aioresponses did not expect cannot reach any network: it fails as a refused connection.
What these tests pin down: the ping once per registry, the body read whole and capped, OCI
error bodies mapped to one-line errors, the token dance (one token per scope set), retries of
5xx counted and announced, and the request counters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from aioresponses import aioresponses
from yarl import URL

from manyfest.errors import (
    AuthenticationError,
    ManifestRejectedError,
    NotFoundError,
    RegistryError,
    TransportError,
)
from manyfest.events import Event, Retried
from manyfest.transport import MANIFEST_LIMIT, RequestStats, Settings, Transport, current_stats

REGISTRY = "registry.invalid"
BASE = f"https://{REGISTRY}"
FAST = Settings(error_retry_deadline=30.0, retry_max_wait=0.01)
"""Retries on errors wait about 10 ms at most (the deadline is a hang guard, never reached)."""


def _run(fn: Callable[[Transport, aioresponses], Any], *, settings: Settings = FAST,
         events: list[Event] | None = None) -> Any:
    async def main() -> Any:
        with aioresponses() as mocked:
            sink = events.append if events is not None else (lambda _e: None)
            async with Transport(settings, on_event=sink) as transport:
                return await fn(transport, mocked)

    return anyio.run(main)


def _calls(mocked: aioresponses, method: str, url: str) -> list[Any]:
    return list(mocked.requests.get((method, URL(url)), []))


def test_ping_once_per_registry_then_the_requests() -> None:
    body = b'{"schemaVersion":2}' * 1000

    async def go(transport: Transport, mocked: aioresponses) -> Any:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.get(f"{BASE}/v2/a/manifests/1", body=body, repeat=True,
                   headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
        stats = RequestStats()
        token = current_stats.set(stats)
        try:
            first = await transport.request("GET", REGISTRY, "/v2/a/manifests/1", what="get a:1")
            second = await transport.request("GET", REGISTRY, "/v2/a/manifests/1",
                                             what="get a:1")
        finally:
            current_stats.reset(token)
        return first, second, stats

    async def wrapped(transport: Transport, mocked: aioresponses) -> Any:
        first, second, stats = await go(transport, mocked)
        assert len(_calls(mocked, "GET", f"{BASE}/v2/")) == 1
        assert len(_calls(mocked, "GET", f"{BASE}/v2/a/manifests/1")) == 2
        assert transport.scheme_of(REGISTRY) == "https"
        return first, second, stats

    first, second, stats = _run(wrapped)
    assert first.status == second.status == 200
    assert first.body == second.body == body  # read whole, not what one read returned
    assert first.headers["docker-content-digest"] == "sha256:" + "1" * 64
    assert first.url == f"{BASE}/v2/a/manifests/1"
    assert stats.requests == 3  # the ping counts against the work that needed it
    assert stats.retries == 0


def test_a_404_with_an_oci_error_body_is_one_line() -> None:
    errors = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                          "detail": {"Tag": "1"}}]}

    async def go(transport: Transport, mocked: aioresponses) -> None:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.get(f"{BASE}/v2/a/manifests/1", status=404, body=json.dumps(errors),
                   headers={"Content-Type": "application/json"})
        await transport.request("GET", REGISTRY, "/v2/a/manifests/1", what="get manifest a:1")

    with pytest.raises(NotFoundError) as info:
        _run(go)
    exc = info.value
    assert str(exc) == ('get manifest a:1: registry answered 404 (MANIFEST_UNKNOWN: manifest '
                        'unknown (detail: {"Tag":"1"}))')
    assert exc.codes == {"MANIFEST_UNKNOWN"}
    assert (exc.status, exc.method, exc.url) == (404, "GET", f"{BASE}/v2/a/manifests/1")
    assert "\n" not in exc.one_line()


def test_statuses_in_ok_are_returned_and_a_400_manifest_invalid_is_a_rejection() -> None:
    async def go(transport: Transport, mocked: aioresponses) -> int:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.head(f"{BASE}/v2/a/manifests/gone", status=404)
        mocked.put(f"{BASE}/v2/a/manifests/1", status=400, body=json.dumps(
            {"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid"}]}))
        head = await transport.request("HEAD", REGISTRY, "/v2/a/manifests/gone",
                                       what="look up a:gone", ok=(200, 404))
        with pytest.raises(ManifestRejectedError, match="MANIFEST_INVALID") as info:
            await transport.request("PUT", REGISTRY, "/v2/a/manifests/1", what="push a:1",
                                    data=b"{}", ok=(201,))
        assert info.value.hint == ("check that every child and blob the manifest names is in "
                                   "the target repository")
        # A 400 is not retried: one PUT.
        assert len(_calls(mocked, "PUT", f"{BASE}/v2/a/manifests/1")) == 1
        return head.status

    assert _run(go) == 404


def test_a_throttle_signal_in_a_status_of_ok_is_tried_again() -> None:
    """AWS throttles with ``400 ThrottlingException``; a caller taking 400 (or 404) as an
    answer (the referrers API: "no API here") must get the registry's next answer instead."""
    throttled = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
    digest = "sha256:" + "b" * 64

    async def go(transport: Transport, mocked: aioresponses) -> tuple[list[int], RequestStats]:
        mocked.get(f"{BASE}/v2/", status=200)
        referrers = f"{BASE}/v2/a/referrers/{digest}"
        mocked.get(referrers, status=400, body=throttled,
                   headers={"x-amzn-ErrorType": "ThrottlingException"})
        mocked.get(referrers, status=200, body=b'{"schemaVersion":2,"manifests":[]}')
        blob = f"{BASE}/v2/a/blobs/{digest}"
        mocked.get(blob, status=404, body=json.dumps(
            {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}))
        mocked.get(blob, status=404, body=json.dumps(
            {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}))
        mocked.get(f"{BASE}/v2/a/manifests/x", status=400, body=json.dumps(
            {"errors": [{"code": "UNSUPPORTED", "message": "no"}]}))
        stats = RequestStats()
        token = current_stats.set(stats)
        try:
            statuses = [
                (await transport.request("GET", REGISTRY, f"/v2/a/referrers/{digest}",
                                         what="list referrers", ok=(200, 400, 404))).status,
                (await transport.request("GET", REGISTRY, f"/v2/a/blobs/{digest}",
                                         what="get blob", ok=(200, 404))).status,
                # a 400 that is no throttle signal is the caller's answer, at once
                (await transport.request("GET", REGISTRY, "/v2/a/manifests/x",
                                         what="get manifest", ok=(200, 400))).status,
            ]
        finally:
            current_stats.reset(token)
        assert len(_calls(mocked, "GET", referrers)) == 2
        assert len(_calls(mocked, "GET", blob)) == 2
        assert len(_calls(mocked, "GET", f"{BASE}/v2/a/manifests/x")) == 1
        return statuses, stats

    statuses, stats = _run(go)
    assert statuses == [200, 404, 400]
    assert (stats.requests, stats.retries, stats.throttled) == (1 + 2 + 2 + 1, 2, 2)


def test_a_body_over_the_limit_is_refused() -> None:
    big = b" " * (MANIFEST_LIMIT + 1)

    async def go(transport: Transport, mocked: aioresponses) -> None:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.get(f"{BASE}/v2/a/manifests/1", body=big)
        await transport.request("GET", REGISTRY, "/v2/a/manifests/1", what="get manifest a:1",
                                limit=MANIFEST_LIMIT)

    with pytest.raises(TransportError) as info:
        _run(go)
    assert str(info.value) == ("get manifest a:1: the registry's answer is larger than the "
                               "4 MiB limit")


def test_a_5xx_is_retried_counted_and_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Event] = []
    # the largest jitter the backoff can draw (+25%): the cap must still hold
    monkeypatch.setattr("manyfest.transport.session.random.random", lambda: 0.999999)

    async def go(transport: Transport, mocked: aioresponses) -> tuple[int, RequestStats]:
        mocked.get(f"{BASE}/v2/", status=200)
        url = f"{BASE}/v2/a/blobs/sha256:{'a' * 64}"
        mocked.get(url, status=500, body="boom")
        mocked.get(url, status=502, body="bad gateway")
        mocked.get(url, status=200, body=b"config")
        stats = RequestStats()
        token = current_stats.set(stats)
        try:
            resp = await transport.request("GET", REGISTRY, url, what="get blob")
        finally:
            current_stats.reset(token)
        assert resp.body == b"config"
        return len(_calls(mocked, "GET", url)), stats

    calls, stats = _run(go, events=events)
    assert calls == 3
    assert stats.requests == 1 + 3  # the ping, then three tries
    assert stats.retries == 2
    retried = [e for e in events if isinstance(e, Retried)]
    assert [(e.what, e.reason, e.attempt) for e in retried] == [
        ("get blob", "500", 2), ("get blob", "502", 3)]
    # the backoff's jitter comes before the cap: never more than retry_max_wait
    assert [e.wait_s for e in retried] == [0.01, 0.01]


def test_retries_end_at_the_error_deadline_with_the_registrys_words() -> None:
    settings = Settings(error_retry_deadline=0.05, retry_max_wait=0.01)

    async def go(transport: Transport, mocked: aioresponses) -> None:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.get(f"{BASE}/v2/a/manifests/1", status=503, body="down for maintenance",
                   repeat=True)
        await transport.request("GET", REGISTRY, "/v2/a/manifests/1", what="get manifest a:1")

    with pytest.raises(RegistryError) as info:
        _run(go, settings=settings)
    assert str(info.value).startswith("get manifest a:1: registry answered 503")
    assert "down for maintenance" in str(info.value)


def test_a_bearer_token_is_fetched_once_per_scope_set() -> None:
    challenge = f'Bearer realm="{BASE}/token",service="registry.invalid"'

    async def go(transport: Transport, mocked: aioresponses) -> list[str]:
        mocked.get(f"{BASE}/v2/", status=401, headers={"WWW-Authenticate": challenge})
        mocked.get(f"{BASE}/token?scope=repository:a:pull&service=registry.invalid",
                   payload={"token": "tok-a", "expires_in": 300})
        mocked.get(f"{BASE}/token?scope=repository:b:pull&service=registry.invalid",
                   payload={"token": "tok-b", "expires_in": 300})
        for repo in ("a", "b"):
            mocked.get(f"{BASE}/v2/{repo}/manifests/1", body=b"{}", repeat=True)
        for repo in ("a", "a", "b"):
            await transport.request("GET", REGISTRY, f"/v2/{repo}/manifests/1",
                                    what=f"get {repo}:1",
                                    scopes=frozenset({f"repository:{repo}:pull"}))
        sent = []
        for repo in ("a", "b"):
            for call in _calls(mocked, "GET", f"{BASE}/v2/{repo}/manifests/1"):
                sent.append(call.kwargs["headers"]["Authorization"])
        tokens = [k for k in mocked.requests if k[1].path == "/token"]
        assert len(tokens) == 2
        assert all(len(mocked.requests[k]) == 1 for k in tokens)
        return sent

    assert _run(go) == ["Bearer tok-a", "Bearer tok-a", "Bearer tok-b"]


def test_a_401_without_credentials_says_how_to_log_in() -> None:
    async def go(transport: Transport, mocked: aioresponses) -> None:
        mocked.get(f"{BASE}/v2/", status=401,
                   headers={"WWW-Authenticate": 'Basic realm="registry"'})
        mocked.get(f"{BASE}/v2/a/manifests/1", status=401, repeat=True,
                   headers={"WWW-Authenticate": 'Basic realm="registry"'},
                   body=json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                                "message": "authentication required"}]}))
        await transport.request("GET", REGISTRY, "/v2/a/manifests/1", what="get manifest a:1")

    with pytest.raises(AuthenticationError) as info:
        _run(go)
    assert str(info.value) == ("get manifest a:1: registry answered 401 (UNAUTHORIZED: "
                               "authentication required)")
    assert "login" in info.value.hint
