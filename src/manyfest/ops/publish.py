"""Bulk publish: every list of a plan, concurrently, in one process and one HTTP session.

Phases:

1. resolve every distinct source of the plan, once each, concurrently, before anything is
   written; the requests of a source are counted against the first list (in plan order)
   that names it.
2. build every list's entries and check them (platform table, duplicate platforms,
   ``--platform`` filters, ``require_platforms``); with ``fail_fast`` a source that does not
   resolve or a list failing a check stops the run here, before any write.
3. publish each list whose entries were built (the engine: HEAD tags → blobs → children →
   list → extra tags); a list that failed in 1 or 2 is ``failed`` without a write
   (keep-going), and the run ends with exit 3. With ``options.atomic`` this phase is
   :func:`manyfest.ops.atomic.publish_atomic`'s two: everything by digest, then every tag.

A :class:`StopRequest` stops a run at any moment (the CLI's SIGINT/SIGTERM handling): no
list is started after it, the lists in flight are cancelled, and :func:`publish` returns the
partial report: the lists finished keep their results, every other list is ``failed`` with a
:class:`~manyfest.errors.NotPublishedError` saying it was interrupted (and, for a list in
flight, whether one of its tag PUTs was cut off: such a tag may point at the new list, never
at an incomplete one, since the engine writes a list only after its children).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Container, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import msgspec

from manyfest.content import Manifest
from manyfest.engine import (
    PROBE_TAGS,
    Child,
    Engine,
    ListResult,
    PublishOptions,
    Source,
    name_failed_registry,
    run_all,
    run_bounded,
)
from manyfest.errors import (
    ExistingTagError,
    ImmutableTagError,
    ManyfestError,
    MissingPlatformsError,
    NotPublishedError,
    UsageError,
)
from manyfest.events import Finished, Phase, SourceDone, Warned
from manyfest.files import atomic_write
from manyfest.ops import since as since_ops
from manyfest.ops.entries import (
    Listed,
    attestation_annotations,
    attested_image,
    check_unique_platforms,
)
from manyfest.ops.plan import PLAN_KEYS, PlanList, check_list_settings
from manyfest.ops.writes import RecordingClient
from manyfest.platform import Platform, enforce, matches
from manyfest.reference import Reference, same_registry
from manyfest.transport import RequestStats, Transport, current_stats

RESOLVES_IN_FLIGHT = 512
"""Sources resolved at once in phase 1 (the transport's per-registry limit bounds the
requests; this bounds the tasks, so a plan of 40,000 sources does not hold 40,000 tasks)."""
SPILL_EVERY = 1000
"""A pipelined run writes the cache's new facts to disk (and lets them go from memory) after
this many sources were released (:meth:`manyfest.cache.FactCache.spill`)."""
READY_AHEAD = 64
"""Groups of lists whose sources have all resolved but which are not yet published, at most,
in a pipelined run (:func:`_pipelined`): past it, no new source is resolved until one is
published. Reads are far cheaper than writes (a list of 4 images: 8 reads, about 60
writes), so without this bound resolution would run to the end of the plan long before
the writes, and every source would be held at once (10,000 lists of their own 4 sources:
hundreds of MB) however soon each is let go after its last list."""
PIPELINED_RESOLVES = 32
"""Sources resolved at once when units are published as their sources resolve
(:func:`_pipelined`): about half the transport's default requests in flight per registry
(64), so sources finish in plan order, the first units start writing early and their
writes find room among the reads (with 512 at once, every source's second request, its
config, would queue behind every first one and all would finish together)."""


def result_json(r: ListResult) -> dict[str, Any]:
    """One list's report object (``--json`` results entry, ``--report`` line)."""
    doc: dict[str, Any] = {
        "target": str(r.target),
        "tags": r.tags,
        "digest": r.digest,
        "old_digest": r.old_digest,
        "status": r.status,
        "error": r.error.one_line() if r.error else None,
        "requests": r.requests,
        "retries": r.retries,
        "throttled": r.throttled,
        "duration_s": round(r.duration_s, 4),
        "manifest_gets": r.manifest_gets,
        "manifest_heads": r.manifest_heads,
    }
    if r.kind:
        doc["kind"] = r.kind
        doc["source"] = r.source
    if r.same_as:
        doc["same_as"] = r.same_as
    if r.mirror_of:
        doc["mirror_of"] = r.mirror_of
    if r.actions:
        doc["actions"] = r.actions
    if r.verified:
        doc["verified"] = True
    doc["plan_key"] = r.plan_key
    doc["sources"] = r.sources
    if r.dry_run:
        doc["dry_run"] = True
    if r.since:
        doc["since"] = r.since
    if r.atomic:
        doc["atomic"] = True
    if r.tag_digests is not None:
        doc["tag_digests"] = r.tag_digests
    if r.existing:
        doc["existing"] = r.existing
    if r.referrers:
        doc["referrers"] = [x.json() for x in r.referrers]
    if r.stale_referrers:
        doc["stale_referrers"] = [x.stale_json() for x in r.stale_referrers]
    return doc


