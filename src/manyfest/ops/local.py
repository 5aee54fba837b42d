"""The operations on the local store alone (no registry): ``annotate`` and ``rm``.

Kept apart from :mod:`manyfest.ops.manifests` so these commands start without the engine and
the transport (``manyfest annotate`` refusing a bad variant is a local check; it starts as
fast as ``manyfest --help``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from manyfest.errors import ManyfestError
from manyfest.ops.entries import Listed, attested_digest, check_unique_platforms
from manyfest.platform import Platform, enforce
from manyfest.reference import Reference
from manyfest.store import ManifestStore, StoredImage


def _attests(image: StoredImage) -> str:
    """The image digest a stored entry attests ('' for an image entry)."""
    return attested_digest(image.platform, dict(image.annotations))


def _no_warning(message: str) -> None:
    """The default warning sink of :func:`annotate`: drops the message."""


def annotate(
    store: ManifestStore,
    list_ref: Reference,
    image_ref: Reference,
    *,
    os: str = "",
    arch: str = "",
    os_version: str = "",
    os_features: list[str] | None = None,
    variant: str | None = None,
    annotations: dict[str, str] | None = None,
    remove_annotations: list[str] | None = None,
    platform_check: str = "",
    warn: Callable[[str], None] = _no_warning,
    allow_duplicate_platforms: bool = False,
) -> StoredImage:
    """``docker manifest annotate``: set platform fields and annotations of one local entry.

    Empty values leave a field as it is; ``os_features`` are added when not present yet.
    ``variant``: ``None`` keeps the entry's variant unless ``arch`` changes the
    architecture (a variant belongs to its architecture, so it is cleared then); ``""``
    clears it. The platform is only checked when a platform field is given.

    ``annotations`` are set (a value may be '') and ``remove_annotations`` removed (an
    absent key is ignored) in the entry's descriptor annotations: docker's store keeps them
    (``Descriptor.annotations``) and ignores them on push; ``manyfest push`` writes them
    into the list entry.

    The resulting platform goes through :func:`manyfest.platform.enforce` under
    ``platform_check`` (``error|warn|off``; default: refused when ``os``, ``arch`` or
    ``variant`` was given, or os or architecture is left empty; else, the platform being
    the one read from the image, a warning to ``warn`` and the entry annotated).

    Raises:
        NoSuchManifestError: no such list or entry (``manifest for image X does not exist in
            Y``).
        PlatformError: the resulting os/arch pair or variant is not valid (under the
            policy above), or the entry would have the platform of another image of the list
            (unless ``allow_duplicate_platforms``); nothing is written.
    """
    with store.locked(list_ref):
        image = store.get(list_ref, image_ref)
        p = image.platform or Platform("", "")
        features = list(p.os_features)
        for feature in os_features or []:
            if feature not in features:
                features.append(feature)
        variant_given = variant is not None
        if variant is None:
            variant = p.variant if not arch or arch == p.architecture else ""
        new = Platform(
            os or p.os,
            arch or p.architecture,
            variant,
            os_version or p.os_version,
            tuple(features),
        )
        # Annotations alone leave the platform as it is (an attestation's unknown/unknown).
        platform_given = bool(os or arch or os_version or os_features or variant_given) or not (
            annotations or remove_annotations
        )
        updated = image
        if platform_given:
            written = bool(os or arch or variant_given or not new.os or not new.architecture)
            enforce(new, mode=platform_check, written=written, name=str(image_ref), warn=warn)
            updated = image.with_platform(new)
        if annotations or remove_annotations:
            merged = dict(updated.annotations)
            for key in remove_annotations or []:
                merged.pop(key, None)
            merged.update(annotations or {})
            updated = replace(updated, annotations=tuple(sorted(merged.items())))
        if platform_given and not allow_duplicate_platforms and not _attests(updated):
            entries = [updated if e.file_name == image.file_name else e
                       for e in store.get_list(list_ref)]
            check_unique_platforms(
                [Listed(str(e.ref), e.platform, bool(_attests(e))) for e in entries],
                changed={str(updated.ref)},
            )
        store.save(list_ref, [updated])
    return updated


def remove(store: ManifestStore, list_refs: list[Reference]) -> list[ManyfestError]:
    """``docker manifest rm LIST...``: delete local lists; returns the errors (others go on)."""
    errors: list[ManyfestError] = []
    for ref in list_refs:
        try:
            with store.locked(ref):
                store.remove(ref)
        except ManyfestError as exc:
            errors.append(exc)
    return errors
