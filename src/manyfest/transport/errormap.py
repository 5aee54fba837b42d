"""From a registry's answer or a failed connection to one :mod:`manyfest.errors` error.

Every error keeps the registry's whole answer: status, and for each entry of the OCI error
body (distribution-spec "Error Codes") its code, message and detail; a body that is not an
OCI error (text/plain, HTML) gives its first line. Advice fits the status (see
:func:`manyfest.errors.status_hint`) and the connection failure.
"""

from __future__ import annotations

import html
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from manyfest.errors import (
    AuthenticationError,
    AuthorizationError,
    ErrorDetail,
    ManifestRejectedError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    TransportError,
)
from manyfest.transport.response import Response
from manyfest.transport.throttle import THROTTLE_CODES


class _ErrorBody(msgspec.Struct):
    errors: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # AWS JSON protocol errors (ECR's API): {"__type": "...#ThrottlingException", "message"}
    aws_type: str = msgspec.field(name="__type", default="")
    message: str = ""
    Message: str = ""


_TAGS = re.compile(r"<[^>]*>")


def _text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return " ".join(value.split())
    return msgspec.json.encode(value).decode()


def error_details(body: bytes, headers: Mapping[str, str] | None = None) -> list[ErrorDetail]:
    """The error details of an answer, each with code, message and detail; [] when none.

    Reads the OCI error body (``{"errors": [{"code", "message", "detail"}]}``) and the AWS
    JSON protocol's (``{"__type": "ThrottlingException", "message"}``, or the
    ``x-amzn-ErrorType`` header), as ECR's API answers.
    """
    aws = (headers or {}).get("x-amzn-ErrorType", "").split(":", 1)[0]
    parsed = None
    if body and body.lstrip().startswith(b"{"):
        try:
            parsed = msgspec.json.decode(body, type=_ErrorBody)
        except (msgspec.DecodeError, msgspec.ValidationError):
            parsed = None
    details = []
    if parsed is not None:
        for item in parsed.errors:
            details.append(
                ErrorDetail(_text(item.get("code")), _text(item.get("message")),
                            _text(item.get("detail")))
            )
        aws = parsed.aws_type.rpartition("#")[2] or aws
        if aws and not details:
            details.append(ErrorDetail(aws, _text(parsed.message or parsed.Message)))
    if aws and not details:
        details.append(ErrorDetail(aws, ""))
    return details


def _first_line(body: bytes) -> str:
    """The first non-empty line of a text or HTML body, tags removed, at most 200 chars."""
    text = body[:4096].decode(errors="replace")
    if "<" in text:
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else _TAGS.sub(" ", text)
        text = html.unescape(text)
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line[:200]
    return ""


def registry_error(what: str, method: str, resp: Response) -> RegistryError:
    """The exception class for an error answer, carrying the registry's whole answer."""
    details = error_details(resp.body, resp.headers)
    codes = {d.code for d in details}
    upper = {c.upper() for c in codes}
    cls: type[RegistryError] = RegistryError
    if resp.status == 401:
        cls = AuthenticationError
    elif resp.status == 429 or upper & THROTTLE_CODES:
        cls = RateLimitedError
    elif resp.status == 403 or "DENIED" in codes:
        cls = AuthorizationError
    elif resp.status == 404:
        cls = NotFoundError
    elif resp.status in (400, 413, 415) and method == "PUT":
        cls = ManifestRejectedError
    if not details and method != "HEAD" and resp.body:
        line = _first_line(resp.body)
        if line:
            details = [ErrorDetail(line, "")]
    hint = None
    if cls is ManifestRejectedError and resp.status == 415:
        hint = "the registry does not accept this media type; this will not change by retrying"
    return cls(what, status=resp.status, method=method, url=redact(resp.url), errors=details,
               hint=hint)


def describe(exc: BaseException) -> str:
    """One line for a low-level failure (no object reprs, no tracebacks)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = getattr(cert, "verify_message", "") or str(cert)
        text = f"cannot connect to {exc.host}:{exc.port}: certificate verify failed: {detail}"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        text = f"cannot resolve {exc.host}: {exc.os_error.strerror or exc.os_error}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if os_error.errno:
            detail = os.strerror(os_error.errno)
        else:
            detail = str(os_error) or type(os_error).__name__
        text = f"cannot connect to {exc.host}:{exc.port}: {detail}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        text = "the server closed the connection"
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def is_refused(exc: BaseException) -> bool:
    """True for a connection refused (nothing listens on the port)."""
    return isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    )


def connection_error(method: str, url: str, exc: BaseException, *, insecure: bool,
                     read_timeout: float) -> TransportError:
    """A :class:`TransportError` for a request that got no answer, with advice that fits.

    Args:
        method, url: the request.
        exc: what aiohttp raised.
        insecure: the registry is insecure already (never advise ``--insecure`` then).
        read_timeout: seconds one exchange may take (named in timeout errors).
    """
    where = f"{method} {redact(url)}"
    if isinstance(exc, TimeoutError):
        return TransportError(
            f"{where}: no complete answer within {read_timeout:g} s",
            hint="check that the registry is up; if it is only slow, raise read_timeout in "
            "the configuration file",
        )
    text = describe(exc)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        hint = "check the registry's name (it does not resolve) and your DNS"
    elif is_refused(exc):
        parts = urllib.parse.urlsplit(url)
        hint = f"check that the registry is running and listens on {parts.netloc}"
        if parts.scheme == "https" and parts.port is None and not insecure:
            hint += "; a plain-HTTP registry on port 80 needs --insecure"
    else:
        hint = "check that the registry is up and reachable"
    return TransportError(f"{where}: {text}", hint=hint)


def not_http(method: str, url: str, exc: aiohttp.ClientResponseError) -> TransportError:
    """A :class:`TransportError` for an answer that is not HTTP (aiohttp's parser refused it).

    The parser's message (``Bad status line ... b'SSH-2.0-OpenSSH_9.2'``) is kept on one line.
    """
    detail = " ".join(str(exc.message).split()) or type(exc).__name__
    error = TransportError(
        f"{method} {redact(url)}: the answer is not valid HTTP ({detail})",
        hint="check the registry's address and port: something else answers there",
    )
    error.retryable = False
    return error


def redact(url: str) -> str:
    """``url`` without user info and query (which may carry credentials or upload state)."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.split("@", 1)[1])
    return urllib.parse.urlunsplit(parts._replace(query=""))
