"""The only module that touches aiohttp: one session, per-registry state, auth, retries.

For each registry (host[:port] as written in references) the transport keeps:

* the scheme, decided once by the ping (``GET /v2/``, distribution-spec "Determining
  support"): ``https`` with verification; for insecure registries ``https`` without
  verification, falling back to ``http`` when the TLS handshake fails in any way (docker's
  ``--insecure``) unless plain HTTP fails too or shows the port speaks only TLS (then the TLS
  failure is the error, e.g. a client certificate required). Once decided, every request to
  that registry (token realm and ``Location`` URLs on the same host included) uses it. TLS
  failures raise a one-line :class:`~manyfest.errors.CertificateError` saying what to do
  (CA or client certificate in certs.d, ``--insecure`` for a plain-HTTP registry).
* the auth challenge from the ping (``Basic`` or ``Bearer``) and the credentials from
  config.json; bearer tokens are cached per scope set and refreshed before they expire or
  after a 401.
* an ``anyio.CapacityLimiter`` of ``Settings.concurrency`` tokens, held only around one HTTP
  exchange; backoff sleeps happen outside it.

Retries (stamina): 408, 429 (honouring ``Retry-After`` in seconds or HTTP-date), 500, 502,
503, 504 and connection errors (the ping and token requests included); never 401/403/404.
When the tries are used up the last :class:`~manyfest.errors.ManyfestError` is raised.
"""

from __future__ import annotations

import base64
import contextvars
import email.utils
import ipaddress
import logging
import os
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec
import stamina

from manyfest._version import __version__
from manyfest.auth import challenge as challenges
from manyfest.auth.config import ANONYMOUS, Credentials, DockerConfig
from manyfest.auth.tokens import Scopes, TokenCache, scope
from manyfest.errors import (
    AuthenticationError,
    AuthorizationError,
    CertificateError,
    ErrorDetail,
    ManifestRejectedError,
    ManyfestError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    TransportError,
)
from manyfest.reference import DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_AUTH_KEY
from manyfest.transport.settings import Settings

log = logging.getLogger(__name__)
# stamina logs each scheduled retry at WARNING ("stamina.retry_scheduled", details only in
# `extra`); without a handler Python's last-resort handler would print it on stderr, next to
# the CLI's one-line errors. Shown when the application configures logging (--debug).
logging.getLogger("stamina").addHandler(logging.NullHandler())

MAX_BODY = 100 * 1024 * 1024
"""Largest response body read whole, in bytes, unless a request names a smaller limit."""
MANIFEST_LIMIT = 4 * 1024 * 1024
"""Largest manifest body read (distribution-spec: registries SHOULD accept at least 4 MiB)."""
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_USER_AGENT = f"manyfest/{__version__}"


@dataclass(slots=True)
class RequestStats:
    """Requests and retries attributed to one unit of work (a list, a command).

    The transport adds to the ``RequestStats`` found in :data:`current_stats` when a request
    is sent; tasks started from a task inherit it (contextvars).
    """

    requests: int = 0
    retries: int = 0


current_stats: contextvars.ContextVar[RequestStats | None] = contextvars.ContextVar(
    "manyfest_request_stats", default=None
)
"""The :class:`RequestStats` that requests made in this context are counted in."""


@dataclass(frozen=True, slots=True)
class Response:
    """A finished HTTP exchange: status, headers (case-insensitive) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class _Retryable(Exception):
    """Internal: an answer or failure worth another try (carries the final error)."""

    def __init__(self, error: ManyfestError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


@dataclass(slots=True)
class _RegistryState:
    registry: str
    api_host: str
    insecure: bool
    limiter: anyio.Semaphore
    make_tls: Callable[[], ssl.SSLContext]
    scheme: str | None = None
    challenge: challenges.Challenge | None = None
    credentials: Credentials | None = None
    ping_lock: anyio.Lock = field(default_factory=anyio.Lock)
    creds_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _tls: ssl.SSLContext | None = None

    def pinged(self) -> bool:
        return self.scheme is not None

    def creds(self) -> Credentials:
        """The credentials looked up so far (anonymous before any lookup)."""
        return self.credentials or ANONYMOUS

    def tls(self) -> ssl.SSLContext:
        """The registry's TLS context (verifying unless insecure), made on first use."""
        if self._tls is None:
            self._tls = self.make_tls()
        return self._tls

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        return False if self.scheme == "http" else self.tls()


