"""A bulk publish writes a unit as soon as its own sources resolve (in memory, no registry).

Without ``--fail-fast`` and ``--atomic``, a list's tags move while other lists' sources are
still being read; units are found before resolution (:func:`manyfest.ops.publish.
written_units`); a source is let go once the last list naming it is published.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from manyfest.cache import FactCache
from manyfest.content import Manifest
from manyfest.engine import Engine, PublishOptions
from manyfest.errors import RegistryError
from manyfest.ops.plan import parse_documents
from manyfest.ops.publish import PIPELINED_RESOLVES, READY_AHEAD, publish, written_units
from manyfest.reference import Reference
from tests.imagewriter import build_image
from tests.test_atomic import TagDeletingRegistry
from tests.test_engine import AMD64, ARM64, HOST, _images, _run

HANG_GUARD_S = 120
"""A run that waits forever (the behaviour under test broken) fails instead of hanging; no
assertion depends on it."""


def _doc(target: str, sources: list[str], tags: str = "") -> str:
    lines = [f"image: {HOST}/{target}"] + ([f"tags: [{tags}]"] if tags else [])
    return "\n".join([*lines, "manifests:", *(f"  - image: {HOST}/{s}" for s in sources)])


class HeldRegistry(TagDeletingRegistry):
    """The in-memory registry; the GET of ``held`` waits until a tag PUT of ``release``
    landed (so a run that reads every source before its first write would wait forever)."""

    def __init__(self, held: str, release: str) -> None:
        super().__init__(refuse_tags=set())
        self.held, self.release = held, release
        self.landed = anyio.Event()
        self.order: list[str] = []

    async def get_manifest(self, ref: Reference) -> Manifest:
        if f"{ref.repository}:{ref.reference}" == self.held:
            self.order.append(f"GET {self.held} waits")
            await self.landed.wait()
            self.order.append(f"GET {self.held} goes on")
        return await super().get_manifest(ref)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        digest = await super().put_manifest(ref, manifest, built=built)
        if ref.tag:
            self.order.append(f"PUT {ref.repository}:{ref.tag}")
            if f"{ref.repository}:{ref.tag}" == self.release:
                self.landed.set()
        return digest


def _publish_guarded(engine: Engine, plan: Any, **kw: Any) -> Any:
    async def main() -> Any:
        with anyio.fail_after(HANG_GUARD_S):
            return await publish(engine, plan, **kw)
    return _run(main)


def test_a_unit_is_published_while_another_lists_source_is_still_read() -> None:
    fake = HeldRegistry(held="late-amd64:1", release="app:1")
    _images(fake, "early")
    for p in (AMD64, ARM64):  # the second list's sources, in repositories of their own
        fake.add_image(f"late-{p.architecture}", "1", build_image(p, "late"))
    plan = parse_documents("\n---\n".join([
        _doc("app:1", ["app-amd64:1", "app-arm64:1"]),
        _doc("app:2", ["late-amd64:1", "late-arm64:1"]),
    ]) + "\n")
    report = _publish_guarded(Engine(fake.client()), plan)
    assert [r.status for r in report.results] == ["created", "created"]
    # The first list's tag moved while the second list's source was held, then the second.
    assert fake.order.index("GET late-amd64:1 waits") < fake.order.index("PUT app:1") \
        < fake.order.index("GET late-amd64:1 goes on") < fake.order.index("PUT app:2")
    assert fake.manifests["app"]["1"].digest == report.results[0].digest
    assert fake.manifests["app"]["2"].digest == report.results[1].digest


@pytest.mark.parametrize("flag", ["fail_fast", "atomic"])
def test_fail_fast_and_atomic_read_every_source_before_the_first_write(flag: str) -> None:
    """Both need every list checked first: the held GET holds back every write (so the
    run is let go by hand once it waits with nothing written)."""
    fake = HeldRegistry(held="app-arm64:1", release="never:1")
    _images(fake, "one")
    plan = parse_documents("\n---\n".join([
        _doc("app:1", ["app-amd64:1"]), _doc("app:2", ["app-arm64:1"])]) + "\n")
    engine = Engine(fake.client())

    async def main() -> Any:
        async def release_when_waiting() -> None:
            while "GET app-arm64:1 waits" not in fake.order:
                await anyio.lowlevel.checkpoint()
            assert not [c for c in fake.calls if c[0] == "PUT"], "a write before every read"
            fake.landed.set()

        with anyio.fail_after(HANG_GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(release_when_waiting)
                options = PublishOptions(atomic=flag == "atomic")
                return await publish(engine, plan, options=options,
                                     fail_fast=flag == "fail_fast")

    report = _run(main)
    assert [r.status for r in report.results] == ["created", "created"]


def test_lists_written_alike_are_one_unit_found_before_resolution() -> None:
    plan = parse_documents("\n---\n".join([
        _doc("app:1", ["app-amd64:1", "app-arm64:1"], tags="1.0"),
        _doc("app:2", ["app-amd64:1"]),
        _doc("app:latest", ["app-amd64:1", "app-arm64:1"]),
        _doc("other:1", ["app-amd64:1", "app-arm64:1"]),  # another repository
    ]) + "\n")
    assert written_units(plan, PublishOptions()) == [[0, 2], [1], [3]]
    assert written_units(plan, PublishOptions(), skip={0}) == [[1], [2], [3]]


def test_lists_written_differently_with_the_same_children_are_published_apart() -> None:
    """One by tag, one by digest: two units (no ``same_as``), the same bytes at each one's
    own tags, each child PUT once, one HEAD and one PUT per tag."""
    fake = TagDeletingRegistry(refuse_tags=set())
    refs = _images(fake, "same")
    digest = fake.manifests["app-amd64"]["1"].digest
    plan = parse_documents("\n---\n".join([
        _doc("app:1", ["app-amd64:1", "app-arm64:1"]),
        _doc("app:2", [f"app-amd64@{digest}", "app-arm64:1"]),
    ]) + "\n")
    report = _run(lambda: publish(Engine(fake.client()), plan))
    first, second = report.results
    assert (first.status, second.status) == ("created", "created")
    assert first.digest == second.digest == fake.manifests["app"]["1"].digest \
        == fake.manifests["app"]["2"].digest
    assert (first.same_as, second.same_as) == ("", "")
    puts = [c for c in fake.calls if c[0] == "PUT" and c[1] == "app"]
    children = {fake.manifests[r.repository]["1"].digest for r in refs}
    assert sorted(p[2] for p in puts) == sorted(["1", "2", *children])
    assert sorted(c[2] for c in fake.calls if c[0].startswith("HEAD") and c[1] == "app") \
        == ["1", "2"]


def test_sources_are_let_go_once_their_last_list_is_published(tmp_path: Path) -> None:
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, "shared")
    plan = parse_documents("\n---\n".join(
        _doc(f"app:{i}", ["app-amd64:1", "app-arm64:1"] if i % 2 else ["app-amd64:1"])
        for i in range(6)) + "\n")
    engine = Engine(fake.client(), cache=FactCache(tmp_path / "cache"))
    report = _run(lambda: publish(engine, plan))
    assert [r.status for r in report.results] == ["created"] * 6
    assert engine._sources._done == {}  # every source released after its last list
    assert engine._labels == {}
    assert engine._configs._done == {}
    # what the cache learned is written: the 2 source manifests as soon as every source
    # was in (while the lists were being written), the tag hints of their 2 repositories
    # by the flush at the end
    written = sorted(p.name for p in (tmp_path / "cache" / "manifests" / "sha256").iterdir())
    assert written == sorted(fake.manifests[r]["1"].digest.split(":")[1]
                             for r in ("app-amd64", "app-arm64"))
    assert engine.cache.flush() == 2
    assert FactCache(tmp_path / "cache").manifest(fake.manifests["app-arm64"]["1"].digest) \
        == fake.manifests["app-arm64"]["1"]
    assert report.results[1].sources == {
        f"{HOST}/app-amd64:1": fake.manifests["app-amd64"]["1"].digest,
        f"{HOST}/app-arm64:1": fake.manifests["app-arm64"]["1"].digest,
    }


def _one_record(tmp_path: Path, seed: str) -> tuple[FactCache, Manifest]:
    """A cache in ``tmp_path/cache`` holding one manifest's record, not yet written."""
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, seed)
    cache = FactCache(tmp_path / "cache")
    manifest = fake.manifests["app-amd64"]["1"]
    cache.put_manifest(manifest)
    return cache, manifest


