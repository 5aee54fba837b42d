"""The ``docker manifest`` operations: create, annotate, push, inspect, rm.

Behaviour follows docker/cli ``cli/command/manifest/*.go`` (arguments, local store, output
lines, list bytes), with the documented differences:

* sources are resolved concurrently, and nothing is written unless every source resolved;
* ``create --amend`` re-resolves every reference it is given (docker reuses a stale entry);
* ``annotate`` checks variants per architecture and a current os/arch list (docker checks 28
  pairs and never variants);
* ``push`` makes blobs present concurrently and copies a blob whose mount is refused (docker
  fails on a ``202``).

``inspect`` is in :mod:`manyfest.ops.inspect`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from manyfest import mediatypes
from manyfest.content import list_media_type
from manyfest.engine import Child, Engine, PublishOptions, Source, run_all
from manyfest.errors import (
    ManyfestError,
    NoSuchManifestError,
    StoreError,
    UnsupportedMediaTypeError,
    UsageError,
)
from manyfest.events import Warned
from manyfest.platform import Platform, enforce
from manyfest.reference import Reference, same_registry
from manyfest.store import ManifestStore, StoredImage

REFUSE_AMEND = "refusing to amend an existing manifest list with no --amend flag"


async def create(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    image_refs: list[Reference],
    *,
    amend: bool = False,
    platform_check: str = "",
) -> list[StoredImage]:
    """``docker manifest create [--amend] LIST IMAGE...``: resolve images, store entries.

    Every image is resolved (concurrently) before anything is written; an entry that exists
    is replaced by what its reference resolves to now. Each entry's platform (read from the
    image) goes through :func:`manyfest.platform.enforce` under ``platform_check``
    (``error|warn|off``; default: a :class:`~manyfest.events.Warned` event for a platform
    outside the table, the entry kept as built).

    Returns:
        The entries written.

    Raises:
        StoreError: the list exists and ``amend`` is False (docker's phrase).
        NotFoundError: a source does not exist; nothing is written.
        UnsupportedMediaTypeError: a source is a list, not an image.
        PlatformError: ``platform_check="error"`` and a platform outside the table; nothing
            is written.
    """
    if list_ref.digest:
        raise UsageError(f"manifest list {list_ref} must be named by a tag, not a digest")
    if store.exists(list_ref) and not amend:
        raise StoreError(REFUSE_AMEND, hint="pass --amend to add to it, or `manyfest rm` it first")
    sources: dict[str, Source] = {}

    async def resolve(ref: Reference) -> None:
        sources[str(ref)] = await engine.resolve(ref)

    await run_all(*(partial(resolve, ref) for ref in image_refs))
    images = []
    for ref in _unique(image_refs):
        source = sources[str(ref)]
        if source.platform is None:
            # docker's store holds one image manifest per entry: no place for an index.
            raise UnsupportedMediaTypeError(
                f"{ref} is a manifest list",
                hint="name one of its images by digest, or use `manyfest publish`, which "
                "flattens index sources",
            )
        images.append(StoredImage(source.ref, source.manifest, source.platform))
    _check_platforms(engine, list_ref, images, platform_check)
    with store.locked(list_ref):
        if store.exists(list_ref) and not amend:
            raise StoreError(
                REFUSE_AMEND, hint="pass --amend to add to it, or `manyfest rm` it first"
            )
        store.save(list_ref, images)
    return images


def _check_platforms(
    engine: Engine, list_ref: Reference, images: list[StoredImage], mode: str
) -> None:
    """Entries read from images: :func:`manyfest.platform.enforce` as built, warnings as
    :class:`~manyfest.events.Warned` events."""

    def warn(message: str) -> None:
        engine.on_event(Warned(target=str(list_ref), message=message))

    for image in images:
        if image.platform is not None:
            enforce(image.platform, mode=mode, written=False, name=str(image.ref), warn=warn)


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
            policy above); nothing is written.
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
        store.save(list_ref, [updated])
    return updated


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What ``push`` did: the cross-repo children it pushed and the list digest."""

    target: Reference
    pushed_children: list[str]
    digest: str

    def lines(self) -> list[str]:
        """docker's stdout lines: ``Pushed ref <ref>@<digest> with digest: <digest>``, digest."""
        name = self.target.name
        out = [f"Pushed ref {name}@{d} with digest: {d}" for d in self.pushed_children]
        return [*out, self.digest]


def build_from_store(list_ref: Reference, images: list[StoredImage]) -> list[Child]:
    """Check stored entries as docker's ``buildManifestList`` does and make list children.

    Raises:
        UsageError: an entry lacks os or architecture, or lives on another registry than the
            target (checked before any write).
    """
    children = []
    for image in images:
        p = image.platform
        if p is None or not p.os or not p.architecture:
            raise UsageError(
                f"manifest {image.ref} must have an OS and Architecture to be pushed to a "
                "registry",
                hint=f"set them with `manyfest annotate --os OS --arch ARCH {list_ref} "
                f"{image.ref}`",
            )
        if not same_registry(image.ref.registry, list_ref.registry):
            raise UsageError(
                f"cannot use source images from a different registry than the target image: "
                f"{image.ref} is on {image.ref.registry}, {list_ref} on {list_ref.registry}",
                hint="copy the image to the target registry first (e.g. crane copy/skopeo copy)",
            )
        children.append(Child(Source(image.ref, image.manifest, p), p, image.annotations))
    return children


def refuse_docker_list_annotations(
    list_ref: Reference, images: list[StoredImage], media_type: str
) -> None:
    """Refuse descriptor annotations on a list that comes out as a Docker manifest list.

    The Docker manifest list format (distribution ``docs/spec/manifest-v2-2.md``) defines
    ``mediaType``, ``size``, ``digest`` and ``platform`` for an entry; annotations exist in
    the OCI index only (docker's own push drops them silently).

    Raises:
        UsageError: an entry has annotations and ``media_type`` is the Docker list's.
    """
    if media_type != mediatypes.DOCKER_LIST:
        return
    annotated = [i for i in images if i.annotations]
    if annotated:
        names = ", ".join(
            f"{i.ref} ({', '.join(k for k, _ in i.annotations)})" for i in annotated
        )
        raise UsageError(
            f"{list_ref} would be a Docker manifest list ({mediatypes.DOCKER_LIST}), whose "
            f"entries have no annotations; annotated: {names}",
            hint="descriptor annotations need an OCI index (a list whose first entry is an "
            "OCI image manifest), or remove them: `manyfest annotate --remove-annotation KEY "
            f"{list_ref} IMAGE`",
        )


async def push(
    engine: Engine, store: ManifestStore, list_ref: Reference, *, purge: bool = False
) -> PushOutcome:
    """``docker manifest push [--purge] LIST``: publish a local list.

    Blobs of cross-repo children are made present in the target repository (mount, else
    copy), children PUT by digest concurrently, then the list PUT at its tag. The list bytes
    are docker's (entries in store file-name order), so the digest equals
    ``docker manifest push``'s for the same store.

    Raises:
        NoSuchManifestError: the list is not in the local store.
        UsageError: an entry without os/arch or on another registry, or descriptor
            annotations on a Docker list (nothing written).
        RegistryError, TransportError: the push failed; the tag is left where it was.
    """
    if list_ref.digest:
        raise UsageError(f"manifest list {list_ref} must be named by a tag, not a digest")
    images = store.get_list(list_ref)
    if not images:
        raise NoSuchManifestError(f"No such manifest: {list_ref}")
    children = build_from_store(list_ref, images)
    refuse_docker_list_annotations(
        list_ref, images, list_media_type([c.entry() for c in children])
    )
    result = await engine.publish(
        list_ref, children, options=PublishOptions(skip_unchanged=False)
    )
    if result.error is not None:
        raise result.error
    if purge:
        with store.locked(list_ref):
            store.remove(list_ref)
    return PushOutcome(list_ref, result.pushed_children, result.digest)


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


def _unique(refs: list[Reference]) -> list[Reference]:
    seen: set[str] = set()
    out = []
    for ref in refs:
        if str(ref) not in seen:
            seen.add(str(ref))
            out.append(ref)
    return out

