"""Bearer tokens per (registry, scope set), fetched once and refreshed before they expire.

Token server protocol: distribution's token auth spec (``docs/spec/auth/token.md``: GET
``realm?service=..&scope=..`` with Basic credentials; response ``token``/``access_token``,
``expires_in`` seconds (default 60), ``issued_at``) and OAuth2 (``oauth.md``: POST
``grant_type=refresh_token`` with an identity token).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio

Scopes = frozenset[str]
"""A set of scope strings, e.g. ``{"repository:a/b:pull,push", "repository:c/d:pull"}``."""

REFRESH_MARGIN_S = 10.0
"""A token is refreshed this many seconds before it expires (at most a quarter of its
lifetime, so that a short-lived token is still reused)."""
DEFAULT_EXPIRES_S = 60.0
"""Lifetime of a token whose response has no ``expires_in`` (token spec default)."""


@functools.lru_cache(maxsize=4096)
def _scope(repository: str, actions: tuple[str, ...]) -> str:
    order = {"pull": 0, "push": 1, "delete": 2}
    acts = sorted(set(actions), key=lambda a: (order.get(a, 9), a))
    return f"repository:{repository}:{','.join(acts)}"


def scope(repository: str, actions: Iterable[str]) -> str:
    """``repository:<name>:<a,b>`` with actions in a fixed order (pull before push)."""
    return _scope(repository, tuple(actions))


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float
    """Clock time after which the token is fetched again (before it expires)."""


def refresh_margin(expires_in: float) -> float:
    """Seconds before expiry at which a token of that lifetime is refreshed.

    ``REFRESH_MARGIN_S``, but never more than a quarter of the lifetime: a margin longer
    than the lifetime would make every request fetch a new token.
    """
    return min(REFRESH_MARGIN_S, max(expires_in, 0.0) / 4)


class TokenCache:
    """Tokens keyed by (registry, scope set); one fetch in flight per key (single flight).

    Args:
        fetch: ``await fetch(registry, scopes) -> (token, expires_in_seconds)``.
        clock: monotonic clock in seconds (tests may pass a fake one).
    """

    def __init__(
        self,
        fetch: Callable[[str, Scopes], Awaitable[tuple[str, float]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._tokens: dict[tuple[str, Scopes], _Token] = {}
        self._locks: dict[tuple[str, Scopes], anyio.Lock] = {}

    def cached(self, registry: str, scopes: Scopes) -> str | None:
        """A still-valid token for the key, or ``None``."""
        tok = self._tokens.get((registry, scopes))
        if tok is not None and tok.refresh_at > self._clock():
            return tok.value
        return None

    async def get(self, registry: str, scopes: Scopes) -> str:
        """A valid token for the key, fetching (once, however many callers wait) if needed."""
        token = self.cached(registry, scopes)
        if token is not None:
            return token
        key = (registry, scopes)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            token = self.cached(registry, scopes)
            if token is not None:
                return token
            # The lifetime counts from the request (the answer may come late), not after it.
            asked_at = self._clock()
            value, expires_in = await self._fetch(registry, scopes)
            lifetime = max(expires_in, 0.0)
            self._tokens[key] = _Token(value, asked_at + lifetime - refresh_margin(lifetime))
            return value

    def invalidate(self, registry: str, scopes: Scopes, value: str) -> None:
        """Forget the token for the key if it is still ``value`` (after a 401)."""
        tok = self._tokens.get((registry, scopes))
        if tok is not None and tok.value == value:
            del self._tokens[(registry, scopes)]