def test_the_cache_spill_writes_pending_records_and_lets_them_go(tmp_path: Path) -> None:
    cache, manifest = _one_record(tmp_path, "spill")
    assert anyio.run(cache.spill) == 1
    assert cache._manifests == {}
    assert cache._pending == set()
    again = FactCache(tmp_path / "cache")
    assert again.manifest(manifest.digest) == manifest
    assert cache.manifest(manifest.digest) == manifest  # read back from disk
    assert cache.flush() == 0


def test_a_record_forgotten_while_it_is_written_is_still_written(tmp_path: Path) -> None:
    # A run writes its facts in a worker thread while its event loop lets sources go: a
    # source released between the records' taking and their writing (its record dropped
    # from memory) must still reach the disk, or the next run reads it again (the
    # official-images re-run found one source manifest missing from its cache this way).
    cache, manifest = _one_record(tmp_path, "race")
    records = cache.take_pending()
    cache.forget(manifest.digest)  # the loop, while the thread writes
    assert manifest.digest not in cache._manifests
    assert cache.write_records(records) == 1
    assert FactCache(tmp_path / "cache").manifest(manifest.digest) == manifest
    assert cache.flush() == 0


def test_a_spill_that_keeps_writes_the_records_and_holds_them(tmp_path: Path) -> None:
    cache, manifest = _one_record(tmp_path, "keep")
    assert anyio.run(partial(cache.spill, let_go=False)) == 1
    assert cache._pending == set()
    assert cache._manifests[manifest.digest].raw == manifest.raw  # still in memory
    assert FactCache(tmp_path / "cache").manifest(manifest.digest) == manifest  # on disk
    assert cache.flush() == 0  # nothing left to write


