"""Unit tests for manyfest.auth.challenge (WWW-Authenticate) and manyfest.auth.tokens."""

from __future__ import annotations

import asyncio

import pytest

from manyfest.auth import challenge, tokens
from manyfest.auth.challenge import Challenge
from manyfest.auth.tokens import REFRESH_MARGIN_S, Scopes, TokenCache

# --- challenge ---------------------------------------------------------------------------------


def test_bearer_with_quoted_commas() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    ch = challenge.parse(header)
    assert ch == Challenge(
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:samalba/my-app:pull,push",
        },
    )
    assert ch.realm == "https://auth.docker.io/token"
    assert ch.service == "registry.docker.io"


def test_bearer_with_spaces_error_and_several_scopes() -> None:
    header = (
        'Bearer realm="https://ghcr.io/token" , service="ghcr.io",  '
        'scope="repository:a/b:pull,push repository:c/d:pull",error="insufficient_scope"'
    )
    assert challenge.parse(header) == Challenge(
        "bearer",
        {
            "realm": "https://ghcr.io/token",
            "service": "ghcr.io",
            "scope": "repository:a/b:pull,push repository:c/d:pull",
            "error": "insufficient_scope",
        },
    )


def test_basic_realm() -> None:
    ch = challenge.parse('Basic realm="Registry Realm"')
    assert ch == Challenge("basic", {"realm": "Registry Realm"})
    assert ch.realm == "Registry Realm"
    assert ch.service == ""


def test_scheme_and_param_names_lower_cased_values_kept() -> None:
    assert challenge.parse('BEARER Realm="https://A/Token",SERVICE="Reg"') == Challenge(
        "bearer", {"realm": "https://A/Token", "service": "Reg"}
    )


def test_unquoted_values_and_escapes() -> None:
    assert challenge.parse("Bearer realm=https://a/token,service=reg") == Challenge(
        "bearer", {"realm": "https://a/token", "service": "reg"}
    )
    assert challenge.parse(r'Basic realm="a \"quoted\" \\ realm"') == Challenge(
        "basic", {"realm": 'a "quoted" \\ realm'}
    )
    assert challenge.parse('Bearer realm=""') == Challenge("bearer", {"realm": ""})


def test_no_params_and_empty() -> None:
    assert challenge.parse("Basic") == Challenge("basic", {})
    assert challenge.parse("") is None
    assert challenge.parse("   ") is None


def test_first_of_several_challenges() -> None:
    header = 'Bearer realm="https://a/token",service="reg", Basic realm="other"'
    assert challenge.parse(header) == Challenge(
        "bearer", {"realm": "https://a/token", "service": "reg"}
    )


# --- scope -------------------------------------------------------------------------------------


def test_scope_string() -> None:
    assert tokens.scope("a/b", ["push", "pull", "pull"]) == "repository:a/b:pull,push"
    assert tokens.scope("a/b", ["pull"]) == "repository:a/b:pull"
    assert tokens.scope("x", ["zz", "delete", "push", "aa"]) == "repository:x:push,delete,aa,zz"


# --- TokenCache --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """A token fetch that counts calls and can hold them until released."""

    def __init__(self, expires_in: float = 60.0) -> None:
        self.calls: list[tuple[str, Scopes]] = []
        self.expires_in = expires_in
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, registry: str, scopes: Scopes) -> tuple[str, float]:
        self.calls.append((registry, scopes))
        n = len(self.calls)
        await self.release.wait()
        await asyncio.sleep(0)
        return f"token-{n}", self.expires_in


PULL = frozenset({"repository:a/b:pull"})


