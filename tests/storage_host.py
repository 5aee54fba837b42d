"""A blob storage host on another loopback address, and the quirk that redirects blob GETs
to it (as registries backed by S3 or GCS answer ``307`` with a pre-signed URL).

Used to check what a client sends to a host that is not the registry.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field

from aiohttp import web

from tests.quirk_proxy import Before, QuirkProxy
from tests.registry_server import free_port


@dataclass(frozen=True, slots=True)
class StorageRequest:
    """One request a :class:`StorageHost` answered: method, path with query, headers."""

    method: str
    path_qs: str
    headers: dict[str, str]


@dataclass
class StorageHost:
    """A blob storage host (as S3 behind a registry) on another loopback address.

    It serves ``GET /blobs/<digest>`` from :attr:`blobs` (filled by :func:`redirect_blob_gets`)
    and records every request with its headers, so a test can check what a client sent to a
    host that is not the registry.
    """

    address: str = "127.0.0.2"
    port: int = 0
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[StorageRequest] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        """``<address>:<port>``."""
        return f"{self.address}:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            StorageRequest(request.method, request.path_qs, dict(request.headers))
        )
        body = self.blobs.get(request.match_info["digest"])
        if body is None:
            return web.Response(status=404, text="no such object")
        return web.Response(body=body, content_type="application/octet-stream")

    def start(self) -> StorageHost:
        """Serve in a background thread until :meth:`stop`."""
        if not self.port:
            self.port = free_port(self.address)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="storage", daemon=True)
        self._thread.start()

        async def serve() -> web.AppRunner:
            app = web.Application()
            app.router.add_route("GET", "/blobs/{digest}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.address, self.port).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop = self._loop
        if loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = self._runner = self._thread = None


_BLOB_PATH = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")


def redirect_blob_gets(proxy: QuirkProxy, storage: StorageHost, signature: str) -> Before:
    """Blob GETs the registry answers 200 are answered ``307`` to ``storage`` instead.

    The registry checks the client's credentials as usual (a 401 goes back as is); the bytes
    it served are put on the storage host, and the client is sent there with a
    ``?signature=`` query, as registries do with pre-signed storage URLs.
    """

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        match = _BLOB_PATH.match(request.path)
        if request.method != "GET" or match is None:
            return None
        answer = await proxy.forward(request)
        if answer.status != 200:
            return answer
        digest = match.group(1)
        assert isinstance(answer.body, bytes)
        storage.blobs[digest] = answer.body
        location = f"http://{storage.host}/blobs/{digest}?signature={signature}"
        return web.Response(status=307, headers={"Location": location})

    return quirk
