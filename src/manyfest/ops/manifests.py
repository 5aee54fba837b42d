"""The ``docker manifest`` operations that talk to a registry: create and push.

Behaviour follows docker/cli ``cli/command/manifest/*.go`` (arguments, local store, output
lines, list bytes), with the documented differences:

* sources are resolved concurrently, and nothing is written unless every source resolved;
* ``create --amend`` re-resolves every reference it is given (docker reuses a stale entry);
* ``annotate`` checks variants per architecture and a current os/arch list (docker checks 28
  pairs and never variants);
* ``push`` makes blobs present concurrently and copies a blob whose mount is refused (docker
  fails on a ``202``), and keeps descriptor annotations (attestations after the images);
* ``create`` takes index sources (flattened, with their attestations) and refuses two images
  with the same platform (``annotate`` too, for the entry it changes);

``inspect`` is in :mod:`manyfest.ops.inspect`; ``annotate`` and ``rm``, which touch the local
store alone, in :mod:`manyfest.ops.local`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

import msgspec

from manyfest import mediatypes
from manyfest.content import Entry, Manifest
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
    NoSuchManifestError,
    StoreError,
    UsageError,
)
from manyfest.events import EventSink, Warned, no_events
from manyfest.models import Descriptor
from manyfest.ops.entries import (
    ATTESTATION_CHOICES,
    Attestations,
    Listed,
    attestation_annotations,
    attested_digest,
    attested_image,
    check_unique_platforms,
)
from manyfest.platform import enforce
from manyfest.reference import Reference, store_name
from manyfest.store import (
    ListSettings,
    ManifestStore,
    StoredImage,
    merge_settings,
    replace_settings,
)
from manyfest.words import plural

REFUSE_AMEND = "refusing to amend an existing manifest list with no --amend flag"


async def create(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    image_refs: list[Reference],
    *,
    amend: bool = False,
    platform_check: str = "",
    attestations: Attestations = "keep",
    allow_duplicate_platforms: bool = False,
    settings: ListSettings | None = None,
) -> list[StoredImage]:
    """``docker manifest create [--amend] LIST IMAGE...``: resolve images, store entries.

    Every image is resolved (concurrently) before anything is written; an entry that exists
    is replaced by what its reference resolves to now. Each entry's platform (read from the
    image) goes through :func:`manyfest.platform.enforce` under ``platform_check``
    (``error|warn|off``; default: a :class:`~manyfest.events.Warned` event for a platform
    outside the table, the entry kept as built).

    An index / manifest list source (buildx: image + attestation manifest) is flattened:
    each of its entries is stored as one entry of the list, its descriptor copied (digest,
    size, media type, platform, annotations), named ``<name>:<tag>@<child digest>`` (docker
    reads, inspects and pushes such entries); images in source order, then attestations.
    A :class:`~manyfest.events.Warned` event says what was added. With ``amend``, the entries
    an earlier ``create`` stored for a tag given again (``<name>:<tag>`` or
    ``<name>:<tag>@...``) are replaced by what the tag holds now.

    An attestation manifest named directly (by digest) is stored as an attestation entry
    of the image its in-toto subject names, which must be in the list (with
    ``attestations="drop"`` it is left out, with a warning).

    Args:
        engine: the run's engine (its ``on_event`` receives the warnings).
        store: the local store.
        list_ref: the list (a tag).
        image_refs: images or indexes, in command-line order.
        amend: add to an existing list.
        attestations: ``keep`` or ``drop`` (no attestation entry is stored).
        allow_duplicate_platforms: store two images with the same platform.

    ``settings`` (media type, index annotations, artifactType, subject, labels to copy) are
    kept beside the store for ``push`` (:meth:`ManifestStore.save_settings`); with ``amend``
    they are merged over the list's. The subject is resolved now and pinned by digest. The
    list ``push`` would build is checked now: settings a Docker list cannot hold are refused
    before anything is written, and a mixed list is warned about.

    Returns:
        The entries written: images, then attestations.

    Raises:
        StoreError: the list exists and ``amend`` is False (docker's phrase).
        NotFoundError: a source does not exist; nothing is written.
        UnsupportedMediaTypeError: a source is neither an image nor an index, holds a nested
            index, or holds an attestation whose image it lacks.
        PlatformError: two images would have the same platform (naming both).
        UsageError: an attestation manifest named without the image it describes (naming
            both digests), or ``attestations`` is neither keep nor drop.
        PlatformError: ``platform_check="error"`` and a platform outside the table; nothing
            is written.
        UsageError: index annotations, artifactType, subject or labels to copy for a list
            that comes out as a Docker manifest list; a subject in another repository.
    """
    if list_ref.digest:
        raise UsageError(f"manifest list {list_ref} must be named by a tag, not a digest")
    if attestations not in ATTESTATION_CHOICES:
        raise UsageError(f"--attestations must be keep or drop, not {attestations!r}")
    if store.exists(list_ref) and not amend:
        raise StoreError(REFUSE_AMEND, hint="pass --amend to add to it, or `manyfest rm` it first")
    settings = await _pin_subject(engine, list_ref, settings)
    sources: dict[str, Source] = {}
    attested: dict[str, str] = {}

    async def resolve(ref: Reference) -> None:
        source = await engine.resolve(ref)
        sources[str(ref)] = source
        if source.platform is not None and source.platform.is_unknown:
            attested[str(ref)] = await attested_image(engine, source)

    await run_all(*(partial(resolve, ref) for ref in image_refs))
    images: list[StoredImage] = []
    found: list[StoredImage] = []
    direct: list[tuple[Reference, StoredImage, str]] = []
    for ref in _unique(image_refs):
        source = sources[str(ref)]
        if source.platform is None:
            got_images, got_attestations = _flattened(ref, source)
            images += got_images
            if attestations == "keep":
                found += got_attestations
            engine.on_event(Warned(target=str(ref), message=_flattened_note(
                ref, len(got_images), len(got_attestations), attestations
            )))
        elif attested.get(str(ref)):
            direct.append((ref, StoredImage(source.ref, source.manifest, source.platform),
                           attested[str(ref)]))
        else:
            images.append(StoredImage(source.ref, source.manifest, source.platform))
    _check_platforms(engine, list_ref, images, platform_check)
    with store.locked(list_ref):
        if store.exists(list_ref) and not amend:
            raise StoreError(
                REFUSE_AMEND, hint="pass --amend to add to it, or `manyfest rm` it first"
            )
        existing = store.get_list(list_ref) if store.exists(list_ref) else []
        writing = {store_name(i.ref) for i in [*images, *found, *(d[1] for d in direct)]}
        stale = [e.file_name for e in existing
                 if e.file_name not in writing and _replaced(e.ref, image_refs)]
        kept = [e for e in existing if e.file_name not in writing and e.file_name not in stale]
        kept_images = [e for e in kept if not _attests(e)]
        in_list = {i.manifest.digest for i in [*kept_images, *images]}
        for ref, entry, image_digest in direct:
            if attestations == "drop":
                engine.on_event(Warned(target=str(ref), message=(
                    f"{ref} is an attestation manifest (of image {image_digest}): not added "
                    "(--attestations drop)"
                )))
                continue
            if image_digest not in in_list:
                raise UsageError(
                    f"{ref} is the attestation manifest {entry.manifest.digest} of image "
                    f"{image_digest}, which is not in {list_ref}",
                    hint="add the image too (or the index holding both), or leave the "
                    "attestation out",
                )
            found.append(replace(entry, annotations=attestation_annotations(image_digest)))
        check_unique_platforms(
            [Listed(str(i.ref), i.platform) for i in [*kept_images, *images]],
            allow=allow_duplicate_platforms,
            changed={str(i.ref) for i in images} if kept_images else None,
        )
        merged = _checked_settings(engine, store, list_ref, [*kept, *images, *found], settings)
        store.save(list_ref, images + found)
        if stale:
            store.remove_entries(list_ref, stale)
        store.save_settings(list_ref, merged)
    return images + found


def _flattened(ref: Reference, source: Source) -> tuple[list[StoredImage], list[StoredImage]]:
    """An index source's entries as store entries: its images, then its attestations.

    Each is named ``<name>[:<tag>]@<child digest>`` (the source's tag kept, so ``create
    --amend`` can tell which entries a tag gave) and keeps its descriptor's platform and
    annotations.
    """
    images: list[StoredImage] = []
    attestations: list[StoredImage] = []
    for child in source.entries:
        m = child.source.manifest
        annotations: tuple[tuple[str, str], ...] = ()
        if child.descriptor is not None:
            desc = _DESCRIPTOR.decode(child.descriptor)
            annotations = tuple(sorted(desc.annotations.items()))
        entry = StoredImage(
            Reference(ref.registry, ref.repository, ref.tag, m.digest),
            m, child.platform, annotations, descriptor=child.descriptor,
        )
        (attestations if child.attestation_for else images).append(entry)
    return images, attestations


def _flattened_note(ref: Reference, images: int, attestations: int, mode: Attestations) -> str:
    """``<ref> is an index: added its 2 images and 2 attestations`` (or what was dropped)."""
    text = f"{ref} is an index: added its {plural(images, 'image')}"
    if not attestations:
        return text
    if mode == "drop":
        return f"{text}; dropped its {plural(attestations, 'attestation')} (--attestations drop)"
    return f"{text} and {plural(attestations, 'attestation')}"


def _replaced(entry_ref: Reference, given: list[Reference]) -> bool:
    """True when an entry came from a tag given again: ``name:tag`` or ``name:tag@...``."""
    return any(
        g.digest is None and g.tag is not None and g.tag == entry_ref.tag
        and g.repository == entry_ref.repository and g.registry == entry_ref.registry
        for g in given
    )


def _attests(image: StoredImage) -> str:
    """The image digest a stored entry attests ('' for an image entry)."""
    return attested_digest(image.platform, dict(image.annotations))


_DESCRIPTOR = msgspec.json.Decoder(Descriptor)


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
    entries: list[StoredImage],
    settings: ListSettings | None,
) -> ListSettings:
    """The list's settings after this create (call under the lock), checked against the
    list ``push`` would build from ``entries`` (every entry the list will hold: images in
    file-name order, then attestations, as :func:`build_from_store` orders them)."""
    stored = store.get_settings(list_ref) if store.exists(list_ref) else ListSettings()
    merged = merge_settings(stored, settings)
    ordered = sorted(entries, key=lambda i: (bool(_attests(i)), i.file_name or store_name(i.ref)))
    listed = [
        Entry(i.manifest.media_type, i.manifest.size, i.manifest.digest, i.platform)
        for i in ordered
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


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What ``push`` did: the cross-repo children it pushed and the list digest.

    Attributes:
        target: the list reference.
        pushed_children: the children PUT into the target repository.
        digest: the list's digest.
        children: every entry's digest, in list order.
        existing: ``--existing skip``: ``{tag: digest}`` when the tag held another digest
            and was left as it is (nothing was written); else empty.
    """

    target: Reference
    pushed_children: list[str]
    digest: str
    children: tuple[str, ...] = ()
    existing: dict[str, str] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """True when ``--existing skip`` left the tag as it was (the list was not pushed)."""
        return bool(self.existing)

    def lines(self) -> list[str]:
        """docker's stdout lines: ``Pushed ref <ref>@<digest> with digest: <digest>``, digest;
        none when the list was not pushed (:attr:`skipped`)."""
        if self.skipped:
            return []
        name = self.target.name
        out = [f"Pushed ref {name}@{d} with digest: {d}" for d in self.pushed_children]
        return [*out, self.digest]


def build_from_store(
    list_ref: Reference, images: list[StoredImage], on_event: EventSink = no_events
) -> list[Child]:
    """Check stored entries as docker's ``buildManifestList`` does and make list children.

    Order: the images in store order (docker's: file names), then the attestation entries,
    each after the ones of images listed before its own (file names among equals). An
    attestation whose image is not in the list is left out, with a
    :class:`~manyfest.events.Warned` event. Stored descriptor annotations are written into
    the list (docker-written entries have none, so a plain list's bytes are docker's); an
    entry flattened from a source index is written as that index's exact descriptor while
    it agrees with the entry (so ``push`` and ``publish`` give the same list digest).

    An entry may live on another registry than the list (docker refuses it): its manifest
    is copied with its exact bytes and its blobs streamed across
    (:meth:`~manyfest.engine.Engine.ensure_blob`).

    Raises:
        UsageError: an entry lacks os or architecture (checked before any write).
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
        children.append(Child(Source(image.ref, image.manifest, p), p, image.annotations,
                              descriptor=image.exact_descriptor(),
                              attestation_for=_attests(image)))
    plain = [c for c in children if not c.attestation_for]
    position = {c.source.manifest.digest: i for i, c in reversed(list(enumerate(plain)))}
    attestations: list[tuple[int, int, Child]] = []
    for i, c in enumerate(children):
        if not c.attestation_for:
            continue
        if c.attestation_for not in position:
            on_event(Warned(target=str(list_ref), message=(
                f"{c.source.ref} in {list_ref} is an attestation of {c.attestation_for}, "
                "which is not in the list: not pushed"
            )))
            continue
        attestations.append((position[c.attestation_for], i, c))
    return plain + [c for _, _, c in sorted(attestations, key=lambda t: t[:2])]


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
        attestations = [i for i in annotated if _attests(i)]
        remedy = (
            f"or leave the attestations out: `manyfest create --amend --attestations drop "
            f"{list_ref} SOURCE...`" if attestations
            else f"or remove them: `manyfest annotate --remove-annotation KEY {list_ref} IMAGE`"
        )
        raise UsageError(
            f"{list_ref} would be a Docker manifest list ({mediatypes.DOCKER_LIST}), whose "
            f"entries have no annotations; annotated: {names}",
            hint="descriptor annotations need an OCI index: push with --media-type oci (or "
            f"create the list with it), {remedy}",
        )


@dataclass(frozen=True, slots=True)
class LocalList:
    """A local list as ``push`` writes it: the children, the settings, the bytes.

    Attributes:
        children: the entries (images in store order, then attestations).
        settings: what ``create`` stored with the command line's settings over it.
        options: the engine options the settings make (``skip_unchanged`` off: docker's
            push always PUTs).
        listed: the list's bytes.
    """

    children: list[Child]
    settings: ListSettings
    options: PublishOptions
    listed: Manifest


async def build_local_list(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    settings: ListSettings | None = None,
) -> LocalList:
    """The list ``push`` writes for a local list (``inspect --raw`` shows the same bytes).

    Raises:
        NoSuchManifestError: the list is not in the local store, or has no entry.
        UsageError: an entry without os/arch; descriptor or index
            annotations, artifactType or subject on a list that comes out as a Docker list.
        NotFoundError: the subject is not in the target repository.
    """
    images = store.get_list(list_ref)
    if not images:
        raise NoSuchManifestError(f"No such manifest: {list_ref}")
    children = build_from_store(list_ref, images, engine.on_event)
    wanted = merge_settings(store.get_settings(list_ref), settings)
    options = _options(wanted, skip_unchanged=False)
    refuse_docker_list_annotations(list_ref, images, choose_media_type(
        list_ref, [c.entry() for c in children], wanted.annotations, options
    ))
    listed = await engine.build_list(list_ref, children, wanted.annotations or None, options)
    return LocalList(children, wanted, options, listed)


async def push(
    engine: Engine,
    store: ManifestStore,
    list_ref: Reference,
    *,
    purge: bool = False,
    settings: ListSettings | None = None,
    existing: Literal["fail", "skip", "overwrite"] = "overwrite",
) -> PushOutcome:
    """``docker manifest push [--purge] LIST``: publish a local list.

    Blobs of cross-repo children are made present in the target repository (mount, else
    copy; from another registry, streamed across: docker refuses such sources), children PUT
    by digest concurrently (attestation manifests too), then the list PUT at its tag.
    Entries are in store file-name order (docker's), attestation entries moved after the
    images (:func:`build_from_store`); a list without attestations or stored annotations has
    docker's bytes, so its digest equals ``docker manifest push``'s for the same store.
    Unless list settings were given: those ``create`` stored, with ``settings`` (the command
    line's) over them.

    ``existing`` (``--existing``): ``overwrite`` PUTs the list whatever the tag holds
    (docker's push); ``fail`` and ``skip`` HEAD the tag first: when it holds the list
    nothing is written; when it holds another digest, ``fail`` raises and ``skip`` writes
    nothing (the outcome's :attr:`PushOutcome.existing` names it; ``purge`` then keeps the
    local list).

    Raises:
        NoSuchManifestError: the list is not in the local store.
        UsageError: an entry without os/arch, or descriptor annotations on a Docker list
            (nothing written).
        ExistingTagError: ``existing="fail"`` and the tag holds another digest.
        ImmutableTagError: the registry refused to overwrite the tag (immutable tags).
        RegistryError, TransportError: the push failed; the tag is left where it was.
    """
    if list_ref.digest:
        raise UsageError(f"manifest list {list_ref} must be named by a tag, not a digest")
    local = await build_local_list(engine, store, list_ref, settings)
    result = await engine.publish(
        list_ref, local.children, annotations=local.settings.annotations or None,
        options=replace(local.options, existing=existing), built=local.listed,
    )
    if result.error is not None:
        raise result.error
    if purge and not result.existing:
        with store.locked(list_ref):
            store.remove(list_ref)
    return PushOutcome(list_ref, result.pushed_children, result.digest,
                       children=result.children, existing=result.existing)


def _unique(refs: list[Reference]) -> list[Reference]:
    seen: set[str] = set()
    out = []
    for ref in refs:
        if str(ref) not in seen:
            seen.add(str(ref))
            out.append(ref)
    return out

