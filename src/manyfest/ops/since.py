"""Incremental runs: ``publish --since REPORT`` skips lists a previous report proves unchanged.

A previous run's report (``--report`` JSON Lines, a ``--json`` document, or ``manyfest report
merge`` output) records per list its ``plan_key`` (:func:`plan_key`: a digest of the list's
plan entry and settings, not of anything resolved), the digest every source resolved to
(``sources``) and the list digest. A list of this run is a *candidate* when the report has a
line for the same target, published (``created``/``updated``/``unchanged``, not ``failed``,
not a ``--dry-run`` line), with this run's plan key. The report is read and checked as
``report merge`` reads it (:func:`manyfest.ops.reports.parse`); when no line of it can
prove a list unchanged, a warning says so (and why: dry-run, failed, older lines). A
candidate is checked without any manifest GET:

1. every source named by digest is what it was by construction (no request); every source
   named by tag is HEADed once per run (shared by every candidate naming it) and must still
   resolve to the report's digest;
2. the list's first tag is HEADed once and must still point at the report's list digest
   (with ``trust``: not even that HEAD).

A candidate passing both is ``unchanged`` (its digest from the report, its tags the plan's,
which the plan key proves equal); any mismatch sends
the list the normal way (resolve, build, HEAD every tag, publish). The normal way is the
source of truth: this module only ever skips work whose outcome the report already proves.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from manyfest.engine import Engine, ListResult, PublishOptions, run_bounded, subject_reference
from manyfest.errors import ManyfestError, UsageError
from manyfest.events import Finished, Phase, SinceChecked, Skipped, Warned
from manyfest.ops import reports
from manyfest.ops.plan import PlanList
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.transport import RequestStats, current_stats

PLAN_KEY_VERSION = "manyfest.plan_key/1"
"""Mixed into every plan key: a change to the encoding below changes it, so old reports
simply stop matching (never a wrong match)."""

PUBLISHED = frozenset({"created", "updated", "unchanged"})
"""Report statuses that say every tag of the list held its digest at the end of that run."""

MATCHED = "matched"
"""``since`` value of a list the report proved unchanged (the list was not resolved)."""


def _platform(p: Platform) -> dict[str, Any]:
    return {"os": p.os, "architecture": p.architecture, "variant": p.variant,
            "os.version": p.os_version, "os.features": list(p.os_features)}


def plan_key(item: PlanList, opts: PublishOptions, platforms: Sequence[Platform] = ()) -> str:
    """The digest (``sha256:<hex>``) of what decides one list's bytes and checks.

    Encoded canonically (JSON, keys sorted, no whitespace, every default spelled): the
    target, its tags (the first, then the others sorted: their order changes nothing
    written), the entries in order (source reference as manyfest prints it, platform
    override with every field; an override setting nothing is no override), index
    annotations, and every setting that changes the bytes or the checks: the list's
    effective media type (``''`` is ``auto``), JSON style, ``artifact_type``, ``subject``,
    ``labels_to_annotations``, ``attestations``, ``allow_duplicate_platforms``,
    ``require_platforms`` and ``platform_check`` of the list, and the run's ``--platform``
    filters and ``--unchanged-by`` (when not the default). Resolved digests are not in it.

    ``opts`` is the run's options or the list's (:func:`manyfest.ops.publish.list_options`):
    the command line's settings win over the plan's, as publishing merges them.
    """
    labels = item.labels_to_annotations if opts.labels_to_annotations is None \
        else opts.labels_to_annotations
    entries = []
    for e in item.entries:
        o = e.override
        override = None
        if o is not None and (o.os or o.architecture or o.variant or o.os_version
                              or o.os_features):
            override = {"os": o.os, "architecture": o.architecture, "variant": o.variant,
                        "os.version": o.os_version, "os.features": list(o.os_features)}
        entries.append({"ref": str(e.ref), "platform": override})
    first, *rest = item.tags
    doc: dict[str, Any] = {
        "version": PLAN_KEY_VERSION,
        "target": str(item.target.with_tag(first)),
        "tags": [first, *sorted(set(rest) - {first})],
        "entries": entries,
        "annotations": dict(item.annotations),
        "media_type": opts.media_type or item.media_type or "auto",
        "style": opts.style,
        "artifact_type": opts.artifact_type or item.artifact_type,
        "subject": opts.subject or item.subject,
        "labels_to_annotations": labels,
        "attestations": item.attestations,
        "allow_duplicate_platforms": item.allow_duplicate_platforms,
        "require_platforms": sorted((_platform(p) for p in item.require_platforms),
                                    key=lambda d: msgspec.json.encode(d, order="sorted")),
        "platform_check": item.platform_check,
        "platform_filters": sorted((_platform(p) for p in platforms),
                                   key=lambda d: msgspec.json.encode(d, order="sorted")),
    }
    if opts.unchanged_by != "digest":
        doc["unchanged_by"] = opts.unchanged_by
    return "sha256:" + hashlib.sha256(msgspec.json.encode(doc, order="sorted")).hexdigest()


@dataclass(frozen=True, slots=True)
class Prior:
    """One published list of a previous report: what :func:`check` compares against."""

    target: str
    tags: list[str]
    digest: str
    plan_key: str
    sources: dict[str, str]


UNUSABLE = ("dry-run", "failed", "no-line")
"""Why a report's line cannot prove its list unchanged: a ``--dry-run`` run's line, a failed
list's, an older report's (no ``plan_key``/``sources``: reported as ``no-line``)."""


@dataclass(slots=True)
class Since:
    """A previous report read for ``--since`` (:func:`read_report`).

    Attributes:
        path: the report file, as given (for messages).
        priors: the published lists of the report that carry a plan key, by target
            reference (the last line wins when a target appears twice).
        trust: ``--trust-report``: a candidate whose sources match is ``unchanged`` without
            a HEAD of its tag.
        lines: lines (results) read, usable or not.
        unusable: per target reference without a usable line, why its line proves nothing
            (:data:`UNUSABLE`: ``dry-run``, ``failed``, ``no-line``: an older report's line
            without ``plan_key``/``sources``); the last such line wins.
        counts: lines read per :data:`UNUSABLE` reason, and ``published``: the usable ones.
    """

    path: str
    priors: dict[str, Prior] = field(default_factory=dict)
    trust: bool = False
    lines: int = 0
    unusable: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((*UNUSABLE, "published"), 0))

    def warning(self) -> str | None:
        """The warning when no line of the report can prove a list unchanged, e.g.
        ``--since d1.jsonl: no line can prove a list unchanged (4 dry-run lines, 0
        published): every list goes the normal way``; ``None`` when one can."""
        if self.priors:
            return None
        counts = self.counts
        words = {"dry-run": "dry-run", "failed": "failed",
                 "no-line": "without plan_key/sources (an older report)"}
        parts = [_lines(counts[r], words[r]) for r in UNUSABLE if counts[r]]
        parts.append("0 published" if parts else "no lines")
        return (f"--since {self.path}: no line can prove a list unchanged "
                f"({', '.join(parts)}): every list goes the normal way")


def _lines(n: int, what: str) -> str:
    """``4 dry-run lines``, ``1 failed line``, ``2 lines without ...``."""
    noun = "line" if n == 1 else "lines"
    if what.startswith("without"):
        return f"{n} {noun} {what}"
    return f"{n} {what} {noun}"


def _prior(entry: reports.Entry) -> Prior | str:
    """The :class:`Prior` of one report line (checked by :mod:`manyfest.ops.reports`), or
    why it proves nothing (:data:`UNUSABLE`)."""
    doc = entry.fields
    if entry.dry_run:
        return "dry-run"
    if entry.status not in PUBLISHED:
        return "failed"
    key, sources, digest = doc.get("plan_key"), doc.get("sources"), doc.get("digest")
    if not (isinstance(key, str) and key.startswith("sha256:") and isinstance(digest, str)
            and digest and isinstance(sources, dict)):
        return "no-line"
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in sources.items()):
        return "no-line"
    return Prior(str(entry.target), list(entry.tags), digest, key, dict(sources))


def parse_report(data: bytes, path: str, *, trust: bool = False) -> Since:
    """Read a report's bytes as ``report merge`` does (:func:`manyfest.ops.reports.parse`:
    JSON Lines, one ``--json`` document, or one list's object over several lines), every
    line checked the same way.

    Blank lines are ignored. Lines of older reports (no ``plan_key``), failed lists and
    ``--dry-run`` lines are read but never match (:attr:`Since.unusable` says why).

    Raises:
        UsageError: (exit 2) a line that is not a list's report:
            ``--since FILE:LINE: ...`` naming it (``--since FILE: results[i]: ...`` in a
            ``--json`` document), as ``report merge`` names it.
    """
    since = Since(path, trust=trust)
    for entry in reports.parse(data, f"--since {path}"):
        since.lines += 1
        prior = _prior(entry)
        target = str(entry.target)
        since.counts[prior if isinstance(prior, str) else "published"] += 1
        if isinstance(prior, Prior):
            since.priors[target] = prior
            since.unusable.pop(target, None)
        elif target not in since.priors:
            since.unusable[target] = prior
    return since


REPORT_LIMIT = 512 * 1024 * 1024
"""The largest report ``--since`` reads, in bytes (a line is ~1 KiB: half a million lists)."""


def read_report(path: Path, *, trust: bool = False) -> Since:
    """Read the report file ``path`` (:func:`parse_report`), at most :data:`REPORT_LIMIT`
    bytes.

    Raises:
        UsageError: the file cannot be read, is larger than the limit (or endless, like
            ``/dev/zero``), or is not a report.
    """
    hint = "give the report file of an earlier publish"
    try:
        with path.open("rb") as fh:
            data = fh.read(REPORT_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"--since {path}: cannot read it: {exc.strerror or exc}",
                         hint=hint) from None
    if len(data) > REPORT_LIMIT:
        raise UsageError(f"--since {path}: larger than {REPORT_LIMIT // (1024 * 1024)} MiB",
                         hint=hint)
    return parse_report(data, str(path), trust=trust)


@dataclass(slots=True)
class Checked:
    """What :func:`check` decided, per list index of the plan.

    Attributes:
        matched: the lists proved unchanged: their result (``since == "matched"``).
        outcome: per list, why it goes the normal way (``no-line``: the report has no
            line for it, or only an older report's line without a plan key; ``dry-run``:
            its line is a ``--dry-run`` run's, which published nothing; ``failed``: its
            line is a failed list's; ``plan-changed``; ``subject-tag``: its
            subject is named by tag, which the report does not record; ``source-changed``:
            a source tag moved or failed to HEAD; ``tag-moved``: the first tag points
            elsewhere) or ``matched``.
    """

    matched: dict[int, ListResult] = field(default_factory=dict)
    outcome: dict[int, str] = field(default_factory=dict)


async def check(
    engine: Engine,
    plan: Sequence[PlanList],
    keys: Sequence[str],
    since: Since,
    *,
    stats: Sequence[RequestStats],
    dry_run: bool = False,
    lists_in_flight: int = 32,
    subject: str = "",
) -> Checked:
    """Check every candidate list of ``plan`` against ``since`` (module docstring).

    Args:
        engine: the run's engine (its client does the HEADs).
        plan: the lists, in plan order; ``keys[i]`` is ``plan[i]``'s :func:`plan_key`.
        since: the previous report.
        stats: per list, where its requests are counted (a source tag's HEAD goes to the
            first candidate naming it).
        dry_run: the run is a ``--dry-run`` (results say so).
        lists_in_flight: candidates checked at once.
        subject: the run's ``--subject`` ('' : each list's own).

    Returns:
        :class:`Checked`. Errors of a HEAD are never raised: the list goes the normal way,
        which reports them.
    """
    out = Checked()
    warning = since.warning() if plan else None
    if warning is not None:
        engine.on_event(Warned(target="", message=warning))
    candidates: dict[int, Prior] = {}
    owner: dict[str, int] = {}
    for i, item in enumerate(plan):
        prior = since.priors.get(str(item.target))
        if prior is None:
            out.outcome[i] = since.unusable.get(str(item.target), "no-line")
        elif prior.plan_key != keys[i] or any(str(e.ref) not in prior.sources
                                              for e in item.entries):
            out.outcome[i] = "plan-changed"
        elif _subject_by_tag(item, subject or item.subject):
            out.outcome[i] = "subject-tag"
        else:
            candidates[i] = prior
            for e in item.entries:
                owner.setdefault(str(e.ref), i)
    if candidates:
        engine.on_event(Phase(name="since", total=len(candidates)))
    refs: dict[str, Reference] = {}
    for i in candidates:
        for e in plan[i].entries:
            refs.setdefault(str(e.ref), e.ref)
    now: dict[str, str] = {}

    async def source(key: str) -> None:
        ref = refs[key]
        if ref.digest:
            now[key] = ref.digest  # named by digest: it is what it was
            return
        token = current_stats.set(stats[owner[key]])
        try:
            found = await engine.client.head_manifest(ref)
            now[key] = found.digest if found else ""
        except ManyfestError:
            now[key] = ""
        finally:
            current_stats.reset(token)

    bound = max(lists_in_flight, 1)  # tasks, not one per source (10,000 lists: 40,000)
    await run_bounded(source, ((key,) for key in refs), bound)

    async def target(i: int, prior: Prior) -> None:
        item = plan[i]
        started = time.monotonic()
        if any(now.get(str(e.ref)) != prior.sources[str(e.ref)] for e in item.entries):
            out.outcome[i] = "source-changed"
            return
        if not since.trust:
            token = current_stats.set(stats[i])
            try:
                found = await engine.client.head_manifest(item.target.with_tag(item.tags[0]))
            except ManyfestError:
                found = None
            finally:
                current_stats.reset(token)
            if found is None or found.digest != prior.digest:
                out.outcome[i] = "tag-moved"
                return
        out.outcome[i] = MATCHED
        out.matched[i] = ListResult(
            item.target, item.tags, digest=prior.digest, old_digest=prior.digest,
            status="unchanged", requests=stats[i].requests, retries=stats[i].retries,
            throttled=stats[i].throttled, manifest_gets=stats[i].manifest_gets,
            manifest_heads=stats[i].manifest_heads, duration_s=time.monotonic() - started,
            plan_key=keys[i], sources={str(e.ref): prior.sources[str(e.ref)]
                                       for e in item.entries},
            since=MATCHED, dry_run=dry_run,
        )

    async def announced(i: int, prior: Prior) -> None:
        await target(i, prior)
        engine.on_event(SinceChecked(target=str(plan[i].target), outcome=out.outcome[i]))

    await run_bounded(announced, candidates.items(), bound)
    return out


def _subject_by_tag(item: PlanList, text: str) -> bool:
    """True when the list's subject (``text``) names a tag: a tag may move, and the list's
    bytes with it."""
    if not text:
        return False
    try:
        return subject_reference(item.target, text).digest is None
    except ManyfestError:
        return True  # the normal way reports it


def finish(engine: Engine, result: ListResult) -> ListResult:
    """Announce a matched list as the engine announces an unchanged one (``Skipped``, then
    ``Finished``) and return it."""
    engine.on_event(Skipped(target=str(result.target), digest=result.digest))
    engine.on_event(Finished(target=str(result.target), result=result))
    return result


def stamp(
    results: Sequence[ListResult],
    plan: Sequence[PlanList],
    keys: Sequence[str],
    resolved: Mapping[str, str],
    checked: Checked | None,
    *,
    dry_run: bool,
) -> None:
    """Fill the report keys of every result (plan order): ``plan_key``, ``sources`` (the
    digest each source resolved to, where it resolved), ``dry_run`` and, with ``--since``,
    ``since`` (:class:`Checked` outcome)."""
    for i, (result, item) in enumerate(zip(results, plan, strict=True)):
        result.plan_key = keys[i]
        result.dry_run = dry_run
        if checked is not None:
            result.since = checked.outcome.get(i, "")
        if checked is not None and i in checked.matched:
            continue
        result.sources = {str(e.ref): resolved[str(e.ref)] for e in item.entries
                          if str(e.ref) in resolved}
