"""HTTP transport: one aiohttp session; per-registry throttle, TLS/insecure, retries, auth.

A package by concern: :mod:`~manyfest.transport.session` (the session and every exchange),
:mod:`~manyfest.transport.throttle` (the per-registry throttle and its signals),
:mod:`~manyfest.transport.tls` (certs.d contexts and handshake failures),
:mod:`~manyfest.transport.errormap` (answers and failures to errors),
:mod:`~manyfest.transport.proxy` (HTTP(S)_PROXY), :mod:`~manyfest.transport.settings`.
Challenges, credentials and tokens are in :mod:`manyfest.auth`.
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from manyfest.transport.response import RequestStats, Response, current_stats
    from manyfest.transport.session import MANIFEST_LIMIT, BlobStream, Transport
    from manyfest.transport.settings import Settings

# Name -> module, imported on first use (PEP 562): :mod:`manyfest.transport.settings` (and
# the configuration that builds it) must not load aiohttp, so that ``manyfest --help`` and
# the local-store commands start without it.
_LAZY = {
    "MANIFEST_LIMIT": "manyfest.transport.session",
    "BlobStream": "manyfest.transport.session",
    "Transport": "manyfest.transport.session",
    "RequestStats": "manyfest.transport.response",
    "Response": "manyfest.transport.response",
    "current_stats": "manyfest.transport.response",
    "Settings": "manyfest.transport.settings",
}

__all__ = [
    "MANIFEST_LIMIT",
    "BlobStream",
    "RequestStats",
    "Response",
    "Settings",
    "Transport",
    "current_stats",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