class SlowWritesRegistry(TagDeletingRegistry):
    """The in-memory registry; every list PUT by tag yields to the event loop
    :data:`WRITE_YIELDS` times first (a write costs far more than a read, as on a real
    registry: no clock involved), and the order of source GETs and list PUTs is recorded."""

    WRITE_YIELDS = 200

    def __init__(self) -> None:
        super().__init__(refuse_tags=set())
        self.order: list[str] = []

    async def get_manifest(self, ref: Reference) -> Manifest:
        self.order.append("GET")
        return await super().get_manifest(ref)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        if ref.tag and manifest.is_index:
            for _ in range(self.WRITE_YIELDS):
                await anyio.lowlevel.checkpoint()
            self.order.append("PUT")
        return await super().put_manifest(ref, manifest, built=built)


def test_resolution_stays_a_bounded_distance_ahead_of_the_writes() -> None:
    # 400 lists, each of 2 sources of its own: sources are read only while fewer than
    # READY_AHEAD lists have their sources in and are not yet published (plus the reads in
    # flight when that bound was reached), so the run never holds every source at once.
    lists = 400
    fake = SlowWritesRegistry()
    for i in range(lists):
        for p in (AMD64, ARM64):
            fake.add_image(f"src-{p.architecture}", f"s{i}", build_image(p, f"ahead {i}"))
    plan = parse_documents("\n---\n".join(
        _doc(f"app:{i}", [f"src-amd64:s{i}", f"src-arm64:s{i}"]) for i in range(lists)) + "\n")
    report = _publish_guarded(Engine(fake.client()), plan)
    assert [r.status for r in report.results] == ["created"] * lists
    assert fake.order.count("GET") == 2 * lists
    assert fake.order.count("PUT") == lists
    gets = puts = ahead = 0
    for what in fake.order:
        gets += what == "GET"
        puts += what == "PUT"
        ahead = max(ahead, gets - 2 * puts)
    bound = 2 * READY_AHEAD + PIPELINED_RESOLVES
    assert 2 * READY_AHEAD <= ahead <= bound, (ahead, bound)


class ProbedRegistry(TagDeletingRegistry):
    """The in-memory registry with the tag-list probe of a target repository
    (:meth:`~manyfest.registry.RegistryClient.repository_exists`): a repository exists once
    it holds a tag, as Distribution answers ``tags/list`` (404 NAME_UNKNOWN without tags);
    ``probe_fails``: the probe raises (a registry refusing to list tags)."""

    def __init__(self, probe_fails: bool = False) -> None:
        super().__init__(refuse_tags=set())
        self.probe_fails = probe_fails

    async def repository_exists(self, ref: Reference, *, push: bool = False) -> bool:
        self.calls.append(("tags/list+push" if push else "tags/list", ref.repository, ""))
        await anyio.lowlevel.checkpoint()
        if self.probe_fails:
            raise RegistryError(f"list tags of {ref.name}", status=403, method="GET",
                                url=f"http://{ref.registry}/v2/{ref.repository}/tags/list")
        return any(not key.startswith("sha256:") for key in self.manifests.get(ref.repository, {}))


