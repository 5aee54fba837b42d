"""A finished HTTP exchange, and the request counters work is attributed to."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass


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
    is sent; tasks started from a task inherit it (contextvars).
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0


current_stats: contextvars.ContextVar[RequestStats | None] = contextvars.ContextVar(
    "manyfest_request_stats", default=None
)
"""The :class:`RequestStats` that requests made in this context are counted in."""