@dataclass(slots=True)
class PublishReport:
    """The results of a publish run, in plan order, and totals."""

    results: list[ListResult] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    manifest_gets: int = 0
    """Manifest GETs of the run (what pull quotas count)."""
    manifest_heads: int = 0
    """Manifest HEADs of the run."""
    registries: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per registry: ``requests``, ``retries`` and ``throttled`` answers of the run."""
    duration_s: float = 0.0
    dry_run: bool = False
    stopped_by: ManyfestError | None = None
    """With ``fail_fast``: the source error that stopped the run before any write."""
    interrupted: str | None = None
    """What stopped the run early (e.g. ``"SIGTERM"``, from :class:`StopRequest`), or None."""
    not_published: int = 0
    """Lists left ``failed`` because the run was interrupted before they were published."""
    partly: int = 0
    """Among :attr:`not_published`: lists some of whose tags had moved (a re-run moves the
    rest)."""
    uncertain: list[str] = field(default_factory=list)
    """Tags whose PUT was cut off by the interruption: each may point at its new list (a
    complete one) or where it was; a re-run settles them."""
    since: str | None = None
    """``--since REPORT``: the report's path (None without ``--since``)."""

    def since_matched(self) -> int:
        """Lists found unchanged from the ``--since`` report without being resolved."""
        return sum(1 for r in self.results if r.since == since_ops.MATCHED)
    atomic: dict[str, Any] | None = None
    """``--atomic`` runs: how the two phases ended (``summary.atomic``, see
    :mod:`manyfest.ops.atomic`); ``None`` otherwise."""
    atomic_line: str = ""
    """``--atomic`` runs that did not publish the release: the one line saying why and where
    the tags are ('' otherwise)."""

    def count(self, status: str) -> int:
        """Lists with ``status``."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        """Lists that failed."""
        return self.count("failed")

    def summary(self) -> dict[str, Any]:
        """Totals: lists per status, requests, retries, wall time."""
        return {
            "lists": len(self.results),
            "created": self.count("created"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "failed": self.failed,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "manifest_gets": self.manifest_gets,
            "manifest_heads": self.manifest_heads,
            "registries": self.registries,
            "duration_s": round(self.duration_s, 4),
            "dry_run": self.dry_run,
            "stopped": self.stopped_by.one_line() if self.stopped_by else None,
            "interrupted": self.interrupted,
            "not_published": self.not_published,
            **({"since": {"report": self.since, "matched": self.since_matched()}}
               if self.since is not None else {}),
        } | ({"atomic": self.atomic} if self.atomic is not None else {})

    def published(self) -> int:
        """Lists whose every tag is right: created, updated or unchanged."""
        return self.count("created") + self.count("updated") + self.count("unchanged")

    def interruption_line(self) -> str:
        """One line for an interrupted run: what was published and what was not.

        E.g. ``37 of 200 lists published (30 created, 5 updated, 2 unchanged), 163 not
        published; re-run to finish``.
        """
        total = len(self.results)
        verb = "checked (--dry-run)" if self.dry_run else "published"
        lists = "list" if total == 1 else "lists"
        line = (
            f"{self.published()} of {total} {lists} {verb} ({self.count('created')} created, "
            f"{self.count('updated')} updated, {self.count('unchanged')} unchanged)"
        )
        failed = self.failed - self.not_published
        if failed:
            line += f", {failed} failed"
        line += f", {self.not_published} not {verb.split()[0]}"
        notes = []
        if self.partly:
            notes.append(f"{self.partly} with some tags moved")
        if self.uncertain:
            notes.append(
                f"{len(self.uncertain)} tag PUT{'s' if len(self.uncertain) != 1 else ''} cut "
                "off in flight: each tag points at its new list or still where it was"
            )
        if notes:
            line += f" ({'; '.join(notes)})"
        if not self.not_published and not failed:
            return line + "; the run had finished before the signal"
        return line + "; re-run to finish"

    def to_json(self) -> bytes:
        """The ``--json`` report: ``{"results": [...], "summary": {...}}``."""
        return b"".join(self.json_chunks())

    def json_chunks(self) -> Iterator[bytes]:
        """:meth:`to_json`'s bytes in pieces, one per list (then the summary), so a report
        of 10,000 lists is written without being held whole: the same bytes as
        ``msgspec.json.format(msgspec.json.encode(doc), indent=2)`` of the whole document
        (2-space indent; a JSON string never holds a raw newline, so re-indenting a
        formatted piece is adding spaces after each newline)."""
        yield b'{\n  "results": ['
        for k, r in enumerate(self.results):
            item = msgspec.json.format(msgspec.json.encode(result_json(r)), indent=2)
            yield (b",\n    " if k else b"\n    ") + item.replace(b"\n", b"\n    ")
        yield b"\n  ]," if self.results else b"],"
        summary = msgspec.json.format(msgspec.json.encode(self.summary()), indent=2)
        yield b'\n  "summary": ' + summary.replace(b"\n", b"\n  ") + b"\n}"

    def to_jsonl(self) -> bytes:
        """The ``--report`` file: JSON Lines, one object per list, in plan order."""
        return b"".join(msgspec.json.encode(result_json(r)) + b"\n" for r in self.results)

    def write_jsonl(self, path: Path) -> None:
        """Write :meth:`to_jsonl` to ``path`` atomically (temporary file, then rename),
        streamed line by line (the bytes of 10,000 lines are never held at once)."""
        atomic_write(path.resolve(), (msgspec.json.encode(result_json(r)) + b"\n"
                                      for r in self.results))


class StopRequest:
    """Asks a running :func:`publish` to stop (no new list starts; lists in flight cancel).

    Create it anywhere; call :meth:`stop` from the thread of the event loop running the
    publish (a signal handler schedules it with ``loop.call_soon_threadsafe``).
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._scopes: list[anyio.CancelScope] = []

    def requested(self) -> bool:
        """True once :meth:`stop` was called."""
        return self.reason is not None

    def stop(self, reason: str) -> None:
        """Stop the run; ``reason`` (e.g. ``"SIGTERM"``) goes to the report and errors."""
        if self.reason is None:
            self.reason = reason
        for scope in self._scopes:
            scope.cancel()

    @contextlib.contextmanager
    def scope(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope that :meth:`stop` cancels (already cancelled if stop came first)."""
        with anyio.CancelScope() as scope:
            if self.requested():
                scope.cancel()
            self._scopes.append(scope)
            try:
                yield scope
            finally:
                self._scopes.remove(scope)


def _no_warning(message: str) -> None:
    """The default warning sink of :func:`_children`: drops the message."""


def _children(
    plan: PlanList,
    sources: dict[str, Source],
    *,
    platforms: Sequence[Platform] = (),
    warn: Callable[[str], None] = _no_warning,
    attested: Mapping[str, str] | None = None,
) -> list[Child]:
    """The entries of a list, in plan order: images first, then attestations.

    An image source gives one entry (platform: the plan's fields over the config's). An
    index source gives its image entries with their exact descriptors (the plan's platform
    does not apply, as in manifest-tool) and, at the end of the list, its attestation entries
    whose image is in the list (none with ``attestations: drop``). Attestations never count
    as platforms; two images with the same platform are refused
    (:func:`~manyfest.ops.entries.check_unique_platforms`) unless the plan allows them.

    ``platforms`` (``--platform``) keeps only the images matching one of them
    (:func:`manyfest.platform.matches`); attestations follow their images. Each kept image's
    platform goes through :func:`manyfest.platform.enforce` under the list's
    ``platform_check``: as written when the plan's override sets os, architecture or
    variant, as built otherwise (``warn`` receives the warnings).

    An attestation manifest named directly (``attested``: source reference → the image it
    describes, see :func:`~manyfest.ops.entries.attested_image`) is an attestation entry
    too, annotated as buildx lists it, as ``create`` stores it.

    Raises:
        PlatformError: an invalid platform, or two images with the same platform.
        MissingPlatformsError: ``platforms`` matched no image of the list.
        UsageError: an attestation manifest named directly without the image it describes;
            an index source's image entry without os and architecture.
    """
    attested = attested or {}
    images: list[Child] = []
    names: dict[int, str] = {}
    attestations: list[Child] = []
    written: set[int] = set()
    for entry in plan.entries:
        source = sources[str(entry.ref)]
        if source.platform is None:
            for child in source.entries:
                if child.attestation_for:
                    attestations.append(child)
                    continue
                p = child.platform
                if p is None or not p.os or not p.architecture:
                    raise UsageError(
                        f"{entry.ref}: entry {child.source.manifest.digest} has no platform "
                        f"(os and architecture), which every image of {plan.target} needs",
                        hint="re-push the index with the entry's platform, or name the image "
                        f"directly ({entry.ref.name}@{child.source.manifest.digest}): its "
                        "platform then comes from its config",
                    )
                images.append(child)
                # Named by the tag given and the child's digest, as `create` stores it.
                ref = entry.ref
                names[id(child)] = str(Reference(ref.registry, ref.repository, ref.tag,
                                                 child.source.manifest.digest))
            continue
        image_digest = attested.get(str(entry.ref), "")
        if image_digest:
            attestations.append(Child(source, source.platform,
                                      attestation_annotations(image_digest),
                                      attestation_for=image_digest))
            continue
        child = Child(source, entry.platform(source.platform))
        o = entry.override
        if o is not None and (o.os or o.architecture or o.variant):
            written.add(id(child))  # the plan changed the platform: checked as written
        images.append(child)
        names[id(child)] = str(entry.ref)
    every_image = {c.source.manifest.digest for c in images}
    for a in attestations if plan.attestations != "drop" else ():
        if a.descriptor is None and a.attestation_for not in every_image:
            raise UsageError(
                f"{a.source.ref} is the attestation manifest {a.source.manifest.digest} of "
                f"image {a.attestation_for}, which is not in {plan.target}",
                hint="add the image too (or the index holding both), or leave the "
                "attestation out",
            )
    if platforms:
        images = _filtered(plan, images, platforms)
    for child in images:
        if child.platform is not None:
            enforce(child.platform, mode=plan.platform_check, written=id(child) in written,
                    name=str(child.source.ref), warn=warn)
    check_unique_platforms(
        [Listed(names[id(c)], c.platform) for c in images],
        allow=plan.allow_duplicate_platforms,
    )
    if plan.attestations == "drop":
        return images
    digests_in_list = {c.source.manifest.digest for c in images}
    kept = [a for a in attestations if a.attestation_for in digests_in_list]
    return images + kept


def _platform_names(children: Sequence[Child]) -> str:
    """The images' platforms, in list order, each once (``linux/amd64, linux/arm64/v8``)."""
    names = dict.fromkeys(str(c.platform) for c in children if c.platform is not None)
    return ", ".join(names) or "no platform"


def _filtered(plan: PlanList, images: list[Child], platforms: Sequence[Platform]) -> list[Child]:
    """The images matching one of ``platforms`` (``--platform``), in list order.

    Raises:
        MissingPlatformsError: none matches.
    """
    kept = [c for c in images if any(matches(c.platform, w) for w in platforms)]
    if not kept:
        raise MissingPlatformsError(
            f"{plan.target}: no image matches --platform "
            f"{', '.join(str(w) for w in platforms)}; its sources have {_platform_names(images)}",
            hint="drop or widen --platform, or add a source for the platform",
        )
    return kept


def check_required(plan: PlanList, children: Sequence[Child]) -> None:
    """Refuse a list missing one of its ``require_platforms``.

    A required platform is present when an image entry (attestations never count) matches
    it as ``--platform`` matching does (:func:`manyfest.platform.matches`: an entry
    ``linux/arm64`` satisfies ``linux/arm64/v8``).

    Raises:
        MissingPlatformsError: one line naming the list, the missing platforms and the
            platforms the list has.
    """
    images = [c for c in children if not c.attestation_for]
    missing = [
        str(r) for r in plan.require_platforms
        if not any(matches(c.platform, r) for c in images)
    ]
    if missing:
        raise MissingPlatformsError(
            f"{plan.target}: missing required platform{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the list has {_platform_names(images)}",
            hint="add the missing sources (a tag that lost an architecture is left where it "
            "was), or change require_platforms / --require-platforms",
        )


async def publish(
    engine: Engine,
    plan: list[PlanList],
    *,
    options: PublishOptions | None = None,
    fail_fast: bool = False,
    stop: StopRequest | None = None,
    platforms: Sequence[Platform] = (),
    since: since_ops.Since | None = None,
    brought: Mapping[str, Reference] | None = None,
) -> PublishReport:
    """Publish every list of ``plan``.

    Args:
        engine: the run's engine.
        plan: the lists, in plan order.
        options: style, dry-run, verify (see :class:`~manyfest.engine.PublishOptions`); its
            ``media_type``, ``artifact_type``, ``subject`` and ``labels_to_annotations``,
            when set, override every plan document's.
        fail_fast: stop before any write when a source does not resolve.
        stop: stops the run early when its :meth:`StopRequest.stop` is called; the report
            then has :attr:`PublishReport.interrupted` set and the lists not published
            ``failed`` with a :class:`~manyfest.errors.NotPublishedError`.
        platforms: ``--platform`` filters: each list keeps only its images matching one of
            them (attestations follow their images); a list left with no image fails.
        since: ``--since REPORT``: lists the previous report proves unchanged are
            ``unchanged`` after one HEAD of their first tag (none with ``trust``) and a HEAD
            of each source tag, never resolved (:mod:`manyfest.ops.since`).
        brought: with ``dry_run``, what the run's ``copy:`` documents would bring
            (:func:`manyfest.ops.copy.brought`: the target as a list names it → the copy's
            source by digest). Such a source is not there yet: it is resolved at the copy's
            source, named as the target (the list's mounts come from there), and the list's
            actions start with a ``source REF: not there yet; checked at ORIGIN ...`` line.
            Ignored without ``dry_run`` (the copies ran first and wrote it).

    Between resolving and writing, every list's entries are built and checked: platform
    table (each list's ``platform_check``; warnings are :class:`~manyfest.events.Warned`
    events, once per image and message), duplicate platforms, ``platforms`` filters and
    ``require_platforms``. A list failing there is ``failed`` without a write.

    Returns:
        A :class:`PublishReport` with one :class:`ListResult` per list, in plan order. With
        ``fail_fast`` and a source that did not resolve or a list failing its checks,
        nothing is written: every list is ``failed`` (with its own error, or "not
        published") and :attr:`PublishReport.stopped_by` is the first list's error.

    Raises:
        PlanError: a list's settings contradict each other (annotations, artifactType,
            subject or labels to copy with media type ``docker``); before any request.
    """
    with engine.probing(probe_repositories(plan)):
        return await _publish(engine, plan, options=options, fail_fast=fail_fast, stop=stop,
                              platforms=platforms, since=since, brought=brought)


async def _publish(
    engine: Engine,
    plan: list[PlanList],
    *,
    options: PublishOptions | None = None,
    fail_fast: bool = False,
    stop: StopRequest | None = None,
    platforms: Sequence[Platform] = (),
    since: since_ops.Since | None = None,
    brought: Mapping[str, Reference] | None = None,
) -> PublishReport:
    """:func:`publish` within its run's repository probes."""
    opts = options or PublishOptions()
    engine.referrers.mode = opts.referrers  # --atomic's writes too (outside Engine.publish)
    # Configs read for their platforms are kept for a copy to another registry only when a
    # list has a source on another registry than its target (else nothing would use them).
    engine.hold_configs = not opts.dry_run and any(
        not same_registry(e.ref.registry, item.target.registry)
        for item in plan for e in item.entries)
    for item in plan:
        # Settings that contradict each other fail the run before any request (exit 2).
        o = list_options(opts, item)
        keys = {**PLAN_KEYS, "media_type": "--media-type" if opts.media_type else "media_type"}
        check_list_settings(o.media_type, item.annotations, o.artifact_type, o.subject,
                            bool(o.labels_to_annotations), where=str(item.target), keys=keys)
    started = time.monotonic()
    transport = engine.client.transport
    before = (transport.total.requests, transport.total.retries, transport.total.throttled,
              transport.total.manifest_gets, transport.total.manifest_heads)
    per_registry = transport.registry_stats()
    stats = [RequestStats() for _ in plan]
    plan_keys = [since_ops.plan_key(item, list_options(opts, item), platforms) for item in plan]
    stop = stop or StopRequest()
    checked: since_ops.Checked | None = None
    skip: dict[int, ListResult] = {}
    if since is not None:
        # A stop during the check cancels it (the scope swallows the cancellation): then
        # nothing matched, and the resolve phase below ends at once with the interrupted
        # report (nothing was written).
        found: list[since_ops.Checked] = []
        with stop.scope():
            found.append(await since_ops.check(engine, plan, plan_keys, since, stats=stats,
                                               dry_run=opts.dry_run,
                                               lists_in_flight=opts.lists_in_flight,
                                               subject=opts.subject))
        checked = found[0] if found else None
        skip = checked.matched if checked is not None else {}

    def stamped(report: PublishReport) -> PublishReport:
        since_ops.stamp(report.results, plan, plan_keys, resolved, checked, dry_run=opts.dry_run)
        brought_actions(plan, report.results, found_sources.via)
        stamp_mirrors(report.results, plan)
        report.since = since.path if since is not None else None
        return report

    # Phase 1: every distinct source, once, under the first list that names it.
    found_sources = _Sources(engine, stats, labels=any(
        list_options(opts, item).labels_to_annotations for item in plan),
        brought=brought if opts.dry_run else None)
    for i, item in enumerate(plan):
        for entry in item.entries if i not in skip else ():
            found_sources.add(entry.ref, i)
    resolved = found_sources.digests
    if not fail_fast and not opts.atomic:
        # Each unit published as soon as its own sources resolve (writes overlap reads).
        return stamped(await _pipelined(engine, plan, found_sources, skip, opts, platforms,
                                        stop, started, before, per_registry))
    engine.on_event(Phase(name="resolve", total=len(found_sources.refs)))
    with stop.scope():
        await run_bounded(found_sources.resolve, ((key,) for key in found_sources.refs),
                          RESOLVES_IN_FLIGHT)
    if stop.requested():
        # Phase 1 only reads: nothing was written.
        return stamped(_interrupted(engine, plan, [skip.get(i) for i in range(len(plan))],
                                    set(), stats, stop, opts, started, before, per_registry))
    # Phase 2: each list's entries, built and checked before any write.
    built: dict[int, list[Child]] = {}
    failures: dict[int, ManyfestError] = {}
    errors = found_sources.errors
    for i, item in enumerate(plan):
        if i in skip:
            continue
        try:
            built[i] = found_sources.build(item, platforms)
        except ManyfestError as exc:
            failures[i] = exc
    if opts.atomic:  # all or none: children and lists by digest, then every tag
        return stamped(await _atomic(engine, plan, built, failures, stats, skip, opts=opts,
                                     fail_fast=fail_fast, stop=stop, started=started,
                                     before=before, per_registry=per_registry))
    if fail_fast and failures:
        first = failures[min(failures)]
        what = "the missing sources" if errors else "the failing lists"
        stopped = NotPublishedError(
            f"not published: --fail-fast stopped the run before any write ({first})",
            hint=f"fix {what}, or run without --fail-fast to publish the rest",
        )
        report = PublishReport(dry_run=opts.dry_run, stopped_by=first)
        for i, item in enumerate(plan):
            own = failures.get(i)
            if i in skip:
                report.results.append(skip[i])
                continue
            report.results.append(ListResult(
                item.target, item.tags, status="failed", error=own or stopped,
                requests=stats[i].requests, retries=stats[i].retries,
                throttled=stats[i].throttled, manifest_gets=stats[i].manifest_gets,
                manifest_heads=stats[i].manifest_heads,
            ))
        _totals(report, transport, before, per_registry, started)
        return stamped(report)

    # Phase 3: the lists.
    results: list[ListResult | None] = [None] * len(plan)
    in_flight: set[int] = set()
    engine.on_event(Phase(name="publish", total=len(plan)))

    async def one(unit: list[int]) -> None:  # at most opts.lists_in_flight at once
        in_flight.update(unit)
        done = await _publish_unit(engine, plan, unit, built, failures, opts, stats,
                                   time.monotonic())
        for i, result in zip(unit, done, strict=True):
            results[i] = result
        in_flight.difference_update(unit)
        for i in unit:
            built.pop(i, None)  # its children are no longer needed: let them go

    for i, matched in skip.items():  # --since: proved unchanged, nothing to publish
        results[i] = since_ops.finish(engine, matched)
    with stop.scope():
        # Lists matched by --since are not in ``built``: each is a unit of its own, left out.
        await run_bounded(one, ((unit,) for unit in plan_units(
            plan, {i: c for i, c in built.items() if i not in skip}, opts) if unit[0] not in skip),
            opts.lists_in_flight)
    if stop.requested():
        return stamped(_interrupted(engine, plan, results, in_flight, stats, stop, opts,
                                    started, before, per_registry))
    report = PublishReport([r for r in results if r is not None], dry_run=opts.dry_run)
    _totals(report, transport, before, per_registry, started)
    return stamped(report)


async def _atomic(
    engine: Engine,
    plan: list[PlanList],
    built: dict[int, list[Child]],
    failures: dict[int, ManyfestError],
    stats: list[RequestStats],
    skip: dict[int, ListResult],
    **kwargs: Any,
) -> PublishReport:
    """``--atomic``: :func:`manyfest.ops.atomic.publish_atomic` over the lists ``--since``
    did not prove unchanged (those take no part in the two phases: none of their tags
    moves); the report has every list, in plan order."""
    from manyfest.ops.atomic import publish_atomic

    order = [i for i in range(len(plan)) if i not in skip]
    report = await publish_atomic(
        engine, [plan[i] for i in order],
        {j: built[i] for j, i in enumerate(order) if i in built},
        {j: failures[i] for j, i in enumerate(order) if i in failures},
        [stats[i] for i in order], listed_total=len(plan),
        matched=[skip[i] for i in sorted(skip)], **kwargs,
    )
    if skip:
        results: list[ListResult | None] = [None] * len(plan)
        for j, i in enumerate(order):
            results[i] = report.results[j]
        for i, matched in skip.items():
            matched.atomic = True
            # failed (and announced) by publish_atomic when the release was not published
            results[i] = matched if matched.status == "failed" else since_ops.finish(
                engine, matched)
        report.results = [r for r in results if r is not None]
    return report


def _totals(report: PublishReport, transport: Transport, before: tuple[int, ...],
            per_registry: dict[str, dict[str, int]], started: float) -> None:
    """Fill the run's totals (this run's share of the transport's counters)."""
    total = transport.total
    report.requests = total.requests - before[0]
    report.retries = total.retries - before[1]
    report.throttled = total.throttled - before[2]
    report.manifest_gets = total.manifest_gets - before[3]
    report.manifest_heads = total.manifest_heads - before[4]
    for name, now in transport.registry_stats().items():
        was = per_registry.get(name, {})
        report.registries[name] = {k: v - was.get(k, 0) for k, v in now.items()}
    report.duration_s = time.monotonic() - started


def _interrupted(
    engine: Engine,
    plan: list[PlanList],
    results: list[ListResult | None],
    in_flight: set[int],
    stats: list[RequestStats],
    stop: StopRequest,
    opts: PublishOptions,
    started: float,
    before: tuple[int, ...],
    per_registry: dict[str, dict[str, int]],
) -> PublishReport:
    """The partial report of a stopped run: finished lists as they are, the rest failed."""
    reason = stop.reason or "a stop request"
    client = engine.client
    cut_off = client.tags_in_flight if isinstance(client, RecordingClient) else set()
    written = client.tags_written if isinstance(client, RecordingClient) else set()
    report = PublishReport(dry_run=opts.dry_run, interrupted=stop.reason)
    for i, item in enumerate(plan):
        done = results[i]
        if done is not None:
            report.results.append(done)
            continue
        refs = [str(item.target.with_tag(tag)) for tag in item.tags]
        moved = [r for r in refs if r in written]
        maybe = [r for r in refs if r in cut_off]
        if i not in in_flight:
            message = f"not published: interrupted by {reason} before it was published"
        elif moved or maybe:
            parts = []
            if moved:
                parts.append(f"{', '.join(moved)} moved")
            if maybe:
                parts.append(f"the PUT of {', '.join(maybe)} was in flight (it may have landed)")
            message = (
                f"not published: interrupted by {reason} while it was being published: "
                f"{'; '.join(parts)}; every tag points at a complete list"
            )
        else:
            message = (
                f"not published: interrupted by {reason} while it was being published, "
                "before any of its tags moved"
            )
        report.uncertain.extend(maybe)
        report.partly += bool(moved)
        report.not_published += 1
        report.results.append(ListResult(
            item.target, item.tags, status="failed",
            error=NotPublishedError(message, hint="re-run to finish"),
            requests=stats[i].requests, retries=stats[i].retries,
            throttled=stats[i].throttled, manifest_gets=stats[i].manifest_gets,
            manifest_heads=stats[i].manifest_heads, atomic=opts.atomic,
            tag_digests={} if opts.atomic else None,  # no tag looked up, none moved
        ))
    _totals(report, engine.client.transport, before, per_registry, started)
    return report


class _Sources:
    """Phase 1's sources: each distinct one resolved once, its requests counted against the
    first list (in plan order) naming it; then each list's entries built from them.

    Attributes:
        refs: source key (the reference as printed) → reference, in plan order.
        owner: source key → index of the first list naming it.
        sources: source key → the resolved source (until :meth:`release`).
        digests: source key → the digest it resolved to (kept for the report).
        errors: source key → why it did not resolve.
    """

    def __init__(self, engine: Engine, stats: list[RequestStats], *,
                 labels: bool = True, brought: Mapping[str, Reference] | None = None) -> None:
        self.engine = engine
        self.stats = stats
        self.labels = labels
        """Keep the configs' labels when a source is released (a list copies them)."""
        self.brought = dict(brought or {})
        """Source key → where a ``copy:`` document of the run brings it from (by digest):
        a dry run's copies wrote nothing, so such a source is resolved there."""
        self.via: dict[str, Reference] = {}
        """Source key → the copy source it was resolved from (:attr:`brought`)."""
        self.refs: dict[str, Reference] = {}
        self.owner: dict[str, int] = {}
        self.sources: dict[str, Source] = {}
        self.attested: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.errors: dict[str, ManyfestError] = {}
        self.warned: set[str] = set()

    def add(self, ref: Reference, owner: int) -> None:
        """Name a source of list ``owner`` (the first list naming it keeps it)."""
        key = str(ref)
        self.owner.setdefault(key, owner)
        self.refs.setdefault(key, ref)

    async def resolve(self, key: str) -> None:
        """Resolve one source (errors are kept in :attr:`errors`, never raised)."""
        engine = self.engine
        token = current_stats.set(self.stats[self.owner[key]])
        try:
            ref = self.refs[key]
            origin = self.brought.get(key) or (
                self.brought.get(str(ref.with_digest(ref.digest))) if ref.digest else None)
            found = await engine.resolve(origin or ref)
            if found.platform is not None and found.platform.is_unknown:
                # an attestation manifest named directly: which image it describes
                self.attested[key] = await attested_image(engine, found)
            source = found
            if origin is not None:
                source = _rebased(found, ref)
                self.via[key] = origin
            self.sources[key] = source
            self.digests[key] = source.manifest.digest
            engine.on_event(SourceDone(target=key, digest=source.manifest.digest))
        except ManyfestError as exc:
            self.errors[key] = exc
            engine.on_event(SourceDone(target=key, error=exc.one_line()))
        finally:
            current_stats.reset(token)

    def build(self, item: PlanList, platforms: Sequence[Platform]) -> list[Child]:
        """Phase 2 for one list: its entries built and checked (:func:`_children`,
        :func:`check_required`); a warning is a :class:`~manyfest.events.Warned` event,
        once per message in the run.

        Raises:
            ManyfestError: a source of the list did not resolve, or a check failed.
        """
        for entry in item.entries:
            if str(entry.ref) in self.errors:
                # a source on another registry than the list's: the error names its registry
                raise name_failed_registry(self.errors[str(entry.ref)], [entry.ref],
                                           item.target)
        target = str(item.target)

        def warn(message: str) -> None:
            if message not in self.warned:  # an image shared by many lists: one warning
                self.warned.add(message)
                self.engine.on_event(Warned(target=target, message=message))

        children = _children(item, self.sources, platforms=platforms, warn=warn,
                             attested=self.attested)
        check_required(item, children)
        return children

    def release(self, key: str) -> None:
        """Let a source go once no list left to publish names it (its digest stays)."""
        source = self.sources.pop(key, None)
        self.attested.pop(key, None)
        if source is not None:
            self.engine.forget(source, labels=not self.labels)


def _rebased(found: Source, ref: Reference) -> Source:
    """``found`` (resolved where a copy brings it from) as it will be at ``ref``, where the
    copy puts the same bytes: the source and its index's children named in ``ref``'s
    repository (a list's mounts come from there)."""
    entries = tuple(
        replace(c, source=replace(c.source, ref=ref.with_digest(c.source.manifest.digest)))
        for c in found.entries)
    return replace(found, ref=ref, entries=entries)


def brought_actions(plan: Sequence[PlanList], results: Sequence[ListResult],
                    via: Mapping[str, Reference]) -> None:
    """``--dry-run``: lead each list's actions with a line per source a ``copy:`` document
    of the run brings (``source REF: not there yet, checked at ORIGIN, which a copy brings
    here``): the dry run's copies wrote nothing, so it was resolved at the copy's source."""
    if not via or len(results) != len(plan):
        return
    for item, result in zip(plan, results, strict=True):
        lines = [f"source {entry.ref}: not there yet; checked at {via[str(entry.ref)]}, "
                 "which a copy: document brings here"
                 for entry in item.entries if str(entry.ref) in via]
        if lines:
            result.actions[:0] = list(dict.fromkeys(lines))


def written_key(item: PlanList, opts: PublishOptions) -> Hashable:
    """What makes two plan lists one unit before anything is resolved: the same target
    registry and repository, the same entries as written (source reference as printed,
    platform override) in order, and the same settings that build and check the list (index
    annotations, the list's options, ``require_platforms``, ``platform_check``,
    ``attestations``, ``allow_duplicate_platforms``). Lists with equal keys are built from
    the same resolved sources the same way, so their :func:`unit_key` is equal too; lists
    written differently (one source by tag, the other by digest) that resolve to the same
    children have different keys (see :func:`_pipelined`)."""
    o = list_options(opts, item)
    entries = tuple(
        (str(e.ref), None if e.override is None else (
            e.override.os, e.override.architecture, e.override.variant,
            e.override.os_version, tuple(e.override.os_features)))
        for e in item.entries)
    return (item.target.registry, item.target.repository, entries,
            tuple(item.annotations.items()), o.media_type, o.artifact_type, o.subject,
            o.labels_to_annotations, item.require_platforms, item.platform_check,
            item.attestations, item.allow_duplicate_platforms)


def written_units(plan: Sequence[PlanList], opts: PublishOptions,
                  skip: Container[int] = ()) -> list[list[int]]:
    """The plan's lists (but ``skip``) grouped by :func:`written_key`, in plan order of each
    group's first list."""
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(plan):
        if i not in skip:
            groups.setdefault(written_key(item, opts), []).append(i)
    return list(groups.values())


async def _pipelined(
    engine: Engine,
    plan: list[PlanList],
    found: _Sources,
    skip: dict[int, ListResult],
    opts: PublishOptions,
    platforms: Sequence[Platform],
    stop: StopRequest,
    started: float,
    before: tuple[int, ...],
    per_registry: dict[str, dict[str, int]],
) -> PublishReport:
    """Phases 1 to 3 overlapped (runs without ``--fail-fast`` or ``--atomic``, which need
    every list checked before the first write): the sources are resolved in plan order
    (:data:`PIPELINED_RESOLVES` at once) and each group of lists written alike
    (:func:`written_units`) is built, checked and published as soon as its own sources
    have resolved, at most ``opts.lists_in_flight`` groups at once; so writes start while
    other sources are still being read.

    A group is split into units by :func:`plan_units` (in practice one unit: its lists are
    written alike). Lists written differently whose children turn out identical (a source
    by tag in one, by digest in the other) are in different groups, so they are published
    as separate units, each at its own tags, concurrently or one after the other: every
    tag gets the same list bytes (one HEAD and one PUT per tag, as in one unit), the
    children and blobs are still pushed once per run (the engine's work is keyed by
    repository and digest), and neither result has ``same_as``. A source is let go
    (:meth:`_Sources.release`) once every group naming it is published, and no new source
    is resolved while :data:`READY_AHEAD` groups have their sources in but are not yet
    published, so a run of 10,000 lists does not hold 10,000 lists' sources.

    Progress: the ``resolve`` phase, then the ``publish`` phase as the first group starts
    (or every source has resolved): a list's line always follows its phase's header; the
    sources still resolving then are counted in the resolve phase. A :class:`StopRequest` cancels
    everything; the lists not finished are reported as in phase 3 (:func:`_interrupted`).
    """
    stats = found.stats
    groups = written_units(plan, opts, skip)
    waiting: dict[str, list[int]] = {}  # source key → groups still waiting for it
    pending: list[int] = []  # per group: its sources not resolved yet
    users: dict[str, int] = {}  # per source: groups naming it not yet published
    for g, members in enumerate(groups):
        keys = dict.fromkeys(str(e.ref) for e in plan[members[0]].entries)
        pending.append(len(keys))
        for key in keys:
            waiting.setdefault(key, []).append(g)
            users[key] = users.get(key, 0) + 1
    results: list[ListResult | None] = [None] * len(plan)
    in_flight: set[int] = set()
    publishing = False  # the publish phase announced (before the first list's line)
    released = 0  # sources released since the last cache spill
    spilling = False  # one spill at a time
    send, receive = anyio.create_memory_object_stream[int](max_buffer_size=len(groups) + 1)
    ready = 0  # groups whose sources are in, not yet published (at most READY_AHEAD)
    room = anyio.Event()  # set while ready < READY_AHEAD
    room.set()

    def became_ready(g: int) -> None:
        nonlocal ready, room
        send.send_nowait(g)  # its sources are in: publish it
        ready += 1
        if ready >= READY_AHEAD and room.is_set():
            room = anyio.Event()

    async def resolve(key: str) -> None:
        while not room.is_set():  # enough resolved and waiting: let the writes catch up
            await room.wait()
        await found.resolve(key)
        for g in waiting.pop(key, ()):
            pending[g] -= 1
            if not pending[g]:
                became_ready(g)

    async def reads() -> None:
        nonlocal spilling
        with send:
            for g in range(len(groups)):
                if not pending[g]:
                    became_ready(g)
            await run_bounded(resolve, ((key,) for key in found.refs), PIPELINED_RESOLVES)
        announce()
        if not spilling:
            # Every source is in: its facts go to disk now, in a worker thread, while the
            # writes are in flight, rather than after the last one (the run's end would
            # wait for a file per source manifest).
            spilling = True
            try:
                await engine.cache.spill(let_go=False)
            finally:
                spilling = False

    def announce() -> None:
        nonlocal publishing
        if not publishing:
            publishing = True
            engine.on_event(Phase(name="publish", total=len(plan)))

    async def publish_group(g: int) -> None:
        try:
            await write_group(g)
        finally:
            done_with(g)

    def done_with(g: int) -> None:
        nonlocal ready
        ready -= 1
        if ready < READY_AHEAD:
            room.set()

    async def write_group(g: int) -> None:
        nonlocal released, spilling
        announce()  # the phase's header before the first list's line (sources may still
        # be resolving: their SourceDone events follow)
        members = groups[g]
        built: dict[int, list[Child]] = {}
        failures: dict[int, ManyfestError] = {}
        for i in members:
            try:
                built[i] = found.build(plan[i], platforms)
            except ManyfestError as exc:
                failures[i] = exc
        units = plan_units([plan[i] for i in members],
                           {j: built[i] for j, i in enumerate(members) if i in built}, opts)
        for unit in ([members[j] for j in u] for u in units):
            in_flight.update(unit)
            done = await _publish_unit(engine, plan, unit, built, failures, opts, stats,
                                       time.monotonic())
            for i, result in zip(unit, done, strict=True):
                results[i] = result
            in_flight.difference_update(unit)
        for key in dict.fromkeys(str(e.ref) for e in plan[members[0]].entries):
            users[key] -= 1
            if not users[key]:
                found.release(key)
                released += 1
        if released >= SPILL_EVERY and not spilling:
            # the facts learned so far go to disk (in a worker thread) and out of memory
            spilling, released = True, 0
            try:
                await engine.cache.spill()
            finally:
                spilling = False

    async def writes() -> None:  # one of several readers of ``receive``: ends when
        async for g in receive:    # ``reads`` closed ``send`` and the stream is empty
            await publish_group(g)

    engine.on_event(Phase(name="resolve", total=len(found.refs)))
    for i, matched in skip.items():  # --since: proved unchanged, nothing to publish
        results[i] = since_ops.finish(engine, matched)
    with stop.scope(), receive:
        await run_all(reads, *(writes for _ in range(max(1, min(opts.lists_in_flight,
                                                                 len(groups))))))
    if stop.requested():
        return _interrupted(engine, plan, results, in_flight, stats, stop, opts, started,
                            before, per_registry)
    report = PublishReport([r for r in results if r is not None], dry_run=opts.dry_run)
    _totals(report, engine.client.transport, before, per_registry, started)
    return report


def probe_repositories(plan: Sequence[PlanList]) -> frozenset[tuple[str, str]]:
    """The target (registry, repository) pairs the plan writes at least
    :data:`~manyfest.engine.PROBE_TAGS` tags into: where one tag-list GET may answer for
    every tag (:meth:`~manyfest.engine.Engine.new_repository`)."""
    counts: dict[tuple[str, str], int] = {}
    for item in plan:
        key = (item.target.registry, item.target.repository)
        counts[key] = counts.get(key, 0) + len(item.tags)
    return frozenset(key for key, n in counts.items() if n >= PROBE_TAGS)


def stamp_mirrors(results: Sequence[ListResult], plan: Sequence[PlanList]) -> None:
    """Give each result of a fan-out list (``targets:``, ``--mirror``) its ``mirror_of``:
    the first target of its plan document (``results`` in plan order, one per list)."""
    for r, item in zip(results, plan, strict=True):
        if item.mirror_of is not None:
            r.mirror_of = str(item.mirror_of)


def unit_key(item: PlanList, children: Sequence[Child], opts: PublishOptions) -> Hashable:
    """What makes two plan lists one unit of work: the same target registry and repository,
    and everything the list bytes are built from (the entries' descriptors, platforms and
    annotations in order; the index annotations; the list's options: media type, style,
    ``artifactType``, subject, labels to copy). Equal keys mean identical list bytes
    (:meth:`~manyfest.engine.Engine.build_list` is a function of these); a key never groups
    lists whose bytes could differ."""
    target = item.target
    return (target.registry, target.repository, tuple(c.entry() for c in children),
            tuple(item.annotations.items()), list_options(opts, item))


def plan_units(plan: Sequence[PlanList], built: Mapping[int, Sequence[Child]],
               opts: PublishOptions) -> list[list[int]]:
    """The plan's units of work: lists of plan indices, in plan order of their first list.

    Lists whose entries were built and whose :func:`unit_key` is equal (the same bytes in
    the same repository, however the plan wrote them: two documents with the same entries,
    or shared tags) are one unit, published once at the union of their tags; every other
    list (one that failed its checks among them) is a unit of its own. With
    ``--unchanged-by children`` too: a tag of the unit holding the same children in another
    layout is kept, and each list's result says what its own tags hold
    (:func:`_member_result`).
    """
    units: list[list[int]] = []
    by_key: dict[Hashable, list[int]] = {}
    for i, item in enumerate(plan):
        if i not in built:
            units.append([i])
            continue
        key = unit_key(item, built[i], opts)
        unit = by_key.get(key)
        if unit is None:
            unit = by_key[key] = [i]
            units.append(unit)
        else:
            unit.append(i)
    return units


async def _publish_unit(
    engine: Engine,
    plan: Sequence[PlanList],
    unit: list[int],
    built: Mapping[int, list[Child]],
    failures: Mapping[int, ManyfestError],
    opts: PublishOptions,
    stats: list[RequestStats],
    started: float,
) -> list[ListResult]:
    """Publish one unit (:func:`plan_units`); one :class:`ListResult` per plan list of it.

    A unit of several lists is published once, by the engine, as its first list with every
    tag of the unit (in plan order): one build, one HEAD per tag, the children once, one
    list PUT at the first tag, then one PUT per other tag. Each list then gets its own
    result (:func:`_member_result`); the first carries the unit's requests (the others'
    source resolutions are moved to it), the others ``same_as`` the first's target.

    With ``--unchanged-by children`` a list's tags may keep the same children in a layout of
    their own (another list's tags another one), which one publish of the unit's tags could
    not express: the unit's lists are published one after the other, each at its own tags
    with the unit's bytes (built once), as a list alone would be (its own status, digest
    and kept tags: :attr:`~manyfest.engine.ListPlan.kept`); what they share is done once
    per run by the engine (each previous list fetched once, each child pushed once), and
    the unit's requests are the first list's, the others ``same_as`` it.
    """
    first, *others = unit
    lead = plan[first]
    if not others:
        return [await _publish_one(engine, lead, built.get(first, []), failures.get(first),
                                   opts, stats[first], started)]
    for i in others:  # the unit's requests are counted once, against its first list
        _add_stats(stats[first], stats[i])
        stats[i] = RequestStats()
    if opts.unchanged_by == "children":
        return await _publish_unit_children(engine, plan, unit, built[first], opts,
                                            stats[first], started)
    tags = list(dict.fromkeys(t for i in unit for t in plan[i].tags))
    done = await engine.publish(
        lead.target, built[first], extra_tags=tags[1:], annotations=lead.annotations or None,
        options=list_options(opts, lead), stats=stats[first], started=started, announce=False,
    )
    results = [_member_result(done, plan[i], lead=i == first) for i in unit]
    again = await _republish_others(engine, plan, unit, done, results, built, failures, opts,
                                    stats, started)
    for k, r in enumerate(results):
        if k not in again:  # those published again were announced then
            engine.on_event(Finished(target=str(r.target), result=r))
    return results


async def _republish_others(
    engine: Engine,
    plan: Sequence[PlanList],
    unit: list[int],
    done: ListResult,
    results: list[ListResult],
    built: Mapping[int, list[Child]],
    failures: Mapping[int, ManyfestError],
    opts: PublishOptions,
    stats: list[RequestStats],
    started: float,
) -> set[int]:
    """A unit failed because of some of its tags (``--existing fail``, or a registry that
    refused to move a tag: immutable tags): its other lists, none of whose own tags is
    among those, are published again as a unit of their own (what was done is not done
    twice: the engine's dedupe; tags that moved are ``unchanged``), so one list's tag does
    not fail the others. Their results replace theirs in ``results``; returns their
    positions in ``unit``."""
    error = done.error
    if not isinstance(error, (ExistingTagError, ImmutableTagError)):
        return set()
    refused = set(error.existing)
    rest = [k for k, i in enumerate(unit)
            if results[k].status == "failed" and not refused & set(plan[i].tags)]
    if not rest or len(rest) == len(unit):
        return set()
    again = await _publish_unit(engine, plan, [unit[k] for k in rest], built, failures, opts,
                                stats, time.monotonic())
    for k, r in zip(rest, again, strict=True):
        results[k] = r
    return set(rest)


async def _publish_unit_children(
    engine: Engine,
    plan: Sequence[PlanList],
    unit: list[int],
    children: list[Child],
    opts: PublishOptions,
    stats: RequestStats,
    started: float,
) -> list[ListResult]:
    """A unit of several lists under ``--unchanged-by children`` (:func:`_publish_unit`):
    each list published at its own tags, in turn, with the unit's bytes, every request
    counted in ``stats`` (the first list's)."""
    lead = plan[unit[0]]
    options = list_options(opts, lead)
    annotations = lead.annotations or None
    listed: Manifest | None = None
    token = current_stats.set(stats)
    try:
        listed = await engine.build_list(lead.target, children, annotations, options)
    except ManyfestError:
        listed = None  # each publish below meets the same error and reports it
    finally:
        current_stats.reset(token)
    results: list[ListResult] = []
    for i in unit:
        item = plan[i]
        r = await engine.publish(
            item.target, children, extra_tags=list(item.extra_tags), annotations=annotations,
            options=options, built=listed, stats=stats, started=started, announce=False,
        )
        if i != unit[0]:
            r.same_as = str(lead.target)
            r.requests = r.retries = r.throttled = r.manifest_gets = r.manifest_heads = 0
            r.pushed_children = []
            r.actions = [a for a in r.actions if a.startswith("put ")]
        results.append(r)
    head = results[0]  # the unit's requests, all of them
    head.requests, head.retries, head.throttled = stats.requests, stats.retries, stats.throttled
    head.manifest_gets, head.manifest_heads = stats.manifest_gets, stats.manifest_heads
    head.duration_s = time.monotonic() - started
    for r in results:
        engine.on_event(Finished(target=str(r.target), result=r))
    return results


def _add_stats(into: RequestStats, other: RequestStats) -> None:
    into.requests += other.requests
    into.retries += other.retries
    into.throttled += other.throttled
    into.manifest_gets += other.manifest_gets
    into.manifest_heads += other.manifest_heads


def _member_result(done: ListResult, item: PlanList, *, lead: bool) -> ListResult:
    """One plan list's result from its unit's: its own tags, the unit's digest, its status
    from what its own tags pointed at (``unchanged`` when each held the list already). When
    the unit failed, the list fails with the unit's error unless each of its own tags holds
    the list anyway: held it before, or its PUT was accepted (``done.moved``), as when
    another list's tag PUT was refused after this list's tags had moved. The lead list keeps the
    unit's requests, children and mounts/child pushes among the ``--dry-run`` actions; the
    others have ``same_as``."""
    own = item.tags
    heads = {t: done.heads[t] for t in own if t in done.heads}
    r = ListResult(item.target, list(own), digest=done.digest, old_digest=heads.get(own[0], ""),
                   duration_s=done.duration_s, heads=heads, verified=done.verified,
                   same_as="" if lead else str(done.target), children=done.children,
                   existing={t: d for t, d in done.existing.items() if t in own})
    if lead:
        r.requests, r.retries, r.throttled = done.requests, done.retries, done.throttled
        r.manifest_gets, r.manifest_heads = done.manifest_gets, done.manifest_heads
        r.pushed_children = list(done.pushed_children)
    puts = {f"put {item.target.with_tag(t)} -> " for t in own}
    keeps = {f"keep {item.target.with_tag(t)} at " for t in own}  # --existing skip
    r.actions = [a for a in done.actions
                 if (lead and not a.startswith(("put ", "keep ")))
                 or a.split(" -> ")[0] + " -> " in puts or a.split(" at ")[0] + " at " in keeps]
    landed = bool(done.digest) and all(heads.get(t) == done.digest or t in done.moved
                                       for t in own)
    if done.status == "failed" and not (landed and heads):
        r.status, r.error = "failed", done.error
    elif all(heads.get(t) == done.digest or t in r.existing for t in own):
        r.status = "unchanged"  # every tag held the list, or was left by --existing skip
    else:
        written = [t for t in own if t not in r.existing]
        r.status = "updated" if heads.get(own[0] if own[0] in written else written[0]) \
            else "created"
    return r


async def _publish_one(
    engine: Engine,
    item: PlanList,
    children: list[Child],
    error: ManyfestError | None,
    opts: PublishOptions,
    stats: RequestStats,
    started: float,
) -> ListResult:
    if error is not None:  # failed before any write: a source or a platform rule
        result = ListResult(
            item.target,
            item.tags,
            status="failed",
            error=error,
            requests=stats.requests,
            retries=stats.retries,
            throttled=stats.throttled,
            manifest_gets=stats.manifest_gets,
            manifest_heads=stats.manifest_heads,
            duration_s=time.monotonic() - started,
        )
        engine.on_event(Finished(target=str(item.target), result=result))
        return result
    return await engine.publish(
        item.target,
        children,
        extra_tags=list(item.extra_tags),
        annotations=item.annotations or None,
        options=list_options(opts, item),
        stats=stats,
        started=started,
    )


def list_options(opts: PublishOptions, item: PlanList) -> PublishOptions:
    """The options of one list: the run's (the command line's flags) where given, else the
    plan document's ``media_type``, ``artifact_type``, ``subject`` and
    ``labels_to_annotations``."""
    labels = opts.labels_to_annotations
    return replace(
        opts,
        media_type=opts.media_type or item.media_type,
        artifact_type=opts.artifact_type or item.artifact_type,
        subject=opts.subject or item.subject,
        labels_to_annotations=item.labels_to_annotations if labels is None else labels,
    )
