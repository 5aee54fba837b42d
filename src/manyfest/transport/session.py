"""The one aiohttp session of a run, and every exchange made through it.

For each registry (host[:port] as written in references) the transport keeps:

* the scheme, decided once by the ping (``GET /v2/``, distribution-spec "Determining
  support"): ``https`` with verification; for insecure registries ``https`` without
  verification, falling back to ``http`` when the TLS handshake fails in any way or the HTTPS
  connection is refused (docker's ``--insecure``; a registry without a port is then asked on
  port 80) unless plain HTTP fails too or shows the port speaks only TLS (then the TLS failure
  is the error). Once decided, every request to that registry (token realm and ``Location``
  URLs on the same host included) uses it. See :mod:`manyfest.transport.tls`.
* its auth state (:class:`~manyfest.auth.flow.RegistryAuth`): bearer tokens cached per scope
  set, refreshed before they expire or after a 401;
* its :class:`~manyfest.transport.throttle.Throttle`: every exchange holds one of its slots
  (requests in flight, AIMD), waits for its pause and pace; backoff sleeps happen outside it.

Retries are bounded by deadlines, not counts (:class:`~manyfest.transport.Settings`):
throttle signals (429, 503, rate-limit codes) for ``retry_deadline`` seconds from the first
failure of an exchange; 5xx, 408 and connection errors for ``error_retry_deadline``; a
refused connection to a registry that never answered is not retried at all. 401/403/404 are
never retried. Every retry is a :class:`~manyfest.events.Retried` event. Several exchanges
that must be retried together (a streamed blob copy) run under :meth:`Transport.retrying`.

``-D/--debug`` logs every exchange (logger ``manyfest.transport``) with its headers;
``Authorization`` and token values are redacted.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import random
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import anyio

from manyfest._version import __version__
from manyfest.auth import challenge as challenges
from manyfest.auth import flow
from manyfest.auth.config import Credentials
from manyfest.auth.sources import CredentialSources
from manyfest.auth.tokens import Scopes, TokenCache
from manyfest.errors import (
    AuthenticationError,
    AuthorizationError,
    DigestMismatchError,
    ManyfestError,
    RegistryError,
    TransportError,
)
from manyfest.events import EventSink, Retried, Throttled, no_events
from manyfest.reference import DOCKER_HUB, DOCKER_HUB_API
from manyfest.transport import errormap, tls
from manyfest.transport.proxy import proxy_for
from manyfest.transport.response import (
    RequestStats,
    Response,
    current_stats,
    is_manifest_path,
)
from manyfest.transport.settings import Settings
from manyfest.transport.throttle import Signal, Throttle, signal_of

log = logging.getLogger("manyfest.transport")

MAX_BODY = 100 * 1024 * 1024
"""Largest response body read whole, in bytes, unless a request names a smaller limit."""
MANIFEST_LIMIT = 4 * 1024 * 1024
"""Largest manifest body read (distribution-spec: registries SHOULD accept at least 4 MiB)."""
ERROR_BODY_LIMIT = 64 * 1024
"""Largest error body read; the rest is not needed to say what went wrong."""
CHUNK = 1 << 16
"""Bytes read at a time from a streamed body."""
MIN_UPLOAD_RATE = 256 * 1024
"""Bytes per second a streamed upload may not stay below (on average) without failing."""
_ERROR_STATUS = frozenset({408, 500, 502, 503, 504})
"""Statuses retried as errors (within ``error_retry_deadline``) unless they are throttle
signals (429; 503 with Retry-After)."""
_USER_AGENT = f"manyfest/{__version__}"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_URL_HEADERS = frozenset({"location", "content-location"})

T = TypeVar("T")


class _Retryable(Exception):
    """Internal: a failure worth another try (carries the error raised when retries end)."""

    def __init__(self, error: ManyfestError, state: _RegistryState, *, throttled: bool,
                 reason: str = "", refused: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.state = state
        self.throttled = throttled
        self.reason = reason
        self.refused = refused


_composite: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "manyfest_composite_retry", default=False
)
"""True inside :meth:`Transport.retrying`: exchanges leave retries to the composite."""


@dataclass(slots=True)
class _RegistryState:
    registry: str
    api_host: str
    insecure: bool
    throttle: Throttle
    auth: flow.RegistryAuth
    make_tls: Callable[[], ssl.SSLContext]
    scheme: str | None = None
    answered: bool = False
    """An HTTP answer came from it in this run (a later refused connection is a restart)."""
    ping_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _tls: ssl.SSLContext | None = None

    def pinged(self) -> bool:
        return self.scheme is not None

    def tls(self) -> ssl.SSLContext:
        """The registry's TLS context (verifying unless insecure), made on first use."""
        if self._tls is None:
            self._tls = self.make_tls()
        return self._tls

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        return False if self.scheme == "http" else self.tls()


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP exchange to make, perhaps more than once (retries, re-authentication)."""

    state: _RegistryState
    method: str
    url: str
    headers: Mapping[str, str] | None = None
    data: Any = None
    params: Mapping[str, str] | None = None
    scopes: Scopes = frozenset()
    limit: int = MAX_BODY
    what: str = ""


class _TLSFailure(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class BlobStream:
    """A blob's body as it arrives, hashed while streaming (``async for chunk in stream``).

    When the stream ends, the digest of what went through is checked against the digest
    that named the blob; a mismatch raises :class:`~manyfest.errors.DigestMismatchError`
    (so an upload fed from it never completes with wrong bytes).

    Attributes:
        digest: the expected ``sha256:<hex>`` digest.
        size: bytes streamed so far.
        failure: the error that stopped the stream, if any.
    """

    def __init__(self, resp: aiohttp.ClientResponse, digest: str, what: str) -> None:
        self._resp = resp
        self.digest = digest
        self.what = what
        self.size = 0
        self.failure: ManyfestError | None = None
        algorithm = digest.partition(":")[0]
        self._hash = hashlib.new(algorithm if algorithm in ("sha256", "sha384", "sha512")
                                 else "sha256")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Each chunk is passed on only once the next one has come, and the last one only
        # once the digest has been checked: with wrong bytes, the upload fed from this stream
        # ends short of its Content-Length and the target never completes it (not even a
        # registry that would not check the digest itself).
        held = b""
        try:
            async for chunk in self._resp.content.iter_chunked(CHUNK):
                self._hash.update(chunk)
                self.size += len(chunk)
                if held:
                    yield held
                held = chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failure = TransportError(f"{self.what}: {errormap.describe(exc)}")
            raise
        actual = f"{self.digest.partition(':')[0]}:{self._hash.hexdigest()}"
        if actual != self.digest:
            self.failure = DigestMismatchError(
                f"{self.what}: content has digest {actual}, expected {self.digest}"
            )
            raise self.failure
        if held:
            yield held


class Transport:
    """One aiohttp session for a whole run, shared by every registry client.

    Use as ``async with Transport(settings) as transport:``.

    Args:
        settings: see :class:`Settings`.
        credentials: where credentials are read (default: the sources of this
            environment, :class:`~manyfest.auth.sources.CredentialSources`).
        on_event: receives :class:`~manyfest.events.Retried` and
            :class:`~manyfest.events.Throttled` events.
    """

    def __init__(self, settings: Settings | None = None,
                 credentials: CredentialSources | None = None, on_event: EventSink = no_events):
        self.settings = settings or Settings()
        self._sources = credentials
        self._session: aiohttp.ClientSession | None = None
        self._states: dict[str, _RegistryState] = {}
        self._tokens = TokenCache(self._fetch_token)
        self._proxies: dict[str, str | None] = {}
        self.on_event = on_event
        self.total = RequestStats()
        self._streamed_timeout = aiohttp.ClientTimeout(
            sock_read=self.settings.read_timeout, sock_connect=self.settings.connect_timeout
        )

    async def __aenter__(self) -> Transport:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=False)
        # One timer per exchange (``total``) and one per new connection (``sock_connect``):
        # aiohttp's ``connect`` and ``sock_read`` timeouts would add a timer per request and
        # re-arm one per received chunk (twice the timer-heap work, measured).
        timeout = aiohttp.ClientTimeout(
            total=self.settings.read_timeout,
            sock_connect=self.settings.connect_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": _USER_AGENT},
            auto_decompress=False,
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (raises if the transport is not entered)."""
        if self._session is None:
            raise RuntimeError("Transport used outside `async with`")
        return self._session

    # ---------------------------------------------------------------- registry state

    def _state(self, registry: str) -> _RegistryState:
        state = self._states.get(registry)
        if state is None:
            insecure = self.settings.is_insecure(registry)
            state = _RegistryState(
                registry=registry,
                api_host=DOCKER_HUB_API if registry == DOCKER_HUB else registry,
                insecure=insecure,
                throttle=Throttle(
                    registry, self.settings.concurrency_for(registry),
                    on_throttle=self._throttled,
                ),
                auth=flow.RegistryAuth(registry),
                make_tls=partial(
                    tls.context_for, registry, self.settings.certs_dir, verify=not insecure
                ),
            )
            self._states[registry] = state
        return state

    def _throttled(self, throttle: Throttle, wait: float, reason: str) -> None:
        self.on_event(Throttled(registry=throttle.registry, limit=throttle.capacity,
                                wait_s=round(wait, 3), rate=round(throttle.rate or 0.0, 2),
                                reason=reason))

    def registry_stats(self) -> dict[str, dict[str, int]]:
        """Per registry: ``requests``, ``retries`` and ``throttled`` answers so far."""
        return {
            name: {"requests": s.throttle.requests, "retries": s.throttle.retries,
                   "throttled": s.throttle.throttled}
            for name, s in self._states.items()
            if s.throttle.requests
        }

    def scheme_of(self, registry: str) -> str | None:
        """The scheme decided for ``registry`` by its ping (``None`` before the ping)."""
        state = self._states.get(registry)
        return state.scheme if state else None

    def _proxy(self, url: str) -> str | None:
        """:func:`proxy_for`, computed once per scheme and host for this transport."""
        scheme, _, rest = url.partition("://")
        key = f"{scheme}://{rest.split('/', 1)[0]}"
        if key not in self._proxies:
            self._proxies[key] = proxy_for(url)
        return self._proxies[key]

    def _config(self) -> CredentialSources:
        if self._sources is None:
            self._sources = CredentialSources()
        return self._sources

    async def _credentials(self, state: _RegistryState, scopes: Scopes) -> Credentials:
        """The credentials for the repository of ``scopes``, looked up the first time the
        registry asks for them.

        Only a registry that challenges gets a lookup, so a broken config.json or credential
        helper never stops an anonymous registry (docker only warns there too).
        """
        return await state.auth.lookup(self._config(), flow.repository_of(scopes))

    async def verify_login(self, registry: str, credentials: Credentials) -> str:
        """Check ``credentials`` with ``registry`` as ``docker login`` does: ``GET /v2/``;
        a Basic challenge is answered with them, a Bearer one by a token asked of the
        realm with them (no scope; ``offline_token=true`` asks for a refresh token).

        Returns:
            The refresh token the token server gave ('' when none): stored as the
            ``identitytoken``.

        Raises:
            AuthenticationError: the registry or its token server refused them.
            TransportError, RegistryError: the registry could not be asked.
        """
        state = self._state(registry)
        state.auth.use(credentials)
        state.auth.offline = True
        await self.request("GET", registry, "/v2/", what=f"log in to {registry}")
        return state.auth.refresh_token

    # ---------------------------------------------------------------- ping

    async def _ensure_pinged(self, state: _RegistryState) -> None:
        if state.pinged():
            return
        async with state.ping_lock:
            if state.pinged():
                return
            await self._ping(state)

    async def _ping(self, state: _RegistryState) -> None:
        """``GET /v2/``: decide the scheme and read the auth challenge.

        An insecure registry whose TLS handshake fails, or whose HTTPS port refuses the
        connection, is asked again in plain HTTP; if nothing answers in plain HTTP, or the
        answer shows that the port speaks only TLS (Go's ``400 Client sent an HTTP request to
        an HTTPS server``: e.g. the registry requires a client certificate), the TLS failure
        is reported, not the plain-HTTP one.
        """
        try:
            resp = await self._ping_exchange(state, "https", state.tls())
            state.scheme = "https"
        except (_TLSFailure, TransportError) as exc:
            refused = isinstance(exc, TransportError) and exc.refused
            if not state.insecure or not (isinstance(exc, _TLSFailure) or refused):
                if isinstance(exc, _TLSFailure):
                    raise self._tls_error(state, exc.cause) from exc.cause
                raise
            log.debug("HTTPS to %s failed (%s); trying plain HTTP", state.registry, exc)
            try:
                resp = await self._ping_exchange(state, "http", False)
            except TransportError as http_exc:
                # Nothing answered in plain HTTP either: a TLS failure says more than that.
                # (An HTTP answer that stays an error, e.g. 503 after the retries, is raised.)
                log.debug("plain HTTP to %s failed too: %s", state.registry, http_exc)
                if isinstance(exc, _TLSFailure):
                    raise self._tls_error(state, exc.cause) from exc.cause
                raise  # both refused: the plain-HTTP attempt, the last one, says where
            if resp.status == 400 and tls.plain_http_answer(resp.body):
                if isinstance(exc, _TLSFailure):
                    raise self._tls_error(state, exc.cause) from exc.cause
                raise exc from None
            state.scheme = "http"
        if resp.status == 401:
            state.auth.challenge = challenges.parse(resp.headers.get("WWW-Authenticate", ""))
        elif resp.status not in (200, 404):
            # 404: some registries don't serve /v2/ but work (distribution-spec allows it).
            raise errormap.registry_error(f"ping {state.registry}", "GET", resp)

    async def _ping_exchange(
        self, state: _RegistryState, scheme: str, ssl_ctx: ssl.SSLContext | bool
    ) -> Response:
        """One ping (``GET <scheme>://host/v2/``), retried on connection errors and 5xx.

        Raises:
            _TLSFailure: the TLS handshake failed (never retried).
            TransportError, RegistryError: still failing after the retries.
        """
        what = f"ping {state.registry}"
        url = f"{scheme}://{state.api_host}/v2/"

        async def attempt() -> Response:
            resp = await self._exchange(state, "GET", url, {}, None, ssl_ctx=ssl_ctx,
                                        handshake=True, what=what)
            self._check_retryable(state, what, "GET", resp)
            return resp

        return await self._with_retries(attempt, what)

    def _tls_error(self, state: _RegistryState, cause: BaseException) -> ManyfestError:
        """A one-line error for a failed TLS handshake with ``registry``, saying what to do."""
        return tls.tls_error(state.registry, cause, self.settings.certs_dir / state.registry,
                             insecure=state.insecure)

    # ---------------------------------------------------------------- one exchange

    async def _exchange(
        self,
        state: _RegistryState,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: Any,
        *,
        ssl_ctx: ssl.SSLContext | bool,
        params: Mapping[str, str] | None = None,
        handshake: bool = False,
        limit: int = MAX_BODY,
        what: str = "",
    ) -> Response:
        """Send one request in a slot of the registry's throttle; read the body.

        The body is read completely (``StreamReader.read(n)`` returns what is buffered, not
        n bytes), at most ``limit`` bytes (error answers: :data:`ERROR_BODY_LIMIT`).
        ``handshake``: this is the first request to the registry (the ping), so a connection
        closed before any answer counts as a failed TLS handshake; later, it is a retryable
        connection error (e.g. a keep-alive connection the server closed).
        """
        async with self._open(state, method, url, headers, data, ssl_ctx=ssl_ctx,
                              params=params, handshake=handshake, what=what) as resp:
            if method == "HEAD":
                body = b""
            else:
                cap = limit if resp.status < 400 else min(limit, ERROR_BODY_LIMIT)
                body = await _read_body(resp, cap, what, truncate=resp.status >= 400)
            return Response(resp.status, resp.headers, body, str(resp.url))

    @asynccontextmanager
    async def _open(
        self,
        state: _RegistryState,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: Any,
        *,
        ssl_ctx: ssl.SSLContext | bool,
        params: Mapping[str, str] | None = None,
        handshake: bool = False,
        what: str = "",
        hold: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; yield the response with its body unread.

        The throttle slot is held until the block ends (``hold``) or only until the answer's
        status and headers have come (``hold=False``: a streamed body, so that a copy feeding
        one exchange from another never holds two slots of one registry).
        """
        stats = current_stats.get()
        if stats is not None:
            stats.requests += 1
        self.total.requests += 1
        manifest_read = method in ("GET", "HEAD") and is_manifest_path(url)
        if manifest_read:
            self._count_manifest_read(stats, method, 1)
        # A streamed blob may take longer in total than ``read_timeout``. Its GET (read as it
        # comes) gets ``read_timeout`` per read instead. The upload fed from it cannot have a
        # read timeout (aiohttp's ``sock_read`` also runs while the body is being sent, and a
        # GET paused by a slow upload drops its own): it gets ``read_timeout`` plus its size
        # at :data:`MIN_UPLOAD_RATE`, so a target that stops reading still ends the copy.
        timeout = self.session.timeout
        if not hold:
            timeout = self._streamed_timeout
        elif not (data is None or isinstance(data, bytes | str)):
            declared = str((headers or {}).get("Content-Length", "") or "0")
            size = int(declared) if declared.isdigit() else MAX_BODY
            timeout = aiohttp.ClientTimeout(
                total=self.settings.read_timeout + size / MIN_UPLOAD_RATE,
                sock_connect=self.settings.connect_timeout,
            )
        throttle = state.throttle
        throttle.requests += 1
        proxy = self._proxy(url)
        epoch = await throttle.acquire()
        held = True
        started = time.monotonic()
        try:
            try:
                async with self.session.request(
                    method, url, headers=headers, data=data, params=params, ssl=ssl_ctx,
                    allow_redirects=method in ("GET", "HEAD"), proxy=proxy,
                    timeout=timeout,
                ) as resp:
                    state.answered = True
                    signal = signal_of(resp.status, resp.headers, b"", set())
                    if signal.throttled or resp.status >= 400:
                        # The body may say more (codes, waits): read under the slot, as usual.
                        body = await _read_body(resp, ERROR_BODY_LIMIT, what, truncate=True)
                        resp._body = body  # aiohttp serves read() from here afterwards
                        codes = {d.code for d in errormap.error_details(body, resp.headers)}
                        signal = signal_of(resp.status, resp.headers, body, codes)
                    throttle.answered(epoch, signal)
                    if signal.throttled:
                        self._count_throttled(stats)
                    if log.isEnabledFor(logging.DEBUG):
                        _log_exchange(method, url, headers, resp, time.monotonic() - started)
                    if not hold:
                        throttle.release()
                        held = False
                    yield resp
            except aiohttp.ClientResponseError as exc:
                # aiohttp could not parse the answer as HTTP (another protocol on the port, a
                # malformed status line or header): not worth another try.
                raise errormap.not_http(method, url, exc) from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                    TimeoutError) as exc:
                if tls.is_tls_failure(exc, url, handshake=handshake):
                    # No HTTP request happened: the TLS handshake failed.
                    if stats is not None:
                        stats.requests -= 1
                    self.total.requests -= 1
                    throttle.requests -= 1
                    if manifest_read:
                        self._count_manifest_read(stats, method, -1)
                    raise _TLSFailure(exc) from exc
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s %s -> %s", method, debug_url(url), errormap.describe(exc),
                              extra={"event": "http", "fields": {
                                  "method": method, "url": debug_url(url),
                                  "error": errormap.describe(exc)}})
                raise self._no_answer(state, method, url, exc) from exc
        finally:
            if held:
                throttle.release()

    def _count_manifest_read(self, stats: RequestStats | None, method: str, delta: int) -> None:
        if stats is not None:
            stats.count_manifest_read(method, delta)
        self.total.count_manifest_read(method, delta)

    def _count_throttled(self, stats: RequestStats | None) -> None:
        if stats is not None:
            stats.throttled += 1
        self.total.throttled += 1

    def _no_answer(self, state: _RegistryState, method: str, url: str,
                   exc: BaseException) -> _Retryable:
        """A request that got no (complete) answer, as a retryable failure."""
        error = errormap.connection_error(method, url, exc, insecure=state.insecure,
                                          read_timeout=self.settings.read_timeout)
        refused = errormap.is_refused(exc)
        error.refused = refused
        return _Retryable(error, state, throttled=False, reason=errormap.describe(exc),
                          refused=refused)

    # ---------------------------------------------------------------- public request

    async def request(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        what: str,
        scopes: Scopes = frozenset(),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        limit: int = MAX_BODY,
    ) -> Response:
        """One registry request, with auth, throttling, retries and error mapping.

        Args:
            method: HTTP method.
            registry: host[:port] as in references (``docker.io`` for Docker Hub).
            path: ``/v2/...`` path, or an absolute URL (a ``Location`` the registry gave).
            what: what this request does, for error messages (e.g. ``"push a/b:1"``).
            scopes: token scopes this request needs (``repository:a/b:pull`` ...).
            headers: extra request headers.
            data: request body: bytes, or an async iterable of bytes (sent once: only
                retried as part of a :meth:`retrying` composite).
            params: query parameters.
            ok: statuses returned rather than raised (a throttle signal in one is tried
                again all the same).
            limit: largest body read, in bytes (:data:`MANIFEST_LIMIT` for manifests).

        Returns:
            The :class:`Response` (status in ``ok``).

        Raises:
            RegistryError: the registry answered another status (subclass by status), or
                kept throttling past the retry deadline (:class:`RateLimitedError`).
            TransportError: the registry could not be reached (after retries).
            CertificateError: TLS verification failed.
        """
        state = self._state(registry)
        await self._ensure_pinged(state)
        call = _Call(
            state, method, self._url(state, path), headers, data, params, scopes, limit, what
        )
        return await self._with_retries(lambda: self._attempt(call, ok, what), what)

    @asynccontextmanager
    async def stream(
        self,
        registry: str,
        path: str,
        digest: str,
        *,
        what: str,
        scopes: Scopes = frozenset(),
    ) -> AsyncIterator[BlobStream]:
        """``GET`` a blob and stream its body (never held whole), hashed as it arrives.

        Use inside :meth:`retrying` (a failure mid-stream retries the whole composite).

        Raises:
            RegistryError: the registry answered other than 200.
            TransportError: the registry could not be reached.
        """
        state = self._state(registry)
        await self._ensure_pinged(state)
        call = _Call(state, "GET", self._url(state, path), None, None, None, scopes, 0, what)
        async with self._authorized_open(call) as resp:
            if resp.status != 200:
                self._check_retryable(state, what, "GET", _response(resp, await resp.read()))
                raise self._error(call, what, _response(resp, await resp.read()))
            yield BlobStream(resp, digest, what)

    async def retrying(self, attempt: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Run ``attempt`` (several exchanges), retrying it whole while they fail retryably.

        Exchanges made inside leave their retries to this loop (a streamed body cannot be
        sent twice); the deadlines and events are those of single exchanges.
        """
        async def composite() -> T:
            token = _composite.set(True)
            try:
                return await attempt()
            finally:
                _composite.reset(token)

        return await self._with_retries(composite, what)

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``attempt``; retry it while it raises :class:`_Retryable`, within the deadlines.

        Throttle signals: until ``retry_deadline`` seconds after the first failure, the wait
        being the registry's pause (shared by every task, see :class:`Throttle`). Errors
        (5xx, connection): exponential backoff with jitter, at most ``retry_max_wait``, until
        ``error_retry_deadline``. A refused connection to a registry that never answered in
        this run fails at once. Inside :meth:`retrying`, failures go up to the composite.
        """
        if _composite.get():
            return await attempt()
        try:
            return await attempt()
        except _Retryable as exc:
            failure = exc
        first = time.monotonic()
        tries = 1
        errors = 0
        while True:
            state = failure.state
            elapsed = time.monotonic() - first
            if failure.throttled:
                deadline = self.settings.retry_deadline
                wait = state.throttle.pause_left()
            else:
                deadline = min(self.settings.error_retry_deadline, self.settings.retry_deadline)
                errors += 1
                # jitter (-25%..+25%) first, then the cap: never more than retry_max_wait
                wait = 0.25 * 2 ** (errors - 1) * (0.75 + random.random() / 2)
                wait = min(self.settings.retry_max_wait, wait)
            never_answered = failure.refused and not state.answered
            if never_answered or elapsed + wait > deadline:
                raise _final(failure, deadline, retried=tries > 1) from failure.__cause__
            tries += 1
            stats = current_stats.get()
            if stats is not None:
                stats.retries += 1
            self.total.retries += 1
            state.throttle.retries += 1
            self.on_event(Retried(registry=state.registry, what=what, reason=failure.reason,
                                  wait_s=round(wait, 3), attempt=tries))
            await anyio.sleep(wait)
            try:
                return await attempt()
            except _Retryable as exc:
                failure = exc

    def _check_retryable(self, state: _RegistryState, what: str, method: str,
                         resp: Response, creds_of: _RegistryState | None = None) -> None:
        """Raise :class:`_Retryable` for a throttle signal or a retryable error status.

        A throttle signal's wait is the registry's pause (the throttle took its hint).
        The error's words have the secrets of ``creds_of`` (default: ``state``) cut out.
        """
        if resp.status < 400:
            return
        resp = self._scrubbed(creds_of or state, resp)
        signal = _signal(resp)
        if signal.throttled:
            raise _Retryable(errormap.registry_error(what, method, resp), state,
                             throttled=True, reason=signal.reason)
        if resp.status in _ERROR_STATUS:
            raise _Retryable(errormap.registry_error(what, method, resp), state,
                             throttled=False, reason=str(resp.status))

    async def _attempt(self, call: _Call, ok: tuple[int, ...], what: str) -> Response:
        """One try: the answer when its status is in ``ok`` and it is no throttle signal;
        else a (retryable) error.

        A throttle signal wins over ``ok``: AWS answers ``400 ThrottlingException``, and a
        caller that takes 400 as "not supported here" (the referrers API) must not take a
        throttled answer for that; the request is tried again like any other throttled one.
        """
        resp = await self._authorized(call)
        if resp.status in ok and (resp.status < 400 or not _signal(resp).throttled):
            return resp
        self._check_retryable(call.state, what, call.method, resp)
        raise self._error(call, what, resp)

    def _error(self, call: _Call, what: str, resp: Response) -> RegistryError:
        resp = self._scrubbed(call.state, resp)
        error = errormap.registry_error(what, call.method, resp)
        if resp.status == 401:
            error = self._unauthorized(call.state, what, resp, error)
        return error

    def _scrubbed(self, state: _RegistryState, resp: Response) -> Response:
        """``resp`` with the registry's secrets cut out of its body, should the answer have
        echoed them (the body's words go into error messages)."""
        known = [c for c in state.auth.known() if not c.anonymous]
        if not known or not resp.body:
            return resp
        text = resp.body.decode(errors="replace")
        scrubbed = text
        for creds in known:
            scrubbed = flow.scrub(scrubbed, creds)
        if scrubbed == text:
            return resp
        return Response(resp.status, resp.headers, scrubbed.encode(), resp.url)

    def _unauthorized(
        self, state: _RegistryState, what: str, resp: Response, error: RegistryError
    ) -> RegistryError:
        """The error for a 401 that survived re-authentication.

        With credentials and a challenge saying ``error="insufficient_scope"`` the login
        worked but the account may not do this (e.g. push to a repository it can only pull):
        an :class:`AuthorizationError`. Otherwise the credentials are missing or refused.
        """
        chal = challenges.parse(resp.headers.get("WWW-Authenticate", ""))
        if (
            chal is not None
            and chal.params.get("error") == "insufficient_scope"
            and not state.auth.creds().anonymous
        ):
            return AuthorizationError(
                what, status=resp.status, method=error.method, url=error.url,
                errors=error.errors,
                hint=flow.insufficient_scope_hint(state.auth, chal.params.get("scope", "")),
            )
        error.hint = self._login_hint(state)
        return error

    def _login_hint(self, state: _RegistryState) -> str:
        return flow.login_hint(state.auth, str(self._config().login_target().path))

    async def _authorized(self, call: _Call) -> Response:
        """Send with credentials; on a 401 re-authenticate once and resend."""
        state = call.state
        auth, token = await self._authorization(state, call.scopes)
        resp = await self._send(call, auth)
        if resp.status != 401:
            return resp
        if not await self._reauthorize(call, resp, auth, token):
            return resp
        auth, token = await self._authorization(state, call.scopes)
        if auth is None:
            return resp
        return await self._send(call, auth)

    async def _reauthorize(self, call: _Call, resp: Response, auth: str | None,
                           token: str | None) -> bool:
        """After a 401: take its challenge, drop a refused token; True when worth a resend."""
        state = call.state
        new = challenges.parse(resp.headers.get("WWW-Authenticate", ""))
        if new is not None:
            state.auth.challenge = new
        if token is not None:
            self._tokens.invalidate(state.registry, call.scopes, token)
            return True
        return auth is None and state.auth.challenge is not None

    @asynccontextmanager
    async def _authorized_open(self, call: _Call) -> AsyncIterator[aiohttp.ClientResponse]:
        """:meth:`_open` with credentials; a 401 re-authenticates once (streamed GETs)."""
        state = call.state
        for first in (True, False):
            auth, token = await self._authorization(state, call.scopes)
            headers = dict(call.headers or {})
            if auth is not None and self._may_send_credentials(state, call.url):
                headers["Authorization"] = auth
            async with self._open(state, call.method, call.url, headers, None,
                                  ssl_ctx=self._ssl_for(state, call.url), what=call.what,
                                  hold=False) as resp:
                if resp.status == 401 and first and await self._reauthorize(
                    call, _response(resp, await resp.read()), auth, token
                ):
                    continue
                yield resp
                return
        raise AssertionError("unreachable")  # pragma: no cover

    def _ssl_for(self, state: _RegistryState, url: str) -> ssl.SSLContext | bool:
        return state.ssl if url.startswith("https://") else False

    async def _send(self, call: _Call, auth: str | None) -> Response:
        """One exchange with ``Authorization: auth`` (if any); TLS failures explained.

        Credentials only go to the registry's own host, and never in plain HTTP to a
        registry that is not insecure (a ``Location`` or realm on another host or scheme).
        """
        headers = dict(call.headers or {})
        state = call.state
        if auth is not None and self._may_send_credentials(state, call.url):
            headers["Authorization"] = auth
        try:
            return await self._exchange(
                state, call.method, call.url, headers, call.data,
                ssl_ctx=self._ssl_for(state, call.url), params=call.params, limit=call.limit,
                what=call.what,
            )
        except _TLSFailure as exc:
            raise self._tls_error(state, exc.cause) from exc.cause

    def _may_send_credentials(self, state: _RegistryState, url: str) -> bool:
        """True when ``url`` is the registry's own address (host and port), in HTTPS or, for
        an insecure registry, in plain HTTP.

        The port compared is the one the registry is reached on: ``http://host/`` and
        ``http://host:80/`` are one address (registries write ``Location`` from the ``Host``
        header, which omits a default port), ``https://host:80/`` is another.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not state.insecure:
            return False
        own = _address(state.api_host, state.scheme or parts.scheme)
        return own is not None and _address(parts.netloc, parts.scheme) == own

    async def _authorization(
        self, state: _RegistryState, scopes: Scopes
    ) -> tuple[str | None, str | None]:
        """(Authorization header value or None, bearer token used or None)."""
        chal = state.auth.challenge
        if chal is None:
            return None, None
        creds = await self._credentials(state, scopes)
        if creds.registry_token:
            return f"Bearer {creds.registry_token}", None
        if chal.scheme == "basic":
            if creds.anonymous:
                return None, None
            return flow.basic_header(creds), None
        if chal.scheme == "bearer":
            token = await self._tokens.get(state.registry, scopes)
            return f"Bearer {token}", token
        return None, None

    async def _fetch_token(self, registry: str, scopes: Scopes) -> tuple[str, float]:
        """Ask the challenge's realm for a token covering ``scopes`` (token auth spec).

        Raises:
            AuthenticationError: the token server refused, or sent no token.
            TransportError: a realm in plain HTTP on a registry that is not insecure
                (credentials would travel in clear text).
        """
        state = self._state(registry)
        chal = state.auth.challenge
        assert chal is not None
        if not chal.realm:
            raise AuthenticationError(
                f"{registry} asked for a bearer token without a realm",
                status=401, method="GET", url="",
            )
        # User info in a realm is not ours to send (nor to show): the request carries the
        # registry's credentials, and aiohttp refuses both at once.
        realm = _without_user_info(self._url(state, chal.realm))
        creds = await self._credentials(state, scopes)
        realm_state = self._realm_state(state, realm)
        netloc = urllib.parse.urlsplit(realm).netloc
        what = f"get a token from {netloc} for {registry}"
        req = flow.token_request(realm, chal, creds, scopes, offline=state.auth.offline)
        if realm.startswith("http://") and not realm_state.insecure and not creds.anonymous:
            raise TransportError(
                f"{what}: the token realm {errormap.redact(realm)} is plain HTTP; credentials "
                "are not sent in clear text",
                hint=f"mark {netloc} insecure in the configuration file if that is intended",
            )
        resp = await self._token_exchange(
            state, _Call(realm_state, req.method, req.url, req.headers, req.body, what=what),
            what,
        )
        answer = flow.parse_token_answer(resp.body)
        if state.auth.offline:
            state.auth.refresh_token = flow.refresh_token_of(resp.body) or state.auth.refresh_token
        if answer is None:
            raise AuthenticationError(
                f"{what}: the token server sent no token", status=resp.status,
                method=req.method, url=errormap.redact(realm),
            )
        return answer

    def _realm_state(self, state: _RegistryState, realm: str) -> _RegistryState:
        netloc = urllib.parse.urlsplit(realm).netloc
        if netloc == state.api_host:
            return state
        realm_state = self._state(netloc)
        if realm_state.scheme is None:
            realm_state.scheme = urllib.parse.urlsplit(realm).scheme
        return realm_state

    async def _token_exchange(
        self, registry_state: _RegistryState, call: _Call, what: str
    ) -> Response:
        """A token request (to the realm in ``call``), retried; 401/403 are login errors."""
        method, url = call.method, call.url
        realm = call.state

        async def attempt() -> Response:
            try:
                resp = await self._exchange(realm, method, url, dict(call.headers or {}),
                                            call.data, ssl_ctx=self._ssl_for(realm, url),
                                            what=what)
            except _TLSFailure as exc:
                raise self._tls_error(realm, exc.cause) from exc.cause
            if resp.status == 200:
                return resp
            # The realm's state has no credentials: the registry's are cut out of errors.
            self._check_retryable(realm, what, method, resp, creds_of=registry_state)
            resp = self._scrubbed(registry_state, resp)
            if resp.status in (401, 403):
                error = AuthenticationError(
                    what, status=resp.status, method=method, url=errormap.redact(url),
                    errors=errormap.error_details(resp.body),
                    hint=self._login_hint(registry_state),
                )
                # RegistryError words it "registry answered"; this is the token server.
                error.message = error.message.replace(
                    f"{what}: registry answered", f"{what}: token server answered", 1
                )
                raise error
            raise errormap.registry_error(what, method, resp)

        # A token request that keeps failing is not retried again by the request that needed
        # the token: its error goes up as is.
        return await self._with_retries(attempt, what)

    def _url(self, state: _RegistryState, path: str) -> str:
        """Absolute URL for ``path``; same-host absolute URLs get the registry's scheme."""
        scheme = state.scheme or "https"
        if path.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(path)
            if parts.netloc == state.api_host and parts.scheme != scheme:
                return urllib.parse.urlunsplit(parts._replace(scheme=scheme))
            return path
        return f"{scheme}://{state.api_host}{path}"


def _final(failure: _Retryable, deadline: float, *, retried: bool) -> ManyfestError:
    """The error raised when retries end: the registry's words, and the deadline."""
    error = failure.error
    if not retried:
        return error
    if failure.throttled and isinstance(error, RegistryError):
        error.hint = (
            f"the registry kept throttling for the whole retry deadline ({deadline:g} s): "
            "raise --retry-deadline, or publish when it is less busy"
        )
    elif isinstance(error, RegistryError | TransportError):
        error.message = f"{error.message} (still failing after {deadline:g} s of retries)"
    return error


_DEFAULT_PORTS = {"http": 80, "https": 443}
_USER_INFO = re.compile(r"(?<=://)[^/@\s\"']+@")
"""User info in a URL written inside a header value (``realm="https://user:pw@host/"``)."""


def _without_user_info(url: str) -> str:
    """``url`` without ``user:password@``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _address(netloc: str, scheme: str) -> tuple[str, int] | None:
    """(lowercase host, port) of ``netloc`` reached in ``scheme`` (default port filled in);
    None when it has user info or no valid port."""
    parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if "@" in netloc or not parts.hostname or port is None:
        return None
    return parts.hostname.lower(), port


def _response(resp: aiohttp.ClientResponse, body: bytes) -> Response:
    return Response(resp.status, resp.headers, body, str(resp.url))


async def _read_body(resp: aiohttp.ClientResponse, limit: int, what: str, *,
                     truncate: bool = False) -> bytes:
    """The whole body of ``resp``, at most ``limit`` bytes.

    ``StreamReader.read(n)`` returns what is buffered, not n bytes: the body is read chunk by
    chunk until the end of the stream. With ``truncate`` (error answers) the first ``limit``
    bytes are kept and the rest is not read.

    Raises:
        TransportError: the body (or its Content-Length) is larger than ``limit``.
    """
    cached = getattr(resp, "_body", None)
    if isinstance(cached, bytes):
        return cached
    declared = resp.content_length
    if declared is not None and declared > limit and not truncate:
        raise _too_large(resp, limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[: limit - (size - len(chunk))])
                break
            raise _too_large(resp, limit, what)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(resp: aiohttp.ClientResponse, limit: int, what: str) -> TransportError:
    mib = limit / (1024 * 1024)
    label = f"{mib:g} MiB" if mib >= 1 else f"{limit} bytes"
    return TransportError(
        f"{what or resp.method + ' ' + errormap.redact(str(resp.url))}: the registry's answer "
        f"is larger than the {label} limit",
        hint="a manifest this large is refused by most registries: check the reference",
    )


_CLEAR_QUERY = frozenset({
    "service", "scope", "account", "client_id", "grant_type", "offline_token", "n", "last",
    "digest", "mount", "from", "tag",
})
"""Query parameters shown as they are in debug logs; any other value is ``[redacted]``
(tokens, signatures of pre-signed storage URLs, upload state)."""
_SECRET_NAME = re.compile(r"auth|token|secret|passw|cookie|signature|credential|api-?key",
                          re.IGNORECASE)
"""Header names whose values are credentials (``Authorization``, ``X-Registry-Auth``,
``X-Amz-Security-Token``, ``Cookie``, ``Set-Cookie``); ``WWW-Authenticate`` is shown with
its URLs redacted."""
_QUOTED_URL = re.compile(r'"(https?://[^"]*)"')


def debug_url(url: str) -> str:
    """``url`` for a debug log: no user info; the query kept, every value not in
    :data:`_CLEAR_QUERY` replaced by ``[redacted]``."""
    parts = urllib.parse.urlsplit(_without_user_info(url))
    if not parts.query:
        return parts.geturl()
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(
        f"{urllib.parse.quote(k)}="
        + (urllib.parse.quote(v, safe=":/,") if k.lower() in _CLEAR_QUERY else "[redacted]")
        for k, v in pairs
    )
    return parts._replace(query=query).geturl()


def redacted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for a debug log, credentials replaced by ``[redacted]`` (their scheme kept:
    ``Bearer [redacted]``): every header whose name says credential (see
    :data:`_SECRET_NAME`), secret query values of URLs (``Location``, a challenge's realm),
    user info in URLs. A header sent twice (``Set-Cookie``) appears once, redacted."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower == "www-authenticate":
            value = _QUOTED_URL.sub(lambda m: f'"{debug_url(m.group(1))}"', value)
        elif lower in _SECRET_HEADERS or _SECRET_NAME.search(lower):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} [redacted]".strip()
        elif lower in _URL_HEADERS:
            value = debug_url(value)
        out[name] = _USER_INFO.sub("[redacted]@", value)
    return out


def _redacted_headers(headers: Mapping[str, str]) -> str:
    """:func:`redacted_headers` as ``Name: value; ...``."""
    return "; ".join(f"{k}: {v}" for k, v in redacted_headers(headers).items())


def _log_exchange(method: str, url: str, headers: Mapping[str, str],
                  resp: aiohttp.ClientResponse, seconds: float) -> None:
    """One debug line per exchange: request, status, time, headers (redacted); a redirect
    followed shows where the answer came from (its query redacted). The record carries the
    same as fields (``event`` ``http``) for JSON logs."""
    final = str(resp.url)
    via = f" (redirected to {debug_url(final)})" if resp.history else ""
    shown = debug_url(url)
    log.debug(
        "%s %s -> %d%s in %.3f s; sent {%s}; got {%s}", method, shown,
        resp.status, via, seconds, _redacted_headers(headers),
        _redacted_headers(resp.headers),
        extra={"event": "http", "fields": {
            "method": method, "url": shown, "status": resp.status,
            "redirected_to": debug_url(final) if resp.history else None,
            "duration_s": round(seconds, 4),
            "request_headers": redacted_headers(headers),
            "response_headers": redacted_headers(resp.headers),
        }},
    )


def _signal(resp: Response) -> Signal:
    """The throttle signal of a finished answer (status, headers, error codes of its body;
    see :func:`~manyfest.transport.throttle.signal_of`)."""
    return signal_of(resp.status, resp.headers, resp.body,
                     {d.code for d in errormap.error_details(resp.body, resp.headers)})


__all__ = ["MANIFEST_LIMIT", "MAX_BODY", "BlobStream", "Transport"]
