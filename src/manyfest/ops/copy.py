"""Copy (promotion): an image or a whole index copied exactly into other repositories.

``manyfest copy SRC DST...`` and a plan's ``copy:`` documents (docs/registries.md "Copy and
promotion"). One copy is one (source reference, target reference) pair:

1. the source's digest: its digest, or one HEAD of its tag (once per run per reference);
2. the target HEADed (its tag, or the digest for a copy by digest): the same digest is
   ``unchanged`` and nothing is written;
3. else the source manifest is fetched once per run (GET by digest, verified) and its tree
   copied (:meth:`manyfest.engine.Engine.copy_tree`: children HEADed by digest, missing
   ones copied children first, blobs through :meth:`~manyfest.engine.Engine.ensure_blob`);
4. the referrers of the manifest (its signatures, SBOMs, attestations; those of every child
   PUT in step 3 came with that child) copied from the source repository
   (:meth:`manyfest.referrers.Referrers.carry_digest`), unless ``referrers="skip"``;
5. the manifest PUT with its exact bytes at the target: the same digest as the source.
   Referrers come before it, so a referrer that cannot be copied fails the copy with the
   tag where it was.

Copies run concurrently (at most ``lists_in_flight`` at once; requests per registry are
bounded by the transport) and share the run's work: a child or blob needed by several copies
into one repository is made present once. Each copy is a
:class:`~manyfest.engine.ListResult` with ``kind="copy"`` and ``source`` set, so it is
reported as publish's lists are (``created | updated | unchanged | failed``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from manyfest import reference
from manyfest.engine import Engine, ListResult, name_failed_registry, run_bounded
from manyfest.errors import ExistingTagError, ImmutableTagError, ManyfestError, RegistryError
from manyfest.events import Finished, Skipped, Started
from manyfest.ops.plan import PlanCopy
from manyfest.reference import Reference
from manyfest.referrers import Mode, mode_override
from manyfest.transport import RequestStats, Transport, current_stats

if TYPE_CHECKING:
    from manyfest.ops.publish import PublishReport

COPIES_IN_FLIGHT = 32
"""Copies run at once by default (requests are limited per registry by the transport)."""

Existing = Literal["fail", "skip", "overwrite"]
"""``--existing``: what a copy does with a target tag that holds another digest."""

TAG_PAGE = 1000
"""Tags asked for per page of ``GET /v2/<name>/tags/list?n=`` (``--all-tags``)."""


@dataclass(frozen=True, slots=True)
class CopyPair:
    """One copy: ``source`` (a tag or digest) to ``target`` (a tag, or by digest alone).

    Attributes:
        source: the reference copied from.
        target: where: a reference with a tag, or (tag ``None``) the repository, by digest;
            a layout by digest has tag ``''`` (an untagged index.json entry).
        document: the plan document it came from (0 on the command line).
    """

    source: Reference
    target: Reference
    document: int = 0


def pairs_of(copy: PlanCopy, tags: Sequence[str] = ()) -> Iterator[CopyPair]:
    """The copies a :class:`~manyfest.ops.plan.PlanCopy` makes, source by source.

    ``tags``: with ``all_tags``, the source repository's tags (each copied to the same tag of
    every target repository). Without: a target with a tag gets that tag; a repository
    gets the source's tag, or the source's digest alone when it names no tag (into an OCI
    layout: an index.json entry with no ref.name, tag ``''``, so the image stays reachable).
    """
    sources = [copy.source.with_tag(t) for t in tags] if copy.all_tags else [copy.source]
    for src in sources:
        for dst in copy.targets:
            if dst.tag:
                target = dst
            elif src.tag:
                target = dst.with_tag(src.tag)
            else:
                assert src.digest is not None
                # A layout keeps what it holds reachable: an index.json entry with no
                # ref.name (tag '', as skopeo writes for oci:DIR); a registry: by digest.
                target = Reference(dst.registry, dst.repository, "" if dst.layout else None,
                                   src.digest)
            yield CopyPair(src, target, copy.document)


async def expand(engine: Engine, copies: Sequence[PlanCopy], *,
                 page_size: int = TAG_PAGE) -> list[CopyPair]:
    """Every copy of ``copies``, in order, each (source, target) pair once; ``all_tags``
    copies list their source repository's tags first (once per repository per run,
    paginated: :meth:`manyfest.registry.RegistryClient.list_tags`).

    Raises:
        NotFoundError: an ``all_tags`` source repository does not exist.
        RegistryError: listing its tags failed.
    """
    listed: dict[str, list[str]] = {}
    out: list[CopyPair] = []
    seen: set[tuple[str, str]] = set()
    for copy in copies:
        tags: list[str] = []
        if copy.all_tags:
            name = copy.source.name
            if name not in listed:
                listed[name] = await engine.client.list_tags(copy.source, page_size=page_size)
                # the referrers' look-ups find their tags in this list (no second one)
                await engine.referrers.listed_tags(copy.source, listed[name])
            tags = listed[name]
        for pair in pairs_of(copy, tags):
            key = (str(pair.source), str(pair.target))
            if key not in seen:
                seen.add(key)
                out.append(pair)
    return out


async def copy_one(engine: Engine, pair: CopyPair, *, dry_run: bool = False,
                   existing: Existing = "overwrite",
                   referrers: Mode | None = None) -> ListResult:
    """Copy ``pair.source`` to ``pair.target`` (see the module docstring for the order).

    ``referrers``: ``copy`` or ``skip`` for this copy (default: the engine's
    :attr:`~manyfest.referrers.Referrers.mode`). What was copied is in the result's
    ``referrers``: those of each child PUT (children before parents), then the manifest's.
    Nothing is read for referrers when the target already holds the digest (``unchanged``)
    or with ``dry_run``.

    Errors are caught into ``status="failed"`` (``error`` names the reference and carries
    the registry's answer); a failure leaves the target tag where it was (the manifest is
    PUT only once its whole tree is present).

    ``existing`` (``--existing``) is for a target tag that holds another digest: ``overwrite``
    (the default, as ``skopeo copy`` and ``crane copy`` do) moves it, and a registry that
    refuses (immutable tags) fails the copy with an
    :class:`~manyfest.errors.ImmutableTagError` in its words; ``fail`` fails the copy before
    anything is written (:class:`~manyfest.errors.ExistingTagError`); ``skip`` leaves the tag
    (``unchanged``, nothing written). Each of the three sets ``existing`` ``{tag: digest it
    holds}`` on the result. A copy by digest has no tag: the policy does not apply.

    With ``dry_run`` nothing is written: the children the target lacks are HEADed and listed
    in ``actions`` (``copy child <digest>``), then the tag move (``put <target> -> <digest>``)
    or, with ``skip``, ``keep <target> at <digest> (--existing skip)``.
    """
    src, dst = pair.source, pair.target
    result = ListResult(dst, [dst.tag] if dst.tag else [], kind="copy", source=str(src),
                        dry_run=dry_run)
    stats = RequestStats()
    token = current_stats.set(stats)
    mode = mode_override.set(referrers if referrers is not None else mode_override.get())
    started = time.monotonic()
    engine.on_event(Started(target=str(dst)))
    try:
        digest = await engine.copy_source_digest(src)
        result.digest = digest
        result.sources = {str(src): digest}
        head = await engine.client.head_manifest(
            dst if dst.tag is not None else dst.with_digest(digest), push=not dry_run)
        result.old_digest = head.digest if head is not None and dst.tag else ""
        if dst.tag:
            result.heads = {dst.tag: result.old_digest}
        if head is not None and head.digest == digest:
            result.status = "unchanged"
            engine.on_event(Skipped(target=str(dst), digest=digest))
            return result
        held = {dst.tag: result.old_digest} if dst.tag and result.old_digest else {}
        if held and existing == "fail":
            result.existing = held
            raise ExistingTagError(
                f"{dst} holds {result.old_digest}, not {src}'s {digest}: --existing fail "
                "leaves the copy undone (nothing was written)", existing=held)
        if held and existing == "skip":
            result.existing = held
            result.status = "unchanged"
            if dry_run:
                result.actions = [f"keep {dst} at {result.old_digest} (--existing skip: "
                                  f"{src} is {digest})"]
            engine.on_event(Skipped(target=str(dst), digest=result.old_digest))
            return result
        origin = Reference(src.registry, src.repository, None, digest)
        manifest = await engine.copy_source_manifest(origin)
        if manifest.is_index:
            result.children = tuple(d.digest for d in manifest.index().manifests)
        pushed = await engine.copy_tree(dst, origin, manifest, dry_run=dry_run)
        if dry_run:
            was = f" (now {result.old_digest})" if result.old_digest else (
                " (new tag)" if dst.tag else " (by digest)")
            result.actions = [f"copy child {d}" for d in pushed]
            result.actions.append(f"put {dst} -> {digest}{was}")
        else:
            await engine.referrers.carry_digest(dst, origin, digest)
            result.referrers = engine.referrers.copied(
                dst, [(origin, d) for d in [*pushed, digest]])
            try:
                await engine.put_manifest(dst, manifest)
            except RegistryError as exc:
                raise await engine.tag_refusal(dst, manifest, exc, held) from exc
            result.pushed_children = pushed
            if dst.tag:
                result.moved = [dst.tag]
        result.status = "updated" if result.old_digest else "created"
    except ManyfestError as exc:
        result.status = "failed"
        result.error = name_failed_registry(exc, [src], dst)
        if isinstance(exc, ImmutableTagError):
            result.existing = dict(exc.existing)
    finally:
        current_stats.reset(token)
        mode_override.reset(mode)
        result.requests = stats.requests
        result.retries = stats.retries
        result.throttled = stats.throttled
        result.manifest_gets = stats.manifest_gets
        result.manifest_heads = stats.manifest_heads
        result.duration_s = time.monotonic() - started
    engine.on_event(Finished(target=str(dst), result=result))
    return result


async def run_copies(engine: Engine, pairs: Sequence[CopyPair], *, dry_run: bool = False,
                     in_flight: int = COPIES_IN_FLIGHT,
                     existing: Existing = "overwrite",
                     referrers: Mode | None = None) -> list[ListResult]:
    """Every pair copied (:func:`copy_one`, with ``existing`` and ``referrers``), at most
    ``in_flight`` at once; the results in the order of ``pairs``."""
    results: list[ListResult | None] = [None] * len(pairs)

    async def one(i: int) -> None:
        results[i] = await copy_one(engine, pairs[i], dry_run=dry_run, existing=existing,
                                    referrers=referrers)

    await run_bounded(one, ((i,) for i in range(len(pairs))), in_flight)
    return [r for r in results if r is not None]


async def copy(engine: Engine, copies: Sequence[PlanCopy], *, dry_run: bool = False,
               in_flight: int = COPIES_IN_FLIGHT, page_size: int = TAG_PAGE,
               existing: Existing = "overwrite",
               referrers: Mode | None = None) -> list[ListResult]:
    """Run ``copies`` (``manyfest copy``, or a plan's ``copy:`` documents): tags listed for
    ``all_tags`` copies, then every (source, target) pair copied concurrently, referrers
    with them (``existing``: see :func:`copy_one`; ``referrers``: ``copy`` or ``skip``;
    default the engine's mode).

    Returns:
        One result per pair, in order (``kind="copy"``).

    Raises:
        ManyfestError: listing an ``all_tags`` source's tags failed (nothing was copied).
    """
    pairs = await expand(engine, copies, page_size=page_size)
    return await run_copies(engine, pairs, dry_run=dry_run, in_flight=in_flight,
                            existing=existing, referrers=referrers)


def brought(results: Sequence[ListResult]) -> dict[str, Reference]:
    """What the copies of ``results`` bring (or, in a dry run, would bring), for the lists of
    the same plan that name it as a source (``publish --dry-run``: the copies wrote nothing,
    so such a source is checked at the copy's source: ``brought`` of
    :func:`manyfest.ops.publish.publish`).

    Returns:
        The target as a list names it (``name:tag``, and ``name@digest``) → the copy's
        source by digest (``name@digest``), for every ``created`` or ``updated`` copy (an
        ``unchanged`` target already holds it; a failed copy brings nothing).
    """
    out: dict[str, Reference] = {}
    for r in results:
        if r.kind != "copy" or r.status not in ("created", "updated") or not r.digest:
            continue
        src = reference.parse(r.source)
        origin = Reference(src.registry, src.repository, None, r.digest)
        dst = r.target
        if dst.tag:
            out.setdefault(str(dst.with_tag(dst.tag)), origin)
        out.setdefault(str(dst.with_digest(r.digest)), origin)
    return out


async def copy_report(engine: Engine, copies: Sequence[PlanCopy], *, dry_run: bool = False,
                      in_flight: int = COPIES_IN_FLIGHT, page_size: int = TAG_PAGE,
                      existing: Existing = "overwrite",
                      referrers: Mode | None = None) -> PublishReport:
    """:func:`copy` with the run's totals: a :class:`~manyfest.ops.publish.PublishReport`
    whose results are the copies (``--json``, ``--report`` as ``publish`` writes them).

    Raises:
        ManyfestError: as :func:`copy`.
    """
    from manyfest.ops.publish import PublishReport

    transport = engine.client.transport
    total = transport.total
    before = (total.requests, total.retries, total.throttled, total.manifest_gets,
              total.manifest_heads)
    per_registry = transport.registry_stats()
    started = time.monotonic()
    results = await copy(engine, copies, dry_run=dry_run, in_flight=in_flight,
                         page_size=page_size, existing=existing, referrers=referrers)
    report = PublishReport(results, dry_run=dry_run)
    add_totals(report, transport, before, per_registry, started)
    return report


def add_totals(report: PublishReport, transport: Transport, before: tuple[int, ...],
               per_registry: dict[str, dict[str, int]], started: float) -> None:
    """Add the transport's counters since ``before`` (requests, retries, throttled, manifest
    GETs and HEADs, per registry) and the wall time since ``started`` to ``report``."""
    total = transport.total
    report.requests += total.requests - before[0]
    report.retries += total.retries - before[1]
    report.throttled += total.throttled - before[2]
    report.manifest_gets += total.manifest_gets - before[3]
    report.manifest_heads += total.manifest_heads - before[4]
    for name, now in transport.registry_stats().items():
        was = per_registry.get(name, {})
        into = report.registries.setdefault(name, {})
        for k, v in now.items():
            into[k] = into.get(k, 0) + v - was.get(k, 0)
    report.duration_s += time.monotonic() - started