class Transport:
    """One aiohttp session for a whole run, shared by every registry client.

    Use as ``async with Transport(settings) as transport:``.

    Args:
        settings: see :class:`Settings`.
        docker_config: credentials source (default: config.json of ``$DOCKER_CONFIG``).
    """

    def __init__(self, settings: Settings | None = None, docker_config: DockerConfig | None = None):
        self.settings = settings or Settings()
        self._docker_config = docker_config
        self._session: aiohttp.ClientSession | None = None
        self._states: dict[str, _RegistryState] = {}
        self._tokens = TokenCache(self._fetch_token)
        self._proxies: dict[str, str | None] = {}
        self.total = RequestStats()

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
                limiter=anyio.Semaphore(
                    self.settings.concurrency_for(registry), fast_acquire=True
                ),
                make_tls=partial(self._ssl_context, registry, verify=not insecure),
            )
            self._states[registry] = state
        return state

    def _ssl_context(self, registry: str, *, verify: bool) -> ssl.SSLContext:
        """A TLS context with the CAs and client certificates of certs.d/<registry>/.

        A verifying context trusts the system CAs plus certs.d's ``*.crt``; a non-verifying
        one (insecure registries) loads no CA at all (loading the system store costs ~50 ms).
        """
        if verify:
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        directory = self.settings.certs_dir / registry
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                try:
                    if path.suffix == ".crt":
                        ctx.load_verify_locations(cafile=str(path))
                    elif path.suffix == ".cert":
                        key = path.with_suffix(".key")
                        if not key.exists():
                            raise CertificateError(
                                f"missing key {key.name} for client certificate {path}",
                                hint=f"put the client key beside it as {key}",
                            )
                        ctx.load_cert_chain(str(path), str(key))
                    elif path.suffix == ".key" and not path.with_suffix(".cert").exists():
                        raise CertificateError(
                            f"missing client certificate {path.with_suffix('.cert').name} "
                            f"for key {path}",
                            hint="put the client certificate beside it",
                        )
                except (ssl.SSLError, OSError) as exc:
                    # ssl.SSLError is an OSError: a file that is unreadable or not PEM.
                    raise CertificateError(
                        f"cannot load {path}: {_describe(exc)}",
                        hint=f"fix or remove {path} (*.crt: CA certificates in PEM; "
                        "*.cert + *.key: a client certificate and its key in PEM)",
                    ) from exc
        return ctx

    def _proxy(self, url: str) -> str | None:
        """:func:`_proxy_for`, computed once per scheme and host for this transport."""
        scheme, _, rest = url.partition("://")
        key = f"{scheme}://{rest.split('/', 1)[0]}"
        if key not in self._proxies:
            self._proxies[key] = _proxy_for(url)
        return self._proxies[key]

    def scheme_of(self, registry: str) -> str | None:
        """The scheme decided for ``registry`` by its ping (``None`` before the ping)."""
        state = self._states.get(registry)
        return state.scheme if state else None

    async def _ensure_pinged(self, state: _RegistryState) -> None:
        if state.pinged():
            return
        async with state.ping_lock:
            if state.pinged():
                return
            await self._ping(state)

    async def _credentials(self, state: _RegistryState) -> Credentials:
        """The registry's credentials, looked up the first time it asks for them.

        Only a registry that challenges gets a lookup, so a broken config.json or credential
        helper never stops an anonymous registry (docker only warns there too).
        """
        if state.credentials is not None:
            return state.credentials
        async with state.creds_lock:  # one lookup (helper run) however many requests wait
            if state.credentials is None:
                key = DOCKER_HUB_AUTH_KEY if state.registry == DOCKER_HUB else state.registry
                config = self._docker_config or DockerConfig()
                self._docker_config = config
                state.credentials = await config.credentials(key)
            return state.credentials

    async def _ping(self, state: _RegistryState) -> None:
        """``GET /v2/``: decide the scheme and read the auth challenge.

        An insecure registry whose TLS handshake fails is asked again in plain HTTP; if
        nothing answers in plain HTTP, or the answer shows that the port speaks only TLS
        (Go's ``400 Client sent an HTTP request to an HTTPS server``: e.g. the registry
        requires a client certificate), the TLS failure is reported, not the plain-HTTP one.
        """
        try:
            resp = await self._ping_exchange(
                state, "https", state.tls()
            )
            state.scheme = "https"
        except _TLSFailure as exc:
            if not state.insecure:
                raise self._tls_error(state.registry, exc.cause) from exc.cause
            log.debug("TLS handshake with %s failed (%s); trying plain HTTP", state.registry, exc)
            try:
                resp = await self._ping_exchange(state, "http", False)
            except TransportError as http_exc:
                # Nothing answered in plain HTTP either: the TLS failure says more. (An HTTP
                # answer that stays an error, e.g. 503 after the retries, is raised as is.)
                log.debug("plain HTTP to %s failed too: %s", state.registry, http_exc)
                raise self._tls_error(state.registry, exc.cause) from exc.cause
            if resp.status == 400 and _HTTPS_ONLY in resp.body:
                raise self._tls_error(state.registry, exc.cause) from exc.cause
            state.scheme = "http"
        if resp.status == 401:
            state.challenge = challenges.parse(resp.headers.get("WWW-Authenticate", ""))
        elif resp.status not in (200, 404):
            # 404: some registries don't serve /v2/ but work (distribution-spec allows it).
            raise _registry_error(f"ping {state.registry}", "GET", resp)

    async def _ping_exchange(
        self, state: _RegistryState, scheme: str, ssl_ctx: ssl.SSLContext | bool
    ) -> Response:
        """One ping (``GET <scheme>://host/v2/``), retried on connection errors and 5xx.

        Raises:
            _TLSFailure: the TLS handshake failed (never retried).
            TransportError, RegistryError: still failing after the retries.
        """
        what = f"ping {state.registry}"

        async def attempt() -> Response:
            resp = await self._exchange(
                state,
                "GET",
                f"{scheme}://{state.api_host}/v2/",
                {},
                None,
                ssl_ctx=ssl_ctx,
                handshake=True,
            )
            if resp.status in _RETRY_STATUS:
                raise _Retryable(_registry_error(what, "GET", resp), _retry_after(resp))
            return resp

        return await self._with_retries(attempt)

    def _tls_error(self, registry: str, cause: BaseException) -> CertificateError:
        """A one-line error for a failed TLS handshake with ``registry``, saying what to do."""
        return _tls_error(registry, cause, self.settings.certs_dir / registry)

    # ---------------------------------------------------------------- one exchange

    async def _exchange(
        self,
        state: _RegistryState,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | None,
        *,
        ssl_ctx: ssl.SSLContext | bool,
        params: Mapping[str, str] | None = None,
        handshake: bool = False,
        limit: int = MAX_BODY,
        what: str = "",
    ) -> Response:
        """Send one request under the registry's limiter; read the body (``limit`` bytes at most).

        ``handshake``: this is the first request to the registry (the ping), so a connection
        closed before any answer counts as a failed TLS handshake; later, it is a retryable
        connection error (e.g. a keep-alive connection the server closed).
        """
        stats = current_stats.get()
        if stats is not None:
            stats.requests += 1
        self.total.requests += 1
        proxy = self._proxy(url)
        async with state.limiter:
            try:
                async with self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    params=params,
                    ssl=ssl_ctx,
                    allow_redirects=method in ("GET", "HEAD"),
                    proxy=proxy,
                ) as resp:
                    body = b"" if method == "HEAD" else await _read_body(resp, limit, what)
                    return Response(resp.status, resp.headers, body, str(resp.url))
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                tls_failed = isinstance(exc, aiohttp.ClientSSLError) or (
                    url.startswith("https://") and _tls_cause(exc, handshake=handshake)
                )
                if tls_failed:
                    # No HTTP request happened: the TLS handshake failed.
                    if stats is not None:
                        stats.requests -= 1
                    self.total.requests -= 1
                    raise _TLSFailure(exc) from exc
                if isinstance(exc, TimeoutError):
                    error = TransportError(
                        f"{method} {_redact(url)}: no complete answer within "
                        f"{self.settings.read_timeout:g} s",
                        hint="check that the registry is up; if it is only slow, raise "
                        "read_timeout in the configuration file",
                    )
                else:
                    error = TransportError(f"{method} {_redact(url)}: {_describe(exc)}")
                raise _Retryable(error) from exc

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
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        limit: int = MAX_BODY,
    ) -> Response:
        """One registry request, with auth, retries and error mapping.

        Args:
            method: HTTP method.
            registry: host[:port] as in references (``docker.io`` for Docker Hub).
            path: ``/v2/...`` path, or an absolute URL (a ``Location`` the registry gave).
            what: what this request does, for error messages (e.g. ``"push a/b:1"``).
            scopes: token scopes this request needs (``repository:a/b:pull`` ...).
            headers: extra request headers.
            data: request body.
            params: query parameters.
            ok: statuses returned rather than raised.
            limit: largest body read, in bytes (:data:`MANIFEST_LIMIT` for manifests).

        Returns:
            The :class:`Response` (status in ``ok``).

        Raises:
            RegistryError: the registry answered another status (subclass by status).
            TransportError: the registry could not be reached (after retries).
            CertificateError: TLS verification failed.
        """
        state = self._state(registry)
        await self._ensure_pinged(state)
        call = _Call(
            state, method, self._url(state, path), headers, data, params, scopes, limit, what
        )
        return await self._with_retries(lambda: self._attempt(call, ok, what))

    async def _with_retries(self, attempt: Callable[[], Awaitable[Response]]) -> Response:
        """Run ``attempt``; retry it while it raises :class:`_Retryable`.

        The first try runs outside stamina (most exchanges succeed at once); the retries wait
        the failure's ``Retry-After``, else an exponential backoff with jitter, and are
        counted in :data:`current_stats` and :attr:`total`. When the tries are used up the
        last error itself is raised (the internal wrapper never leaks).
        """
        try:
            return await attempt()
        except _Retryable as first:
            failure = first
        if self.settings.retry_attempts <= 1:
            raise failure.error from failure.__cause__
        try:
            async for retry in stamina.retry_context(
                on=_retry_hook,
                attempts=self.settings.retry_attempts - 1,
                timeout=None,
                wait_initial=0.25,
                wait_max=self.settings.retry_max_wait,
                wait_jitter=0.25,
            ):
                with retry:
                    if retry.num == 1:
                        # The first failure's wait (Retry-After, else the initial backoff).
                        await anyio.sleep(0.25 if failure.wait is None else failure.wait)
                    stats = current_stats.get()
                    if stats is not None:
                        stats.retries += 1
                    self.total.retries += 1
                    return await attempt()
        except _Retryable as exc:
            raise exc.error from exc.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, call: _Call, ok: tuple[int, ...], what: str) -> Response:
        """One try: the answer when its status is in ``ok``; else a (retryable) error."""
        resp = await self._authorized(call)
        if resp.status in ok:
            return resp
        if resp.status in _RETRY_STATUS:
            raise _Retryable(_registry_error(what, call.method, resp), _retry_after(resp))
        error = _registry_error(what, call.method, resp)
        if resp.status == 401:
            error = self._unauthorized(call.state, what, resp, error)
        raise error

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
            and not state.creds().anonymous
        ):
            who = f"user {state.creds().username!r}" if state.creds().username else (
                "your account"
            )
            # Registries list scopes and actions in any order: sort them for a stable line.
            scopes = chal.params.get("scope", "").split()
            asked = ", ".join(sorted(_normal_scope(s) for s in scopes))
            return AuthorizationError(
                what,
                status=resp.status,
                method=error.method,
                url=error.url,
                errors=error.errors,
                hint=f"{who} was not granted all of the access asked for"
                + (f" ({asked})" if asked else "")
                + f": ask for it, or log in as another user with {_login_command(state.registry)}",
            )
        error.hint = self._login_hint(state)
        return error

    def _login_hint(self, state: _RegistryState) -> str:
        """What to do about a 401: log in to this registry, or fix its credentials."""
        config = self._docker_config.path if self._docker_config else "config.json"
        key = DOCKER_HUB_AUTH_KEY if state.registry == DOCKER_HUB else state.registry
        login = _login_command(state.registry)
        if state.creds().anonymous:
            return f"no credentials for {key} in {config}: log in with {login}"
        return f"the credentials for {key} were refused: log in again with {login}"

    async def _authorized(self, call: _Call) -> Response:
        """Send with credentials; on a 401 re-authenticate once and resend."""
        state = call.state
        auth, token = await self._authorization(state, call.scopes)
        resp = await self._send(call, auth)
        if resp.status != 401:
            return resp
        new = challenges.parse(resp.headers.get("WWW-Authenticate", ""))
        if new is not None:
            state.challenge = new
        if token is not None:
            self._tokens.invalidate(state.registry, call.scopes, token)
        elif auth is not None or state.challenge is None:
            return resp
        auth, token = await self._authorization(state, call.scopes)
        if auth is None:
            return resp
        return await self._send(call, auth)

    async def _send(self, call: _Call, auth: str | None) -> Response:
        """One exchange with ``Authorization: auth`` (if any); TLS failures explained."""
        headers = dict(call.headers or {})
        if auth is not None:
            headers["Authorization"] = auth
        state = call.state
        try:
            return await self._exchange(
                state, call.method, call.url, headers, call.data, ssl_ctx=state.ssl,
                params=call.params, limit=call.limit, what=call.what,
            )
        except _TLSFailure as exc:
            raise self._tls_error(state.registry, exc.cause) from exc.cause

    async def _authorization(
        self, state: _RegistryState, scopes: Scopes
    ) -> tuple[str | None, str | None]:
        """(Authorization header value or None, bearer token used or None)."""
        chal = state.challenge
        if chal is None:
            return None, None
        creds = await self._credentials(state)
        if creds.registry_token:
            return f"Bearer {creds.registry_token}", None
        if chal.scheme == "basic":
            if creds.anonymous:
                return None, None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode(), None
        if chal.scheme == "bearer":
            token = await self._tokens.get(state.registry, scopes)
            return f"Bearer {token}", token
        return None, None

    async def _fetch_token(self, registry: str, scopes: Scopes) -> tuple[str, float]:
        """Ask the challenge's realm for a token covering ``scopes`` (token auth spec)."""
        state = self._state(registry)
        chal = state.challenge
        assert chal is not None
        if not chal.realm:
            raise AuthenticationError(
                f"{registry} asked for a bearer token without a realm",
                status=401,
                method="GET",
                url="",
            )
        realm = self._url(state, chal.realm)
        creds = await self._credentials(state)
        realm_state = self._realm_state(state, realm)
        what = f"get a token from {urllib.parse.urlsplit(realm).netloc} for {registry}"
        if creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": chal.service,
                "client_id": "manyfest",
                "scope": " ".join(sorted(scopes)),
            }
            body = urllib.parse.urlencode(form).encode()
            resp = await self._token_exchange(
                state,
                _Call(realm_state, "POST", realm,
                      {"Content-Type": "application/x-www-form-urlencoded"}, body),
                what,
            )
        else:
            query = [("service", chal.service)] if chal.service else []
            query += [("scope", s) for s in sorted(scopes)]
            headers: dict[str, str] = {}
            if creds.username or creds.password:
                raw = f"{creds.username}:{creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            resp = await self._token_exchange(state, _Call(realm_state, "GET", url, headers), what)
        try:
            answer = msgspec.json.decode(resp.body, type=_TokenAnswer)
        except msgspec.DecodeError as exc:
            raise AuthenticationError(
                f"{what}: the token server sent invalid JSON",
                status=resp.status,
                method="GET",
                url=_redact(realm),
            ) from exc
        token = answer.token or answer.access_token
        if not token:
            raise AuthenticationError(
                f"{what}: the token server sent no token",
                status=resp.status,
                method="GET",
                url=_redact(realm),
            )
        return token, float(answer.expires_in or 60)

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

        async def attempt() -> Response:
            resp = await self._send(call, None)
            if resp.status == 200:
                return resp
            if resp.status in _RETRY_STATUS:
                raise _Retryable(_registry_error(what, method, resp), _retry_after(resp))
            if resp.status in (401, 403):
                error = AuthenticationError(
                    what,
                    status=resp.status,
                    method=method,
                    url=_redact(url),
                    errors=_error_details(resp.body),
                    hint=self._login_hint(registry_state),
                )
                # RegistryError words it "registry answered"; this is the token server.
                error.message = error.message.replace(
                    f"{what}: registry answered", f"{what}: token server answered", 1
                )
                raise error
            raise _registry_error(what, method, resp)

        # A token request that keeps failing is not retried again by the request that needed
        # the token: its error goes up as is.
        return await self._with_retries(attempt)

    def _url(self, state: _RegistryState, path: str) -> str:
        """Absolute URL for ``path``; same-host absolute URLs get the registry's scheme."""
        scheme = state.scheme or "https"
        if path.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(path)
            if parts.netloc == state.api_host and parts.scheme != scheme:
                return urllib.parse.urlunsplit(parts._replace(scheme=scheme))
            return path
        return f"{scheme}://{state.api_host}{path}"


