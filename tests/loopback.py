"""Loopback-only addresses for the test servers and the benchmark relay: a proxy or relay
started by the tests or benchmarks listens on, and forwards to, loopback addresses only."""

from __future__ import annotations

import ipaddress


def loopback(host: str, tool: str) -> str:
    """``host`` if it is a loopback IP address (``localhost``: ``127.0.0.1``).

    Raises:
        SystemExit: ``host`` is not a loopback address (the message names ``tool``).
        ValueError: ``host`` is neither ``localhost`` nor an IP address.
    """
    if host == "localhost":
        return "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"{tool}: {host} is not a loopback address")
    return host


def host_port(text: str, tool: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (loopback host, port); see :func:`loopback`."""
    host, _, port = text.rpartition(":")
    return loopback(host.strip("[]"), tool), int(port)