def _four_tags() -> list[Any]:
    """Two lists into one repository, two tags each: the probe's threshold (PROBE_TAGS)."""
    return parse_documents("\n---\n".join([
        _doc("app:1", ["app-amd64:1", "app-arm64:1"], tags="one"),
        _doc("app:2", ["app-amd64:1"], tags="two"),
    ]) + "\n")


def test_a_new_target_repository_is_probed_once_instead_of_a_head_per_tag() -> None:
    fake = ProbedRegistry()
    _images(fake, "probe")
    plan = _four_tags()
    report = _run(lambda: publish(Engine(fake.client()), plan))
    assert [(r.status, r.old_digest) for r in report.results] == [("created", "")] * 2
    assert [c for c in fake.calls if c[0].startswith("tags/list")] == [
        ("tags/list+push", "app", "")]
    assert not [c for c in fake.calls if c[0].startswith("HEAD") and c[1] == "app"]
    for result, tags in zip(report.results, (["1", "one"], ["2", "two"]), strict=True):
        assert result.tags == tags
        for tag in tags:
            assert fake.manifests["app"][tag].digest == result.digest
    # The next run finds the repository: a HEAD per tag says the lists are there.
    fake.calls.clear()
    again = _run(lambda: publish(Engine(fake.client()), plan))
    assert [r.status for r in again.results] == ["unchanged"] * 2
    assert [r.old_digest for r in again.results] == [r.digest for r in report.results]
    assert sorted(c[2] for c in fake.calls if c[0].startswith("HEAD") and c[1] == "app") \
        == ["1", "2", "one", "two"]
    assert len([c for c in fake.calls if c[0].startswith("tags/list")]) == 1
    assert not [c for c in fake.calls if c[0] == "PUT"]


def test_each_run_on_one_engine_asks_again_whether_the_repository_exists() -> None:
    # One session publishing a plan twice (the API's dry run, run, re-run): the first run's
    # "no such repository" is not the second's, which finds the lists there.
    fake = ProbedRegistry()
    _images(fake, "twice")
    engine = Engine(fake.client())
    plan = _four_tags()
    dry = _run(lambda: publish(engine, plan, options=PublishOptions(dry_run=True)))
    assert [r.status for r in dry.results] == ["created"] * 2
    first = _run(lambda: publish(engine, plan))
    assert [r.status for r in first.results] == ["created"] * 2
    fake.calls.clear()
    again = _run(lambda: publish(engine, plan))
    assert [r.status for r in again.results] == ["unchanged"] * 2
    assert [c[0] for c in fake.calls if c[0].startswith("tags/list")] == ["tags/list+push"]
    assert not [c for c in fake.calls if c[0] == "PUT"]


def test_fewer_tags_than_the_threshold_or_a_failed_probe_mean_heads() -> None:
    fake = ProbedRegistry()
    _images(fake, "few")
    three = parse_documents("\n---\n".join([
        _doc("app:1", ["app-amd64:1"], tags="one"), _doc("app:2", ["app-arm64:1"]),
    ]) + "\n")
    report = _run(lambda: publish(Engine(fake.client()), three))
    assert [r.status for r in report.results] == ["created"] * 2
    assert not [c for c in fake.calls if c[0].startswith("tags/list")]
    assert sorted(c[2] for c in fake.calls if c[0].startswith("HEAD") and c[1] == "app") \
        == ["1", "2", "one"]
    failing = ProbedRegistry(probe_fails=True)
    _images(failing, "few")
    report = _run(lambda: publish(Engine(failing.client()), _four_tags()))
    assert [r.status for r in report.results] == ["created"] * 2
    assert len([c for c in failing.calls if c[0].startswith("tags/list")]) == 1
    assert sorted(c[2] for c in failing.calls if c[0].startswith("HEAD") and c[1] == "app") \
        == ["1", "2", "one", "two"]
