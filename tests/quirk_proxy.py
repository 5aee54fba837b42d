"""A programmable HTTP proxy in front of the real registry that bends its answers.

It forwards every request to the upstream registry and rewrites absolute ``Location``
headers and the token ``realm`` so clients never go around it. Quirks are small functions
registered on the proxy; each sees the request and may answer instead of the registry
(``before``) or change the registry's answer (``after``). It runs in its own thread with its
own event loop, so synchronous tests and CLI subprocesses can use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.ratelimit import (
    HOP_HEADERS,
    Bucket,
    Policy,
    Refusal,
    Storm,
    ecr_rate_exceeded,
    forward,
    html_429,
    oci_error,
    refusal_response,
    throttling_exception,
)
from tests.registry_server import free_port

Before = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
After = Callable[[web.Request, web.Response], Awaitable[web.Response]]


@dataclass
class QuirkProxy:
    """Proxy on ``127.0.0.1:<port>`` in front of ``upstream`` (host:port, plain HTTP)."""

    upstream: str
    port: int = field(default_factory=free_port)
    before: list[Before] = field(default_factory=list)
    after: list[After] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    """Answers the registry gave to streamed requests: ``"<method> <path?query> <status>"``."""
    streaming: bool = False
    """Forward blob bodies chunk by chunk (both ways) instead of reading them whole: for
    big layers, when no ``after`` hook needs the whole answer."""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry name clients use."""
        return f"127.0.0.1:{self.port}"

    def count(self, method: str, fragment: str = "") -> int:
        """Requests seen with ``method`` whose path (with query) contains ``fragment``."""
        return sum(n for key, n in self.seen.items()
                   if key.startswith(method + " ") and fragment in key)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen[f"{request.method} {request.path_qs}"] += 1
        self.in_flight += 1
        try:
            for quirk in self.before:
                answer = await quirk(request)
                if answer is not None:
                    return answer
            if self.streaming and not self.after and "/blobs/" in request.path:
                return await self.forward_stream(request)
            response = await self.forward(request)
            for hook in self.after:
                response = await hook(request, response)
            return response
        finally:
            self.in_flight -= 1

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Wait until no request is being handled (e.g. after its client was killed, a
        request already sent may still reach the registry)."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy still handles {self.in_flight} requests")
            time.sleep(0.01)

    async def forward(self, request: web.Request, *, query: str | None = None) -> web.Response:
        """Send ``request`` to the registry (optionally with another query string); see
        :func:`tests.ratelimit.forward`."""
        assert self._session is not None
        return await forward(self._session, self.upstream, self.host, request, query=query)

    async def forward_stream(
        self, request: web.Request, *, transform: Callable[[int, bytes], bytes] | None = None,
        pause: float = 0,
    ) -> web.StreamResponse:
        """Send ``request`` to the registry streaming both bodies (never held whole).

        ``transform(offset, chunk)`` may change each chunk of the answer's body (``offset``:
        bytes of the body before this chunk), e.g. to corrupt a blob. ``pause``: seconds
        waited before passing on each 64 KiB of the request's body (a slow link).
        """
        assert self._session is not None
        qs = request.query_string
        url = f"http://{self.upstream}{request.path}" + (f"?{qs}" if qs else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}

        async def paced() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(1 << 16):
                await asyncio.sleep(pause)
                yield chunk

        data: object = None
        if request.body_exists:
            data = paced() if pause else request.content
        async with self._session.request(request.method, url, headers=headers, data=data,
                                         allow_redirects=False) as up:
            self.answered[f"{request.method} {request.path_qs} {up.status}"] += 1
            out = {k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}
            for name in ("Location", "WWW-Authenticate"):
                if name in out:
                    out[name] = out[name].replace(self.upstream, self.host)
            response = web.StreamResponse(status=up.status, headers=out)
            if up.content_length is not None:
                response.content_length = up.content_length
            await response.prepare(request)
            if request.method != "HEAD":
                offset = 0
                async for chunk in up.content.iter_chunked(1 << 16):
                    if transform is not None:
                        chunk = transform(offset, chunk)
                    offset += len(chunk)
                    await response.write(chunk)
            await response.write_eof()
        return response

    def start(self) -> QuirkProxy:
        """Serve in a background thread until :meth:`stop`."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                self._session = aiohttp.ClientSession(auto_decompress=False)
                app = web.Application(client_max_size=1024**3)
                app.router.add_route("*", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app)
                await self._runner.setup()
                await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
                ready.set()

            loop.run_until_complete(boot())
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("quirk proxy did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None


# ---------------------------------------------------------------------- quirks


def mount_answers_202(proxy: QuirkProxy) -> Before:
    """Every cross-repository mount opens an upload session instead (202), as ECR Public."""

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "POST" and "mount" in request.query:
            return await proxy.forward(request, query="")
        return None

    return quirk


def too_many_requests(times: int, retry_after: str = "1", match: str = "") -> Before:
    """The first ``times`` requests whose path contains ``match`` get 429 + Retry-After."""
    left = [times]

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if left[0] > 0 and match in request.path_qs and request.path != "/v2/":
            left[0] -= 1
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            return web.Response(status=429, body=body, headers={
                "Retry-After": retry_after, "Content-Type": "application/json"})
        return None

    return quirk


def head_not_allowed() -> Before:
    """HEAD on manifests answers 405 Method Not Allowed."""

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "HEAD" and "/manifests/" in request.path:
            return web.Response(status=405)
        return None

    return quirk


def drop_digest_header() -> After:
    """Answers come without Docker-Content-Digest."""

    async def hook(request: web.Request, response: web.Response) -> web.Response:
        response.headers.popall("Docker-Content-Digest", None)
        return response

    return hook


def manifest_not_seen_yet(times: int, code: str = "MANIFEST_BLOB_UNKNOWN") -> Before:
    """The first ``times`` manifest PUTs are refused as if a referenced blob were missing
    (another process re-linking it, or an eventually consistent store)."""
    left = [times]

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and "/manifests/" in request.path and left[0] > 0:
            left[0] -= 1
            await request.read()
            body = f'{{"errors":[{{"code":"{code}","message":"blob unknown to registry"}}]}}'
            return web.Response(status=400, body=body.encode(),
                                headers={"Content-Type": "application/json"})
        return None

    return quirk


# ---------------------------------------------------------------------- throttling
# Built on tests/ratelimit.py (the same policies the throttling benchmark runs as a
# process). Each helper returns the policy: its ``counts`` say what the proxy let through and
# what it refused (``counts.throttles``: throttle answers sent; ``counts.refused``: those
# and the 503s without Retry-After).


def throttle(proxy: QuirkProxy, policy: Policy) -> Policy:
    """Put ``policy`` in front of the registry: a request it refuses gets its
    :class:`~tests.ratelimit.Refusal`; a forwarded one is counted by the registry's
    status. Every answer gets the policy's extra headers (``RateLimit-*``)."""

    async def before(request: web.Request) -> web.StreamResponse | None:
        refusal = policy.check(request.method, request.path_qs)
        if refusal is None:
            return None
        await request.read()
        return refusal_response(refusal, request.method, policy.extra_headers())

    async def after(request: web.Request, response: web.Response) -> web.Response:
        policy.forwarded(response.status)
        response.headers.update(policy.extra_headers())
        return response

    proxy.before.insert(0, before)
    proxy.after.append(after)
    return policy


