"""HTTP transport: one aiohttp session, per-registry limits, TLS/insecure, retries, auth."""

from manyfest.transport.http import RequestStats, Response, Transport, current_stats
from manyfest.transport.settings import Settings

__all__ = ["RequestStats", "Response", "Settings", "Transport", "current_stats"]
