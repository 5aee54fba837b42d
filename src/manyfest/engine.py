"""The publish engine: each unit of network work once per run, lists published in order.

Work units, each keyed and done once per run however many lists need it
(:class:`OnceMap`; the requests of a unit are counted against the list that first needed it):

* ``resolve(source ref)`` → the source's exact manifest bytes and its platform (config blob
  fetched once per config digest);
* ``blob(target repo, digest)`` → present in the target repository (mount first: ``201`` =
  present; ``202`` or a refused mount = the bytes are copied);
* ``child(target repo, digest)`` → the child manifest PUT by digest into the target repository;
* ``list(target ref)`` → created | updated | unchanged | failed.

Order for one list (DESIGN "Invariants"): resolve sources → build the list bytes → HEAD the
target tag (same digest: ``unchanged``, nothing is written) → every blob of every cross-repo
child present → children PUT by digest → list PUT → extra tags. A failure at any step leaves
the tag where it was.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import time
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import msgspec

from manyfest import mediatypes, reference
from manyfest.cache import FactCache
from manyfest.content import (
    Entry,
    JsonStyle,
    Manifest,
    encode_list,
    list_media_type,
    mixed_children,
    oci_only_fields,
)
from manyfest.errors import (
    IMMUTABLE_HINT,
    OVERWRITE_HINT,
    AuthenticationError,
    AuthorizationError,
    CredentialsError,
    DigestMismatchError,
    ExistingTagError,
    ImmutableTagError,
    InvalidManifestError,
    InvalidReferenceError,
    ManifestRejectedError,
    ManyfestError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    TransportError,
    UnsupportedMediaTypeError,
    UsageError,
    VerificationError,
    first_error,
)
from manyfest.events import (
    Copied,
    EventSink,
    Finished,
    Mounted,
    Pushed,
    Resolved,
    Retried,
    Skipped,
    Started,
    Warned,
    no_events,
)
from manyfest.models import ConfigSection, Descriptor, ImageConfig, SubjectDescriptor
from manyfest.platform import Platform
from manyfest.reference import Reference, registry_key, same_registry
from manyfest.referrers import Referrer, Referrers, mode_override, stale_message
from manyfest.registry import RegistryClient
from manyfest.transport import RequestStats, current_stats
from manyfest.words import plural

T = TypeVar("T")
_CONFIG = msgspec.json.Decoder(ImageConfig)
_CONFIG_SECTION = msgspec.json.Decoder(ConfigSection)

OCI_LABEL_PREFIX = "org.opencontainers.image."
"""Config labels copied into index annotations by ``labels_to_annotations``."""

HELD_BLOB_MAX = 4 << 20
"""The largest config blob (bytes) whose verified bytes a run keeps to upload them across
registries from memory, rather than read them again from the source."""
HELD_TOTAL_MAX = 64 << 20
"""At most this many bytes of such configs held at once (past it, they are read again)."""

_NOT_YET_SEEN = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "DIGEST_INVALID"})
"""Manifest PUT refusals that mean "not seen yet" when the content was just made present."""

ATTESTATION = mediatypes.ATTESTATION
REFERENCE_DIGEST = mediatypes.REFERENCE_DIGEST
REFERENCE_TYPE = mediatypes.REFERENCE_TYPE


class _RawIndex(msgspec.Struct):
    manifests: list[msgspec.Raw] = msgspec.field(default_factory=list)


_RAW_INDEX = msgspec.json.Decoder(_RawIndex)


def _no_such_manifest(ref: Reference, exc: NotFoundError | None = None) -> NotFoundError:
    if ref.layout:  # no registry answered: the message says only what is missing
        from manyfest.registry.layout import layout_not_found, no_layout_message

        missing = no_layout_message(ref)
        if missing:  # the words inspect uses for it
            return layout_not_found(missing, ref.layout, "check the path (oci:PATH[:TAG])")
        return layout_not_found(f"no such manifest: {ref}", ref.layout,
                                "check the layout's path and tag")
    return NotFoundError(
        f"no such manifest: {ref}",
        status=exc.status if exc else 404,
        method=exc.method if exc else "HEAD",
        url=exc.url if exc else "",
        errors=exc.errors if exc else (),
        hint="push the image first, or check its name and tag",
    )

Status = Literal["created", "updated", "unchanged", "failed"]


class OnceMap(Generic[T]):
    """Single flight per key: the first caller runs the work, later callers await its result.

    A failure is remembered too: every caller of a failed key gets the same exception. An
    event to wait on is only made when a second caller arrives (most keys have one).
    """

    def __init__(self) -> None:
        self._done: dict[Hashable, T] = {}
        self._failed: dict[Hashable, BaseException] = {}
        self._running: dict[Hashable, anyio.Event | None] = {}

    async def get(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """The result of ``work()`` for ``key``, running it at most once per key."""
        while True:
            if key in self._done:
                return self._done[key]
            if key in self._failed:
                raise self._failed[key]
            if key not in self._running:
                break
            event = self._running[key]
            if event is None:
                event = self._running[key] = anyio.Event()
            await event.wait()
        self._running[key] = None
        try:
            result = await work()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._failed[key] = exc
            raise
        else:
            self._done[key] = result
            return result
        finally:
            waiting = self._running.pop(key)
            if waiting is not None:
                waiting.set()

    def done(self, key: Hashable) -> bool:
        """True when ``key``'s work has succeeded (a :meth:`get` returns at once)."""
        return key in self._done

    def peek(self, key: Hashable) -> T | None:
        """``key``'s result when its work has succeeded, else ``None`` (nothing is run)."""
        return self._done.get(key)

    def forget(self, key: Hashable) -> None:
        """Drop the result remembered for ``key`` (a later :meth:`get` runs the work again);
        nothing happens to work in flight."""
        self._done.pop(key, None)


@dataclass(frozen=True, slots=True)
class Source:
    """A resolved source: where it lives, its exact manifest, its platform or entries.

    Attributes:
        ref: the source reference as given (tag or digest).
        manifest: the manifest's exact bytes (an image, or an index).
        platform: for an image, from the config blob (os, architecture, variant,
            os.version, os.features); ``None`` for an index.
        entries: for an index, its entries flattened (images, then attestations).
    """

    ref: Reference
    manifest: Manifest
    platform: Platform | None
    entries: tuple[Child, ...] = ()

    @property
    def is_index(self) -> bool:
        """True when the source is an index / manifest list."""
        return self.platform is None


@dataclass(frozen=True, slots=True)
class Child:
    """One entry of a list to publish: the child manifest and the platform written for it.

    Attributes:
        source: the child (an image manifest, or an attestation manifest) and where it is.
        platform: the platform written in the list.
        annotations: descriptor annotations (built entries).
        descriptor: the exact descriptor bytes taken from a source index; when set, the entry
            is written with exactly these fields.
        attestation_for: for an attestation entry, the digest of the image it describes.
    """

    source: Source
    platform: Platform | None
    annotations: tuple[tuple[str, str], ...] = ()
    descriptor: bytes | None = None
    attestation_for: str = ""

    def entry(self) -> Entry:
        """The list entry (descriptor + platform) for this child."""
        m = self.source.manifest
        return Entry(
            m.media_type, m.size, m.digest, self.platform, self.annotations, self.descriptor
        )