def token_bucket(proxy: QuirkProxy, rate: float, burst: float | None = None, *,
                 answer: str = "seconds", remaining: bool = False) -> Bucket:
    """A token bucket of ``rate`` requests/s (burst default ``rate``); an empty bucket
    answers 429 as ``answer`` says (see :class:`~tests.ratelimit.Bucket`)."""
    policy = Bucket(rate, burst, answer=answer, remaining=remaining)
    throttle(proxy, policy)
    return policy


def body_hint(proxy: QuirkProxy, rate: float, burst: float | None = None) -> Bucket:
    """A token bucket whose 429 writes the wait in the JSON body only (GitHub's
    ``retry-after: 12.5ms, allowed: N/minute``), no Retry-After header."""
    return token_bucket(proxy, rate, burst, answer="body-hint")


def storm(proxy: QuirkProxy, every_429: int = 4, every_503: int = 5, *,
          answer: Callable[[], Refusal] | None = None, match: str = "",
          limit: int | None = None) -> Storm:
    """Count-based: every ``every_429``-th request a throttle answer (default text/plain 429,
    Retry-After an HTTP date ~1 s ahead), every other ``every_503``-th a 503 without
    Retry-After (see :class:`~tests.ratelimit.Storm`)."""
    policy = Storm(every_429, every_503, throttle_answer=answer, match=match, limit=limit)
    throttle(proxy, policy)
    return policy


