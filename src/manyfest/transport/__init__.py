"""HTTP transport: one aiohttp session; per-registry throttle, TLS/insecure, retries, auth.

A package by concern: :mod:`~manyfest.transport.session` (the session and every exchange),
:mod:`~manyfest.transport.throttle` (the per-registry throttle and its signals),
:mod:`~manyfest.transport.tls` (certs.d contexts and handshake failures),
:mod:`~manyfest.transport.errormap` (answers and failures to errors),
:mod:`~manyfest.transport.proxy` (HTTP(S)_PROXY), :mod:`~manyfest.transport.settings`.
Challenges, credentials and tokens are in :mod:`manyfest.auth`.
"""

from manyfest.transport.response import RequestStats, Response, current_stats
from manyfest.transport.session import MANIFEST_LIMIT, BlobStream, Transport
from manyfest.transport.settings import Settings

__all__ = [
    "MANIFEST_LIMIT",
    "BlobStream",
    "RequestStats",
    "Response",
    "Settings",
    "Transport",
    "current_stats",
]
