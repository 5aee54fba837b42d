"""Transport settings: insecure registries, certificates, limits, timeouts, retries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from manyfest.errors import UsageError

DEFAULT_CONCURRENCY = 64
"""Requests in flight per registry (chosen by measurement, see README "Benchmarks")."""


DEFAULT_RETRY_DEADLINE = 300.0
"""Seconds an exchange is retried while a registry throttles (5 minutes)."""
DEFAULT_ERROR_RETRY_DEADLINE = 60.0
"""Seconds an exchange is retried on 5xx and connection errors (a registry restarting)."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_flag(name: str, default: bool) -> bool:
    """A boolean environment variable; anything but 1/0/true/false/yes/no/on/off is refused.

    Raises:
        UsageError: the variable holds another value.
    """
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    word = value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise UsageError(
        f"{name}={value!r} is not a boolean", hint=f"set {name} to 1 or 0 (true/false)"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """How the transport talks to registries.

    Attributes:
        insecure: ``--insecure``: skip TLS verification, and fall back to plain HTTP when the
            TLS handshake fails, for every registry of this run (docker's ``--insecure``).
        insecure_registries: registries (host[:port]) treated as insecure as above.
        loopback_insecure: treat 127.0.0.0/8, ::1 and localhost as insecure without a flag,
            as docker and crane do. ``MANYFEST_LOOPBACK_INSECURE=0`` turns it off.
        certs_dir: docker's ``certs.d`` directory: ``<dir>/<host[:port]>/*.crt`` are CAs,
            ``*.cert`` + ``*.key`` client certificates. ``MANYFEST_CERTS_DIR`` overrides.
        concurrency: requests in flight per registry.
        registry_concurrency: per-registry limits over ``concurrency`` (config file).
        connect_timeout: seconds to establish a new connection (TCP + TLS).
        read_timeout: seconds one HTTP exchange may take, from sending the request to the last
            byte of the answer (streamed blob copies: the GET per chunk read, not in total;
            the upload fed from it ``read_timeout`` plus its size at 256 KiB/s).
        retry_deadline: ``--retry-deadline``: seconds an exchange is retried, from its first
            failure, while the registry throttles (429, 503, rate-limit codes).
        error_retry_deadline: seconds an exchange is retried on 5xx, 408 and connection
            errors (at most ``retry_deadline``). A refused connection to a registry that has
            not answered in this run is not retried.
        retry_max_wait: longest backoff between tries on errors, in seconds (a throttling
            registry's wait hints are honoured up to 60 s).
    """

    insecure: bool = False
    insecure_registries: frozenset[str] = frozenset()
    loopback_insecure: bool = field(
        default_factory=lambda: _env_flag("MANYFEST_LOOPBACK_INSECURE", True)
    )
    certs_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("MANYFEST_CERTS_DIR", "/etc/docker/certs.d"))
    )
    concurrency: int = DEFAULT_CONCURRENCY
    registry_concurrency: Mapping[str, int] = field(default_factory=dict)
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    retry_deadline: float = DEFAULT_RETRY_DEADLINE
    error_retry_deadline: float = DEFAULT_ERROR_RETRY_DEADLINE
    retry_max_wait: float = 10.0

    def concurrency_for(self, registry: str) -> int:
        """Requests in flight allowed for ``registry``."""
        return self.registry_concurrency.get(registry, self.concurrency)

    def is_insecure(self, registry: str) -> bool:
        """True when ``registry`` may skip TLS verification and fall back to plain HTTP.

        A registry marked insecure under either spelling (``host`` or ``host:80``, one
        registry: :func:`manyfest.reference.registry_key`) is insecure in both.
        """
        # Imported here: ``manyfest publish --help`` shows DEFAULT_CONCURRENCY from this
        # module, and the reference grammar's regular expressions take 10 ms to compile.
        from manyfest.reference import is_loopback, registry_aliases

        return (
            self.insecure
            or any(alias in self.insecure_registries for alias in registry_aliases(registry))
            or (self.loopback_insecure and is_loopback(registry))
        )