@pytest.mark.asyncio
async def test_single_flight() -> None:
    server = FakeServer()
    server.release.clear()
    cache = TokenCache(server, clock=FakeClock())
    tasks = [asyncio.create_task(cache.get("reg", PULL)) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert server.calls == [("reg", PULL)]
    server.release.set()
    results = await asyncio.gather(*tasks)
    assert results == ["token-1"] * 10
    assert server.calls == [("reg", PULL)]
    assert await cache.get("reg", PULL) == "token-1"
    assert len(server.calls) == 1


@pytest.mark.asyncio
async def test_keys_per_registry_and_scope_set() -> None:
    server = FakeServer()
    cache = TokenCache(server, clock=FakeClock())
    both = frozenset({"repository:a/b:pull,push", "repository:c/d:pull"})
    same = frozenset({"repository:c/d:pull", "repository:a/b:pull,push"})
    assert await cache.get("reg", both) == "token-1"
    assert await cache.get("reg", same) == "token-1"
    assert await cache.get("reg", PULL) == "token-2"
    assert await cache.get("other:5000", PULL) == "token-3"
    assert await cache.get("reg", frozenset()) == "token-4"
    assert await cache.get("reg", PULL) == "token-2"
    assert server.calls == [
        ("reg", both),
        ("reg", PULL),
        ("other:5000", PULL),
        ("reg", frozenset()),
    ]
    assert cache.cached("reg", same) == "token-1"
    assert cache.cached("nowhere", PULL) is None


@pytest.mark.asyncio
async def test_refresh_within_margin_of_expiry() -> None:
    assert REFRESH_MARGIN_S == 10.0
    clock = FakeClock()
    server = FakeServer(expires_in=60.0)
    cache = TokenCache(server, clock=clock)
    assert await cache.get("reg", PULL) == "token-1"  # expires at 1060, refresh from 1050
    clock.now = 1049.999
    assert cache.cached("reg", PULL) == "token-1"
    assert await cache.get("reg", PULL) == "token-1"
    clock.now = 1050.0
    assert cache.cached("reg", PULL) is None
    assert await cache.get("reg", PULL) == "token-2"  # expires at 1110
    clock.now = 1099.0
    assert await cache.get("reg", PULL) == "token-2"
    clock.now = 1100.0
    assert await cache.get("reg", PULL) == "token-3"
    assert len(server.calls) == 3


@pytest.mark.asyncio
async def test_negative_expiry_is_stale_at_once() -> None:
    clock = FakeClock()
    server = FakeServer(expires_in=-5.0)
    cache = TokenCache(server, clock=clock)
    assert await cache.get("reg", PULL) == "token-1"
    assert cache.cached("reg", PULL) is None
    assert await cache.get("reg", PULL) == "token-2"


@pytest.mark.asyncio
async def test_invalidate_only_when_value_matches() -> None:
    server = FakeServer()
    cache = TokenCache(server, clock=FakeClock())
    assert await cache.get("reg", PULL) == "token-1"
    cache.invalidate("reg", PULL, "token-0")  # a stale value: another caller refreshed
    assert cache.cached("reg", PULL) == "token-1"
    cache.invalidate("other", PULL, "token-1")  # another key: no effect
    cache.invalidate("reg", frozenset(), "token-1")
    assert cache.cached("reg", PULL) == "token-1"
    cache.invalidate("reg", PULL, "token-1")
    assert cache.cached("reg", PULL) is None
    cache.invalidate("reg", PULL, "token-1")  # already gone: no error
    assert await cache.get("reg", PULL) == "token-2"
    assert len(server.calls) == 2


@pytest.mark.asyncio
async def test_fetch_error_propagates_and_next_get_retries() -> None:
    attempts: list[int] = []

    async def flaky(registry: str, scopes: Scopes) -> tuple[str, float]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("token server down")
        return "good", 60.0

    cache = TokenCache(flaky, clock=FakeClock())
    with pytest.raises(RuntimeError, match="token server down"):
        await cache.get("reg", PULL)
    assert cache.cached("reg", PULL) is None
    assert await cache.get("reg", PULL) == "good"
    assert len(attempts) == 2


@pytest.mark.asyncio
async def test_short_lived_token_is_still_shared() -> None:
    # A token living less than REFRESH_MARGIN_S must still be reused while valid (with a
    # fixed 10 s margin it would never be cached and every caller would fetch in turn).
    clock = FakeClock()
    server = FakeServer(expires_in=5.0)
    cache = TokenCache(server, clock=clock)
    results = await asyncio.gather(*(cache.get("reg", PULL) for _ in range(10)))
    assert results == ["token-1"] * 10
    clock.now += 1.0
    assert await cache.get("reg", PULL) == "token-1"
    assert len(server.calls) == 1
    clock.now += 4.0  # expired now
    assert cache.cached("reg", PULL) is None
    assert await cache.get("reg", PULL) == "token-2"
