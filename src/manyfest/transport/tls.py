"""TLS for registries: certs.d contexts, and what a failed handshake means.

* :func:`context_for` makes a registry's TLS context from docker's ``certs.d`` layout
  (``<certs_dir>/<host[:port]>/``: ``*.crt`` CAs, ``*.cert`` + ``*.key`` client certificates).
  An unreadable or missing directory is absent, as docker treats it.
* :func:`is_tls_failure` tells a failed handshake from a connection error;
  :func:`plain_http_answer` spots a plain-HTTP server, :func:`tls_error` words the failure
  with what to do. The insecure fallback itself (TLS, then plain HTTP) is the session's ping.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TypeVar

import aiohttp

from manyfest.errors import CertificateError

log = logging.getLogger(__name__)

HTTPS_ONLY = b"HTTP request to an HTTPS server"
"""In Go's answer to a plain-HTTP request on a TLS port (``400 Client sent an HTTP request to
an HTTPS server.``)."""
_PLAIN_HTTP_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
     "UNKNOWN_PROTOCOL"}
)
"""OpenSSL reasons for a TLS handshake answered by a plain-HTTP server."""
_CLIENT_CERT_REASONS = frozenset(
    {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
     "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
     "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_REVOKED"}
)
"""OpenSSL reasons for a server refusing the client's certificate (or the lack of one)."""


def _entries(directory: Path) -> list[Path]:
    """The files of a certs.d host folder, sorted; [] when it is missing or unreadable.

    Unreadable: not listable, or listable but not searchable (mode ``r--``: its files could
    not be opened). A file there that is itself unreadable is an error when loaded.
    """
    try:
        entries = sorted(directory.iterdir())
        for entry in entries[:1]:
            entry.lstat()  # EACCES when the folder cannot be searched
        return entries
    except OSError as exc:  # missing, not a directory, or unreadable: absent, as in docker
        if not isinstance(exc, FileNotFoundError | NotADirectoryError):
            log.debug("ignoring %s: %s", directory, exc.strerror or exc)
        return []


def context_for(registry: str, certs_dir: Path, *, verify: bool) -> ssl.SSLContext:
    """A TLS context with the CAs and client certificates of ``certs_dir/registry/``.

    A verifying context trusts the system CAs plus certs.d's ``*.crt``; a non-verifying one
    (insecure registries) loads no CA at all (loading the system store costs ~50 ms).

    Raises:
        CertificateError: a file there is not PEM, or a client certificate lacks its key.
    """
    if verify:
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for path in _entries(certs_dir / registry):
        try:
            if path.suffix == ".crt":
                ctx.load_verify_locations(cafile=str(path))
            elif path.suffix == ".cert":
                key = path.with_suffix(".key")
                if not key.exists():
                    raise CertificateError(
                        f"missing key {key.name} for client certificate {path}",
                        hint=f"put the client key beside it as {key}",
                    )
                ctx.load_cert_chain(str(path), str(key))
            elif path.suffix == ".key" and not path.with_suffix(".cert").exists():
                raise CertificateError(
                    f"missing client certificate {path.with_suffix('.cert').name} for key {path}",
                    hint="put the client certificate beside it",
                )
        except (ssl.SSLError, OSError) as exc:
            # ssl.SSLError is an OSError: a file that is unreadable or not PEM.
            raise CertificateError(
                f"cannot load {path}: {describe_os_error(exc)}",
                hint=f"fix or remove {path} (*.crt: CA certificates in PEM; "
                "*.cert + *.key: a client certificate and its key in PEM)",
            ) from exc
    return ctx


def describe_os_error(exc: BaseException) -> str:
    """One line for an OS or SSL error (no reprs)."""
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join((str(exc) or type(exc).__name__).split())


_E = TypeVar("_E", bound=BaseException)


def find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first exception of type ``kind`` it was caused by, or None."""
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            return None
        # aiohttp's wrappers subclass ssl.SSLError/CertificateError themselves, without the
        # attributes (reason, verify_message): look at what they wrap first.
        if isinstance(seen, aiohttp.ClientConnectorCertificateError):
            inner: BaseException = seen.certificate_error
            if isinstance(inner, kind):
                return inner
        elif isinstance(seen, aiohttp.ClientConnectorError) and isinstance(seen.os_error, kind):
            return seen.os_error
        if isinstance(seen, kind) and not isinstance(seen, aiohttp.ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def is_tls_failure(exc: BaseException, url: str, *, handshake: bool = False) -> bool:
    """True when ``exc`` (raised for ``url``) is a failed TLS handshake, not a connection error.

    A server that closes the connection before answering counts only on the first request
    to it (``handshake``): later it is an idle keep-alive connection closed, worth a retry.
    """
    if isinstance(exc, aiohttp.ClientSSLError):
        return True
    if not url.startswith("https://"):
        return False
    if find_cause(exc, ssl.SSLError) is not None:
        return True
    return handshake and isinstance(exc, aiohttp.ServerDisconnectedError)


def tls_error(
    registry: str, cause: BaseException, certs: Path, *, insecure: bool
) -> CertificateError:
    """A :class:`CertificateError` that says what went wrong in the handshake and what to do.

    Args:
        registry: host[:port].
        cause: the handshake failure.
        certs: the registry's certs.d directory (``<certs_dir>/<host:port>``).
        insecure: the registry is already insecure (never advise ``--insecure`` then).
    """
    or_insecure = "" if insecure else ", or use --insecure to skip verification"
    verify = find_cause(cause, ssl.SSLCertVerificationError)
    if verify is not None:
        detail = verify.verify_message or describe_os_error(verify)
        return CertificateError(
            f"TLS certificate of {registry} is not trusted: {detail}",
            hint=f"put the CA certificate that signed it in {certs / 'ca.crt'} (docker's "
            f"certs.d layout){or_insecure}",
        )
    error = find_cause(cause, ssl.SSLError)
    reason = str(getattr(error, "reason", "") or "")
    if reason in _PLAIN_HTTP_REASONS:
        return CertificateError(
            f"{registry} does not speak TLS: the TLS handshake got a plain-HTTP answer "
            f"({reason.lower().replace('_', ' ')})",
            hint="check the registry's address and port"
            if insecure
            else "use --insecure to talk plain HTTP to it",
        )
    if reason in _CLIENT_CERT_REASONS:
        return CertificateError(
            f"{registry} refused the TLS handshake ({reason.lower().replace('_', ' ')}): it "
            "requires a client certificate it trusts",
            hint=f"put the client certificate and its key in {certs / 'client.cert'} and "
            f"{certs / 'client.key'} (docker's certs.d layout)",
        )
    what = describe_os_error(error) if error is not None else _flat(cause)
    return CertificateError(
        f"TLS connection to {registry} failed: {what}",
        hint=f"check the registry's TLS setup; put its CA certificate in {certs / 'ca.crt'} "
        f"(docker's certs.d layout){or_insecure}",
    )


def _flat(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection during the handshake"
    return " ".join((str(exc) or type(exc).__name__).split())


def plain_http_answer(body: bytes) -> bool:
    """True when a plain-HTTP answer shows the port speaks only TLS (Go's 400 text)."""
    return HTTPS_ONLY in body


__all__ = [
    "context_for",
    "describe_os_error",
    "find_cause",
    "is_tls_failure",
    "plain_http_answer",
    "tls_error",
]