@dataclass(slots=True)
class ListResult:
    """The outcome of one list.

    Attributes:
        target: the list reference (first tag).
        tags: every tag the list was published to.
        digest: the list digest ('' when it failed before it was built).
        old_digest: what the target tag pointed at before ('' when it did not exist).
        status: created | updated | unchanged | failed.
        error: the error (``None`` unless failed).
        requests: HTTP requests attributed to this list.
        retries: retried exchanges among them.
        throttled: throttle signals (429, 503, rate-limit codes) among the answers.
        duration_s: wall time, in seconds.
        plan_key: the list's plan key (:func:`manyfest.ops.since.plan_key`; '' outside
            ``publish``).
        sources: the digest each source (reference as printed) resolved to.
        since: with ``--since``: ``matched`` (proved unchanged by the report) or why not.
        dry_run: the result of a ``--dry-run``: nothing was written.
        pushed_children: digests of children PUT into the target repository by this list.
        actions: with ``--dry-run``, what publishing would do (mounts, child pushes, tags).
        verified: ``--verify`` checked every tag and child after publishing.
        atomic: published by an ``--atomic`` run (:mod:`manyfest.ops.atomic`).
        tag_digests: ``--atomic`` runs, on a list that failed or was rolled back: the digest
            each tag points at when the run ends ('' when the tag does not exist; a tag not
            looked up is left out).
        manifest_gets: manifest GETs among ``requests`` (what pull quotas count).
        manifest_heads: manifest HEADs among ``requests``.
        same_as: the target of the plan list this one was published with (lists with
            identical bytes in one repository are one unit of work); '' when its own.
        heads: what each tag pointed at before (as looked up; empty when not looked up).
        moved: tags whose PUT the registry accepted in this run (also when the list failed
            at a later tag).
        existing: tags left holding another digest than the list's, each with that digest:
            by ``--existing skip``, failed by ``--existing fail``, or refused by a registry
            that does not overwrite tags (:class:`~manyfest.errors.ImmutableTagError`).
        children: the digest of every entry of the list, in list order (empty when the
            list was not built).
        mirror_of: a plan list's second or later target (``targets:``, ``--mirror``): the
            first target's reference; '' otherwise.
        kind: ``copy`` for a copy's result (see :mod:`manyfest.ops.copy`), else ''.
        source: a copy's source reference.
        referrers: referrers of its children copied into the target repository
            (:mod:`manyfest.referrers`).
        stale_referrers: when the first tag moved from another list: the referrers of that
            old list (its signatures and attestations, which do not apply to the new one).
    """

    target: Reference
    tags: list[str]
    digest: str = ""
    old_digest: str = ""
    status: Status = "failed"
    error: ManyfestError | None = None
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    duration_s: float = 0.0
    plan_key: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    since: str = ""
    dry_run: bool = False
    pushed_children: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    verified: bool = False
    atomic: bool = False
    tag_digests: dict[str, str] | None = None
    manifest_gets: int = 0
    manifest_heads: int = 0
    same_as: str = ""
    heads: dict[str, str] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)
    existing: dict[str, str] = field(default_factory=dict)
    children: tuple[str, ...] = ()
    mirror_of: str = ""
    kind: str = ""
    """``copy`` for the result of a copy (``manyfest copy``, a plan's ``copy:`` document);
    '' for a list."""
    source: str = ""
    """A copy's source reference, as given ('' for a list)."""
    referrers: list[Referrer] = field(default_factory=list)
    stale_referrers: list[Referrer] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """How :meth:`Engine.publish` works.

    Attributes:
        style: bytes layout of built lists (docker's 3-space by default).
        media_type: ``oci`` or ``docker`` forces the list's media type; ``auto`` follows
            docker's rule (an OCI index when the first entry is an OCI manifest, else a
            Docker list); '' is ``auto`` unless a plan document says otherwise.
        lists_in_flight: lists published at once (requests are limited per registry).
        skip_unchanged: HEAD the tags first; write nothing when they already hold the list
            (``publish``). ``False`` always PUTs (``docker manifest push``).
        dry_run: read only: HEAD tags and children, report what would be written.
        verify: after publishing, re-resolve every tag and check every child is present.
        artifact_type: the index's ``artifactType`` (OCI index only; '' none, or the plan's).
        subject: the index's ``subject``, a reference resolved to its descriptor (a full
            reference, ``@DIGEST``/``DIGEST`` or ``:TAG`` in the target repository; it must
            be in the target repository); '' none, or the plan's.
        labels_to_annotations: copy the ``org.opencontainers.image.*`` labels every image
            child's config agrees on into the index annotations (given annotations win);
            ``None``: as the plan says (off by default).
        unchanged_by: ``digest`` (a tag is unchanged when it holds the built list's digest)
            or ``children`` (also when its list has the same children and platforms in
            another JSON layout: :meth:`Engine.same_children`).
        atomic: ``publish --atomic``: every child and list pushed by digest first, then
            every tag moved; a failure moves the tags back (:mod:`manyfest.ops.atomic`).
        existing: what to do with a tag that holds another digest than the list's:
            ``overwrite`` moves it (the default; a registry with immutable tags refuses:
            :class:`~manyfest.errors.ImmutableTagError`); ``fail`` fails the list before
            anything is written (:class:`~manyfest.errors.ExistingTagError`); ``skip``
            leaves it as it is and moves the list's other tags
            (:attr:`ListPlan.existing`). Tags are HEADed first for ``fail`` and ``skip``
            even when ``skip_unchanged`` is off (``push``).
        referrers: ``copy``: the referrers of every child copied into another repository
            come with it, and a list whose tag moved names its old list's referrers
            (:mod:`manyfest.referrers`); ``skip``: none is looked for.
    """

    style: JsonStyle = "docker"
    media_type: str = ""
    lists_in_flight: int = 32
    skip_unchanged: bool = True
    dry_run: bool = False
    verify: bool = False
    artifact_type: str = ""
    subject: str = ""
    labels_to_annotations: bool | None = None
    unchanged_by: Literal["digest", "children"] = "digest"
    atomic: bool = False
    existing: Literal["fail", "skip", "overwrite"] = "overwrite"
    referrers: Literal["copy", "skip"] = "copy"

    def __post_init__(self) -> None:
        if self.style not in ("docker", "manifest-tool", "compact"):
            raise ValueError(
                f"PublishOptions.style must be docker, manifest-tool or compact, not "
                f"{self.style!r}"
            )
        if self.media_type not in ("", "auto", "oci", "docker"):
            raise ValueError(
                f"PublishOptions.media_type must be '', auto, oci or docker, not "
                f"{self.media_type!r}"
            )
        if self.lists_in_flight < 1:
            raise ValueError("PublishOptions.lists_in_flight must be at least 1")
        if self.referrers not in ("copy", "skip"):
            raise ValueError(
                f"PublishOptions.referrers must be copy or skip, not {self.referrers!r}")
        if self.unchanged_by not in ("digest", "children"):
            raise ValueError(
                f"PublishOptions.unchanged_by must be digest or children, not "
                f"{self.unchanged_by!r}"
            )
        if self.existing not in ("fail", "skip", "overwrite"):
            raise ValueError(
                f"PublishOptions.existing must be fail, skip or overwrite, not "
                f"{self.existing!r}"
            )


_LIST_TYPES = {"oci": mediatypes.OCI_INDEX, "docker": mediatypes.DOCKER_LIST}


@dataclass(slots=True)
class ListPlan:
    """What publishing one list takes (:meth:`Engine.plan`), executed by :meth:`Engine.execute`.

    Attributes:
        target: the list reference.
        listed: the list's bytes.
        heads: what each tag points at now ('' when absent; empty when not looked up).
        children: the children to make present in the target repository, in list order.
        tags: the tags to PUT, the target's first ([] when every tag holds the list).
        moved: the tags whose PUT the registry accepted, as :meth:`Engine.execute` goes.
        existing: ``--existing skip``: the tags left holding another digest, each with it.
    """

    target: Reference
    listed: Manifest
    heads: dict[str, str]
    children: list[Source]
    tags: list[str]
    moved: list[str] = field(default_factory=list)
    existing: dict[str, str] = field(default_factory=dict)

    @property
    def kept(self) -> dict[str, str]:
        """Tags left holding another digest than the list's, each with that digest: kept on
        purpose (``--unchanged-by children``: the same children in another layout;
        ``--existing skip``: another list)."""
        return {t: d for t, d in self.heads.items()
                if t not in self.tags and d != self.listed.digest}

    def actions(self) -> list[str]:
        """The plan as lines: every mount, child push and tag move, in execution order."""
        lines: list[str] = []
        for child in self.children:
            # Across registries a blob is streamed (or mounted from the first repository of
            # the target registry that received it in this run).
            verb = "mount" if same_registry(child.ref.registry, self.target.registry) else "copy"
            for blob in child.manifest.blobs():
                lines.append(f"{verb} {blob.digest} from {child.ref.name}")
            lines.append(f"push child {child.manifest.digest} ({child.platform})")
        for tag in self.tags:
            now = self.heads.get(tag, "")
            was = f" (now {now})" if now else " (new tag)"
            lines.append(f"put {self.target.with_tag(tag)} -> {self.listed.digest}{was}")
        for tag, held in self.existing.items():
            lines.append(f"keep {self.target.with_tag(tag)} at {held} (--existing skip: "
                         "it holds another list)")
        return lines

    def status(self) -> Status:
        """The list's status once :attr:`tags` are written: ``updated`` when the target's
        tag existed before, else ``created``; when ``--existing skip`` left the target's
        tag (:attr:`existing`), as the first tag written was. ``unchanged`` when no tag is
        written."""
        if not self.tags:
            return "unchanged"
        first = self.target.tag or "latest"
        if first in self.existing:
            first = self.tags[0]
        return "updated" if self.heads.get(first) else "created"


