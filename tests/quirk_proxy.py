"""A programmable HTTP proxy in front of the real registry that bends its answers.

It forwards every request to the upstream registry and rewrites absolute ``Location``
headers and the token ``realm`` so clients never go around it. Quirks are small functions
registered on the proxy; each sees the request and may answer instead of the registry
(``before``) or change the registry's answer (``after``). It runs in its own thread with its
own event loop, so synchronous tests and CLI subprocesses can use it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from benchmarks.registry_server import free_port

Before = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
After = Callable[[web.Request, web.Response], Awaitable[web.Response]]
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
        "content-encoding"}


@dataclass
class QuirkProxy:
    """Proxy on ``127.0.0.1:<port>`` in front of ``upstream`` (host:port, plain HTTP)."""

    upstream: str
    port: int = field(default_factory=free_port)
    before: list[Before] = field(default_factory=list)
    after: list[After] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
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

    async def forward(self, request: web.Request, *, query: str | None = None) -> web.Response:
        """Send ``request`` to the registry (optionally with another query string)."""
        assert self._session is not None
        qs = request.query_string if query is None else query
        url = f"http://{self.upstream}{request.path}" + (f"?{qs}" if qs else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self._session.request(request.method, url, headers=headers, data=body or None,
                                         allow_redirects=False) as up:
            data = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
        for name in ("Location", "WWW-Authenticate"):
            if name in out:
                out[name] = out[name].replace(self.upstream, self.host)
        return web.Response(status=up.status, body=data if request.method != "HEAD" else None,
                            headers=out)

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
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}

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
            out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
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


def slow_upload(proxy: QuirkProxy, digest: str, pause: float) -> Before:
    """The upload PUT of blob ``digest`` reaches the registry ``pause`` seconds per 64 KiB
    later (a slow link: the whole upload takes at least size / 64 KiB * pause seconds)."""
    hex_digest = digest.partition(":")[2]

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and hex_digest in request.query_string:
            return await proxy.forward_stream(request, pause=pause)
        return None

    return quirk