def html_storm(proxy: QuirkProxy, every: int = 3) -> Storm:
    """Every ``every``-th request gets nginx's HTML 429 page (``Retry-After: 1``)."""
    return storm(proxy, every, 0, answer=lambda: html_429("1"))


def ecr_storm(proxy: QuirkProxy, every: int = 3) -> Storm:
    """Every ``every``-th request gets ECR's 429 ``TOOMANYREQUESTS: Rate exceeded`` (no
    Retry-After)."""
    return storm(proxy, every, 0, answer=ecr_rate_exceeded)


def throttling_exception_storm(proxy: QuirkProxy, every: int = 3) -> Storm:
    """Every ``every``-th request gets an AWS ``ThrottlingException`` (400, ``Rate
    exceeded``)."""
    return storm(proxy, every, 0, answer=throttling_exception)


def unavailable(proxy: QuirkProxy, times: int, match: str = "") -> Storm:
    """The first ``times`` requests whose path contains ``match`` get 503 without
    Retry-After."""
    return storm(proxy, 0, 1, match=match, limit=times)


def endless_429(proxy: QuirkProxy, message: str = "rate limit exceeded, try again later"
                ) -> Storm:
    """Every request, forever: 429 TOOMANYREQUESTS (JSON body with ``message``),
    ``Retry-After: 1``."""
    return storm(proxy, 1, 0, answer=lambda: oci_error(429, "TOOMANYREQUESTS", message, "1"))