class Engine:
    """Shared, deduplicated registry work for one run.

    Args:
        client: the run's registry client.
        on_event: called for every :class:`Event` (the CLI turns them into bars or lines).
        cache: on-disk cache of immutable facts (default: none).
    """

    def __init__(
        self,
        client: RegistryClient,
        on_event: EventSink = no_events,
        cache: FactCache | None = None,
    ) -> None:
        self.client = client
        self.on_event = on_event
        self.cache = cache if cache is not None else FactCache(enabled=False)
        self._sources: OnceMap[Source] = OnceMap()
        self._configs: OnceMap[tuple[Platform, dict[str, str]]] = OnceMap()
        self._blobs: OnceMap[bool] = OnceMap()
        self._crossed: OnceMap[Reference] = OnceMap()
        """Blobs streamed in from another registry, by (target registry, digest): the
        repository of that registry that received the bytes (later ones mount from it)."""
        self._held: dict[tuple[str, str], bytes] = {}
        """Config bytes read for a platform and verified, by (source registry, digest), for
        a copy to another registry (:data:`HELD_BLOB_MAX` each, :data:`HELD_TOTAL_MAX` in
        all); let go with the source (:meth:`forget`)."""
        self._held_bytes = 0
        self.hold_configs = True
        """Whether to keep config bytes for copies to other registries at all (``publish``
        turns it off for a plan whose sources are all on their targets' registries)."""
        self._no_mounts: set[str] = set()
        """Target registries (:func:`~manyfest.reference.registry_key`) that answered a
        mount from a repository holding the blob with an upload session (202): a mount
        probe tells nothing there, so a blob HEAD comes before streaming one in."""
        self._children: OnceMap[str] = OnceMap()
        self._subjects: OnceMap[SubjectDescriptor] = OnceMap()
        self._lists: OnceMap[str] = OnceMap()
        self._previous: OnceMap[Manifest | None] = OnceMap()
        """``--unchanged-by children``: a list a tag holds, by (registry, repository,
        digest); ``None`` when it was gone (404)."""
        self._labels: dict[str, dict[str, str]] = {}
        """Config ``org.opencontainers.image.*`` labels per image manifest digest."""
        self._copy_heads: OnceMap[str] = OnceMap()
        """``copy``: the digest a source tag points at, by reference (one HEAD per run)."""
        self._copy_manifests: OnceMap[Manifest] = OnceMap()
        """``copy``: source manifests by (registry, repository, digest), verified."""
        self._copied: OnceMap[list[str]] = OnceMap()
        """``copy``: children made present, by (registry, repository, digest, dry run)."""
        self.referrers = Referrers(self)
        """Referrers carried with children (:mod:`manyfest.referrers`); its ``mode``
        (``copy``/``skip``) is the engine option commands outside ``publish`` set."""

    # ------------------------------------------------------------------ resolve

    async def resolve(self, ref: Reference) -> Source:
        """Resolve a source once per run: exact manifest bytes + platform or entries.

        An image's platform comes from its config blob. An index is flattened: its image
        entries with their exact descriptors, then its attestation entries. Immutable facts
        (manifest bytes by digest, platform by config digest) come from the on-disk cache
        when there; a tag seen in an earlier run is re-checked with one HEAD.

        Raises:
            NotFoundError: the manifest does not exist (``no such manifest: <ref>``).
            UnsupportedMediaTypeError: not an image manifest or index, an index nested in
                an index, or an index attestation whose image the index does not hold.
        """
        return await self._sources.get(str(ref), lambda: self._resolve(ref))

    def forget(self, source: Source, *, labels: bool = True) -> None:
        """Let a resolved source go once no list of the run needs it (a bulk publish calls
        this after the last list naming it is published): the run no longer holds its
        manifest bytes, its entries' or, with ``labels``, its configs' platform and labels
        (a list copying labels to annotations needs them: keep them then). Resolved again
        later, it costs its requests again."""
        self._sources.forget(str(source.ref))
        for s in (source, *(c.source for c in source.entries)):
            self.cache.forget(s.manifest.digest)
            config = ""
            if mediatypes.is_image(s.manifest.media_type):
                with contextlib.suppress(ManyfestError):
                    config = s.manifest.image().config.digest
            held = self._held.pop((registry_key(s.ref.registry), config), None)
            if held is not None:
                self._held_bytes -= len(held)
            if not labels:
                continue
            self._labels.pop(s.manifest.digest, None)
            if config:
                self._configs.forget((s.ref.registry, config))

    async def _manifest(self, ref: Reference, *, confirm: bool = True) -> Manifest:
        """The manifest ``ref`` names now, from the cache where its digest is known."""
        cache = self.cache
        if ref.digest:
            manifest = await self._by_digest(ref, confirm=confirm)
        else:
            manifest = await self._by_tag(ref)
        cache.put_manifest(manifest)
        return manifest

    async def _by_digest(self, ref: Reference, *, confirm: bool = True) -> Manifest:
        """The manifest named by digest: from the cache, or GET.

        The cache knows the bytes of a digest, not where they are: with ``confirm`` a cached
        manifest costs one HEAD by digest, proving the repository has it (a source the
        registry lacks is ``no such manifest`` whatever the cache holds).
        """
        assert ref.digest is not None
        cached = self.cache.manifest(ref.digest)
        if cached is None:
            return await self.client.get_manifest(ref)
        if confirm and await self.client.head_manifest(ref) is None:
            raise _no_such_manifest(ref)
        return cached

    async def _by_tag(self, ref: Reference) -> Manifest:
        cache = self.cache
        manifest: Manifest | None = None
        if cache.tag_hint(ref) is not None:
            # Seen before: one HEAD tells whether it still points at a cached manifest.
            head = await self.client.head_manifest(ref)
            if head is None:
                raise _no_such_manifest(ref)
            if head.digest:
                # The HEAD just proved the repository holds this digest.
                manifest = await self._by_digest(ref.with_digest(head.digest), confirm=False)
        if manifest is None:
            manifest = await self.client.get_manifest(ref)
        cache.put_tag_hint(ref, manifest.digest)
        return manifest

    async def _resolve(self, ref: Reference) -> Source:
        try:
            manifest = await self._manifest(ref)
        except NotFoundError as exc:
            raise _no_such_manifest(ref, exc) from exc
        if manifest.is_index:
            source = await self._flatten(ref, manifest)
        elif mediatypes.is_image(manifest.media_type):
            platform = self.cache.platform(manifest.digest)
            if platform is None:
                # The config is read once for its platform and its labels (no extra request
                # for labels_to_annotations): both are cached by manifest digest.
                platform, labels = await self._config(ref, manifest)
                self.cache.put_manifest(manifest, platform, labels)
            else:
                cached = self.cache.labels(manifest.digest)
                if cached is not None:
                    self._labels[manifest.digest] = cached
            source = Source(ref, manifest, platform)
        else:
            raise UnsupportedMediaTypeError(f"{ref}: unsupported media type {manifest.media_type}")
        self.on_event(Resolved(target=str(ref), digest=manifest.digest))
        return source

    async def _flatten(self, ref: Reference, index: Manifest) -> Source:
        """An index source: every entry's child fetched; images first, then attestations.

        Raises:
            UnsupportedMediaTypeError: an entry is itself an index (nested indexes are not
                flattened), or an attestation describes an image the index does not hold
                (or names none).
        """
        doc = index.index()
        raws = _RAW_INDEX.decode(index.raw).manifests
        children: dict[int, Child] = {}

        async def child(i: int) -> None:
            desc = doc.manifests[i]
            if mediatypes.is_index(desc.media_type):
                raise UnsupportedMediaTypeError(
                    f"{ref}: entry {desc.digest} is itself an index (nested indexes are not "
                    "flattened)",
                    hint="name the inner index or its images directly",
                )
            child_ref = ref.with_digest(desc.digest)
            # An index's children are in its repository (registries check on PUT).
            manifest = await self._manifest(child_ref, confirm=False)
            p = desc.platform
            platform = (
                Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))
                if p is not None
                else None
            )
            target = desc.annotations.get(REFERENCE_DIGEST, "")
            is_attestation = desc.annotations.get(REFERENCE_TYPE) == ATTESTATION or (
                platform is not None and platform.is_unknown and bool(target)
            )
            children[i] = Child(
                Source(child_ref, manifest, platform or Platform("", "")),
                platform,
                descriptor=bytes(raws[i]),
                attestation_for=(target or "?") if is_attestation else "",
            )

        await run_all(*(partial(child, i) for i in range(len(doc.manifests))))
        ordered = [children[i] for i in range(len(doc.manifests))]
        images = [c for c in ordered if not c.attestation_for]
        attestations = [c for c in ordered if c.attestation_for]
        in_index = {c.source.manifest.digest for c in images}
        for a in attestations:
            if a.attestation_for not in in_index:
                names = (
                    "names no image (no vnd.docker.reference.digest annotation)"
                    if a.attestation_for == "?"
                    else f"describes image {a.attestation_for}, which is not in the index"
                )
                raise UnsupportedMediaTypeError(
                    f"{ref}: attestation {a.source.manifest.digest} {names}",
                    hint="re-push the index with the image it attests, or name the image "
                    "directly",
                )
        return Source(ref, index, None, tuple(images + attestations))

    async def _config(self, ref: Reference, manifest: Manifest) -> tuple[Platform, dict[str, str]]:
        """An image's platform and ``org.opencontainers.image.*`` labels, from its config blob
        (fetched once per config digest); the labels are remembered for the manifest."""
        config = manifest.image().config
        facts = await self._configs.get(
            (ref.registry, config.digest), lambda: self._platform(ref, config.digest)
        )
        self._labels[manifest.digest] = facts[1]
        return facts

    async def _platform(
        self, ref: Reference, config_digest: str
    ) -> tuple[Platform, dict[str, str]]:
        data = await self.client.get_blob(ref, config_digest)
        self._hold(ref.registry, config_digest, data)
        try:
            cfg = _CONFIG.decode(data)
        except msgspec.DecodeError as exc:
            raise UnsupportedMediaTypeError(f"{ref}: config {config_digest} is not JSON") from exc
        labels: dict[str, str] = {}
        if bytes(cfg.config) not in (b"", b"null"):
            try:
                section = _CONFIG_SECTION.decode(cfg.config)
            except msgspec.DecodeError:
                section = ConfigSection()  # not an object: no labels (the platform stands)
            for key, value in (section.labels or {}).items():
                if key.startswith(OCI_LABEL_PREFIX) and isinstance(value, str):
                    labels[key] = value
        platform = Platform(
            cfg.os, cfg.architecture, cfg.variant, cfg.os_version, tuple(cfg.os_features)
        )
        return platform, labels

    def _hold(self, registry: str, digest: str, data: bytes) -> None:
        """Keep a config's verified bytes for a copy to another registry, within bounds."""
        key = (registry_key(registry), digest)
        if (not self.hold_configs or key in self._held or len(data) > HELD_BLOB_MAX
                or self._held_bytes + len(data) > HELD_TOTAL_MAX):
            return
        self._held[key] = data
        self._held_bytes += len(data)

    async def labels(self, child: Source) -> dict[str, str]:
        """The ``org.opencontainers.image.*`` labels of an image child's config.

        Known without a request for an image resolved in this run or cached; the config of
        a child taken from an index source (whose platform came from the index) is fetched
        then, once per config digest.
        """
        digest = child.manifest.digest
        known = self._labels.get(digest)
        if known is None:
            known = self.cache.labels(digest)
        if known is None:
            platform, known = await self._config(child.ref, child.manifest)
            self.cache.put_manifest(child.manifest, self.cache.platform(digest) or platform, known)
        self._labels[digest] = known
        return known

    async def common_labels(self, children: list[Child]) -> dict[str, str]:
        """The ``org.opencontainers.image.*`` labels every image child agrees on.

        Attestations are left out; a label missing from one image or differing between two
        is not copied. Keys are sorted (the annotations' order in the list bytes).
        """
        images = [c.source for c in children if not c.attestation_for]
        if not images:
            return {}
        found: dict[int, dict[str, str]] = {}

        async def one(i: int) -> None:
            found[i] = await self.labels(images[i])

        await run_all(*(partial(one, i) for i in range(len(images))))
        common = dict(found[0])
        for i in range(1, len(images)):
            other = found[i]
            common = {k: v for k, v in common.items() if other.get(k) == v}
        return dict(sorted(common.items()))

    async def subject(self, target: Reference, text: str) -> SubjectDescriptor:
        """The descriptor (media type, digest, size) of ``text``, the subject of ``target``.

        ``text`` is a full reference, or ``@DIGEST``/``DIGEST``/``:TAG`` in the target
        repository. The subject must be in the target repository: referrers are listed per
        repository (distribution-spec "Listing Referrers"), and the manifest is fetched
        (one GET, verified) so the descriptor is exact.

        Raises:
            UsageError: ``text`` is not a reference, or names another repository.
            NotFoundError: no such manifest in the target repository.
        """
        ref = subject_reference(target, text)
        return await self._subjects.get(str(ref), lambda: self._subject(target, ref))

    async def _subject(self, target: Reference, ref: Reference) -> SubjectDescriptor:
        try:
            manifest = await self._manifest(ref, confirm=True)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{target}: no such subject {ref}", status=exc.status, method=exc.method,
                url=exc.url,
                hint=f"push the subject to {target.name} first, or check --subject (plan key "
                "subject)",
            ) from exc
        return SubjectDescriptor(
            media_type=manifest.media_type, digest=manifest.digest, size=manifest.size
        )

    async def build_list(
        self,
        target: Reference,
        children: list[Child],
        annotations: dict[str, str] | None,
        opts: PublishOptions,
    ) -> Manifest:
        """The bytes of the list ``target`` (see :func:`~manyfest.content.encode_list`).

        Media type: ``opts.media_type`` (``auto``/'': docker's first-entry rule).
        Annotations: ``annotations`` over the children's common labels when
        ``opts.labels_to_annotations``. A Docker list mixing OCI children (or an OCI index
        with Docker children) is written, with a :class:`~manyfest.events.Warned` event.

        Raises:
            UsageError: annotations, ``artifactType`` or ``subject`` (or labels to copy), or
                an entry with descriptor annotations (an index source's attestations), for a
                list that comes out as a Docker manifest list (nothing is written).
            NotFoundError: the subject does not exist in the target repository.
        """
        entries = [c.entry() for c in children]
        media_type = choose_media_type(target, entries, annotations, opts)
        if media_type == mediatypes.DOCKER_LIST:
            refuse_annotated_entries(target, children, opts)
        given = dict(annotations or {})
        merged = given
        if opts.labels_to_annotations:
            merged = {**await self.common_labels(children), **given}
        subject = await self.subject(target, opts.subject) if opts.subject else None
        warning = mixed_warning(target, media_type, entries)
        if warning is not None:
            self.on_event(warning)
        return encode_list(
            entries, annotations=merged or None, style=opts.style, media_type=media_type,
            artifact_type=opts.artifact_type, subject=subject,
        )

    # ------------------------------------------------------------------ write path

    async def ensure_blob(self, target: Reference, blob: Descriptor, source: Reference) -> bool:
        """Make a blob present in the target repository, once per (repository, digest),
        whatever registry the source is on.

        Source on the target's registry: mount first; when the registry refuses (202: an
        upload session instead; or a token that does not cover the source repository, as
        token servers granting one scope per token answer), the blob is streamed from the
        source into the target, never held whole.

        Source on another registry (a mount across registries means nothing): the blob
        crosses once per target registry per run (:meth:`_cross_blob`): the first
        repository of the target registry that needs it gets the bytes streamed from the
        source (or uploaded from memory: a config read for its platform), the upload's
        ``POST`` asking to mount it from that repository itself, so a blob already there is
        not sent again (a registry seen not to mount gets a HEAD first instead); later
        repositories of that registry mount it from that one (a refused mount streams it
        again).

        Returns:
            True when mounted (201) or already present, False when the bytes were copied.

        Raises:
            RegistryError, TransportError, DigestMismatchError: as
                :meth:`RegistryClient.copy_blob <manyfest.registry.RegistryClient.copy_blob>`
                and ``mount_blob``; errors of a cross-registry copy name the registry that
                failed (source or target).
        """
        key = (target.registry, target.repository, blob.digest)
        if same_registry(source.registry, target.registry):
            return await self._blobs.get(key, lambda: self._ensure_blob(target, blob, source))
        return await self._blobs.get(key, lambda: self._cross_blob(target, blob, source))

    async def _cross_blob(self, target: Reference, blob: Descriptor, source: Reference) -> bool:
        """:meth:`ensure_blob` for a source on another registry than ``target``."""
        landed = (registry_key(target.registry), blob.digest)
        ran = present = False

        async def first() -> Reference:
            nonlocal ran, present
            ran = True
            present = await self._stream_in(target, blob, source, check=True)
            return target

        try:
            home = await self._crossed.get(landed, first)
        except ManyfestError as exc:
            if ran or not _failed_at(exc, target.registry):
                raise
            # The first repository refused it (its own access or quota): this one may not.
            return await self._stream_in(target, blob, source, check=True)
        if ran:
            return present
        try:
            mounted = await self.client.mount_blob(target, blob.digest, home)
        except (AuthenticationError, AuthorizationError):
            mounted = None  # no pull on the repository that received it: stream it here
        if mounted:
            self.on_event(Mounted(target=str(target), digest=blob.digest, source=home.name))
            return True
        if mounted is False:
            # ``home`` holds the blob: this registry opens an upload instead of mounting.
            self._no_mounts.add(registry_key(target.registry))
        return await self._stream_in(target, blob, source, check=False)

    async def _stream_in(self, target: Reference, blob: Descriptor, source: Reference, *,
                         check: bool) -> bool:
        """Copy a blob from another registry into ``target``: streamed, or from the config
        bytes the run holds. ``check``: unless the repository has it, which the upload's
        ``POST`` asks (a mount from the target repository itself), or a HEAD before it on
        a registry seen not to mount. True when it was there already (nothing sent)."""
        held = (registry_key(source.registry), blob.digest)
        data = self._held.get(held)
        if (data is None and self.hold_configs and blob.media_type in _IMAGE_CONFIGS
                and 0 < blob.size <= HELD_BLOB_MAX):
            # An image config is read once per run, however many need it: the platform
            # read of another source naming it may be in flight (or not yet started); its
            # bytes, held, are what this copy uploads (else the same blob would be read
            # from the source twice, once for the platform and once for the copy).
            with contextlib.suppress(ManyfestError):
                await self._configs.get((source.registry, blob.digest),
                                        lambda: self._platform(source, blob.digest))
            data = self._held.get(held)
        if data is not None and blob.size not in (0, len(data)):
            data = None  # the descriptor says another size: let the stream find out
        size: int | None
        try:
            if check and data is None and registry_key(target.registry) in self._no_mounts:
                if await self.client.blob_exists(target, blob.digest):
                    return True
                check = False
            if check:
                size = await self.client.copy_blob_unless_present(
                    source, target, blob.digest, blob.size or None, data=data)
                if size is None:
                    return True
            else:
                size = await self.client.copy_blob(source, target, blob.digest,
                                                   blob.size or None, data=data)
        except ManyfestError as exc:
            raise name_registry(exc, source, target) from None
        self.on_event(Copied(target=str(target), digest=blob.digest, size=size))
        return False

    async def _ensure_blob(self, target: Reference, blob: Descriptor, source: Reference) -> bool:
        refused: ManyfestError | None = None
        try:
            mounted = await self.client.mount_blob(target, blob.digest, source)
        except (AuthenticationError, AuthorizationError) as exc:
            mounted, refused = False, exc  # the two scopes not granted together: copy
        if mounted:
            self.on_event(Mounted(target=str(target), digest=blob.digest, source=source.name))
            return True
        try:
            size = await self.client.copy_blob(source, target, blob.digest, blob.size or None)
        except (AuthenticationError, AuthorizationError):
            if refused is not None:
                raise refused from None  # the mount's refusal names every scope asked for
            raise
        self.on_event(Copied(target=str(target), digest=blob.digest, size=size))
        return False

    async def put_manifest(self, ref: Reference, manifest: Manifest, *, built: bool = False) -> str:
        """PUT a manifest, retrying while the registry does not yet see what it references.

        A registry may briefly not find a blob or child that is present: another process
        re-linking the same blob into the repository (Distribution empties the link while it
        rewrites it), or a store that is only eventually consistent. Such refusals
        (``MANIFEST_BLOB_UNKNOWN``, ``BLOB_UNKNOWN``, ``DIGEST_INVALID``) are retried after
        0.2, 0.5 and 1 s; any other error, or the fourth refusal, is raised.
        """
        for attempt, wait in enumerate((0.2, 0.5, 1.0, None), start=2):
            try:
                return await self.client.put_manifest(ref, manifest, built=built)
            except ManifestRejectedError as exc:
                if wait is None or not exc.codes & _NOT_YET_SEEN:
                    raise
                self.on_event(Retried(target=str(ref), registry=ref.registry,
                                      what=f"push manifest {ref}",
                                      reason=", ".join(sorted(exc.codes)), wait_s=wait,
                                      attempt=attempt))
                stats = current_stats.get()
                if stats is not None:
                    stats.retries += 1
                await anyio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def ensure_child(self, target: Reference, child: Source) -> str:
        """Make a child manifest present in the target repository by digest, once.

        Every blob it references is made present first (concurrently). A child already in
        the target repository is not touched. Then its referrers are copied from its source
        repository (:meth:`~manyfest.referrers.Referrers.carry`), once per run per source
        repository: the same digest from two repositories brings the referrers of both.
        """
        if child.ref.in_repository(target):
            return child.manifest.digest
        key = (target.registry, target.repository, child.manifest.digest)
        digest = await self._children.get(key, lambda: self._ensure_child(target, child))
        await self.referrers.carry(target, child)  # once per source repository of the digest
        return digest

    async def _ensure_child(self, target: Reference, child: Source) -> str:
        # The child's referrers are looked up while its blobs are made present (the look-up
        # is off the path to the list PUT); they are copied after the child's PUT.
        # Blobs another child already made present (the base layers of every image of a
        # platform) need no task of their own: spawning one is most of the CPU of a fan-out.
        present = self._blobs.done
        await run_all(
            *(
                partial(self.ensure_blob, target, blob, child.ref)
                for blob in child.manifest.blobs()
                if not present((target.registry, target.repository, blob.digest))
            ),
            partial(self.referrers.look_ahead, target, child),
        )
        digest = await self.put_manifest(
            target.with_digest(child.manifest.digest), child.manifest
        )
        self.on_event(Pushed(target=str(target), digest=digest))
        return digest

    # ------------------------------------------------------------------ copy

    async def copy_source_digest(self, source: Reference) -> str:
        """The digest ``source`` names now: its digest, or one HEAD of its tag per run.

        Raises:
            NotFoundError: no such manifest (``no such manifest: <ref>``).
        """
        if source.digest:
            return source.digest

        async def head() -> str:
            found = await self.client.head_manifest(source)
            if found is None:
                raise _no_such_manifest(source)
            return found.digest

        return await self._copy_heads.get(str(source), head)

    async def copy_source_manifest(self, source: Reference) -> Manifest:
        """The exact bytes of ``source`` (a reference by digest), once per run per (registry,
        repository, digest): a GET verified against the digest (or the on-disk cache).

        Raises:
            NotFoundError: no such manifest.
            DigestMismatchError: the registry served other bytes than the digest names.
            UnsupportedMediaTypeError: not a manifest media type manyfest reads.
        """
        assert source.digest is not None
        key = (source.registry, source.repository, source.digest)

        async def fetch() -> Manifest:
            try:
                return await self._manifest(source, confirm=False)
            except NotFoundError as exc:
                raise _no_such_manifest(source, exc) from exc

        return await self._copy_manifests.get(key, fetch)

    async def copy_tree(self, target: Reference, source: Reference, manifest: Manifest, *,
                        dry_run: bool = False) -> list[str]:
        """Make everything ``manifest`` references present in ``target``'s repository, with
        the exact bytes (not ``manifest`` itself: the caller PUTs it, by tag or digest).

        An index: every child (images, attestation manifests, artifact manifests, nested
        indexes), each HEADed by digest in the target repository; a missing one is fetched
        from ``source``'s repository (verified against the digest that named it), its own
        tree copied the same way, then PUT by digest: children before parents, so an
        index is only PUT once every child is present. An image (or artifact) manifest:
        every blob it references, through :meth:`ensure_blob` (mount or stream; foreign and
        non-distributable layers, which live outside registries, are left out). Each child
        is done once per run per (target registry, repository, digest), however many copies
        share it. The referrers of every child PUT come after it (signatures, SBOMs,
        attestations: :meth:`~manyfest.referrers.Referrers.carry_digest`, unless
        ``--referrers skip``); a child the target has already is left as it is.

        Args:
            target: a reference in the repository to copy into.
            source: a reference in the repository holding ``manifest`` and what it names.
            manifest: the manifest whose tree to copy.
            dry_run: read only: HEAD the children, write nothing.

        Returns:
            The digests of the children PUT (or, with ``dry_run``, missing), children before
            parents, each once.

        Raises:
            ManyfestError: a child or blob could not be read or written (the registry's
                answer in the message).
        """
        pushed: list[str] = []
        if manifest.is_index:
            descriptors: dict[str, Descriptor] = {}
            for d in manifest.index().manifests:
                descriptors.setdefault(d.digest, d)
            found: dict[str, list[str]] = {}

            async def child(digest: str) -> None:
                key = (target.registry, target.repository, digest, dry_run)
                found[digest] = await self._copied.get(key, partial(
                    self._copy_child, target, source.with_digest(digest), dry_run))

            await run_all(*(partial(child, d) for d in descriptors))
            for digest in descriptors:
                pushed.extend(d for d in found[digest] if d not in pushed)
        elif not dry_run:
            blobs = [b for b in manifest.blobs() if not _external(b)]
            await run_all(*(partial(self.ensure_blob, target, b, source) for b in blobs))
        return pushed

    async def _copy_child(self, target: Reference, source: Reference,
                          dry_run: bool) -> list[str]:
        """One child of a copied index: present in ``target``'s repository when it already is
        (a registry holds an index only with its children, an image only with its blobs),
        else its tree copied, it PUT by digest, then its referrers copied
        (:meth:`~manyfest.referrers.Referrers.carry_digest`)."""
        assert source.digest is not None
        here = target.with_digest(source.digest)
        if await self.client.head_manifest(here, push=not dry_run) is not None:
            return []
        manifest = await self.copy_source_manifest(source)
        pushed = await self.copy_tree(target, source, manifest, dry_run=dry_run)
        if not dry_run:
            await self.put_manifest(here, manifest)
            self.on_event(Pushed(target=str(target), digest=manifest.digest))
            await self.referrers.carry_digest(target, source, manifest.digest)
        return [*pushed, manifest.digest]

    async def publish(
        self,
        target: Reference,
        children: list[Child],
        *,
        extra_tags: list[str] | None = None,
        annotations: dict[str, str] | None = None,
        options: PublishOptions | None = None,
        built: Manifest | None = None,
        stats: RequestStats | None = None,
        started: float | None = None,
        announce: bool = True,
    ) -> ListResult:
        """Publish one list to ``target`` (and ``extra_tags``), in the engine's order.

        One planning step (:meth:`plan`: build the bytes, HEAD the tags) and one executing
        step (:meth:`execute`); ``--dry-run`` reports the plan instead of executing it, so
        what it shows is what a run does.

        Args:
            target: the list reference (registry/repository:tag).
            children: the resolved entries, in list order.
            extra_tags: more tags pointing at the same list.
            annotations: index-level annotations.
            options: style, media type, skip-unchanged, dry-run and verify switches.
            built: the list bytes when the caller already built them.
            stats: count requests here (a caller that already resolved the sources under
                it); default: a new :class:`RequestStats`.
            started: ``time.monotonic()`` when work on this list began.
            announce: emit the :class:`~manyfest.events.Finished` event (``False``: the
                caller splits the result into several lists and announces each).

        Returns:
            The :class:`ListResult`; errors are caught into ``status="failed"``.
        """
        opts = options or PublishOptions()
        tags = [target.tag or "latest", *(extra_tags or [])]
        result = ListResult(target, tags, dry_run=opts.dry_run)
        stats = stats or RequestStats()
        token = current_stats.set(stats)
        mode = mode_override.set(opts.referrers)
        started = time.monotonic() if started is None else started
        self.on_event(Started(target=str(target)))
        try:
            listed = built or await self.build_list(target, children, annotations, opts)
            result.digest = listed.digest
            plan = await self.plan(target, children, tags, listed, opts)
            result.digest = plan.listed.digest  # --unchanged-by children may keep the tag's
            result.old_digest = plan.heads.get(tags[0], "")
            result.heads = plan.heads
            result.moved = plan.moved  # filled while executing, also when a PUT fails
            result.existing = plan.existing
            result.children = tuple(c.source.manifest.digest for c in children)
            if not plan.tags:
                result.status = "unchanged"
                if opts.dry_run and plan.existing:
                    result.actions = plan.actions()
                self.on_event(Skipped(target=str(target), digest=listed.digest))
            elif opts.dry_run:
                result.actions = plan.actions()
                result.status = plan.status()
            else:
                await self.execute(plan)
                result.pushed_children = [c.manifest.digest for c in plan.children]
                result.status = plan.status()
                await self.referrers_of(result, plan)
                if opts.verify:
                    await self.verify(result, children, kept=plan.kept)
        except ManyfestError as exc:
            result.status = "failed"
            result.error = name_failed_registry(exc, [c.source.ref for c in children], target)
            if isinstance(exc, (ExistingTagError, ImmutableTagError)):
                result.existing = {**result.existing, **exc.existing}
        except BaseExceptionGroup as group:
            leaf = first_error(group)
            if not isinstance(leaf, ManyfestError):
                raise
            result.status = "failed"
            result.error = name_failed_registry(leaf, [c.source.ref for c in children], target)
        finally:
            current_stats.reset(token)
            mode_override.reset(mode)
            result.requests = stats.requests
            result.retries = stats.retries
            result.throttled = stats.throttled
            result.manifest_gets = stats.manifest_gets
            result.manifest_heads = stats.manifest_heads
            result.duration_s = time.monotonic() - started
        if announce:
            self.on_event(Finished(target=str(target), result=result))
        return result

    async def referrers_of(self, result: ListResult, plan: ListPlan) -> None:
        """After a list is published: the referrers its children brought
        (:attr:`ListResult.referrers`) and, when its first tag moved from another list, that
        list's referrers (:attr:`ListResult.stale_referrers`, with a warning naming them)."""
        children = [(c.ref, c.manifest.digest) for c in plan.children]
        result.referrers = self.referrers.copied(result.target, children)
        old = result.old_digest
        if not old or old == result.digest or plan.tags[:1] != result.tags[:1]:
            return
        result.stale_referrers = await self.referrers.stale(result.target, old)
        if result.stale_referrers:
            self.on_event(Warned(target=str(result.target), message=stale_message(
                result.target, old, result.digest, result.stale_referrers)))

    @contextlib.contextmanager
    def probing(self, repositories: frozenset[tuple[str, str]]) -> Iterator[None]:
        """Within the block (one publish run, and every task it starts), :meth:`plan` may
        learn that a target repository of ``repositories`` ((registry, repository) pairs)
        does not exist from one tag-list GET instead of a HEAD per tag
        (:meth:`new_repository`). The answers are the block's own: another run, even on
        this engine, asks again (its repository may exist by then)."""
        token = _probes.set((repositories, OnceMap()))
        try:
            yield
        finally:
            _probes.reset(token)

    async def new_repository(self, target: Reference, *, push: bool) -> bool:
        """True when ``target``'s repository had no tag when this run first asked, for a
        repository named to :meth:`probing` (one tag-list GET per repository per run,
        :meth:`RegistryClient.repository_exists
        <manyfest.registry.RegistryClient.repository_exists>`, instead of a HEAD per tag:
        a release's first publish into a new repository); else False. The run's other tags
        of a repository it writes into are still absent (a tag belongs to one unit of work
        of a run). Any failure of the probe is False: the HEADs then say what is wrong."""
        scope = _probes.get()
        key = (target.registry, target.repository)
        probe = getattr(self.client, "repository_exists", None)
        if scope is None or key not in scope[0] or target.layout or probe is None:
            return False

        async def ask() -> bool:
            try:
                return not await probe(target, push=push)
            except ManyfestError:
                return False

        return await scope[1].get(key, ask)

    async def heads(self, target: Reference, tags: Sequence[str], *, push: bool,
                    tolerant: bool = False) -> dict[str, str]:
        """The digest each tag points at now ('' when absent), HEADed concurrently.

        ``push``: ask for a token that may push (the run writes next). ``tolerant``: a tag
        whose HEAD fails is left out instead of the error being raised (``--atomic``
        records what it can see).

        Raises:
            ManyfestError: a HEAD failed (not ``tolerant``).
        """
        heads: dict[str, str] = {}

        async def head(tag: str) -> None:
            try:
                found = await self.client.head_manifest(target.with_tag(tag), push=push)
            except ManyfestError:
                if tolerant:
                    return
                raise
            heads[tag] = found.digest if found else ""

        await run_all(*(partial(head, tag) for tag in tags))
        return heads

    async def plan(
        self,
        target: Reference,
        children: list[Child],
        tags: list[str],
        listed: Manifest,
        opts: PublishOptions,
    ) -> ListPlan:
        """What publishing ``listed`` at ``tags`` takes: the only reads are the tag HEADs
        (and, with ``--unchanged-by children``, one GET of each other list the tags hold).

        Every child from another repository is made present (its blobs mounted or copied,
        then PUT by digest); tags that already hold the list are not written. When one tag
        already holds the list, the repository holds the list and so every child of it (a
        registry refuses a list whose children are missing): only the other tags are PUT.
        """
        heads: dict[str, str] = {}
        if opts.skip_unchanged or opts.dry_run or opts.existing != "overwrite":
            if await self.new_repository(target, push=not opts.dry_run):
                heads = dict.fromkeys(tags, "")  # no repository yet: no tag to look up
            else:
                heads = await self.heads(target, tags, push=not opts.dry_run)
        kept: set[str] = set()
        if opts.unchanged_by == "children" and heads:
            listed, kept = await self.same_children(target, tags, listed, heads)
        to_put = [t for t in tags if heads.get(t) != listed.digest and t not in kept]
        existing = existing_tags(target, to_put, heads, listed, opts)
        to_put = [t for t in to_put if t not in existing]
        if tags[0] in kept:
            children = []  # the list kept is in the repository: so are its children
        cross: list[Source] = []
        seen: set[str] = set()
        for c in children:
            m = c.source.manifest
            if c.source.ref.in_repository(target) or m.digest in seen:
                continue
            seen.add(m.digest)
            cross.append(c.source)
        if listed.digest in heads.values():
            cross = []  # the list is in the repository: so are its children
        return ListPlan(target, listed, heads, cross if to_put else [], to_put,
                        existing=existing)

    async def tag_refusal(self, ref: Reference, listed: Manifest, exc: RegistryError,
                          heads: dict[str, str]) -> RegistryError:
        """The error to report for a refused PUT of ``listed`` at the tag ``ref``: an
        :class:`~manyfest.errors.ImmutableTagError` when the tag holds another digest and
        the refusal is one of a registry that does not overwrite tags
        (:func:`overwrite_refusal`), else ``exc`` itself.

        What the tag held comes from ``heads`` (the plan's HEADs); when it was not looked
        up (``push``), one HEAD of the tag after a refusal that may be one says.
        """
        tag = ref.tag or "latest"
        held = heads.get(tag)
        if held is None:
            if not _may_refuse_overwrite(exc):
                return exc
            try:
                found = await self.client.head_manifest(ref)
            except ManyfestError:
                return exc
            held = found.digest if found else ""
        return overwrite_refusal(ref, listed, held, exc)

    async def same_children(
        self, target: Reference, tags: list[str], listed: Manifest, heads: dict[str, str]
    ) -> tuple[Manifest, set[str]]:
        """``--unchanged-by children``: the tags whose current list equals ``listed`` but for
        its JSON layout, and the list to publish.

        Each other digest the tags hold is fetched once per run per (registry, repository,
        digest) (a manifest GET by digest, verified; shared by every list and unit whose
        tags hold it) and compared by :func:`list_identity`: the same list media type,
        ``artifactType`` and subject digest, and the same sequence of entries, each the same
        (media type, digest, platform: os, architecture, variant, os.version, os.features);
        whitespace, key order and annotations (index and descriptor) are ignored. Order
        counts: a client takes the first entry matching its platform.

        Returns:
            ``(list, kept)``: ``kept`` are the tags left as they are (``unchanged``). When the
            first tag is among them, ``list`` is its current list (the exact bytes fetched),
            so the other tags that move get those bytes and every tag agrees; else
            ``listed``.
        """
        want = list_identity(listed)
        others = {d for d in heads.values() if d and d != listed.digest}
        found: dict[str, Manifest] = {}

        async def fetch(digest: str) -> None:
            key = (target.registry, target.repository, digest)
            manifest = await self._previous.get(key, partial(self._previous_list, target,
                                                             digest))
            if manifest is None:
                return  # moved since the HEAD: not the same
            try:
                same = manifest.is_index and list_identity(manifest) == want
            except InvalidManifestError:
                same = False  # not a list we can read: the tag moves as by digest
            if same:
                found[digest] = manifest

        await run_all(*(partial(fetch, d) for d in sorted(others)))
        kept = {t for t in tags if heads.get(t) in found}
        first = heads.get(tags[0], "")
        return found.get(first, listed), kept

    async def _previous_list(self, target: Reference, digest: str) -> Manifest | None:
        """The manifest ``digest`` of ``target``'s repository (GET by digest, verified);
        ``None`` when the registry no longer has it."""
        try:
            return await self.client.get_manifest(target.with_digest(digest))
        except NotFoundError:
            return None

    async def execute(self, plan: ListPlan) -> None:
        """Carry out a :meth:`plan`: children (blobs first), then the first tag, then the rest.

        A failure at any step leaves the tags where they were (the list is only PUT once
        every child is in the repository).
        """
        target = plan.target
        await self.push_children(plan)
        first, *rest = plan.tags

        async def put(tag: str) -> None:
            ref = target.with_tag(tag)
            try:
                await self.put_manifest(ref, plan.listed, built=True)
            except RegistryError as exc:
                raise await self.tag_refusal(ref, plan.listed, exc, plan.heads) from None
            plan.moved.append(tag)

        await put(first)
        await run_all(*(partial(put, t) for t in rest))

    async def push_children(self, plan: ListPlan) -> None:
        """The first step of :meth:`execute`: every child of ``plan`` made present in the
        target repository by digest (blobs first), each once per run."""
        target = plan.target
        await run_all(*(
            partial(self.ensure_child, target, c) for c in plan.children
            if not self._child_done(target, c)  # pushed for another list: no task for it
        ))

    def _child_done(self, target: Reference, child: Source) -> bool:
        """True when :meth:`ensure_child` has nothing left to do for ``child`` in
        ``target``'s repository (it is there, and its referrers were carried)."""
        digest = child.manifest.digest
        if child.ref.in_repository(target):
            return True
        return self._children.done((target.registry, target.repository, digest)) and \
            self.referrers.carried(target, child.ref, digest)

    async def push_list_by_digest(self, plan: ListPlan) -> str:
        """PUT the list of ``plan`` by digest (``/v2/<repository>/manifests/<digest>``), no
        tag moved; once per (registry, repository, digest) per run. Call after
        :meth:`push_children` (the registry refuses a list whose children are missing).

        Returns:
            The list's digest.

        Raises:
            ManifestRejectedError: the registry refused the list.
        """
        target, listed = plan.target, plan.listed
        key = (target.registry, target.repository, listed.digest)
        return await self._lists.get(key, lambda: self.put_manifest(
            target.with_digest(listed.digest), listed, built=True))

    async def verify(self, result: ListResult, children: list[Child], *,
                     kept: dict[str, str] | None = None) -> None:
        """``--verify``: every tag resolves to the list digest; every child is present.

        ``kept``: tags left holding another digest on purpose (``--unchanged-by children``,
        :attr:`ListPlan.kept`), each checked against that digest.

        Raises:
            VerificationError: a tag points elsewhere or a child is missing.
        """
        target = result.target
        kept = kept or {}
        heads = await self.heads(target, result.tags, push=False)
        for tag, digest in heads.items():
            expected = kept.get(tag, result.digest)
            if digest != expected:
                raise VerificationError(
                    f"verify {target.with_tag(tag)}: points at {digest or 'nothing'}, "
                    f"expected {expected}"
                )
        missing: list[str] = []

        async def child(c: Child) -> None:
            found = await self.client.head_manifest(target.with_digest(c.source.manifest.digest))
            if found is None:
                missing.append(c.source.manifest.digest)

        await run_all(*(partial(child, c) for c in children))
        if missing:
            raise VerificationError(
                f"verify {target}: children missing from {target.name}: {', '.join(missing)}"
            )
        result.verified = True