def _normal_scope(text: str) -> str:
    """``repository:<name>:<actions>`` with actions in :func:`scope` order; others as is."""
    kind, _, rest = text.partition(":")
    name, sep, actions = rest.rpartition(":")
    if kind != "repository" or not sep or not name:
        return text
    return scope(name, [a for a in actions.split(",") if a])


def _login_command(registry: str) -> str:
    """The docker command that stores credentials for ``registry``."""
    return "`docker login`" if registry == DOCKER_HUB else f"`docker login {registry}`"


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP exchange to make, perhaps more than once (retries, re-authentication)."""

    state: _RegistryState
    method: str
    url: str
    headers: Mapping[str, str] | None = None
    data: bytes | None = None
    params: Mapping[str, str] | None = None
    scopes: Scopes = frozenset()
    limit: int = MAX_BODY
    what: str = ""


class _TokenAnswer(msgspec.Struct):
    token: str = ""
    access_token: str = ""
    expires_in: int = 0


class _TLSFailure(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _ErrorBody(msgspec.Struct):
    errors: list[dict[str, Any]] = msgspec.field(default_factory=list)


def _error_details(body: bytes) -> list[ErrorDetail]:
    """OCI error details of a body (distribution-spec "Error Codes"); [] when none."""
    if not body or not body.lstrip().startswith(b"{"):
        return []
    try:
        parsed = msgspec.json.decode(body, type=_ErrorBody)
    except msgspec.DecodeError:
        return []
    details = []
    for item in parsed.errors:
        code = str(item.get("code", "") or "")
        message = str(item.get("message", "") or "")
        details.append(ErrorDetail(code, message))
    return details


def _registry_error(what: str, method: str, resp: Response) -> RegistryError:
    """Map an error answer to the exception class for its status."""
    details = _error_details(resp.body)
    codes = {d.code for d in details}
    cls: type[RegistryError] = RegistryError
    if resp.status == 401:
        cls = AuthenticationError
    elif resp.status == 403 or "DENIED" in codes:
        cls = AuthorizationError
    elif resp.status == 404:
        cls = NotFoundError
    elif resp.status == 429 or "TOOMANYREQUESTS" in codes:
        cls = RateLimitedError
    elif resp.status in (400, 413) and method == "PUT":
        cls = ManifestRejectedError
    if not details and method != "HEAD" and resp.body:
        text = resp.body[:200].decode(errors="replace").strip()
        if text:
            details = [ErrorDetail(text.splitlines()[0], "")]
    err = cls(what, status=resp.status, method=method, url=_redact(resp.url), errors=details)
    if isinstance(err, RateLimitedError):
        err.retry_after = _retry_after(resp)
    return err


async def _read_body(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body of ``resp``, at most ``limit`` bytes.

    ``StreamReader.read(n)`` returns what is buffered, not n bytes: the body is read chunk by
    chunk until the end of the stream.

    Raises:
        TransportError: the body (or its Content-Length) is larger than ``limit``.
    """
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise _too_large(resp, limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _too_large(resp, limit, what)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(resp: aiohttp.ClientResponse, limit: int, what: str) -> TransportError:
    mib = limit / (1024 * 1024)
    label = f"{mib:g} MiB" if mib >= 1 else f"{limit} bytes"
    return TransportError(
        f"{what or resp.method + ' ' + _redact(str(resp.url))}: the registry's answer is "
        f"larger than the {label} limit",
        hint="a manifest this large is refused by most registries: check the reference",
    )


def _retry_after(resp: Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP-date), or None."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, _Retryable):
        return exc.wait if exc.wait is not None else True
    return False


_E = TypeVar("_E", bound=BaseException)


def _find(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first exception of type ``kind`` it was caused by, or None."""
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            return None
        # aiohttp's wrappers subclass ssl.SSLError/CertificateError themselves, without the
        # attributes (reason, verify_message): look at what they wrap first.
        if isinstance(seen, aiohttp.ClientConnectorCertificateError):
            inner: BaseException = seen.certificate_error
            if isinstance(inner, kind):
                return inner
        elif isinstance(seen, aiohttp.ClientConnectorError) and isinstance(seen.os_error, kind):
            return seen.os_error
        if isinstance(seen, kind) and not isinstance(seen, aiohttp.ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_cause(exc: BaseException, *, handshake: bool = False) -> bool:
    """True when ``exc`` (on an https URL) is a TLS failure rather than a connection error.

    A server that closes the connection before answering counts only on the first request
    to it (``handshake``): later it is an idle keep-alive connection closed, worth a retry.
    """
    if _find(exc, ssl.SSLError) is not None:
        return True
    return handshake and isinstance(exc, aiohttp.ServerDisconnectedError)


_HTTPS_ONLY = b"HTTP request to an HTTPS server"
"""In Go's answer to a plain-HTTP request on a TLS port (``400 Client sent an HTTP request to
an HTTPS server.``)."""
_PLAIN_HTTP_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
     "UNKNOWN_PROTOCOL"}
)
"""OpenSSL reasons for a TLS handshake answered by a plain-HTTP server."""
_CLIENT_CERT_REASONS = frozenset(
    {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
     "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
     "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_REVOKED"}
)
"""OpenSSL reasons for a server refusing the client's certificate (or the lack of one)."""


def _tls_error(registry: str, cause: BaseException, certs: Path) -> CertificateError:
    """A :class:`CertificateError` that says what went wrong in the handshake and what to do.

    ``certs`` is the registry's certs.d directory (``<certs_dir>/<host:port>``).
    """
    verify = _find(cause, ssl.SSLCertVerificationError)
    if verify is not None:
        detail = verify.verify_message or _describe(verify)
        return CertificateError(
            f"TLS certificate of {registry} is not trusted: {detail}",
            hint=f"put the CA certificate that signed it in {certs / 'ca.crt'} (docker's "
            "certs.d layout), or use --insecure to skip verification",
        )
    error = _find(cause, ssl.SSLError)
    reason = str(getattr(error, "reason", "") or "")
    if reason in _PLAIN_HTTP_REASONS:
        return CertificateError(
            f"{registry} does not speak TLS: the TLS handshake got a plain-HTTP answer "
            f"({reason.lower().replace('_', ' ')})",
            hint="use --insecure to talk plain HTTP to it",
        )
    if reason in _CLIENT_CERT_REASONS:
        return CertificateError(
            f"{registry} refused the TLS handshake ({reason.lower().replace('_', ' ')}): it "
            "requires a client certificate it trusts",
            hint=f"put the client certificate and its key in {certs / 'client.cert'} and "
            f"{certs / 'client.key'} (docker's certs.d layout)",
        )
    return CertificateError(
        f"TLS connection to {registry} failed: {_describe(cause)}",
        hint=f"check the registry's TLS setup; put its CA certificate in {certs / 'ca.crt'} "
        "(docker's certs.d layout), or use --insecure to skip verification",
    )


def _describe(exc: BaseException) -> str:
    """One line for a low-level failure (no object reprs, no tracebacks)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = getattr(cert, "verify_message", "") or str(cert)
        text = f"cannot connect to {exc.host}:{exc.port}: certificate verify failed: {detail}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ssl.SSLError):
            detail = str(os_error.reason or os_error.strerror or os_error)
        elif os_error.errno:
            detail = os.strerror(os_error.errno)
        else:
            detail = str(os_error) or type(os_error).__name__
        text = f"cannot connect to {exc.host}:{exc.port}: {detail}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        text = "the server closed the connection"
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.split("@", 1)[1])
    return urllib.parse.urlunsplit(parts._replace(query=""))


def _proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from HTTP(S)_PROXY/NO_PROXY, as Go's ProxyFromEnvironment does.

    Loopback hosts never go through a proxy (Go's ``httpproxy`` rule, which docker follows).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy:
        return None
    if urllib.request.proxy_bypass_environment(parts.netloc, proxies):  # type: ignore[attr-defined]
        return None
    return proxy

