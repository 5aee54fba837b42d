"""Bulk publish: every list of a plan, concurrently, in one process and one HTTP session.

Every source of the plan is resolved first (once each, concurrently); a list whose sources
all resolved is then published by the engine (HEAD target → blobs → children → list → extra
tags); lists are independent, so one failure fails only its list (keep-going) and the run
ends with exit 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import anyio
import msgspec

from manyfest.content import JsonStyle
from manyfest.engine import Child, Engine, Event, ListResult, Source, run_all
from manyfest.errors import ManyfestError, PlatformError
from manyfest.ops.plan import PlanList
from manyfest.platform import validate
from manyfest.transport import RequestStats, current_stats

MAX_LISTS_IN_FLIGHT = 32
"""Lists being published at once (requests are limited per registry separately)."""


@dataclass(slots=True)
class PublishReport:
    """The results of a publish run, in plan order, and totals."""

    results: list[ListResult] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    duration_s: float = 0.0

    def count(self, status: str) -> int:
        """Lists with ``status``."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        """Lists that failed."""
        return self.count("failed")

    def to_json(self) -> bytes:
        """The ``--json`` report: ``{"results": [...], "summary": {...}}``."""
        doc = {
            "results": [
                {
                    "target": str(r.target),
                    "tags": r.tags,
                    "digest": r.digest,
                    "old_digest": r.old_digest,
                    "status": r.status,
                    "error": r.error.one_line() if r.error else None,
                    "requests": r.requests,
                    "duration_s": round(r.duration_s, 4),
                }
                for r in self.results
            ],
            "summary": {
                "lists": len(self.results),
                "created": self.count("created"),
                "updated": self.count("updated"),
                "unchanged": self.count("unchanged"),
                "failed": self.failed,
                "requests": self.requests,
                "retries": self.retries,
                "duration_s": round(self.duration_s, 4),
            },
        }
        return msgspec.json.format(msgspec.json.encode(doc), indent=2)


def _children(plan: PlanList, sources: dict[str, Source]) -> list[Child]:
    children = []
    seen: dict[tuple[str, str, str, str, tuple[str, ...]], str] = {}
    for entry in plan.entries:
        source = sources[str(entry.ref)]
        platform = entry.platform(source.platform)
        validate(platform.os, platform.architecture, platform.variant)
        key = (
            platform.os,
            platform.architecture,
            platform.variant,
            platform.os_version,
            platform.os_features,
        )
        if key in seen:
            raise PlatformError(
                f"{plan.target}: {entry.ref} and {seen[key]} have the same platform {platform}",
                hint="a list holds one image per platform: drop one or fix its platform",
            )
        seen[key] = str(entry.ref)
        children.append(Child(source, platform))
    return children


async def publish(
    engine: Engine,
    plan: list[PlanList],
    *,
    style: JsonStyle = "docker",
) -> PublishReport:
    """Publish every list of ``plan``; failures are per list (keep-going).

    Returns:
        A :class:`PublishReport` with one :class:`ListResult` per list, in plan order.
    """
    started = time.monotonic()
    transport = engine.client.transport
    before = (transport.total.requests, transport.total.retries)
    results: list[ListResult | None] = [None] * len(plan)
    limiter = anyio.CapacityLimiter(MAX_LISTS_IN_FLIGHT)

    async def one(i: int, item: PlanList) -> None:
        async with limiter:
            results[i] = await _publish_one(engine, item, style)

    await run_all(*(partial(one, i, item) for i, item in enumerate(plan)))
    report = PublishReport([r for r in results if r is not None])
    report.requests = transport.total.requests - before[0]
    report.retries = transport.total.retries - before[1]
    report.duration_s = time.monotonic() - started
    return report


async def _publish_one(engine: Engine, item: PlanList, style: JsonStyle) -> ListResult:
    sources: dict[str, Source] = {}
    stats = RequestStats()
    started = time.monotonic()
    token = current_stats.set(stats)
    try:
        async def resolve(ref_text: str) -> None:
            entry = next(e for e in item.entries if str(e.ref) == ref_text)
            sources[ref_text] = await engine.resolve(entry.ref)

        await run_all(
            *(partial(resolve, r) for r in dict.fromkeys(str(e.ref) for e in item.entries))
        )
        children = _children(item, sources)
    except ManyfestError as exc:
        result = ListResult(
            item.target,
            item.tags,
            status="failed",
            error=exc,
            requests=stats.requests,
            retries=stats.retries,
            duration_s=time.monotonic() - started,
        )
        engine.on_event(Event("finished", str(item.target), "failed", result))
        return result
    finally:
        current_stats.reset(token)
    return await engine.publish(
        item.target,
        children,
        extra_tags=list(item.extra_tags),
        annotations=item.annotations or None,
        style=style,
        stats=stats,
        started=started,
    )
