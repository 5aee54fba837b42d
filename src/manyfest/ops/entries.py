"""Rules on the entries of a list, shared by ``create``, ``annotate``, ``push`` and ``publish``.

* Attestation entries (buildx / docker's containerd store: an attestation manifest with
  platform ``unknown/unknown`` and the descriptor annotations
  ``vnd.docker.reference.type: attestation-manifest`` and ``vnd.docker.reference.digest:
  <image digest>``) never count as platforms and never as duplicates; one is kept only when
  the image it describes is in the list.
* Two images of one list may not have the same platform (after
  :func:`manyfest.platform.normalize`, so ``linux/arm64`` and ``linux/arm64/v8`` are the same;
  ``os.version`` and ``os.features`` count) unless duplicates are allowed
  (``--allow-duplicate-platforms``, plan key ``allow_duplicate_platforms``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple

import msgspec

from manyfest.errors import PlatformError
from manyfest.mediatypes import ATTESTATION, REFERENCE_DIGEST, REFERENCE_TYPE
from manyfest.platform import Platform, normalize

if TYPE_CHECKING:  # the local-store commands use this module without the engine
    from manyfest.engine import Engine, Source

__all__ = [
    "ATTESTATION", "ATTESTATION_CHOICES", "DUPLICATE_HINT", "REFERENCE_DIGEST", "REFERENCE_TYPE",
    "Attestations", "Listed", "attestation_annotations", "attested_digest", "attested_image",
    "check_unique_platforms",
]

Attestations = Literal["keep", "drop"]
"""``--attestations`` / plan ``attestations``: keep attestation entries, or drop them all."""

ATTESTATION_CHOICES: tuple[Attestations, ...] = ("keep", "drop")

DUPLICATE_HINT = (
    "a list holds one image per platform: drop one or fix its platform, or pass "
    "--allow-duplicate-platforms (plan key allow_duplicate_platforms: true)"
)


def attested_digest(platform: Platform | None, annotations: Mapping[str, str]) -> str:
    """The digest of the image an attestation entry describes; '' when not an attestation.

    An entry is an attestation when its descriptor annotations say so
    (``vnd.docker.reference.type: attestation-manifest``), or when its platform is
    ``unknown/unknown`` and it names an image (``vnd.docker.reference.digest``), as buildx
    writes them. An attestation that names no image gives ``"?"`` (no image is ever it).
    The engine's ``_flatten`` applies the same rule to a source index's entries.
    """
    target = annotations.get(REFERENCE_DIGEST, "")
    if annotations.get(REFERENCE_TYPE) == ATTESTATION:
        return target or "?"
    if platform is not None and platform.is_unknown:
        return target
    return ""


def attestation_annotations(image_digest: str) -> tuple[tuple[str, str], ...]:
    """The descriptor annotations buildx gives an attestation of ``image_digest`` (sorted)."""
    return ((REFERENCE_DIGEST, image_digest), (REFERENCE_TYPE, ATTESTATION))


class Listed(NamedTuple):
    """An entry as the platform rules see it.

    Attributes:
        name: how messages name it (the image reference).
        platform: its platform in the list (``None``: none, never a duplicate).
        attestation: True for an attestation entry (never a platform, never a duplicate).
    """

    name: str
    platform: Platform | None
    attestation: bool = False


def _key(p: Platform) -> tuple[str, str, str, str, tuple[str, ...]]:
    n = normalize(p)
    return (n.os, n.architecture, n.variant, n.os_version, tuple(sorted(set(n.os_features))))


def check_unique_platforms(
    entries: Iterable[Listed], *, allow: bool = False, changed: Collection[str] | None = None
) -> None:
    """Refuse two images of one list with the same platform.

    Platforms are compared after :func:`~manyfest.platform.normalize` (os lower-cased,
    architecture aliases resolved, the architecture's default variant filled in), with
    ``os.version`` and ``os.features`` (as a set); attestation entries and entries without
    a platform are skipped.

    Args:
        entries: the list's entries, in list order.
        allow: duplicates allowed (``--allow-duplicate-platforms``): nothing is checked.
        changed: only pairs with at least one of these names are refused (``annotate``
            checks the entry it changes, ``create --amend`` the entries it adds); ``None``:
            every pair.

    Raises:
        PlatformError: (exit 2) the first pair found, naming both entries in list order,
            e.g. ``reg/app:v0 and reg/app:v1 have the same platform linux/amd64``.
    """
    if allow:
        return
    seen: dict[tuple[str, str, str, str, tuple[str, ...]], list[Listed]] = {}
    for entry in entries:
        if entry.attestation or entry.platform is None:
            continue
        key = _key(entry.platform)
        for other in seen.get(key, ()):
            if changed is not None and entry.name not in changed and other.name not in changed:
                continue
            assert other.platform is not None
            a, b = str(other.platform), str(entry.platform)
            if a == b:
                what = f"{other.name} and {entry.name} have the same platform {a}"
            else:
                what = f"{other.name} ({a}) and {entry.name} ({b}) have the same platform"
            raise PlatformError(what, hint=DUPLICATE_HINT)
        seen.setdefault(key, []).append(entry)


class _Subject(msgspec.Struct):
    digest: dict[str, str] = msgspec.field(default_factory=dict)


class _Statement(msgspec.Struct):
    subject: list[_Subject] = msgspec.field(default_factory=list)


_STATEMENT = msgspec.json.Decoder(_Statement)
_IN_TOTO = "application/vnd.in-toto+json"
_STATEMENT_LIMIT = 4 * 1024 * 1024


async def attested_image(engine: Engine, source: Source) -> str:
    """For an ``unknown/unknown`` image named directly: the digest of the image it attests,
    else ''.

    The manifest's OCI ``subject`` when it has one, else the first ``sha256`` subject of its
    in-toto statement layers (``application/vnd.in-toto+json``, as buildx writes them; one
    blob GET per such layer of at most 4 MiB).
    """
    doc = source.manifest.image()
    if doc.subject is not None and doc.subject.digest:
        return doc.subject.digest
    for layer in doc.layers:
        if layer.media_type != _IN_TOTO or layer.size > _STATEMENT_LIMIT:
            continue
        data = await engine.client.get_blob(source.ref, layer.digest)
        try:
            statement = _STATEMENT.decode(data)
        except msgspec.DecodeError:
            continue
        for subject in statement.subject:
            hexdigest = subject.digest.get("sha256", "")
            if len(hexdigest) == 64:
                return f"sha256:{hexdigest}"
    return ""