def oversized_manifest(path: str, size: int, *, chunked: bool = False) -> Before:
    """GET/HEAD of the manifest at ``path`` (``/v2/<repository>/manifests/<tag>``) answers a
    valid Docker image manifest of more than ``size`` bytes (its layer list padded), with its
    ``Docker-Content-Digest``; ``chunked``: sent without Content-Length, in 64 KiB pieces."""
    layers = []
    body = b""
    while len(body) <= size:
        for i in range(len(layers), len(layers) + 2000):
            layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                           "size": 1024 + i, "digest": "sha256:" + hashlib.sha256(
                               str(i).encode()).hexdigest()})
        body = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": 2, "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()},
            "layers": layers,
        }, indent=3).encode()
    headers = {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
               "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.path != path or request.method not in ("GET", "HEAD"):
            return None
        if not chunked:
            return web.Response(status=200, body=body, headers=headers)
        response = web.StreamResponse(status=200, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method == "GET":
            for start in range(0, len(body), 1 << 16):
                await response.write(body[start:start + (1 << 16)])
        await response.write_eof()
        return response

    return quirk


def corrupt_blob(proxy: QuirkProxy, digest: str) -> Before:
    """GETs of blob ``digest`` answer the registry's bytes with the first byte flipped
    (same length, streamed): a source whose content does not match its digest."""

    def flip(offset: int, chunk: bytes) -> bytes:
        if offset == 0 and chunk:
            return bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        return chunk

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "GET" and request.path.endswith(f"/blobs/{digest}"):
            return await proxy.forward_stream(request, transform=flip)
        return None

    return quirk


class Hold:
    """A quirk that holds requests matching ``method`` and ``fragment`` until released.

    ``held`` is set (a :class:`threading.Event`, for synchronous tests) when the first
    matching request arrives; every matching request waits at the proxy until
    :meth:`release`, then goes on to the registry. So a test can signal a client while a
    request (e.g. a manifest PUT) is in flight.
    """

    def __init__(self, proxy: QuirkProxy, method: str, fragment: str) -> None:
        self.proxy = proxy
        self.method = method
        self.fragment = fragment
        self.held = threading.Event()
        self.count = 0
        self._released = False
        self._event: asyncio.Event | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method != self.method or self.fragment not in request.path_qs:
            return None
        if self._event is None:
            self._event = asyncio.Event()
        self.count += 1
        self.held.set()
        if not self._released:
            await self._event.wait()
        return None

    def wait_held(self, timeout: float = 120) -> None:
        """Block until a matching request is held (a hang guard, not a timing assumption)."""
        if not self.held.wait(timeout):
            raise AssertionError(f"no {self.method} *{self.fragment}* request reached the proxy")

    def release(self) -> None:
        """Let every held (and later) matching request through."""
        self._released = True
        loop = self.proxy._loop
        event = self._event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)


def slow_upload(proxy: QuirkProxy, digest: str, pause: float) -> Before:
    """The upload PUT of blob ``digest`` reaches the registry ``pause`` seconds per 64 KiB
    later (a slow link: the whole upload takes at least size / 64 KiB * pause seconds)."""
    hex_digest = digest.partition(":")[2]

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and hex_digest in request.query_string:
            return await proxy.forward_stream(request, pause=pause)
        return None

    return quirk


# ---------------------------------------------------------------------- immutable tags

TagRefusal = Callable[[str, str], tuple[int, dict[str, str], bytes]]
"""``(repository, tag) -> (status, headers, body)``: a registry's answer to a manifest PUT
that would move an immutable tag."""

_MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


def ecr_immutable(repository: str, tag: str) -> tuple[int, dict[str, str], bytes]:
    """Amazon ECR, ``imageTagMutability: IMMUTABLE``: ``400``, code ``TAG_INVALID`` (docker
    prints it as ``tag invalid: ...``), the message ECR writes (reported by buildkit#3776,
    containers-roadmap#862, kaniko#204; "the repository is immutable" in older answers)."""
    message = (f"The image tag '{tag}' already exists in the '{repository}' repository and "
               "cannot be overwritten because the tag is immutable.")
    body = json.dumps({"errors": [{"code": "TAG_INVALID", "message": message}]})
    return 400, {"Content-Type": "application/json; charset=utf-8"}, body.encode()


def harbor_immutable(repository: str, tag: str) -> tuple[int, dict[str, str], bytes]:
    """Harbor's tag immutability rules: ``412 Precondition Failed``, code ``PRECONDITION``,
    the message of Harbor's immutable middleware (``ErrImmutable``), sent with Go's
    ``http.Error`` (``text/plain`` although the body is the OCI JSON error). Harbor's
    repository names in it are without the project."""
    name = repository.split("/", 1)[-1]
    message = f"Failed to process request due to '{name}:{tag}' configured as immutable."
    body = json.dumps({"errors": [{"code": "PRECONDITION", "message": message}]})
    return 412, {"Content-Type": "text/plain; charset=utf-8"}, body.encode()


@dataclass
class ImmutableTags:
    """A ``before`` quirk: a manifest PUT by tag in ``repositories`` (every repository when
    empty) is answered with ``answer`` when the tag already exists with another digest
    (``same_too``: with any digest, as Harbor refuses even the same manifest), after one
    HEAD of the tag at the registry. Refused PUTs are counted in :attr:`refused`
    (``repository:tag``)."""

    proxy: QuirkProxy
    answer: TagRefusal = ecr_immutable
    repositories: tuple[str, ...] = ()
    same_too: bool = False
    refused: list[str] = field(default_factory=list)

    async def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method != "PUT" or "/manifests/" not in request.path:
            return None
        name, ref = request.path.removeprefix("/v2/").rsplit("/manifests/", 1)
        if ref.startswith("sha256:") or (self.repositories and name not in self.repositories):
            return None
        body = await request.read()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert self.proxy._session is not None
        async with self.proxy._session.head(
                f"http://{self.proxy.upstream}/v2/{name}/manifests/{ref}",
                headers={"Accept": _MANIFEST_ACCEPT}) as up:
            held = up.headers.get("Docker-Content-Digest", "") if up.status == 200 else ""
        if not held or (held == digest and not self.same_too):
            return None
        self.refused.append(f"{name}:{ref}")
        status, headers, data = self.answer(name, ref)
        return web.Response(status=status, headers=headers, body=data)


@dataclass
class ManifestPuts:
    """A ``before`` quirk that records every manifest PUT as ``(repository, reference,
    Content-Type)`` and lets it through."""

    puts: list[tuple[str, str, str]] = field(default_factory=list)

    async def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and "/manifests/" in request.path:
            name, ref = request.path.removeprefix("/v2/").rsplit("/manifests/", 1)
            self.puts.append((name, ref, request.headers.get("Content-Type", "")))
        return None

    def by_tag(self, *, lists: bool) -> list[tuple[str, str, str]]:
        """The PUTs by tag (not by digest) of lists (``lists``) or of other manifests."""
        list_types = ("application/vnd.oci.image.index.v1+json",
                      "application/vnd.docker.distribution.manifest.list.v2+json")
        return [p for p in self.puts if not p[1].startswith("sha256:")
                and (p[2] in list_types) == lists]