def _side(exc: ManyfestError, source: Reference, target: Reference) -> str:
    """Which registry a failed cross-registry copy failed on: ``source`` or ``target``.

    Bytes that do not match their digest are the source's; a registry answer is the
    registry its URL names; else the first of the two names the message mentions.
    """
    if isinstance(exc, DigestMismatchError):
        return "source"
    url = getattr(exc, "url", "") or ""
    host = urlsplit(url).netloc.rpartition("@")[2] if url else ""
    if host and host != target.api_host and host == source.api_host:
        return "source"
    if host and host == target.api_host and host != source.api_host:
        return "target"
    text = exc.message
    # a transport failure names the URL it could not reach: GET http://HOST/v2/: ...
    in_source, in_target = f"//{source.api_host}/" in text, f"//{target.api_host}/" in text
    if in_source != in_target:
        return "source" if in_source else "target"
    at_source, at_target = text.find(source.name), text.find(target.name)
    if at_source >= 0 and (at_target < 0 or at_source < at_target):
        return "source"
    return "target"


def _failed_at(exc: ManyfestError, registry: str) -> bool:
    """True when ``exc`` (named by :func:`name_registry`) failed on ``registry``."""
    return exc.message.startswith(f"target registry {registry}: ")


def name_registry(exc: ManyfestError, source: Reference, target: Reference) -> ManyfestError:
    """``exc`` with its message led by the registry it failed on: ``source registry
    <host>: ...`` or ``target registry <host>: ...`` (a copy between two registries, whose
    credentials, TLS and limits differ). The hint (a login for a 401, a CA for TLS) is the
    failing registry's already. An OCI layout is not called a registry: a failure there
    is led by the layout's name once (``oci:PATH: ...``). Returns ``exc`` itself, changed
    once."""
    if exc.message.startswith(("source registry ", "target registry ")):
        return exc
    side = _side(exc, source, target)
    registry = source.registry if side == "source" else target.registry
    if (source if side == "source" else target).layout:
        if not exc.message.startswith(registry):
            exc.message = f"{registry}: {exc.message}"
            exc.args = (exc.message,)
        return exc
    exc.message = f"{side} registry {registry}: {exc.message}"
    exc.args = (exc.message,)
    return exc


