"""A finished HTTP exchange, and the request counters work is attributed to."""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Response:
    """A finished HTTP exchange: status, headers (case-insensitive) and the whole body.

    Attributes:
        status: the HTTP status.
        headers: response headers (a case-insensitive mapping).
        body: the whole body ('' for HEAD and for streamed answers).
        url: the final URL (after redirects; never carries credentials in errors).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


@dataclass(slots=True)
class RequestStats:
    """Requests, retries and throttled answers attributed to one unit of work (a list).

    The transport adds to the ``RequestStats`` found in :data:`current_stats` when a request
    is sent; tasks started from a task inherit it (contextvars). ``manifest_gets`` and
    ``manifest_heads`` count, among ``requests``, the GETs and HEADs of
    ``/v2/<name>/manifests/<reference>`` (a manifest GET is what pull quotas such as Docker
    Hub's count; HEADs are not), blobs excluded.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    manifest_gets: int = 0
    manifest_heads: int = 0

    def count_manifest_read(self, method: str, delta: int = 1) -> None:
        """Add ``delta`` to :attr:`manifest_gets` (``GET``) or :attr:`manifest_heads`
        (``HEAD``); other methods are not counted."""
        if method == "GET":
            self.manifest_gets += delta
        elif method == "HEAD":
            self.manifest_heads += delta


_MANIFEST_PATH = re.compile(r"/v2/.+/manifests/[^/]+")


def is_manifest_path(url: str) -> bool:
    """True when ``url`` (absolute, or a path) names ``/v2/<name>/manifests/<reference>``
    (a tag or digest), not a blob or upload endpoint."""
    return _MANIFEST_PATH.fullmatch(urlsplit(url).path) is not None


current_stats: contextvars.ContextVar[RequestStats | None] = contextvars.ContextVar(
    "manyfest_request_stats", default=None
)
"""The :class:`RequestStats` that requests made in this context are counted in."""
