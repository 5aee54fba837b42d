"""Memory shape of a big publish run (issue 9, "Scale"), without timing anything.

A run of 2,000 lists (100 source sets of 2 real-shape images, 20 lists each, 4 target
repositories) goes through the whole of :func:`manyfest.ops.publish.publish` and its report
(``--report`` JSON Lines, ``--json``) against :class:`tests.test_engine.FakeRegistry`, an
in-memory registry client (no network, no process). tracemalloc measures what the run
allocates at its peak and what its report keeps, per list; the bounds are several times what
the code needs today (so the test is not flaky), and well under what holding a task per list
up front, or every list's bytes, manifests or children to the end, would cost. The wall-time
and RSS figures are the benchmark's (``python -m benchmarks.scale``), never asserted here.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from manyfest.content import Manifest
from manyfest.engine import Child, Engine, ListResult, Source, run_bounded
from manyfest.ops import plan as plans
from manyfest.ops.publish import PublishReport, publish, result_json
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.transport import RequestStats
from tests.imagewriter import build_image
from tests.test_engine import HOST, FakeRegistry

LISTS = 2000
PER_SOURCE = 20
REPOSITORIES = 4
PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))

PEAK_PER_LIST = 6 * 1024
"""Bytes the run may allocate at its peak, per list. Today about 3.0 KiB at 2,000 lists, most
of it the fixed cost of the 32 lists in flight (their blob tasks), the rest each list's
result, request counts and children until it is published; before the lists were started by
a bounded pool (one task per list made up front, every list's children kept to the end) it
was 7.2 KiB."""
KEPT_PER_LIST = 2 * 1024
"""Bytes the finished report may keep per list: about 0.7 KiB (the result, its digest, tags,
counts and the digests of the children it pushed), 1.3 KiB with ``--since``'s ``plan_key``
and ``sources`` per result; a list's bytes would add ~1 KiB more (and the Manifest objects
are counted below)."""


class NoCalls(list[tuple[str, str, str]]):
    """The fake's call log, kept empty: 2,000 lists make ~30,000 calls, not the run's
    memory."""

    def append(self, item: tuple[str, str, str]) -> None:
        """Drop the call."""


class FakeTransport:
    """What :func:`publish` reads of the transport: its totals and per-registry counts."""

    def __init__(self) -> None:
        self.total = RequestStats()

    def registry_stats(self) -> dict[str, dict[str, int]]:
        """No registry counts (the fake sends no request)."""
        return {}


class _Registry(FakeRegistry):
    """The fake registry, keeping only what the run reads back: children by digest (a list
    PUT checks them), not the 2,000 lists' own bytes (the fake's memory, not the run's)."""

    def __init__(self) -> None:
        super().__init__(calls=NoCalls())
        self.transport = FakeTransport()
        self.lists_put: dict[str, str] = {}

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        """As the fake's PUT; a list PUT by tag is checked, then only its digest noted."""
        if not (manifest.is_index and ref.tag):
            return await super().put_manifest(ref, manifest, built=built)
        present = self.manifests.get(ref.repository, {})
        missing = [d.digest for d in manifest.index().manifests if d.digest not in present]
        assert not missing, f"list {ref} PUT before its children {missing}"
        self.lists_put[f"{ref.repository}:{ref.tag}"] = manifest.digest
        return manifest.digest


def _plan_text(sets: int) -> str:
    """The plan: list i is ``scale/app<i % 4>:v<i>`` from source set ``i % sets``."""
    docs = []
    for i in range(LISTS):
        lines = [f"image: {HOST}/scale/app{i % REPOSITORIES}:v{i}", "manifests:"]
        for p in PLATFORMS:
            lines.append(f"  - image: {HOST}/src-{p.architecture}:s{i % sets}")
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


def _seeded(sets: int) -> _Registry:
    fake = _Registry()
    for s in range(sets):
        for p in PLATFORMS:
            fake.add_image(f"src-{p.architecture}", f"s{s}", build_image(p, f"scale {s}"))
    return fake