_NAMED = (RegistryError, TransportError, CredentialsError, DigestMismatchError)
"""Failures of one registry (its answer, its connection, its credentials, its bytes):
those a run between two registries names the registry of (:func:`name_failed_registry`)."""


def name_failed_registry(exc: ManyfestError, sources: Sequence[Reference],
                         target: Reference) -> ManyfestError:
    """A failure of a copy or list whose ``sources`` are on other registries than
    ``target``'s: :func:`name_registry` with the source the failure names (its URL, or its
    name in the message; else the first such source), so every failure of a run between
    registries leads with ``source registry <host>:`` or ``target registry <host>:``
    (docs/registries.md "Errors name the registry that failed"): the HEAD of the target's
    tag, the registry's ``/v2/`` probe, a source's resolve, a blob's stream. ``exc``
    itself unchanged when every source is on the target's registry, or the failure is not
    a registry's (a plan's, a platform check's, ``--existing``'s), or is ``no such
    manifest: <reference>`` (the reference names its registry)."""
    if not isinstance(exc, _NAMED) or exc.message.startswith("no such manifest: "):
        return exc
    others = [s for s in sources if not same_registry(s.registry, target.registry)]
    if not others:
        return exc
    url = getattr(exc, "url", "") or ""
    host = urlsplit(url).netloc.rpartition("@")[2] if url else ""

    def names(s: Reference) -> bool:
        return (bool(host) and host == s.api_host) or f"//{s.api_host}/" in exc.message \
            or s.name in exc.message
    source = next((s for s in others if names(s)), others[0])
    return name_registry(exc, source, target)


