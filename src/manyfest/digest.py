"""Digests: ``algorithm:encoded`` over exact bytes (OCI image-spec, descriptor.md "Digests")."""

from __future__ import annotations

import hashlib
import re

from manyfest.errors import DigestMismatchError

_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}


def sha256(data: bytes) -> str:
    """``sha256:<64 hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compute(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``data`` with ``algorithm`` (``sha256`` or ``sha512``).

    Raises:
        ValueError: an algorithm other than sha256 or sha512.
    """
    if algorithm not in _ENCODED:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def is_valid(digest: str) -> bool:
    """True when ``digest`` follows the OCI grammar and its registered algorithm's encoding."""
    if not _DIGEST_RE.match(digest):
        return False
    algorithm, _, encoded = digest.partition(":")
    pattern = _ENCODED.get(algorithm)
    return pattern is None or pattern.match(encoded) is not None


def verify(data: bytes, expected: str, what: str) -> None:
    """Check that ``data`` hashes to ``expected``.

    Raises:
        DigestMismatchError: the digest of ``data`` differs; the message names ``what``.
    """
    algorithm = expected.partition(":")[0]
    actual = compute(data, algorithm if algorithm in _ENCODED else "sha256")
    if actual != expected:
        raise DigestMismatchError(f"{what}: content has digest {actual}, expected {expected}")