def _alive(kinds: tuple[type, ...]) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds))


def test_a_2000_list_run_holds_no_per_list_task_bytes_or_children(tmp_path: Path) -> None:
    sets = LISTS // PER_SOURCE
    fake = _seeded(sets)
    plan = plans.parse_documents(_plan_text(sets))
    assert len(plan) == LISTS
    engine = Engine(fake.client())

    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        report = anyio.run(publish, engine, plan)
        _, peak = tracemalloc.get_traced_memory()
        del engine
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [r.status for r in report.results] == ["created"] * LISTS
    assert len(fake.lists_put) == LISTS
    for i, r in enumerate(report.results):
        assert str(r.target) == f"{HOST}/scale/app{i % REPOSITORIES}:v{i}"
        assert r.digest == fake.lists_put[f"scale/app{i % REPOSITORIES}:v{i}"]
        assert r.actions == []
        assert r.error is None
    # Lists of one source set are the same list (same children), so one digest per set.
    assert len({r.digest for r in report.results}) == sets
    peak_per_list = (peak - before) / LISTS

    kept_per_list = (kept - before) / LISTS
    assert peak_per_list < PEAK_PER_LIST, f"{peak_per_list:.0f} bytes per list at the peak"
    assert kept_per_list < KEPT_PER_LIST, f"{kept_per_list:.0f} bytes per list kept"

    # What the report keeps: no manifest, source or child, whoever else lets them go.
    del fake
    assert _alive((Manifest, Source, Child)) == 0
    assert all(isinstance(f, (str, int, float, bool, list, tuple, dict, Reference, type(None)))
               for r in report.results for f in (getattr(r, n) for n in ListResult.__slots__))

    # The streamed reports are the documents they always were.
    path = tmp_path / "report.jsonl"
    report.write_jsonl(path)
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [result_json(r) for r in report.results]
    whole: dict[str, Any] = {"results": [result_json(r) for r in report.results],
                             "summary": report.summary()}
    assert report.to_json() == msgspec.json.format(msgspec.json.encode(whole), indent=2)


def test_json_chunks_are_the_whole_documents_bytes_for_0_1_and_many_lists() -> None:
    target = Reference(HOST, "a/b", "1")
    for n in (0, 1, 3):
        results = [ListResult(target.with_tag(f"{i}"), [f"{i}", "x\ny"], digest="sha256:" +
                              "ab" * 32, status="created", actions=["mount a"] if i else [])
                   for i in range(n)]
        report = PublishReport(results, registries={HOST: {"requests": n}} if n else {})
        whole = {"results": [result_json(r) for r in results], "summary": report.summary()}
        expected = msgspec.json.format(msgspec.json.encode(whole), indent=2)
        assert b"".join(report.json_chunks()) == expected
        assert len(list(report.json_chunks())) == n + 3  # head, lists, close, summary


def test_run_bounded_starts_items_in_order_at_most_limit_at_once() -> None:
    started: list[int] = []
    running = 0
    most = 0

    async def work(i: int) -> None:
        nonlocal running, most
        started.append(i)
        running += 1
        most = max(most, running)
        for _ in range(i % 3 + 1):
            await anyio.lowlevel.checkpoint()
        running -= 1

    anyio.run(run_bounded, work, ((i,) for i in range(50)), 4)
    assert started == list(range(50))
    assert most == 4


def test_run_bounded_raises_the_first_error_itself_and_starts_nothing_after() -> None:
    started: list[int] = []

    async def work(i: int) -> None:
        started.append(i)
        await anyio.lowlevel.checkpoint()
        if i == 5:
            raise ValueError("item 5")
        await anyio.sleep_forever()  # the others run until cancelled

    with pytest.raises(ValueError, match=r"^item 5$"):
        anyio.run(run_bounded, work, ((i,) for i in range(100)), 8)
    assert sorted(started) == list(range(8))  # nothing started after the failure
