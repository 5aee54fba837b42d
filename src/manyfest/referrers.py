"""Referrers travel with the children they describe: signatures, SBOMs, attestations.

When the engine makes a child manifest present in another repository
(:meth:`~manyfest.engine.Engine.ensure_child`; ``manyfest copy``: every child it PUTs and
the manifest it copies), :meth:`Referrers.carry` copies what is attached to it in its
source repository, found three ways:

* the OCI 1.1 **referrers API** (distribution-spec "Listing Referrers":
  ``GET /v2/<name>/referrers/<digest>`` answers an image index of descriptors, paged by
  ``Link``). Support is probed once per registry per run: a 200 with an image index is
  support; a 404 (the spec's signal), 400, 405 or 406 is none. An ``OCI-Subject`` header on a
  PUT is not relied on;
* else the **referrers tag schema** (distribution-spec "Unavailable Referrers API"): the tag
  ``<alg>-<hex>`` (``sha256-<hex>``) holding an image index of the referrers;
* **cosign's tags** ``sha256-<hex>.sig`` (signatures), ``.att`` (attestations) and
  ``.sbom`` (SBOMs), each an image manifest whose subject is the digest in its name.

Which tags a repository has is read once per repository per run (``tags/list``), so a
child without referrers costs no request of its own on a registry without the API.

Each referrer is copied exactly (its blobs made present by
:meth:`~manyfest.engine.Engine.ensure_blob`, its manifest PUT with the same bytes, so the
same digest): by digest for a referrer with a ``subject``, at its tag for cosign's. In the
target, a referrer with a ``subject`` is listed by the registry itself where it has the
referrers API; elsewhere the target's fallback tag is updated as the spec asks of a client:
read, merge (every existing descriptor kept, new ones appended), write, under a lock per
(registry, repository, tag) within the run and with ``If-Match`` on the ETag read (a registry
that answers ``412 Precondition Failed`` gets the merge again, up to
:data:`FALLBACK_TRIES` times).

Referrers of referrers (a signature of an SBOM) are followed too, to :data:`DEPTH` levels
below the child; deeper ones are not looked for.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Hashable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import msgspec

from manyfest import mediatypes
from manyfest.content import Manifest
from manyfest.errors import ManyfestError, NotFoundError, RegistryError
from manyfest.events import Warned
from manyfest.models import Descriptor
from manyfest.reference import Reference
from manyfest.words import plural

if TYPE_CHECKING:
    from manyfest.engine import Engine, OnceMap, Source

Mode = Literal["copy", "skip"]
T = TypeVar("T")
Via = Literal["api", "tag", "cosign"]

DEPTH = 2
"""Levels of referrers copied below a child: its referrers (1) and theirs (2: a signature of
an SBOM, an attestation's signature). Deeper ones are not looked for."""
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
"""cosign's tag suffixes: signatures, attestations, SBOMs (``sha256-<hex>.sig`` ...)."""
FALLBACK_TRIES = 5
"""Read-modify-write rounds of a fallback tag whose conditional PUT the registry refuses
(412: another client changed it in between)."""

mode_override: contextvars.ContextVar[Mode | None] = contextvars.ContextVar(
    "manyfest_referrers_mode", default=None
)
"""The referrers mode of the work in this context (set by
:meth:`~manyfest.engine.Engine.publish` from :attr:`PublishOptions.referrers`); ``None``
outside it. ``skip`` here or in :attr:`Referrers.mode` skips."""


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``<alg>-<hex>``, the hex truncated to
    64 characters (``sha256:ab..`` → ``sha256-ab..``)."""
    alg, _, encoded = digest.partition(":")
    return f"{alg}-{encoded[:64]}"


def cosign_tag(digest: str, suffix: str) -> str:
    """cosign's tag for ``digest``: ``sha256-<hex>`` + ``.sig``, ``.att`` or ``.sbom``."""
    return digest.replace(":", "-") + suffix


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest attached to another (its subject).

    Attributes:
        subject: the digest it is attached to.
        digest: its own digest.
        media_type: its media type.
        artifact_type: its ``artifactType`` (else its config's media type); '' unknown.
        via: how it was found: ``api`` (referrers API), ``tag`` (the referrers tag schema)
            or ``cosign`` (a cosign tag).
        size: its size in bytes.
        tag: a cosign referrer's tag ('' otherwise).
    """

    subject: str
    digest: str
    media_type: str
    artifact_type: str
    via: Via
    size: int = 0
    tag: str = ""

    def json(self) -> dict[str, str]:
        """The report's ``referrers`` entry."""
        return {"subject": self.subject, "digest": self.digest, "media_type": self.media_type,
                "artifact_type": self.artifact_type, "via": self.via}

    def stale_json(self) -> dict[str, str]:
        """The report's ``stale_referrers`` entry: ``subject`` (the old list), ``digest``,
        ``artifact_type``, ``via``, and for a cosign referrer its ``tag``."""
        doc = {"subject": self.subject, "digest": self.digest,
               "artifact_type": self.artifact_type, "via": self.via}
        if self.tag:
            doc["tag"] = self.tag
        return doc

    def label(self) -> str:
        """``digest (tag)`` for a cosign referrer (its suffix says signature, attestation
        or SBOM; its artifact type is only cosign's config type), else
        ``digest (artifact type)``, for a message."""
        what = self.tag or self.artifact_type or self.media_type
        return f"{self.digest} ({what})" if what else self.digest


class _Artifact(msgspec.Struct, kw_only=True):
    """What the fallback index's descriptor of a referrer takes from its manifest."""

    media_type: str = msgspec.field(name="mediaType", default="")
    artifact_type: str = msgspec.field(name="artifactType", default="")
    config: Descriptor | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class _Entry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A descriptor written into a fallback index (image-spec ``descriptor.md`` order)."""

    media_type: str = msgspec.field(name="mediaType")
    digest: str
    size: int
    artifact_type: str = msgspec.field(name="artifactType", default="")
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class _DigestOnly(msgspec.Struct):
    digest: str = ""


_ARTIFACT = msgspec.json.Decoder(_Artifact)
_DIGEST_ONLY = msgspec.json.Decoder(_DigestOnly)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


def artifact_type(manifest: Manifest) -> str:
    """A referrer's artifact type as the referrers API reports it: its ``artifactType``,
    else (an image manifest) its config's media type; '' when neither."""
    doc = _ARTIFACT.decode(manifest.raw)
    if doc.artifact_type:
        return doc.artifact_type
    return doc.config.media_type if doc.config is not None else ""


def subject_of(manifest: Manifest) -> str:
    """The digest in a manifest's ``subject`` ('' when it has none)."""
    doc = _ARTIFACT.decode(manifest.raw)
    return doc.subject.digest if doc.subject is not None else ""


def index_entry(manifest: Manifest) -> bytes:
    """The descriptor of a referrer in a fallback index: ``mediaType``, ``digest``,
    ``size``, ``artifactType`` and the manifest's ``annotations`` (distribution-spec:
    the same fields the referrers API lists)."""
    doc = _ARTIFACT.decode(manifest.raw)
    return msgspec.json.encode(_Entry(
        media_type=manifest.media_type, digest=manifest.digest, size=manifest.size,
        artifact_type=artifact_type(manifest), annotations=doc.annotations,
    ))


def merge_index(current: Manifest | None, entries: list[bytes]) -> Manifest | None:
    """A fallback index with ``entries`` appended to ``current``'s (every existing
    descriptor kept as its bytes, every other top-level field too; entries whose digest is
    already listed left out); ``None`` when nothing is new.

    Raises:
        InvalidManifestError: ``current`` is not an index body.
    """
    fields: dict[str, Any] = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX}
    listed: list[msgspec.Raw] = []
    if current is not None:
        current.index()  # an index, or InvalidManifestError
        fields = dict(_FIELDS.decode(current.raw))
        raw = fields.get("manifests")
        listed = list(_RAW_LIST.decode(raw)) if raw is not None else []
    have = {_DIGEST_ONLY.decode(r).digest for r in listed}
    new = []
    for entry in entries:
        digest = _DIGEST_ONLY.decode(entry).digest
        if digest not in have:
            have.add(digest)
            new.append(msgspec.Raw(entry))
    if not new:
        return None
    fields["manifests"] = [*listed, *new]
    raw_index = msgspec.json.encode(fields)
    return Manifest.from_bytes(raw_index, mediatypes.OCI_INDEX)


@dataclass(frozen=True, slots=True)
class _Probe:
    """The first referrers API answer of a registry: where it was asked and what came."""

    key: tuple[str, str]
    answer: list[Descriptor] | None


_CLIENT_METHODS = ("list_tags", "get_referrers", "get_manifest_etag", "put_manifest_if_match")


class Referrers:
    """The referrers work of one engine run (see the module's text).

    Args:
        engine: the run's engine (its client, events, blob and manifest writes).

    Attributes:
        mode: ``copy`` (default) or ``skip`` (no referrer is looked for or written): the
            engine option a command sets (``--referrers``; ``push`` and ``copy`` set it,
            ``publish`` too). Work under :meth:`~manyfest.engine.Engine.publish` also follows
            its options' ``referrers``: ``skip`` in either skips.
    """

    def __init__(self, engine: Engine) -> None:
        from manyfest.engine import OnceMap

        self.engine = engine
        self.mode: Mode = "copy"
        self._probes: OnceMap[_Probe] = OnceMap()
        self._tags: OnceMap[frozenset[str]] = OnceMap()
        self._found: OnceMap[list[Referrer]] = OnceMap()
        self._manifests: OnceMap[Manifest] = OnceMap()
        self._placed: OnceMap[None] = OnceMap()
        self._locks: dict[Hashable, anyio.Lock] = {}
        self._carried: OnceMap[list[Referrer]] = OnceMap()
        self._copied: dict[tuple[str, str, str, str, str], list[Referrer]] = {}

    @property
    def active(self) -> bool:
        """True when referrers are copied in this context (mode ``copy`` and a client with
        the referrers calls)."""
        if "skip" in (mode_override.get(), self.mode):
            return False
        client = self.engine.client
        return all(hasattr(client, m) for m in _CLIENT_METHODS)

    # ------------------------------------------------------------------ reading

    async def api(self, ref: Reference, digest: str) -> list[Descriptor] | None:
        """The referrers of ``digest`` in ``ref``'s repository by the referrers API; ``None``
        when the registry has none (probed once per registry per run: the first question
        asked is the probe, and its answer is used)."""
        probe = await self._probes.get(ref.registry, partial(self._probe, ref, digest))
        if probe.answer is None:
            return None
        if probe.key == (ref.repository, digest):
            return probe.answer
        found = await self.engine.client.get_referrers(ref, digest)
        return found or []

    async def _probe(self, ref: Reference, digest: str) -> _Probe:
        answer = await self.engine.client.get_referrers(ref, digest)
        return _Probe((ref.repository, digest), answer)

    async def has_api(self, ref: Reference, digest: str) -> bool:
        """True when ``ref``'s registry has the referrers API (one probe per registry per
        run, asking for ``digest``'s referrers in ``ref``'s repository when not yet known)."""
        probe = await self._probes.get(ref.registry, partial(self._probe, ref, digest))
        return probe.answer is not None

    async def tags(self, ref: Reference) -> frozenset[str]:
        """The tags of ``ref``'s repository, listed once per run."""
        key = (ref.registry, ref.repository)
        return await self._tags.get(key, partial(self._list_tags, ref))

    async def listed_tags(self, ref: Reference, tags: list[str]) -> None:
        """Take ``tags`` as the whole tag list of ``ref``'s repository for this run (a list
        the caller read already, e.g. ``copy --all-tags``): :meth:`tags` asks no more."""
        key = (ref.registry, ref.repository)
        await self._tags.get(key, partial(_known, frozenset(tags)))

    async def _list_tags(self, ref: Reference) -> frozenset[str]:
        try:
            return frozenset(await self.engine.client.list_tags(ref))
        except NotFoundError:
            return frozenset()  # no such repository yet: no tags

    async def find(self, ref: Reference, digest: str) -> list[Referrer]:
        """The referrers of manifest ``digest`` in ``ref``'s repository, once per run: the
        referrers API's (else the fallback tag's), then cosign's tags, in that order.

        Raises:
            RegistryError, TransportError: a read failed.
        """
        key = (ref.registry, ref.repository, digest)
        return await self._found.get(key, partial(self._find, ref, digest))

    async def _find(self, ref: Reference, digest: str) -> list[Referrer]:
        from manyfest.engine import run_all

        got: dict[str, Any] = {}

        async def api() -> None:
            got["api"] = await self.api(ref, digest)

        async def tags() -> None:
            got["tags"] = await self.tags(ref)

        probe = self._probes.peek(ref.registry)
        if (probe is not None and probe.answer is None) or self._tags.done(
            (ref.registry, ref.repository)
        ):
            # One of the two is known without a request (a registry without the referrers
            # API, a repository listed already): no task for it, just the other one.
            await api()
            await tags()
        else:
            await run_all(api, tags)
        listed: list[Descriptor] | None = got["api"]
        tags_now: frozenset[str] = got["tags"]
        found: list[Referrer] = []
        if listed is not None:
            found += [Referrer(digest, d.digest, d.media_type, d.artifact_type, "api", d.size)
                      for d in listed]
        elif fallback_tag(digest) in tags_now:
            index = await self.engine.client.get_manifest(ref.with_tag(fallback_tag(digest)))
            if index.is_index:
                found += [Referrer(digest, d.digest, d.media_type, d.artifact_type, "tag",
                                   d.size) for d in index.index().manifests]
        cosign = [cosign_tag(digest, s) for s in COSIGN_SUFFIXES]
        for tag in [t for t in cosign if t in tags_now]:
            manifest = await self.engine.client.get_manifest(ref.with_tag(tag))
            key = (ref.registry, ref.repository, manifest.digest)
            await self._manifests.get(key, partial(_known, manifest))
            found.append(Referrer(digest, manifest.digest, manifest.media_type,
                                  artifact_type(manifest), "cosign", manifest.size, tag))
        seen: set[tuple[str, str]] = set()
        unique = []
        for r in found:
            if (r.digest, r.tag) not in seen:
                seen.add((r.digest, r.tag))
                unique.append(r)
        return unique

    async def manifest(self, ref: Reference, digest: str) -> Manifest:
        """The manifest ``digest`` of ``ref``'s repository (GET by digest, verified), once."""
        key = (ref.registry, ref.repository, digest)
        return await self._manifests.get(
            key, partial(self.engine.client.get_manifest, ref.with_digest(digest)))

    # ------------------------------------------------------------------ copying

    async def carry(self, target: Reference, child: Source) -> None:
        """Copy the referrers of ``child`` (made present in ``target``'s repository) from
        its source repository: the engine's hook in
        :meth:`~manyfest.engine.Engine.ensure_child`, for every source repository a child
        comes from (the same digest from two repositories brings the referrers of both).
        Nothing when inactive (``skip``) or when the child is in the target repository.

        Raises:
            ManyfestError: a referrer could not be read or written (the list fails: pass
                ``--referrers skip`` to publish without them).
        """
        await self.carry_digest(target, child.ref, child.manifest.digest)

    async def carry_digest(self, target: Reference, source: Reference, digest: str) -> None:
        """Copy the referrers of manifest ``digest`` of ``source``'s repository (made
        present, or about to be, in ``target``'s) and theirs, once per run per (target
        repository, source repository, digest); what was copied is kept for :meth:`copied`.
        :meth:`carry` for a child; ``manyfest copy`` calls it for every child it PUT and for
        the manifest it copies. Nothing when inactive (``skip``) or when ``source`` is in
        the target repository.

        Raises:
            ManyfestError: a referrer could not be read or written.
        """
        if not self.active or source.in_repository(target):
            return
        key = (target.registry, target.repository, source.registry, source.repository, digest)

        async def work() -> list[Referrer]:
            return await self.copy(source, target, digest)

        self._copied[key] = await self._carried.get(key, work)

    def carried(self, target: Reference, source: Reference, digest: str) -> bool:
        """True when :meth:`carry_digest` has nothing left to do for ``digest`` of
        ``source``'s repository in ``target``'s: inactive, the same repository, or done
        (successfully) already in this run."""
        if not self.active or source.in_repository(target):
            return True
        return self._carried.done(
            (target.registry, target.repository, source.registry, source.repository, digest))

    async def look_ahead(self, target: Reference, child: Source) -> None:
        """Start :meth:`carry`'s reading early: the referrers of ``child`` in its source
        repository (:meth:`find`, once per run), while the engine makes its blobs present,
        so that the look-up (the referrers API probe, the repository's tag list) is not
        between the child's PUT and its list's. Nothing when :meth:`carry` would do nothing.
        A failed look-up is not raised here: :meth:`find` remembers it, and :meth:`carry`
        raises it after the child's PUT, as without the look-ahead."""
        if not self.active or child.ref.in_repository(target):
            return
        with contextlib.suppress(ManyfestError):
            await self.find(child.ref, child.manifest.digest)

    def copied(self, target: Reference, children: list[tuple[Reference, str]]
               ) -> list[Referrer]:
        """What :meth:`carry_digest` copied into ``target``'s repository for ``children``
        (``(source reference, digest)`` pairs, in their order: each child's referrers
        then theirs)."""
        out: list[Referrer] = []
        for source, digest in children:
            out += self._copied.get((target.registry, target.repository, source.registry,
                                     source.repository, digest), [])
        return out

    async def copy(self, source: Reference, target: Reference, digest: str,
                   depth: int = 1) -> list[Referrer]:
        """Copy the referrers of ``digest`` from ``source``'s repository into ``target``'s,
        and theirs, down to :data:`DEPTH` levels; returns what was copied (each referrer,
        then those of it).

        The hook the ``copy`` command can call for a whole index it copied exactly
        (``digest``: the index's) or any manifest it made present.

        Raises:
            ManyfestError: a referrer could not be read or written.
        """
        from manyfest.engine import run_all

        if source.in_repository(target):
            return []
        found = await self.find(source, digest)
        if not found:
            return []
        placed: dict[int, Manifest] = {}
        nested: dict[int, list[Referrer]] = {}

        async def one(i: int) -> None:
            r = found[i]
            manifest = await self.manifest(source, r.digest)
            placed[i] = manifest
            await self._place(target, source, manifest, r.tag)
            if depth < DEPTH:
                nested[i] = await self.copy(source, target, r.digest, depth + 1)

        await run_all(*(partial(one, i) for i in range(len(found))))
        attached = [placed[i] for i, r in enumerate(found) if r.via != "cosign"
                    and subject_of(placed[i]) == digest]
        if attached and not await self.has_api(target, digest):
            await self.update_fallback(target, digest, attached)
        out: list[Referrer] = []
        for i, r in enumerate(found):
            out.append(r)
            out += nested.get(i, [])
        return out

    async def _place(self, target: Reference, source: Reference, manifest: Manifest,
                     tag: str) -> None:
        key = (target.registry, target.repository, manifest.digest, tag)
        await self._placed.get(key, partial(self._put, target, source, manifest, tag))

    async def _put(self, target: Reference, source: Reference, manifest: Manifest,
                   tag: str) -> None:
        """One referrer made present: its blobs (or, for an index, its manifests) first,
        then its exact bytes PUT by digest, or at its cosign tag.

        A cosign tag the target already has with other content (signatures made in the
        target, e.g. by a production key) is kept: the source's manifest is PUT by digest
        only and a warning says so. Replacing the tag would untag the target's own
        signatures (``cosign verify`` would fail, and garbage collection would delete them).
        """
        from manyfest.engine import run_all

        engine = self.engine
        where = target.with_tag(tag) if tag else target.with_digest(manifest.digest)
        kept = ""
        if tag:
            head = await engine.client.head_manifest(where, push=True)
            if head is not None and head.digest == manifest.digest:
                return
            if head is not None:
                kept = head.digest
                where = target.with_digest(manifest.digest)
        if manifest.is_index:
            entries = manifest.index().manifests

            async def entry(d: Descriptor) -> None:
                await self._place(target, source, await self.manifest(source, d.digest), "")

            await run_all(*(partial(entry, d) for d in entries))
        else:
            await run_all(*(partial(engine.ensure_blob, target, b, source)
                            for b in manifest.blobs()))
        await engine.put_manifest(where, manifest)
        if kept:
            engine.on_event(Warned(
                target=str(target),
                message=f"{target.with_tag(tag)} holds {kept}, not {source.name}'s "
                f"{manifest.digest}: kept; the source's is in {target.name} by digest only "
                "(to carry it, merge the two with cosign or delete the tag and re-run)",
            ))

    async def update_fallback(self, target: Reference, subject: str,
                              manifests: list[Manifest]) -> None:
        """List ``manifests`` (referrers of ``subject``) in the fallback tag of ``target``'s
        repository: read (with its ETag), merge (existing descriptors kept), PUT with
        ``If-Match``; under a lock per (registry, repository, tag) within the run. Nothing is
        written when every one is listed already.

        Raises:
            RegistryError: the tag kept changing (412) :data:`FALLBACK_TRIES` times, or a
                request failed.
            InvalidManifestError: the tag holds something that is not an index.
        """
        tag = fallback_tag(subject)
        ref = target.with_tag(tag)
        lock = self._locks.setdefault((target.registry, target.repository, tag), anyio.Lock())
        entries = [index_entry(m) for m in manifests]
        client = self.engine.client
        refused: RegistryError | None = None
        async with lock:
            for _ in range(FALLBACK_TRIES):
                current, etag = await client.get_manifest_etag(ref)
                merged = merge_index(current, entries)
                if merged is None:
                    return
                refused = await client.put_manifest_if_match(ref, merged, etag)
                if refused is None:
                    return
        assert refused is not None
        raise RegistryError(
            f"update referrers tag {ref}: it changed under every one of {FALLBACK_TRIES} "
            "conditional PUTs", status=refused.status, method="PUT", url=refused.url,
            errors=refused.errors,
            hint="another client is writing the same referrers tag: re-run when it is done",
        )

    # ------------------------------------------------------------------ stale

    async def stale(self, target: Reference, old_digest: str) -> list[Referrer]:
        """The referrers of ``old_digest`` (what a list's tag pointed at before it moved) in
        ``target``'s repository: signatures and attestations of the old list, which do not
        apply to the new one. A failed look-up is a warning, never a failure (the list is
        published); [] when inactive."""
        if not self.active:
            return []
        try:
            return await self.find(target, old_digest)
        except ManyfestError as exc:
            self.engine.on_event(Warned(
                target=str(target),
                message=f"{target}: could not list the referrers of the old list "
                f"{old_digest}: {exc.one_line()}",
            ))
            return []


async def _known(value: T) -> T:
    return value


def stale_message(target: Reference, old_digest: str, new_digest: str,
                  stale: list[Referrer]) -> str:
    """The one-line notice of referrers left behind by a list that moved."""
    names = ", ".join(r.label() for r in stale)
    verb = "no longer applies" if len(stale) == 1 else "no longer apply"
    return (f"{target} moved from {old_digest} to {new_digest}: "
            f"{plural(len(stale), 'referrer')} of the old list {verb} ({names}); sign or "
            "attest the new list")
