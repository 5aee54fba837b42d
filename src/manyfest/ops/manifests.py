"""The ``docker manifest`` operations: create, annotate, push, inspect, rm.

Behaviour follows docker/cli ``cli/command/manifest/*.go`` (arguments, local store, output
lines, list bytes), with the documented differences:

* sources are resolved concurrently, and nothing is written unless every source resolved;
* ``create --amend`` re-resolves every reference it is given (docker reuses a stale entry);
* ``annotate`` checks variants per architecture and a current os/arch list (docker checks 28
  pairs and never variants);
* ``push`` makes blobs present concurrently and copies a blob whose mount is refused (docker
  fails on a ``202``);
* ``inspect`` of a remote list whose information docker's rebuilt list would drop
  (annotations, nested indexes, artifact fields) prints the registry's exact bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import msgspec

from manyfest import jsonfmt, mediatypes
from manyfest.content import Entry, Manifest, encode_list
from manyfest.engine import (
    Child,
    Engine,
    PublishOptions,
    Source,
    choose_media_type,
    mixed_warning,
    run_all,
)
from manyfest.errors import (
    ManyfestError,
    NoSuchManifestError,
    StoreError,
    UnsupportedMediaTypeError,
    UsageError,
)
from manyfest.platform import Platform, validate
from manyfest.reference import Reference, filesafe, same_registry
from manyfest.store import (
    ListSettings,
    ManifestStore,
    StoredImage,
    merge_settings,
    replace_settings,
)

REFUSE_AMEND = "refusing to amend an existing manifest list with no --amend flag"


async def create(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    image_refs: list[Reference],
    *,
    amend: bool = False,
    settings: ListSettings | None = None,
) -> list[StoredImage]:
    """``docker manifest create [--amend] LIST IMAGE...``: resolve images, store entries.

    Every image is resolved (concurrently) before anything is written; an entry that exists
    is replaced by what its reference resolves to now.

    ``settings`` (media type, index annotations, artifactType, subject, labels to copy) are
    kept beside the store for ``push`` (:meth:`ManifestStore.save_settings`); with ``amend``
    they are merged over the list's. The subject is resolved now and pinned by digest. The
    list ``push`` would build is checked now: settings a Docker list cannot hold are refused
    before anything is written, and a mixed list is warned about.

    Returns:
        The entries written.

    Raises:
        StoreError: the list exists and ``amend`` is False (docker's phrase).
        NotFoundError: a source does not exist; nothing is written.
        UnsupportedMediaTypeError: a source is a list, not an image.
        UsageError: index annotations, artifactType, subject or labels to copy for a list
            that comes out as a Docker manifest list; a subject in another repository.
    """
    if list_ref.digest:
        raise UsageError(f"manifest list {list_ref} must be named by a tag, not a digest")
    if store.exists(list_ref) and not amend:
        raise StoreError(REFUSE_AMEND, hint="pass --amend to add to it, or `manyfest rm` it first")
    settings = await _pin_subject(engine, list_ref, settings)
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
    with store.locked(list_ref):
        if store.exists(list_ref) and not amend:
            raise StoreError(
                REFUSE_AMEND, hint="pass --amend to add to it, or `manyfest rm` it first"
            )
        merged = _checked_settings(engine, store, list_ref, images, settings)
        store.save(list_ref, images)
        store.save_settings(list_ref, merged)
    return images


async def _pin_subject(
    engine: Engine, list_ref: Reference, settings: ListSettings | None
) -> ListSettings | None:
    """``settings`` with the subject resolved now and named by digest (``name@digest``)."""
    if settings is None or not settings.subject:
        return settings
    desc = await engine.subject(list_ref, settings.subject)
    return replace_settings(settings, subject=f"{list_ref.name}@{desc.digest}")


def _checked_settings(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    images: list[StoredImage],
    settings: ListSettings | None,
) -> ListSettings:
    """The list's settings after this create (call under the lock), checked against the
    list ``push`` would build from the entries after it (docker's file-name order)."""
    existing = store.exists(list_ref)
    stored = store.get_settings(list_ref) if existing else ListSettings()
    merged = merge_settings(stored, settings)
    entries = {i.file_name: i for i in (store.get_list(list_ref) if existing else [])}
    entries.update({filesafe(i.ref): i for i in images})
    listed = [
        Entry(i.manifest.media_type, i.manifest.size, i.manifest.digest, i.platform)
        for _, i in sorted(entries.items())
    ]
    media_type = choose_media_type(list_ref, listed, merged.annotations, _options(merged))
    warning = mixed_warning(list_ref, media_type, listed)
    if warning is not None:
        engine.on_event(warning)
    return merged


def _options(settings: ListSettings, *, skip_unchanged: bool = True) -> PublishOptions:
    """The engine options a list's settings make."""
    return PublishOptions(
        media_type=settings.media_type,
        artifact_type=settings.artifact_type,
        subject=settings.subject,
        labels_to_annotations=settings.labels_to_annotations,
        skip_unchanged=skip_unchanged,
    )


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
) -> StoredImage:
    """``docker manifest annotate``: set platform fields of one local entry.

    Empty values leave a field as it is; ``os_features`` are added when not present yet.
    ``variant``: ``None`` keeps the entry's variant unless ``arch`` changes the
    architecture (a variant belongs to its architecture, so it is cleared then); ``""``
    clears it.

    Raises:
        NoSuchManifestError: no such list or entry (``manifest for image X does not exist in
            Y``).
        PlatformError: the resulting os/arch pair or variant is not valid.
    """
    with store.locked(list_ref):
        image = store.get(list_ref, image_ref)
        p = image.platform or Platform("", "")
        features = list(p.os_features)
        for feature in os_features or []:
            if feature not in features:
                features.append(feature)
        if variant is None:
            variant = p.variant if not arch or arch == p.architecture else ""
        new = Platform(
            os or p.os,
            arch or p.architecture,
            variant,
            os_version or p.os_version,
            tuple(features),
        )
        validate(new.os, new.architecture, new.variant)
        updated = image.with_platform(new)
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
        children.append(Child(Source(image.ref, image.manifest, p), p))
    return children


async def push(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    *,
    purge: bool = False,
    settings: ListSettings | None = None,
) -> PushOutcome:
    """``docker manifest push [--purge] LIST``: publish a local list.

    Blobs of cross-repo children are made present in the target repository (mount, else
    copy), children PUT by digest concurrently, then the list PUT at its tag. The list bytes
    are docker's (entries in store file-name order), so the digest equals
    ``docker manifest push``'s for the same store, unless list settings were given: those
    ``create`` stored, with ``settings`` (the command line's) over them.

    Raises:
        NoSuchManifestError: the list is not in the local store.
        UsageError: an entry without os/arch or on another registry (nothing written).
        RegistryError, TransportError: the push failed; the tag is left where it was.
    """
    if list_ref.digest:
        raise UsageError(f"manifest list {list_ref} must be named by a tag, not a digest")
    images = store.get_list(list_ref)
    if not images:
        raise NoSuchManifestError(f"No such manifest: {list_ref}")
    children = build_from_store(list_ref, images)
    wanted = merge_settings(store.get_settings(list_ref), settings)
    result = await engine.publish(
        list_ref, children, annotations=wanted.annotations or None,
        options=_options(wanted, skip_unchanged=False),
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


# ---------------------------------------------------------------------- inspect


def _docker_list(images: list[StoredImage]) -> Manifest:
    """The list docker's ``FromDescriptors`` builds from entries (annotations dropped)."""
    entries = [
        Entry(i.manifest.media_type, i.manifest.size, i.manifest.digest, i.platform)
        for i in images
    ]
    return encode_list(entries)


def format_image(image: StoredImage, store: ManifestStore, *, verbose: bool) -> str:
    """docker's ``printManifest``: the manifest tab-indented, or ``-v``'s ImageManifest."""
    if verbose:
        return jsonfmt.indent(store.encode(image)).decode() + "\n"
    return jsonfmt.indent(image.manifest.raw).decode() + "\n"


def format_list(images: list[StoredImage], store: ManifestStore, *, verbose: bool) -> str:
    """docker's ``printManifestList``: the rebuilt list, or ``-v``'s array of ImageManifest."""
    if verbose:
        body = b"[" + b",".join(store.encode(i) for i in images) + b"]"
        return jsonfmt.indent(body).decode() + "\n"
    return _docker_list(images).raw.decode() + "\n"


async def inspect(
    engine: Engine,
    store: ManifestStore,
    ref: Reference,
    *,
    list_ref: Reference | None = None,
    verbose: bool = False,
) -> str:
    """``docker manifest inspect [-v] [LIST] REF``: the text docker prints.

    Order as docker: with ``list_ref``, the local entry; else a local list named ``ref``;
    else the remote manifest (an image, or a list whose children and configs are fetched).

    Raises:
        NoSuchManifestError: the local list or entry does not exist.
        NotFoundError: the remote manifest does not exist.
    """
    if list_ref is not None:
        return format_image(store.get(list_ref, ref), store, verbose=verbose)
    if store.exists(ref):
        return format_list(store.get_list(ref), store, verbose=verbose)
    manifest = await engine.client.get_manifest(ref)
    if not manifest.is_index:
        if not verbose:
            return jsonfmt.indent(manifest.raw).decode() + "\n"
        platform = None
        if mediatypes.is_image(manifest.media_type):
            platform = (await engine.resolve(ref.with_digest(manifest.digest))).platform
        return format_image(StoredImage(ref, manifest, platform), store, verbose=True)
    index = manifest.index()
    if not verbose and _loses_information(manifest):
        return manifest.raw.decode() + ("" if manifest.raw.endswith(b"\n") else "\n")
    children: dict[int, StoredImage] = {}

    async def fetch(i: int) -> None:
        desc = index.manifests[i]
        # docker names a remote list's children name:tag@digest (tag kept).
        child_ref = Reference(ref.registry, ref.repository, ref.tag, desc.digest)
        child = await engine.client.get_manifest(child_ref)
        p = desc.platform
        platform = (
            Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))
            if p is not None
            else None
        )
        children[i] = StoredImage(
            child_ref, child, platform, tuple(sorted(desc.annotations.items()))
        )

    await run_all(*(partial(fetch, i) for i in range(len(index.manifests))))
    images = [children[i] for i in range(len(index.manifests))]
    return format_list(images, store, verbose=verbose)


def _loses_information(manifest: Manifest) -> bool:
    """True when docker's rebuilt list would drop something this index holds."""
    try:
        doc = msgspec.json.decode(manifest.raw)
    except msgspec.DecodeError:
        return True
    if not isinstance(doc, dict):
        return True
    if set(doc) - {"schemaVersion", "mediaType", "manifests"}:
        return True
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict) or set(entry) - {"mediaType", "size", "digest", "platform"}:
            return True
        if entry.get("mediaType") in mediatypes.INDEX_TYPES:
            return True
        platform = entry.get("platform") or {}
        if set(platform) - {"architecture", "os", "os.version", "os.features", "variant"}:
            return True
    return False


def _unique(refs: list[Reference]) -> list[Reference]:
    seen: set[str] = set()
    out = []
    for ref in refs:
        if str(ref) not in seen:
            seen.add(str(ref))
            out.append(ref)
    return out