def existing_tags(target: Reference, tags: list[str], heads: dict[str, str], listed: Manifest,
                  opts: PublishOptions) -> dict[str, str]:
    """``--existing``: the tags among ``tags`` (those to be written) that hold another
    digest than ``listed``'s, each with it, to be left as they are (``skip``); {} for
    ``overwrite`` (they move).

    Raises:
        ExistingTagError: ``fail`` and such a tag (before anything is written).
    """
    if opts.existing == "overwrite":
        return {}
    held = {t: heads[t] for t in tags if heads.get(t) and heads[t] != listed.digest}
    if held and opts.existing == "fail":
        names = ", ".join(f"{target.with_tag(t)} holds {d}" for t, d in held.items())
        raise ExistingTagError(
            f"{names}, not this list's {listed.digest}: --existing fail leaves the list "
            "unpublished (nothing was written)",
            existing=held,
        )
    return held


_OVERWRITE_WORDS = re.compile(r"immutab|overwrit", re.IGNORECASE)
"""Words of a refusal to move a tag that exists: ECR's ``TAG_INVALID`` "... cannot be
overwritten because the tag is immutable", Harbor's "... configured as immutable",
Artifact Registry's "The repository has enabled tag immutability"."""

_OVERWRITE_STATUSES = (412,)
"""Statuses that, on a tag that holds another digest, refuse the overwrite even without
those words (412: Harbor's immutability rules). A 403 or 409 without them keeps its class:
it is as often a missing permission as a refused overwrite."""


