"""``publish --atomic``: a release in two phases, every tag moved or none.

Called by :func:`manyfest.ops.publish.publish` once every source is resolved and every list
built and checked (its phases 1 and 2):

**Phase 1** (no tag moves): every list's bytes built, every tag HEADed (its previous digest
recorded: '' when the tag does not exist), the previous manifest of every tag that will
move fetched by digest (once per repository and digest: the rollback then needs no read
that could fail), every child made present (blobs mounted or copied, then PUT by digest)
and every list PUT by digest (``/v2/<repository>/manifests/<list digest>``), concurrently,
each unit of work once (the engine's dedupe; plan lists of the same bytes in the same
repository are one unit, :func:`manyfest.ops.publish.unit_key`: the first publishes every
tag of the unit, the others get ``same_as``). Any failure here (a source missing, a check,
a refused PUT) moves no tag: every list is ``failed``, with its own error or
``not published: --atomic: another list failed in phase 1 (...)``.

**Phase 2**: every tag moved (the list's bytes PUT at the tag), concurrently, at most the
registry's ``--concurrency`` at once. On the first failure no more tag PUT is started; the
ones in flight are let finish (so where each tag is stays known), then every tag that moved
is moved back: its previous manifest's exact bytes PUT at it, or, for a tag that did not
exist, a DELETE of the tag. A tag PUT that got no answer, or a 5xx, may have landed: it is
moved back too, once one HEAD shows it moved (and, if that fails, HEADed to say where it
is). Distribution 2.8 refuses
to delete a tag (``400 DIGEST_INVALID``: it deletes manifests by digest only, which would
remove every tag of that manifest); such a tag is reported, and stays at its new list,
which is complete. A SIGINT or SIGTERM in phase 2 stops the moves the same way and rolls
back what moved (the process has :data:`UNDO_GRACE` seconds), saying so at once on stderr
(:meth:`_Run.notice`); a second signal, or those seconds over, ends the process at once with
a last line naming every tag left moved (:meth:`_Run.last_line`). In phase 1 a signal
moves no tag.

Killed (SIGKILL) in either phase, a re-run converges: phase 1 wrote only content by digest,
and a tag is only ever moved to a list whose children are all present, so each tag is at its
previous digest or at its new, complete list; the re-run skips the tags already there.

Every list of an atomic run has ``"atomic": true`` in its report; a list that failed or was
rolled back also has ``"tag_digests"``: where each of its tags points when the run ends
('' when the tag does not exist; a tag the run could not look up is left out, and was not
moved). ``summary.atomic`` says how the run ended (see :func:`publish_atomic`).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import anyio

from manyfest import interrupts
from manyfest.content import Manifest
from manyfest.engine import (
    Child,
    Engine,
    ListPlan,
    ListResult,
    OnceMap,
    PublishOptions,
    overwrite_refusal,
    run_all,
    run_bounded,
)
from manyfest.errors import (
    ExistingTagError,
    ImmutableTagError,
    ManyfestError,
    NotPublishedError,
    RegistryError,
    first_error,
)
from manyfest.events import Finished, Phase, Started
from manyfest.ops.plan import PlanList
from manyfest.ops.publish import (
    PublishReport,
    StopRequest,
    _add_stats,
    _interrupted,
    _totals,
    list_options,
    plan_units,
)
from manyfest.reference import Reference
from manyfest.transport import RequestStats, current_stats
from manyfest.words import plural

TAGS_IN_FLIGHT = 512
"""Tasks moving (or moving back) tags at once in phase 2; the requests are bounded per
registry by its ``--concurrency`` (:meth:`_Run.limit`). A bound, not a task per tag: a
release of 10,000 lists has 40,000 tags."""

UNDO_GRACE = 60.0
"""Seconds phase 2 has to end after a SIGINT/SIGTERM (moves in flight finished, every tag
moved put back), instead of the usual grace period (:func:`manyfest.interrupts.undoing`):
undoing half a release is worth waiting for. A second signal still ends it at once."""

_REFUSES_TAG_DELETE = (400, 405)
"""Statuses of a registry that does not delete tags (distribution-spec: "If tag deletion is
disabled, the registry MUST respond with either a 400 Bad Request or a 405 Method Not
Allowed")."""


@dataclass(slots=True)
class _List:
    """One plan list in an atomic run, and where each of its tags is."""

    index: int
    item: PlanList
    children: list[Child]
    error: ManyfestError | None
    stats: RequestStats
    result: ListResult
    plan: ListPlan | None = None
    heads: dict[str, str] = field(default_factory=dict)
    """Each tag's digest before the run ('' absent); only the tags looked up."""
    now: dict[str, str] = field(default_factory=dict)
    """Each tag's digest now, as far as the run knows."""
    moved: list[str] = field(default_factory=list)
    """Tags whose PUT the registry accepted in phase 2 (or may have: see ``uncertain``)."""
    uncertain: set[str] = field(default_factory=set)
    """Tags whose PUT got no answer (a connection error) or a 5xx: they may have moved."""
    unsure_back: set[str] = field(default_factory=set)
    """Tags whose move back got no answer or a 5xx: they may be back where they were."""
    put_error: ManyfestError | None = None
    """This list's tag PUT that failed in phase 2."""
    rolled_back: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    refused: dict[str, RegistryError] = field(default_factory=dict)
    """New tags the registry would not delete."""
    stuck: dict[str, ManyfestError] = field(default_factory=dict)
    """Tags whose rollback PUT (or DELETE) failed otherwise."""
    tags: list[str] = field(default_factory=list)
    """The tags this list publishes: its own, or its unit's (its own first) when it leads
    one (:func:`manyfest.ops.publish.plan_units`)."""
    lead: _List | None = None
    """The list leading this one's unit (the same bytes in the same repository): this one
    takes no part in the phases; its result is the lead's, for its own tags."""
    members: list[_List] = field(default_factory=list)
    """The other lists of the unit this one leads."""
    unit: ListResult | None = None
    """A unit lead's result for every tag of the unit (its members' results come from it)."""

    @property
    def target(self) -> Reference:
        """The list reference (its first tag)."""
        return self.item.target

    def ref(self, tag: str) -> Reference:
        """The reference of one of this list's tags."""
        return self.item.target.with_tag(tag)


@dataclass(slots=True)
class _Run:
    """The state of one atomic run."""

    engine: Engine
    opts: PublishOptions
    stop: StopRequest
    lists: list[_List]
    fail_fast: bool
    started: float
    matched: Sequence[ListResult] = ()
    """The lists ``--since`` proved unchanged (no part in the phases; failed with the rest
    when the release is not published)."""
    previous: dict[Hashable, Manifest] = field(default_factory=dict)
    previous_once: OnceMap[Manifest] = field(default_factory=OnceMap)
    rollback_gets: int = 0
    failed_at: tuple[str, ManyfestError] | None = None
    limits: dict[str, anyio.Semaphore] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    left: dict[str, str] = field(default_factory=dict)
    """Phase 2: each tag reference not (known to be) where it was before the run, with a
    note ('' moved; ``may have moved``; ``being moved back``), kept current as tags move
    and return: what a forced exit names (:meth:`last_line`)."""
    sending: set[str] = field(default_factory=set)
    """Phase 2: the tag references whose move PUT is in flight."""

    def notice(self, signum: int) -> str:
        """The line printed at once on the first signal in phase 2
        (:func:`manyfest.interrupts.undoing`)."""
        moved, flying = len(self.left), len(self.sending)
        what = f"moving back {plural(moved, 'tag')} moved so far"
        if flying == 1:
            what += " and the tag whose PUT is in flight, if it lands"
        elif flying:
            what += f" and those of the {flying} tags whose PUTs are in flight that land"
        return (f"--atomic: {interrupts.name(signum)} in phase 2: no more tags move; {what} "
                f"(up to {UNDO_GRACE:g} s); a second signal aborts and leaves them moved")

    def last_line(self) -> str:
        """The last line of a process ended at once in phase 2: the tags left moved."""
        left = tuple(self.left.items())  # one C-level copy: safe from the timer thread
        flying = tuple(self.sending)
        names = [f"{ref}{f' ({note})' if note else ''}" for ref, note in left]
        names += [f"{ref} (may have moved)" for ref in flying if ref not in self.left]
        if not names:
            return ("--atomic: no tag of the release was left moved: every tag is where it "
                    "was before the run")
        return (f"--atomic: the release is inconsistent: {plural(len(names), 'tag')} left "
                f"at the new lists (each complete): {', '.join(names)}; re-run to publish "
                "the release, or re-publish the previous one")

    def limit(self, registry: str) -> anyio.Semaphore:
        """At most the registry's ``--concurrency`` tag PUTs at once (so a failure stops
        the moves not yet sent)."""
        if registry not in self.limits:
            settings = self.engine.client.transport.settings
            self.limits[registry] = anyio.Semaphore(settings.concurrency_for(registry))
        return self.limits[registry]

    # ------------------------------------------------------------------ phase 1

    async def prepare(self, e: _List, *, writes: bool, scope: anyio.CancelScope) -> None:
        """Phase 1 for one list: build, HEAD the tags, fetch previous manifests, push the
        children and the list by digest (``writes``); errors go to ``e.error``."""
        engine = self.engine
        token = current_stats.set(e.stats)
        self.in_flight.add(e.index)
        engine.on_event(Started(target=str(e.target)))
        if e.lead is not None:  # published by its unit's lead
            current_stats.reset(token)
            self.in_flight.discard(e.index)
            return
        try:
            o = replace(list_options(self.opts, e.item), skip_unchanged=True)
            if e.error is not None:  # failed its checks: only where its tags are
                tags = e.item.tags
                found = await engine.heads(e.target, tags, push=not o.dry_run, tolerant=True)
                e.heads = found
                return
            listed = await engine.build_list(e.target, e.children,
                                             e.item.annotations or None, o)
            e.result.digest = listed.digest
            plan = await engine.plan(e.target, e.children, e.tags, listed, o)
            # --unchanged-by children may keep the tags' list: the digest they will hold
            e.result.digest = plan.listed.digest
            e.plan, e.heads = plan, dict(plan.heads)
            e.result.old_digest = plan.heads.get(e.item.tags[0], "")
            e.result.existing = dict(plan.existing)
            e.result.children = tuple(c.source.manifest.digest for c in e.children)
            if not plan.tags:
                if o.dry_run and plan.existing:  # --existing skip left every tag
                    e.result.actions = plan.actions()
                return
            if o.dry_run:
                e.result.actions = dry_run_actions(plan)
                return
            if not writes:
                return
            await run_all(*(partial(self.fetch_previous, e, t) for t in plan.tags
                            if plan.heads.get(t)))
            await engine.push_children(plan)
            await engine.push_list_by_digest(plan)
        except ManyfestError as exc:
            e.error = exc
            if isinstance(exc, ExistingTagError):  # --existing fail: the tags it found
                e.result.existing = dict(exc.existing)
        except BaseExceptionGroup as group:
            leaf = first_error(group)
            if not isinstance(leaf, ManyfestError):
                raise
            e.error = leaf
        finally:
            current_stats.reset(token)
            self.in_flight.discard(e.index)
        if e.error is not None and self.fail_fast:
            scope.cancel()

    async def fetch_previous(self, e: _List, tag: str) -> None:
        """GET (once per repository and digest) the manifest ``tag`` points at before the
        run, so moving it back needs no read."""
        digest = e.heads[tag]
        target = e.target
        key = (target.registry, target.repository, digest)

        async def get() -> Manifest:
            self.rollback_gets += 1
            return await self.engine.client.get_manifest(target.with_digest(digest))

        self.previous[key] = await self.previous_once.get(key, get)

    # ------------------------------------------------------------------ phase 2

    async def move(self, e: _List, tag: str) -> None:
        """Phase 2: PUT the list at ``tag``, unless the run already failed or was stopped."""
        assert e.plan is not None
        async with self.limit(e.target.registry):
            if self.failed_at is not None or self.stop.requested():
                return
            ref = e.ref(tag)
            name = str(ref)
            token = current_stats.set(e.stats)
            self.sending.add(name)
            try:
                await self.engine.put_manifest(ref, e.plan.listed, built=True)
            except ManyfestError as refused:
                exc = refused
                if isinstance(refused, RegistryError):  # immutable tags: say so
                    exc = overwrite_refusal(ref, e.plan.listed, e.heads.get(tag, ""), refused)
                    if isinstance(exc, ImmutableTagError):
                        e.result.existing.update(exc.existing)
                if self.failed_at is None:
                    self.failed_at = (name, exc)
                if e.put_error is None:
                    e.put_error = exc
                if not isinstance(exc, RegistryError) or exc.status >= 500:
                    # no answer, or a server error: it may have landed; moved back too
                    e.moved.append(tag)
                    e.uncertain.add(tag)
                    self.left[name] = "may have moved"
                return
            finally:
                self.sending.discard(name)
                current_stats.reset(token)
            e.moved.append(tag)
            self.left[name] = ""
            e.now[tag] = e.plan.listed.digest

    async def undo(self, e: _List, tag: str) -> None:
        """Move ``tag`` back: its previous manifest PUT at it, or the tag deleted. A tag whose
        PUT may have landed (no answer, a 5xx) is HEADed first: one request, and no rollback
        PUT (retried like any) when it never moved."""
        previous = e.heads.get(tag, "")
        ref = e.ref(tag)
        name = str(ref)
        token = current_stats.set(e.stats)
        try:
            async with self.limit(e.target.registry):
                if tag in e.uncertain and await self.unmoved(e, tag):
                    return
                self.left[name] = "being moved back"
                if previous:
                    key = (e.target.registry, e.target.repository, previous)
                    await self.engine.put_manifest(ref, self.previous[key])
                    e.rolled_back.append(tag)
                elif await self.engine.client.delete_manifest(ref):
                    e.deleted.append(tag)
                else:  # 404: an unanswered PUT that had not landed
                    e.moved.remove(tag)
            e.now[tag] = previous
            self.left.pop(name, None)
        except RegistryError as exc:
            if not previous and exc.status in _REFUSES_TAG_DELETE:
                e.refused[tag] = exc
            else:
                e.stuck[tag] = exc
            if exc.status >= 500:
                e.unsure_back.add(tag)  # the move back may have landed: settle() looks
            self.left[name] = "may have moved" if tag in e.uncertain else ""
        except ManyfestError as exc:
            e.stuck[tag] = exc
            e.unsure_back.add(tag)  # no answer: the move back may have landed
            self.left[name] = "may have moved" if tag in e.uncertain else ""
        finally:
            current_stats.reset(token)

    async def unmoved(self, e: _List, tag: str) -> bool:
        """HEAD a tag whose PUT may have landed: True when it is where it was before the
        run (it never moved: nothing to move back); False when it moved or the HEAD failed."""
        try:
            found = await self.engine.client.head_manifest(e.ref(tag))
        except ManyfestError:
            return False
        digest = found.digest if found else ""
        if digest != e.heads.get(tag, ""):
            return False
        e.now[tag] = digest
        e.moved.remove(tag)
        e.uncertain.discard(tag)
        self.left.pop(str(e.ref(tag)), None)
        return True

    async def settle(self, e: _List, tag: str) -> None:
        """Where a tag is whose rollback failed when its PUT, or its move back, got no answer
        or a 5xx: one HEAD (a tag found where it was before the run is not moved). When the
        HEAD fails too, where the tag is is unknown: it is left out of ``tag_digests``."""
        try:
            found = await self.engine.client.head_manifest(e.ref(tag))
        except ManyfestError:
            e.now.pop(tag, None)
            return
        e.now[tag] = found.digest if found else ""
        if e.now[tag] == e.heads.get(tag, ""):
            if tag in e.uncertain:
                e.moved.remove(tag)  # it may never have moved: not counted as moved
            elif e.heads.get(tag):
                e.rolled_back.append(tag)  # moved, and the move back landed after all
            else:
                e.deleted.append(tag)
            e.refused.pop(tag, None)
            e.stuck.pop(tag, None)
            self.left.pop(str(e.ref(tag)), None)


def dry_run_actions(plan: ListPlan) -> list[str]:
    """``--dry-run`` actions of one list: phase 1's mounts, child pushes and the list PUT by
    digest, then phase 2's tag moves (lines starting ``put``)."""
    lines = [a for a in plan.actions() if not a.startswith("put ")]
    lines.append(f"push list {plan.target.name}@{plan.listed.digest} (by digest)")
    return lines + [a for a in plan.actions() if a.startswith("put ")]


async def publish_atomic(
    engine: Engine,
    plan: list[PlanList],
    built: dict[int, list[Child]],
    failures: dict[int, ManyfestError],
    stats: list[RequestStats],
    *,
    opts: PublishOptions,
    fail_fast: bool,
    stop: StopRequest,
    started: float,
    before: tuple[int, int, int],
    per_registry: dict[str, dict[str, int]],
    listed_total: int | None = None,
    matched: Sequence[ListResult] = (),
) -> PublishReport:
    """The two phases of ``publish --atomic`` (see the module's text), after every source
    was resolved and every list built and checked by :func:`manyfest.ops.publish.publish`.

    Args:
        engine: the run's engine.
        plan: the lists, in plan order.
        built: each checked list's entries, by plan index.
        failures: each list that failed resolving or its checks, by plan index.
        stats: each list's request counters.
        opts: the run's options (``opts.atomic`` set).
        fail_fast: the first phase-1 failure cancels the rest of phase 1; the report's
            ``stopped_by`` is that error.
        stop: SIGINT/SIGTERM: in phase 1 nothing moves; in phase 2 the moves stop and the
            tags moved are moved back.
        started, before, per_registry: the run's start and counters before it (totals).
        listed_total: the lists of the run's ``publish`` phase (its :class:`Phase` event),
            when more than ``plan`` (``--since`` finishes the others); default ``len(plan)``.
        matched: the results of the lists ``--since`` proved unchanged (not in ``plan``):
            when phase 1 fails or is interrupted, or phase 2 is rolled back or interrupted,
            each is made ``failed`` in place
            (``tag_digests`` ``{}``: none of its tags was touched) and announced; else left
            to the caller. A phase-1 failure's count is out of ``plan`` and these.

    Returns:
        The :class:`~manyfest.ops.publish.PublishReport`: every list ``atomic``; when the
        release was not published, every list ``failed`` with ``tag_digests``, and
        :attr:`~manyfest.ops.publish.PublishReport.atomic_line` saying why and which tags
        could not be moved back. ``summary.atomic``: ``outcome`` (``published``,
        ``unchanged``, ``dry run``, ``phase 1 failed``, ``rolled back``, ``interrupted``),
        ``phase`` (1 or 2: where it ended), ``failed_at`` (the tag whose PUT failed, or
        None), ``tags_moved``, ``rolled_back``, ``deleted``, ``not_rolled_back`` (tag
        references) and ``rollback_gets`` (previous manifests fetched in phase 1).
    """
    lists = [
        _List(i, item, built.get(i, []), failures.get(i), stats[i],
              ListResult(item.target, item.tags, atomic=True), tags=list(item.tags))
        for i, item in enumerate(plan)
    ]
    _units(lists, built, opts)
    run = _Run(engine, opts, stop, lists, fail_fast, started, matched)
    transport = engine.client.transport
    writes = not failures
    if failures and fail_fast:  # as without --atomic: nothing more is read
        for i, e in enumerate(lists):
            if i in failures:
                return _phase1_failed(run, [e], transport, started, before, per_registry)
    engine.on_event(Phase(name="publish", total=listed_total or len(plan)))

    async def one(e: _List, scope: anyio.CancelScope) -> None:
        await run.prepare(e, writes=writes, scope=scope)

    with stop.scope() as scope:  # at most --lists-in-flight lists at once (tasks too)
        await run_bounded(one, ((e, scope) for e in lists), opts.lists_in_flight)
    if stop.requested():
        report = _interrupted(engine, plan, [None] * len(plan), run.in_flight, stats, stop,
                              opts, started, before, per_registry)
        for e, r in zip(lists, report.results, strict=True):
            heads = (e.lead or e).heads
            r.tag_digests = {t: heads[t] for t in e.item.tags if t in heads}
        report.atomic = _summary(run, "interrupted", 1)
        _fail_matched(run, f"not published: interrupted by {stop.reason or 'a stop request'} "
                      "before it was published (--since: unchanged)", "re-run to finish")
        report.not_published += len(run.matched)
        report.results.extend(run.matched)  # counted in the line (the caller splices them)
        line = report.interruption_line()
        del report.results[len(lists):]
        report.atomic_line = f"--atomic: interrupted in phase 1, no tag was moved: {line}"
        return report
    failed = [e for e in lists if e.error is not None]
    if failed:
        return _phase1_failed(run, failed, transport, started, before, per_registry)
    if opts.dry_run:
        report = PublishReport(dry_run=True)
        for e in lists:
            _finish(run, e, "unchanged" if e.plan is None or not e.plan.tags else None)
            report.results.append(e.result)
        report.atomic = _summary(run, "dry run", 1)
        _totals(report, transport, before, per_registry, started)
        return report

    # Phase 2: every tag, concurrently; not cancelled by a stop (a PUT sent is let finish).
    moves = [(e, tag) for e in lists if e.plan is not None for tag in e.plan.tags]
    for e in lists:
        e.now = dict(e.heads)
    with interrupts.undoing(UNDO_GRACE, notice=run.notice, last=run.last_line):
        await run_bounded(run.move, moves, TAGS_IN_FLIGHT)
        out = run.failed_at is None and not stop.requested()
        if not out:
            await run_bounded(run.undo, [(e, tag) for e in lists for tag in e.moved],
                              TAGS_IN_FLIGHT)
            await run_all(*(partial(run.settle, e, tag) for e in lists
                            for tag in (e.uncertain | e.unsure_back) & {*e.refused, *e.stuck}))
    if out:  # the release is out: --verify and a signal from now on undo nothing
        return await _published(run, transport, started, before, per_registry)
    return _rolled_back(run, transport, started, before, per_registry)


def _units(lists: list[_List], built: dict[int, list[Child]], opts: PublishOptions) -> None:
    """Group the lists that are one unit of work (:func:`manyfest.ops.publish.unit_key`: the
    same bytes in the same repository): the first leads, with every tag of the unit; the
    others take no part in the phases (their requests are counted against the lead). The
    grouping is :func:`manyfest.ops.publish.plan_units`' (``lists`` are in plan order);
    under ``--unchanged-by children`` every list stays its own unit here."""
    if opts.unchanged_by == "children":
        return
    grouped = {e.index: built[e.index] for e in lists if e.index in built and e.error is None}
    for unit in plan_units([e.item for e in lists], grouped, opts):
        lead, *others = (lists[i] for i in unit)
        for e in others:
            e.lead = lead
            lead.members.append(e)
            lead.tags = list(dict.fromkeys([*lead.tags, *e.item.tags]))
            lead.result.tags = list(lead.tags)
            _add_stats(lead.stats, e.stats)
            e.stats = RequestStats()


def _own(e: _List, unit: ListResult) -> None:
    """Set ``e.result`` (a unit's lead or member) from its unit's result, for its own tags:
    the unit's digest, error and ``tag_digests``; its status from what its own tags held
    (``unchanged`` when each held the list); the ``--dry-run`` moves of its own tags (the
    lead also keeps phase 1's lines); a member has ``same_as`` the lead's target and no
    requests of its own."""
    own = e.item.tags
    lead = e.lead or e
    r = e.result
    r.tags = list(own)
    r.digest, r.error, r.verified = unit.digest, unit.error, unit.verified
    r.old_digest = lead.heads.get(own[0], "")
    if unit.tag_digests is not None:
        r.tag_digests = {t: unit.tag_digests[t] for t in own if t in unit.tag_digests}
    puts = {f"put {e.target.with_tag(t)} -> " for t in own}
    keeps = {f"keep {e.target.with_tag(t)} at " for t in own}  # --existing skip
    r.actions = [a for a in unit.actions
                 if (e.lead is None and not a.startswith(("put ", "keep ")))
                 or a.split(" -> ")[0] + " -> " in puts or a.split(" at ")[0] + " at " in keeps]
    r.existing = {t: d for t, d in unit.existing.items() if t in own}
    r.children = unit.children
    if e.lead is not None:
        r.same_as = str(lead.target)
        r.pushed_children = []
    if unit.status == "failed":
        r.status = "failed"
    elif all(lead.heads.get(t) == unit.digest for t in own) or (
            lead.plan is not None and not set(own) & set(lead.plan.tags)):
        r.status = "unchanged"
    else:
        written = [t for t in own if t not in r.existing]
        first = own[0] if own[0] in written else written[0]
        r.status = "updated" if lead.heads.get(first) else "created"


def _finish(run: _Run, e: _List, status: str | None) -> None:
    """Set a successful list's status and send its :class:`Finished` event."""
    r = e.result
    if status == "unchanged":
        r.status = "unchanged"
    elif e.plan is not None:
        r.status = e.plan.status()
    else:
        r.status = "updated" if r.old_digest else "created"
    _done(run, e)


def _fail_matched(run: _Run, text: str, hint: str) -> None:
    """The release was not published: each list ``--since`` proved unchanged is ``failed``
    too (its tags untouched), and announced."""
    for r in run.matched:
        r.status = "failed"
        r.error = NotPublishedError(text, hint=hint)
        r.atomic = True
        r.tag_digests = {}
        run.engine.on_event(Finished(target=str(r.target), result=r))


def _done(run: _Run, e: _List) -> None:
    """A list's counters and duration, its own result when it is in a unit (:func:`_own`),
    then its :class:`Finished` event. A unit's lead comes before its members."""
    if e.members:
        e.unit = replace(e.result, tags=list(e.tags), actions=list(e.result.actions),
                         tag_digests=None if e.result.tag_digests is None
                         else dict(e.result.tag_digests))
        _own(e, e.unit)
    elif e.lead is not None and e.lead.unit is not None:
        _own(e, e.lead.unit)
    r = e.result
    r.requests, r.retries, r.throttled = e.stats.requests, e.stats.retries, e.stats.throttled
    r.manifest_gets, r.manifest_heads = e.stats.manifest_gets, e.stats.manifest_heads
    r.duration_s = time.monotonic() - run.started  # a list is done when the release is
    run.engine.on_event(Finished(target=str(e.target), result=r))


def _summary(run: _Run, outcome: str, phase: int) -> dict[str, Any]:
    lists = run.lists
    return {
        "outcome": outcome,
        "phase": phase,
        "failed_at": run.failed_at[0] if run.failed_at else None,
        "tags_moved": sum(len(e.moved) for e in lists),
        "rolled_back": sum(len(e.rolled_back) for e in lists),
        "deleted": sum(len(e.deleted) for e in lists),
        "not_rolled_back": [str(e.ref(t)) for e in lists for t in [*e.refused, *e.stuck]],
        "rollback_gets": run.rollback_gets,
    }


def _phase1_failed(run: _Run, failed: list[_List], transport: Any, started: float,
                   before: tuple[int, int, int], per_registry: dict[str, dict[str, int]],
                   ) -> PublishReport:
    """Phase 1 failed: no tag moved; every list ``failed``."""
    first = failed[0]
    assert first.error is not None
    why = f"{first.target}: {first.error.message}"
    report = PublishReport(dry_run=run.opts.dry_run)
    for e in run.lists:
        if e.error is None:
            e.error = NotPublishedError(
                f"not published: --atomic: another list failed in phase 1 ({why})",
                hint="fix that list and re-run: no tag was moved",
            )
        e.result.status = "failed"
        e.result.error = e.error
        e.result.tag_digests = dict(e.heads)
        _done(run, e)
        report.results.append(e.result)
    _fail_matched(run, f"not published: --atomic: another list failed in phase 1 ({why})",
                  "fix that list and re-run: no tag was moved")
    if run.fail_fast:
        report.stopped_by = first.error
    verb = "would move" if run.opts.dry_run else "was moved"
    total = len(run.lists) + len(run.matched)
    report.atomic_line = (
        f"--atomic: phase 1 failed: {sum(1 + len(e.members) for e in failed)} of "
        f"{plural(total, 'list')} "
        f"failed (first {why}); no tag {verb}"
    )
    report.atomic = _summary(run, "phase 1 failed", 1)
    _totals(report, transport, before, per_registry, started)
    return report


async def _published(run: _Run, transport: Any, started: float,
                     before: tuple[int, int, int], per_registry: dict[str, dict[str, int]],
                     ) -> PublishReport:
    """Phase 2 moved every tag: the release is out (``--verify`` checks it now)."""
    report = PublishReport()
    for e in run.lists:
        e.result.status = "unchanged" if e.plan is None else e.plan.status()
        if e.plan is not None and e.plan.tags:
            e.result.pushed_children = [c.manifest.digest for c in e.plan.children]

    async def verify(e: _List) -> None:
        token = current_stats.set(e.stats)
        try:
            kept = e.plan.kept if e.plan is not None else None
            await run.engine.verify(e.result, e.children, kept=kept)
        except ManyfestError as exc:
            e.result.status, e.result.error = "failed", exc
            e.result.tag_digests = dict(e.now)
        finally:
            current_stats.reset(token)

    if run.opts.verify:
        await run_bounded(verify, ((e,) for e in run.lists
                                   if e.result.status in ("created", "updated")),
                          run.opts.lists_in_flight)
    for e in run.lists:
        _done(run, e)
        report.results.append(e.result)
    moved = sum(len(e.moved) for e in run.lists)
    # all unchanged: phase 2 had nothing to move, the run ended after phase 1
    report.atomic = _summary(run, "published" if moved else "unchanged", 2 if moved else 1)
    _totals(report, transport, before, per_registry, started)
    return report


def _rolled_back(run: _Run, transport: Any, started: float,
                 before: tuple[int, int, int], per_registry: dict[str, dict[str, int]],
                 ) -> PublishReport:
    """Phase 2 failed or was stopped: every list ``failed``, with where its tags are."""
    stop = run.stop
    interrupted = run.failed_at is None
    if run.failed_at is not None:
        at, exc = run.failed_at
        cause = f"phase 2 failed at {at} ({exc.message})"
    else:
        cause = f"interrupted by {stop.reason or 'a stop request'} in phase 2"
    report = PublishReport(interrupted=stop.reason if interrupted else None)
    refused: list[str] = []
    refusal = ""
    stuck: list[str] = []
    for e in run.lists:
        parts: list[str] = []
        back = [str(e.ref(t)) for t in e.rolled_back]
        gone = [str(e.ref(t)) for t in e.deleted]
        if back:
            parts.append(f"rolled back {', '.join(back)}")
        if gone:
            parts.append(f"deleted new tag{'s' if len(gone) > 1 else ''} {', '.join(gone)}")
        for tag, refusing in e.refused.items():
            refused.append(str(e.ref(tag)))
            refusal = refusal or _refusal(refusing)
        if e.refused:
            names = ", ".join(str(e.ref(t)) for t in e.refused)
            why = _refusal(next(iter(e.refused.values())))
            parts.append(f"not rolled back: new tag{'s' if len(e.refused) > 1 else ''} "
                         f"{names} (could not be deleted: {why})")
        for tag, err in e.stuck.items():
            stuck.append(f"{e.ref(tag)} (move back: {err.message})")
            parts.append(f"not rolled back: {e.ref(tag)} (move back: {err.message})")
        if e.plan is not None and not e.plan.tags:
            parts.append("its tags already pointed at this list")
        elif not e.moved:
            parts.append("none of its tags had moved")
        head = (f"--atomic: the PUT of its tag failed ({e.put_error.message})"
                if e.put_error is not None else f"not published: --atomic: {cause}")
        text = f"{head}; {'; '.join(parts)}"
        hint = ("re-run to publish the release (a tag not rolled back points at its new, "
                "complete list)" if e.refused or e.stuck else
                "its tags are where they were; re-run to publish the release")
        if isinstance(e.put_error, ImmutableTagError):
            hint = f"{e.put_error.hint}; {hint}"
        e.result.status = "failed"
        e.result.error = NotPublishedError(text, hint=hint)
        e.result.tag_digests = dict(e.now)
        _done(run, e)
        report.results.append(e.result)
    _fail_matched(run, f"not published: --atomic: {cause}; none of its tags was touched "
                       "(--since: unchanged)", "its tags are where they were; re-run to "
                       "publish the release")
    if interrupted:
        report.not_published = len(run.lists) + len(run.matched)
    rolled = sum(len(e.rolled_back) for e in run.lists)
    deleted = sum(len(e.deleted) for e in run.lists)
    line = f"--atomic: {cause}; {plural(rolled, 'tag')} rolled back"
    if deleted:
        line += f", {plural(deleted, 'new tag')} deleted"
    if refused:
        line += (f", {plural(len(refused), 'new tag')} could not be deleted ({refusal}): "
                 f"{', '.join(refused)}")
    if stuck:
        line += f", {plural(len(stuck), 'tag')} could not be rolled back: {', '.join(stuck)}"
    if interrupted:
        line += "; re-run to finish"
    report.atomic_line = line
    report.atomic = _summary(run, "interrupted" if interrupted else "rolled back", 2)
    _totals(report, transport, before, per_registry, started)
    return report


def _refusal(exc: RegistryError) -> str:
    """``the registry refuses tag deletion: 400 DIGEST_INVALID`` (Distribution 2.8)."""
    codes = ", ".join(sorted(exc.codes))
    return f"the registry refuses tag deletion: {exc.status}" + (f" {codes}" if codes else "")