def _said(exc: RegistryError) -> str:
    return " ".join(f"{e.code} {e.message} {e.detail}" for e in exc.errors)


def _may_refuse_overwrite(exc: RegistryError) -> bool:
    """True when ``exc`` (a refused tag PUT) may be a refusal to overwrite the tag: a 4xx
    other than 401, 404, 413, 415 and throttling, and not a "not seen yet" code."""
    if isinstance(exc, RateLimitedError) or not 400 <= exc.status < 500:
        return False
    return exc.status not in (401, 404, 413, 415, 429) and not exc.codes & _NOT_YET_SEEN


def overwrite_refusal(ref: Reference, listed: Manifest, held: str,
                      exc: RegistryError) -> RegistryError:
    """An :class:`~manyfest.errors.ImmutableTagError` for the refused PUT of ``listed`` at
    the tag ``ref`` when the tag held another digest (``held``) and the registry's answer is
    a refusal to overwrite it: its words say so (immutable, overwrite) or its status is 412;
    else ``exc`` unchanged. The new error keeps the registry's status and every
    error's code, message and detail; its hint fits the answer: immutable tags
    (:data:`~manyfest.errors.IMMUTABLE_HINT`) when the words say immutable or the status is
    412, else a refusal to overwrite that names no immutability, as Artifactory's "Not
    enough permissions to overwrite artifact" (:data:`~manyfest.errors.OVERWRITE_HINT`)."""
    if not held or held == listed.digest or not _may_refuse_overwrite(exc):
        return exc
    said = _said(exc)
    if not _OVERWRITE_WORDS.search(said) and exc.status not in _OVERWRITE_STATUSES:
        return exc
    immutable = exc.status in _OVERWRITE_STATUSES or "immutab" in said.lower()
    tag = ref.tag or "latest"
    return ImmutableTagError(
        f"push list {ref}: the tag holds {held}, and the registry refuses to move it to "
        f"{listed.digest}",
        status=exc.status, method=exc.method, url=exc.url, errors=exc.errors,
        hint=IMMUTABLE_HINT if immutable else OVERWRITE_HINT,
        existing={tag: held},
    )


_EXTERNAL_LAYERS = frozenset({
    mediatypes.DOCKER_FOREIGN_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


def _external(blob: Descriptor) -> bool:
    """True for a foreign (Windows base) or non-distributable layer: fetched from its
    ``urls``, not held by registries, never copied (registries accept manifests naming
    them without the blob); one without ``urls`` is copied as any blob."""
    return blob.media_type in _EXTERNAL_LAYERS and bool(blob.urls)


def list_identity(listed: Manifest) -> bytes:
    """What ``--unchanged-by children`` compares of a list (:meth:`Engine.same_children`),
    canonically encoded: media type, ``artifactType``, subject digest and the ordered
    (media type, digest, platform) of its entries; layout and annotations left out.

    Raises:
        InvalidManifestError: ``listed`` is not a valid index body.
    """
    doc = listed.index()
    entries = []
    for d in doc.manifests:
        p = d.platform
        platform = None if p is None else [p.os, p.architecture, p.variant, p.os_version,
                                           list(p.os_features)]
        entries.append([d.media_type, d.digest, platform])
    subject = doc.subject.digest if doc.subject is not None else ""
    return msgspec.json.encode([listed.media_type, doc.artifact_type, subject, entries])


def choose_media_type(
    target: Reference,
    entries: list[Entry],
    annotations: dict[str, str] | None,
    opts: PublishOptions,
) -> str:
    """The media type of the list ``target``: ``opts.media_type`` when ``oci`` or
    ``docker``, else docker's first-entry rule (:func:`~manyfest.content.list_media_type`);
    for an OCI layout target (``oci:PATH:TAG``) an OCI index (readers of layouts, skopeo
    among them, only see OCI entries of index.json).

    Raises:
        UsageError: the list comes out as a Docker manifest list but annotations,
            ``artifactType``, ``subject`` or labels to copy were asked for (a Docker list has
            none of them); the hint says how to get an OCI index.
    """
    media_type = _LIST_TYPES.get(opts.media_type) or (
        mediatypes.OCI_INDEX if target.layout else list_media_type(entries))  # layouts: OCI
    if media_type == mediatypes.OCI_INDEX:
        return media_type
    fields = oci_only_fields(annotations, opts.artifact_type, None)
    if opts.subject:
        fields.append("subject")
    if opts.labels_to_annotations:
        fields.append("labels copied to annotations")
    if fields:
        why = (
            "--media-type docker" if opts.media_type == "docker"
            else "its first entry is a Docker image" if entries
            else "it has no entry"
        )
        raise UsageError(
            f"{target}: index {', '.join(fields)} asked for a Docker manifest list ({why}), "
            "which has none",
            hint="pass --media-type oci (plan key media_type: oci) to write an OCI index",
        )
    return media_type


_DESCRIPTOR = msgspec.json.Decoder(Descriptor)


def entry_annotation_keys(child: Child) -> list[str]:
    """The descriptor annotation keys ``child`` is written with (built or exact), sorted."""
    if child.descriptor is not None:
        return sorted(_DESCRIPTOR.decode(child.descriptor).annotations)
    return sorted(k for k, _ in child.annotations)


def refuse_annotated_entries(target: Reference, children: list[Child],
                             opts: PublishOptions) -> None:
    """Refuse descriptor annotations in a list that comes out as a Docker manifest list.

    A Docker manifest list's entries are ``mediaType``, ``size``, ``digest`` and
    ``platform`` only (distribution ``docs/spec/manifest-v2-2.md``): an index source's
    attestation (``vnd.docker.reference.*``) or annotated image cannot be written there.
    ``push`` refuses a local list's annotated entries in the same way.

    Raises:
        UsageError: an entry has annotations; the hint says how to get an OCI index (and,
            for attestations, how to leave them out).
    """
    annotated = [(c, keys) for c in children if (keys := entry_annotation_keys(c))]
    if not annotated:
        return
    why = ("--media-type docker" if opts.media_type == "docker"
           else "its first entry is a Docker image")
    names = ", ".join(f"{c.source.ref} ({', '.join(keys)})" for c, keys in annotated)
    drop = (", or --attestations drop (plan key attestations: drop) to leave the attestations "
            "out" if any(c.attestation_for for c, _ in annotated) else "")
    raise UsageError(
        f"{target} would be a Docker manifest list ({why}), whose entries have no "
        f"annotations; annotated: {names}",
        hint=f"pass --media-type oci (plan key media_type: oci) to write an OCI index{drop}",
    )


def mixed_warning(target: Reference, media_type: str, entries: list[Entry]) -> Warned | None:
    """The warning for a Docker list with OCI children or an OCI index with Docker children
    (allowed, but some registries refuse mixed lists); ``None`` when not mixed."""
    mixed = mixed_children(media_type, entries)
    if not mixed or target.layout:  # a layout takes any mix
        return None
    docker = media_type == mediatypes.DOCKER_LIST
    kind, other = ("a Docker manifest list", "OCI") if docker else ("an OCI index", "Docker")
    first = mixed[0].digest
    return Warned(
        target=str(target),
        message=f"{target} is {kind} with {plural(len(mixed), other + ' child')} of "
        f"{len(entries)} (first {first}); "
        "some registries refuse mixed lists: --media-type sets the list's type",
    )


def subject_reference(target: Reference, text: str) -> Reference:
    """The reference a subject ``text`` names for the list ``target``.

    ``@DIGEST`` or ``DIGEST`` (``sha256:<hex>``) and ``:TAG`` name a manifest of the target
    repository; anything else is parsed as a reference, which must be in the target
    repository (same registry and repository).

    Raises:
        UsageError: not a reference, or in another repository.
    """
    hint = "give the subject as a reference in the list's repository, @DIGEST or :TAG"
    body = text.strip()
    try:
        if body.startswith("@") or _DIGEST_ONLY.match(body):
            ref = reference.parse(f"{target.name}@{body.lstrip('@')}")
        elif body.startswith(":"):
            ref = reference.parse(f"{target.name}{body}")
        else:
            ref = reference.parse(body)
    except InvalidReferenceError as exc:
        raise UsageError(f"subject {text!r}: {exc.message}", hint=hint) from exc
    if not ref.in_repository(target):
        raise UsageError(
            f"subject {ref} is not in {target.name}: the subject of {target} must be in its "
            "repository (referrers are listed per repository)",
            hint=f"copy it into {target.name} first, or name it there",
        )
    return ref


_probes: contextvars.ContextVar[tuple[frozenset[tuple[str, str]], OnceMap[bool]] | None] = \
    contextvars.ContextVar("manyfest_repository_probes", default=None)
"""The repositories a publish run may probe, and its answers (:meth:`Engine.probing`)."""

PROBE_TAGS = 4
"""Tags of one target repository in a plan from which one tag-list GET (404 for a
repository that does not exist) is worth trying instead of a HEAD per tag: it costs one
request more where the repository exists."""

_IMAGE_CONFIGS = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})
"""Config media types of images (whose platform the engine reads)."""

_DIGEST_ONLY = re.compile(r"(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")


async def run_bounded(
    work: Callable[..., Coroutine[Any, Any, object]],
    items: Iterable[tuple[Any, ...]],
    limit: int,
) -> None:
    """``await work(*item)`` for every item, at most ``limit`` at once, started in order.

    As :func:`run_all` over every item (the first error is raised itself, the rest are
    cancelled), but with ``limit`` tasks pulling from ``items`` instead of one task per item
    made up front: a run of 10,000 lists holds ``limit`` tasks, not 10,000 (each a few KiB),
    and ``items`` may be a generator, consumed as work starts.
    """
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(*item)

    await run_all(*(worker for _ in range(max(1, limit))))


async def run_all(*calls: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Run ``calls`` concurrently; on failure raise the first error itself (not a group).

    The other calls are cancelled, as in any anyio task group.
    """
    if len(calls) <= 1:
        if calls:
            await calls[0]()
        return
    try:
        async with anyio.create_task_group() as tg:
            for call in calls[:-1]:
                tg.start_soon(call)
            if calls:
                # The last call runs in this task: one task fewer per group (spawning a task
                # is the main cost of a fan-out of two or four).
                await calls[-1]()
    except BaseExceptionGroup as group:
        raise first_error(group) from None


