"""``publish --atomic``: all of a release's tags move, or none (end to end, real registry).

A release is a plan of lists ``<ns>/app:1.<i>`` (tags ``v1.<i>``, ``latest-<i>``) of four
real-shape images each. Release ``a`` is published first (plain ``publish``); release ``b``
re-points those lists at new images and adds new lists (new tags). Tags are checked with
manyfest's RegistryClient straight at the registry (HEAD, and every child and blob of the
list a tag points at: :class:`tests.signal_helpers.TagChecker`).

The quirk proxy holds or refuses requests of one kind (child PUT by digest, list PUT by
digest, tag PUT, GET of a previous manifest); a test waits for the proxy to see them (a
state), never for time.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from aiohttp import web

import manyfest as manyfest_api
from manyfest import mediatypes, reference
from manyfest.cli.progress import atomic_plan_lines
from manyfest.content import Manifest
from manyfest.engine import Engine, PublishOptions
from manyfest.errors import AuthorizationError, ErrorDetail, RegistryError
from manyfest.ops import since as since_ops
from manyfest.ops.atomic import _Run
from manyfest.ops.publish import StopRequest
from manyfest.ops.publish import publish as ops_publish
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.transport import RequestStats, Settings, Transport
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed
from tests.imagewriter import build_image
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer
from tests.signal_helpers import HANG, Run, TagChecker
from tests.test_engine import (
    AMD64,
    ARM64,
    ARMV7,
    HOST,
    FakeRegistry,
    _children,
    _images,
    _publish,
    _ref,
    _run,
)

slow = pytest.mark.slow  # end to end (see pyproject markers)

LIST_TYPES = (mediatypes.DOCKER_LIST, mediatypes.OCI_INDEX)
PLATS = (PLATFORMS[0], PLATFORMS[3])
"""linux/amd64 and windows/amd64 (with os.version, os.features): two children a list keeps
the kill runs short; the images are of real shape."""


# ---------------------------------------------------------------------- plans and state


def plan_text(host: str, ns: str, release: str, lists: list[int]) -> str:
    """Lists ``<ns>/app:1.<i>`` for each i (in that order) of images ``<ns>-src/app-<p>:
    <release>-<i>``."""
    docs = []
    for i in lists:
        lines = [f"image: {host}/{ns}/app:1.{i}", f'tags: ["v1.{i}", latest-{i}]', "manifests:"]
        for p in PLATS:
            lines.append(f"  - image: {host}/{ns}-src/app-{platform_suffix(p)}:{release}-{i}")
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


def seed_release(host: str, ns: str, release: str, lists: list[int]) -> None:
    """Push the images :func:`plan_text` names for ``release``."""
    seed(host, [(f"{ns}-src/app-{platform_suffix(p)}:{release}-{i}", p, f"{ns}{release}{i}")
                for i in lists for p in PLATS])


def tag_refs(host: str, ns: str, i: int) -> list[str]:
    """The three tags of list i, first the target's."""
    return [f"{host}/{ns}/app:{t}" for t in (f"1.{i}", f"v1.{i}", f"latest-{i}")]


def results(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``--json``'s results and summary."""
    doc = json.loads(stdout)
    return doc["results"], doc["summary"]


def new_digests(proxy: QuirkProxy, plan: Path) -> list[str]:
    """Each list's new digest, from ``--atomic --dry-run --json`` (nothing written)."""
    before = proxy.count("PUT")
    run = manyfest("publish", "--atomic", "--dry-run", "--json", str(plan))
    assert run.returncode == 0, run.stderr
    assert proxy.count("PUT") == before, "--dry-run wrote something"
    rows, _ = results(run.stdout)
    return [r["digest"] for r in rows]


def no_traceback(lines: list[str] | str) -> None:
    text = lines if isinstance(lines, str) else "\n".join(lines)
    assert "Traceback" not in text, text


# ---------------------------------------------------------------------- proxy quirks


def is_tag_put(request: web.Request) -> bool:
    return (request.method == "PUT" and "/manifests/" in request.path
            and "/manifests/sha256:" not in request.path)


def is_child_put(request: web.Request) -> bool:
    return (request.method == "PUT" and "/manifests/sha256:" in request.path
            and request.content_type not in LIST_TYPES)


def is_list_put(request: web.Request) -> bool:
    return (request.method == "PUT" and "/manifests/sha256:" in request.path
            and request.content_type in LIST_TYPES)


def previous_get(ns: str) -> Callable[[web.Request], bool]:
    """GETs by digest in the target repository: phase 1 fetching previous manifests."""
    def match(request: web.Request) -> bool:
        return (request.method == "GET"
                and request.path.startswith(f"/v2/{ns}/app/manifests/sha256:"))
    return match


Match = Callable[[web.Request], bool | Awaitable[bool]]


def rollback_request(previous: set[str]) -> Match:
    """A tag PUT of one of the ``previous`` manifests, or a tag DELETE: a rollback."""
    async def match(request: web.Request) -> bool:
        if request.method == "DELETE" and "/manifests/" in request.path:
            return True
        if not is_tag_put(request):
            return False
        body = await request.read()  # cached: the proxy forwards the same bytes
        return "sha256:" + hashlib.sha256(body).hexdigest() in previous
    return match


class HoldFrom:
    """Holds every request matching ``match`` from the ``n``-th on (1-based) until
    :meth:`release`; counts the ones before it that the registry answered.

    :meth:`wait` returns once the n-th is held and the n-1 before it are answered: the
    client has then seen exactly those answers of that kind.
    """

    def __init__(self, proxy: QuirkProxy, match: Match, n: int) -> None:
        self.proxy, self.match, self.n = proxy, match, n
        self.seen = 0
        self.answered = 0
        self._cond = threading.Condition()
        self._held = False
        self._gate: asyncio.Event | None = None
        self._released = False
        proxy.before.append(self.before)
        proxy.after.append(self.after)

    async def _matches(self, request: web.Request) -> bool:
        found = self.match(request)
        return await found if inspect.isawaitable(found) else found

    async def before(self, request: web.Request) -> web.StreamResponse | None:
        if not await self._matches(request):
            return None
        with self._cond:
            self.seen += 1
            self._cond.notify_all()
        if self.seen < self.n or self._released:
            return None
        if self._gate is None:
            self._gate = asyncio.Event()
        with self._cond:
            self._held = True
            self._cond.notify_all()
        await self._gate.wait()
        return None

    async def after(self, request: web.Request, response: web.Response) -> web.Response:
        if await self._matches(request):
            with self._cond:
                self.answered += 1
                self._cond.notify_all()
        return response

    def wait(self) -> None:
        """Block until the n-th is held and the ones before it answered (hang guard only)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._held and self.answered >= self.n - 1,
                                       HANG):
                raise AssertionError(f"request {self.n} never held ({self.seen} seen, "
                                     f"{self.answered} answered)")

    def wait_seen(self, k: int) -> None:
        """Block until the proxy has seen ``k`` matching requests (hang guard only)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.seen >= k, HANG):
                raise AssertionError(f"request {k} never seen ({self.seen} seen)")

    def release(self) -> None:
        """Let every held (and later) request through."""
        self._released = True
        loop, gate = self.proxy._loop, self._gate
        if loop is not None and gate is not None:
            loop.call_soon_threadsafe(gate.set)

    def remove(self) -> None:
        self.release()
        self.proxy.before.remove(self.before)
        self.proxy.after.remove(self.after)


def deny_tag(tag: str, *, after_new: list[str] | None = None) -> tuple[Any, Any]:
    """The PUT of tag ``tag`` answers 403 DENIED; with ``after_new``, only once the PUT of
    one of those paths has been answered (so a new tag has moved before the failure)."""
    moved = asyncio.Event()

    async def before(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and request.path.endswith(f"/manifests/{tag}"):
            await request.read()
            if after_new:
                await asyncio.wait_for(moved.wait(), HANG)
            body = b'{"errors":[{"code":"DENIED","message":"requested access to the ' \
                   b'resource is denied"}]}'
            return web.Response(status=403, body=body,
                                headers={"Content-Type": "application/json"})
        return None

    async def after(request: web.Request, response: web.Response) -> web.Response:
        if after_new and request.method == "PUT" and request.path in after_new \
                and response.status == 201:
            moved.set()
        return response

    return before, after


@pytest.fixture
def proxy(registry: RegistryServer) -> Any:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


# ---------------------------------------------------------------------- engine (no network)


def test_engine_steps_push_by_digest_once_and_execute_keeps_its_order() -> None:
    """``push_children`` + ``push_list_by_digest`` write content only (no tag), the list
    once per repository and digest; ``execute`` (non-atomic runs) is unchanged: children,
    then the first tag, then the others, and never the list by digest."""
    fake = FakeRegistry()
    refs = _images(fake, "atomic")
    engine = Engine(fake.client())

    async def go() -> tuple[Any, Any]:
        children = await _children(engine, refs)
        target = _ref("app:1")
        opts = PublishOptions()
        listed = await engine.build_list(target, children, None, opts)
        plan = await engine.plan(target, children, ["1", "one"], listed, opts)
        await engine.push_children(plan)
        first = await engine.push_list_by_digest(plan)
        again = await engine.push_list_by_digest(plan)
        assert first == again == listed.digest
        return plan, listed

    plan, listed = _run(go)
    puts = [c for c in fake.calls if c[0] == "PUT"]
    child_digests = {fake.manifests[r.repository]["1"].digest for r in refs}
    assert {c[2] for c in puts[:-1]} == child_digests  # concurrently: any order
    assert len(puts) == len(refs) + 1
    assert puts[-1] == ("PUT", "app", listed.digest)
    assert "1" not in fake.manifests["app"]  # no tag moved
    fake.calls.clear()
    other = FakeRegistry(manifests=fake.manifests, blobs=fake.blobs)
    plain = Engine(other.client())
    _run(lambda: plain.execute(plan))
    order = [ref for method, _, ref in other.calls if method == "PUT"]
    assert order[-2:] == ["1", "one"]
    assert listed.digest not in order
    assert other.manifests["app"]["1"] is listed


class TagDeletingRegistry(FakeRegistry):
    """The in-memory registry with what Distribution lacks: tag deletion (202, the tag
    gone, the manifest kept); PUTs of the tags in ``refuse_tags`` answer 403 DENIED, those
    of ``fail_after_store`` are stored, then answered 500 (a proxy's timeout). It has
    the transport attributes a bulk publish reads (settings and counters)."""

    def __init__(self, refuse_tags: set[str], fail_after_store: set[str] | None = None) -> None:
        super().__init__()
        self.refuse_tags = refuse_tags
        self.fail_after_store = fail_after_store or set()
        self.transport = SimpleNamespace(settings=Settings(), total=RequestStats(),
                                         registry_stats=dict)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        """PUT, or 403 DENIED for a refused tag."""
        if ref.tag in self.refuse_tags:
            self.calls.append(("PUT", ref.repository, ref.reference))
            await anyio.lowlevel.checkpoint()
            raise AuthorizationError(
                f"push list {ref}", status=403, method="PUT", url=f"http://{ref.registry}/v2/",
                errors=(ErrorDetail("DENIED", "requested access to the resource is denied"),))
        digest = await super().put_manifest(ref, manifest, built=built)
        if ref.tag in self.fail_after_store:
            raise RegistryError(f"push list {ref}", status=500, method="PUT",
                                url=f"http://{ref.registry}/v2/")
        return digest

    async def delete_manifest(self, ref: Reference) -> bool:
        """DELETE a tag: 202 (True), or 404 (False)."""
        self.calls.append(("DELETE", ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        return self.manifests.get(ref.repository, {}).pop(ref.reference, None) is not None


def test_rollback_deletes_new_tags_where_the_registry_allows_it() -> None:
    """A registry that deletes tags: a refused tag PUT leaves the old tag at its old list
    and no new tag behind; the report's tag_digests are the registry's state."""
    fake = TagDeletingRegistry(refuse_tags={"2"})
    refs = _images(fake, "before")
    engine = Engine(fake.client())
    old = _run(lambda: _publish(engine, "app:1", refs))
    assert old.status == "created"
    fresh = [fake.add_image(f"new-{p.architecture}", "1", build_image(p, "after"))
             for p in (PLATFORMS[0], PLATFORMS[2])]
    assert len(fresh) == 2
    sources = "\n".join(f"  - image: {HOST}/new-{p.architecture}:1"
                        for p in (PLATFORMS[0], PLATFORMS[2]))
    plan = manyfest_api.parse_plan(
        f'image: {HOST}/app:1\ntags: ["one"]\nmanifests:\n{sources}\n---\n'
        f"image: {HOST}/app:2\nmanifests:\n{sources}\n")
    engine = Engine(fake.client())
    fake.calls.clear()
    report = _run(lambda: ops_publish(engine, plan, options=PublishOptions(atomic=True)))
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert fake.manifests["app"]["1"].digest == old.digest  # back at the old list
    assert "one" not in fake.manifests["app"]
    assert "2" not in fake.manifests["app"]
    atomic = report.atomic
    assert atomic is not None
    assert atomic["outcome"] == "rolled back"
    assert atomic["failed_at"] == f"{HOST}/app:2"
    assert atomic["not_rolled_back"] == []
    # The three tag PUTs start together (64 at once): "1" and "one" land, "2" is refused;
    # "1" gets its old list back, "one" is deleted.
    assert ("DELETE", "app", "one") in fake.calls
    assert (atomic["tags_moved"], atomic["rolled_back"], atomic["deleted"]) == (2, 1, 1)
    assert report.results[0].tag_digests == {"1": old.digest, "one": ""}
    assert report.results[1].tag_digests == {"2": ""}
    assert report.atomic_line.startswith(f"--atomic: phase 2 failed at {HOST}/app:2 (push list "
                                         f"{HOST}/app:2: registry answered 403 (DENIED")
    assert report.atomic_line.endswith("; 1 tag rolled back, 1 new tag deleted")
    assert atomic["rollback_gets"] == 1  # the old list, once, before any tag moved
    gets = [i for i, c in enumerate(fake.calls) if c == ("GET", "app", old.digest)]
    tag_puts = [i for i, c in enumerate(fake.calls) if c[0] == "PUT" and c[2] in ("1", "one")]
    assert len(gets) == 1
    assert gets[0] < min(tag_puts)


def test_a_tag_put_answered_5xx_is_moved_back_too() -> None:
    """A 500 does not say the PUT did not land: that tag is moved back (here: deleted, it
    had landed) with the ones that moved."""
    fake = TagDeletingRegistry(refuse_tags=set(), fail_after_store={"2"})
    refs = _images(fake, "before")
    old = _run(lambda: _publish(Engine(fake.client()), "app:1", refs))
    sources = "\n".join(f"  - image: {HOST}/app-{p.architecture}:1" for p in (AMD64, ARM64))
    plan = manyfest_api.parse_plan(
        f"image: {HOST}/app:2\nmanifests:\n{sources}\n---\n"
        f'image: {HOST}/other:1\ntags: ["one"]\nmanifests:\n{sources}\n')
    fake.calls.clear()
    report = _run(lambda: ops_publish(Engine(fake.client()), plan,
                                      options=PublishOptions(atomic=True)))
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert "2" not in fake.manifests["app"]
    assert fake.manifests["app"]["1"].digest == old.digest  # not in the plan: untouched
    assert "1" not in fake.manifests.get("other", {})
    assert "one" not in fake.manifests.get("other", {})
    assert ("DELETE", "app", "2") in fake.calls
    assert report.results[0].tag_digests == {"2": ""}
    assert report.atomic is not None
    assert report.atomic["failed_at"] == f"{HOST}/app:2"
    assert report.atomic["deleted"] == 3
    err = report.results[0].error
    assert err is not None
    assert err.message.startswith("--atomic: the PUT of its tag failed (push list "
                                  f"{HOST}/app:2: registry answered 500); deleted new tag "
                                  f"{HOST}/app:2"), err.message


def _sources(*archs: str) -> str:
    return "\n".join(f"  - image: {HOST}/app-{a}:1" for a in archs)


def _atomic(fake: FakeRegistry, text: str, **kw: Any) -> Any:
    """``publish --atomic`` of the plan ``text`` against the in-memory registry."""
    since = kw.pop("since", None)
    plan = manyfest_api.parse_plan(text)
    return _run(lambda: ops_publish(Engine(fake.client()), plan, since=since,
                                    options=PublishOptions(atomic=True, **kw)))


def test_identical_lists_are_one_unit_of_the_release() -> None:
    """Two plan lists of the same bytes in one repository are one unit, as without
    --atomic: one list PUT by digest, each tag HEADed and moved once, the second list
    ``same_as`` the first (no requests of its own), and the dry run says so."""
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, "same")
    text = (f"image: {HOST}/same:3\nmanifests:\n{_sources('amd64', 'arm64')}\n---\n"
            f'image: {HOST}/same:latest\ntags: ["stable"]\nmanifests:\n'
            f"{_sources('amd64', 'arm64')}\n")
    dry = _atomic(fake, text, dry_run=True)
    digest = dry.results[0].digest
    assert [(r.status, r.digest, r.same_as) for r in dry.results] == [
        ("created", digest, ""), ("created", digest, f"{HOST}/same:3")]
    lines = atomic_plan_lines(dry)
    assert [x for x in lines if "push list" in x or "same list" in x or "put " in x] == [
        f"  push list {HOST}/same@{digest} (by digest)",
        f"  same list as {HOST}/same:3 (its mounts and list push are there)",
        f"  put {HOST}/same:3 -> {digest} (new tag)",
        f"  put {HOST}/same:latest -> {digest} (new tag)",
        f"  put {HOST}/same:stable -> {digest} (new tag)",
    ]
    assert sum(x.startswith("  push child ") for x in lines) == 2
    assert lines[-4] == "--atomic phase 2: move 3 tags (any failure moves them back)"
    fake.calls.clear()
    report = _atomic(fake, text)
    assert [(r.status, r.digest, r.same_as, r.tags) for r in report.results] == [
        ("created", digest, "", ["3"]),
        ("created", digest, f"{HOST}/same:3", ["latest", "stable"])]
    assert report.results[1].requests == 0
    assert report.results[1].pushed_children == []
    assert {t: m.digest for t, m in fake.manifests["same"].items()
            if not t.startswith("sha256:")} == {"3": digest, "latest": digest, "stable": digest}
    puts = [c[2] for c in fake.calls if c[0] == "PUT" and c[1] == "same"]
    assert sorted(puts[-4:]) == sorted([digest, "3", "latest", "stable"])
    assert puts.count(digest) == 1
    heads = [c[2] for c in fake.calls if c[0].startswith("HEAD") and c[1] == "same"]
    assert sorted(heads) == ["3", "latest", "stable"]
    assert report.atomic["tags_moved"] == 3
    again = _atomic(fake, text)  # all unchanged: phase 2 had nothing to move
    assert [(r.status, r.same_as) for r in again.results] == [
        ("unchanged", ""), ("unchanged", f"{HOST}/same:3")]
    assert (again.atomic["outcome"], again.atomic["phase"], again.atomic["tags_moved"]) == (
        "unchanged", 1, 0)


def test_unchanged_by_children_records_the_digest_the_tags_hold() -> None:
    """--unchanged-by children keeps a list of another layout: the report's digest is the
    kept list's (the one every tag, a new one included, now holds)."""
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, "mig")
    first = f"image: {HOST}/mig:3\nmanifests:\n{_sources('amd64', 'arm64')}\n"
    old = _atomic(fake, first, style="manifest-tool")
    held = old.results[0].digest
    built = _atomic(fake, first, dry_run=True).results[0]
    assert built.digest != held  # docker's layout: other bytes, same entries
    more = f'image: {HOST}/mig:3\ntags: ["extra3"]\nmanifests:\n{_sources("amd64", "arm64")}\n'
    dry = _atomic(fake, more, dry_run=True, unchanged_by="children")
    assert (dry.results[0].status, dry.results[0].digest) == ("updated", held)
    assert dry.results[0].actions[-1] == f"put {HOST}/mig:extra3 -> {held} (new tag)"
    report = _atomic(fake, more, unchanged_by="children", verify=True)
    r = report.results[0]
    assert (r.status, r.digest, r.old_digest, r.error) == ("updated", held, held, None)
    assert fake.manifests["mig"]["3"].digest == held
    assert fake.manifests["mig"]["extra3"].digest == held


def test_phase_1_failure_fails_the_lists_since_proved_unchanged(tmp_path: Path) -> None:
    """--atomic --since: a phase-1 failure fails every list of the plan, the matched ones
    too, and counts out of the plan's lists."""
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, "since")
    srcs = _sources("amd64", "arm64")
    text = (f"image: {HOST}/app:a\nmanifests:\n{srcs}\n---\n"
            f"image: {HOST}/app:b\nmanifests:\n{srcs}\n---\n"
            f"image: {HOST}/other:b\nmanifests:\n{srcs}\n")
    first = _atomic(fake, text)
    assert [r.status for r in first.results] == ["created"] * 3
    path = tmp_path / "an1.jsonl"
    first.write_jsonl(path)
    broken = text.replace(f"image: {HOST}/app:b\nmanifests:\n{srcs}",
                          f"image: {HOST}/app:b\nmanifests:\n  - image: {HOST}/app-gone:1")
    report = _atomic(fake, broken, since=since_ops.read_report(path))
    assert [r.status for r in report.results] == ["failed"] * 3
    assert [r.since for r in report.results] == ["matched", "plan-changed", "matched"]
    why = f"{HOST}/app:b: no such manifest: {HOST}/app-gone:1"
    for i in (0, 2):
        err = report.results[i].error
        assert err is not None
        assert err.message.startswith(
            f"not published: --atomic: another list failed in phase 1 ({why}"), err
        assert report.results[i].atomic is True
        assert report.results[i].tag_digests == {}
    assert report.atomic_line.startswith(f"--atomic: phase 1 failed: 1 of 3 lists failed "
                                         f"(first {why}"), report.atomic_line
    assert report.atomic_line.endswith("; no tag was moved")
    assert [m.digest for m in (fake.manifests["app"]["a"], fake.manifests["other"]["b"])] == [
        first.results[0].digest, first.results[2].digest]


def test_the_phase_2_lines_follow_where_the_tags_are() -> None:
    """The signal notice and the forced exit's last line, from the run's state: the tags
    moved, those whose PUT is in flight, those being moved back; none left: said so."""
    run = _Run(Engine(FakeRegistry().client()), PublishOptions(atomic=True), StopRequest(),
               [], False, 0.0)
    assert run.last_line() == ("--atomic: no tag of the release was left moved: every tag "
                               "is where it was before the run")
    run.left = {f"{HOST}/app:1": "", f"{HOST}/app:2": "being moved back",
                f"{HOST}/app:3": "may have moved"}
    run.sending = {f"{HOST}/app:4"}
    assert run.notice(signal.SIGTERM) == (
        "--atomic: SIGTERM in phase 2: no more tags move; moving back 3 tags moved so far and "
        "the tag whose PUT is in flight, if it lands (up to 60 s); a second signal aborts and "
        "leaves them moved")
    assert run.last_line() == (
        f"--atomic: the release is inconsistent: 4 tags left at the new lists (each "
        f"complete): {HOST}/app:1, {HOST}/app:2 (being moved back), {HOST}/app:3 (may have "
        f"moved), {HOST}/app:4 (may have moved); re-run to publish the release, or "
        "re-publish the previous one")


class StoppingRegistry(TagDeletingRegistry):
    """Once ``stop`` is set, its first PUT asks the run to stop (a SIGTERM in phase 1),
    then waits to be cancelled."""

    def __init__(self) -> None:
        super().__init__(refuse_tags=set())
        self.stop: StopRequest | None = None

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        if self.stop is not None:
            self.stop.stop("SIGTERM")
            await anyio.sleep_forever()
        return await super().put_manifest(ref, manifest, built=built)


def test_interrupted_in_phase_1_counts_the_lists_since_proved_unchanged(
        tmp_path: Path) -> None:
    """--atomic --since, stopped in phase 1: the matched lists are not published either,
    and the line counts every list of the plan."""
    stop = StopRequest()
    fake = StoppingRegistry()
    _images(fake, "since", (AMD64, ARM64, ARMV7))
    srcs = _sources("amd64", "arm64")
    text = (f"image: {HOST}/app:a\nmanifests:\n{srcs}\n---\n"
            f"image: {HOST}/app:b\nmanifests:\n{srcs}\n---\n"
            f"image: {HOST}/other:b\nmanifests:\n{srcs}\n")
    first = _atomic(fake, text)
    path = tmp_path / "an1.jsonl"
    first.write_jsonl(path)
    changed = text.replace(f"image: {HOST}/app:b\nmanifests:\n{srcs}",
                           f"image: {HOST}/app:b\nmanifests:\n{_sources('arm')}")
    fake.stop = stop
    plan = manyfest_api.parse_plan(changed)
    report = _run(lambda: ops_publish(
        Engine(fake.client()), plan, since=since_ops.read_report(path), stop=stop,
        options=PublishOptions(atomic=True)))
    assert [r.status for r in report.results] == ["failed"] * 3
    for i in (0, 2):
        err = report.results[i].error
        assert err is not None
        assert err.message == ("not published: interrupted by SIGTERM before it was "
                               "published (--since: unchanged)")
    assert report.atomic_line.startswith(
        "--atomic: interrupted in phase 1, no tag was moved: 0 of 3 lists published (0 "
        "created, 0 updated, 0 unchanged), 3 not published"), report.atomic_line
    assert fake.manifests["app"]["a"].digest == first.results[0].digest


class Failing5xxRegistry(TagDeletingRegistry):
    """Tag PUTs of ``fail_tags`` answer 500 without storing anything."""

    def __init__(self, fail_tags: set[str]) -> None:
        super().__init__(refuse_tags=set())
        self.fail_tags = fail_tags

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        if ref.tag in self.fail_tags:
            self.calls.append(("PUT", ref.repository, ref.reference))
            await anyio.lowlevel.checkpoint()
            raise RegistryError(f"push list {ref}", status=500, method="PUT",
                                url=f"http://{ref.registry}/v2/")
        return await super().put_manifest(ref, manifest, built=built)


def test_a_5xx_tag_that_never_moved_is_headed_not_put_back() -> None:
    """A tag PUT answered 500 may have landed: one HEAD says it did not, and no rollback
    PUT or DELETE is sent for it (each would be retried as long as the failing PUT was)."""
    fake = Failing5xxRegistry(fail_tags={"2"})
    refs = _images(fake, "before")
    old = _run(lambda: _publish(Engine(fake.client()), "app:1", refs))
    for p in (AMD64, ARM64):
        fake.add_image(f"new-{p.architecture}", "1", build_image(p, "after"))
    srcs = "\n".join(f"  - image: {HOST}/new-{a}:1" for a in ("amd64", "arm64"))
    text = (f"image: {HOST}/app:1\nmanifests:\n{srcs}\n---\n"
            f"image: {HOST}/app:2\nmanifests:\n{srcs}\n")
    fake.calls.clear()
    report = _atomic(fake, text)
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert fake.manifests["app"]["1"].digest == old.digest
    assert "2" not in fake.manifests["app"]
    assert fake.calls.count(("PUT", "app", "2")) == 1
    assert ("DELETE", "app", "2") not in fake.calls
    last_put = max(i for i, c in enumerate(fake.calls) if c == ("PUT", "app", "2"))
    assert [c for c in fake.calls[last_put:] if c[2] == "2"] == [
        ("PUT", "app", "2"), ("HEAD", "app", "2")]
    atomic = report.atomic
    assert (atomic["outcome"], atomic["failed_at"]) == ("rolled back", f"{HOST}/app:2")
    assert (atomic["tags_moved"], atomic["rolled_back"], atomic["deleted"]) == (1, 1, 0)
    assert report.results[0].tag_digests == {"1": old.digest}
    assert report.results[1].tag_digests == {"2": ""}
    assert report.atomic_line == (f"--atomic: phase 2 failed at {HOST}/app:2 (push list "
                                  f"{HOST}/app:2: registry answered 500); 1 tag rolled back")


# ---------------------------------------------------------------------- facts


@slow
def test_distribution_refuses_tag_deletion(registry: RegistryServer, ns: str) -> None:
    """What a rollback meets: Distribution 2.8 answers DELETE of a tag 400 DIGEST_INVALID
    (storage.delete enabled; it deletes manifests by digest only), and the tag stays."""
    seed(registry.host, [(f"{ns}/app:gone", PLATFORMS[0], ns)])
    ref = reference.parse(f"{registry.host}/{ns}/app:gone")

    async def go() -> tuple[RegistryError, str]:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            with pytest.raises(RegistryError) as caught:
                await client.delete_manifest(ref)
            head = await client.head_manifest(ref)
            assert head is not None
            return caught.value, head.digest

    err, digest = anyio.run(go)
    assert err.status == 400, err
    assert err.codes == {"DIGEST_INVALID"}, err
    assert digest.startswith("sha256:")


# ---------------------------------------------------------------------- phases


@slow
def test_dry_run_shows_both_phases_and_verify_after_phase_2(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path,
) -> None:
    seed_release(registry.host, ns, "a", [0, 1])
    seed_release(registry.host, ns, "b", [0, 1, 2])
    old = tmp_path / "a.yaml"
    old.write_text(plan_text(proxy.host, ns, "a", [0, 1]))
    assert manyfest("publish", str(old)).returncode == 0
    plan = tmp_path / "b.yaml"
    plan.write_text(plan_text(proxy.host, ns, "b", [0, 1, 2]))
    puts = proxy.count("PUT")
    dry = manyfest("publish", "--atomic", "--dry-run", str(plan))
    assert dry.returncode == 0, dry.stderr
    assert proxy.count("PUT") == puts
    out = dry.stdout.splitlines()
    assert out[0] == "--atomic phase 1: push every child and list by digest (no tag moves)"
    two = out.index("--atomic phase 2: move 9 tags (any failure moves them back)")
    phase1, phase2 = out[1:two], out[two + 1:]
    assert sum(line.startswith("  push list ") and "(by digest)" in line
               for line in phase1) == 3
    assert sum(line.startswith("  push child ") for line in phase1) == 3 * len(PLATS)
    assert not any(line.startswith("  put ") for line in phase1)
    assert len(phase2) == 9
    assert all(line.startswith("  put ") for line in phase2)
    assert sum(line.endswith("(new tag)") for line in phase2) == 3

    run = manyfest("publish", "--atomic", "--verify", "--json", str(plan))
    assert run.returncode == 0, run.stderr
    rows, summary = results(run.stdout)
    assert [r["status"] for r in rows] == ["updated", "updated", "created"]
    assert all(r["atomic"] is True and r["verified"] is True for r in rows)
    assert not any("tag_digests" in r for r in rows)
    assert summary["atomic"]["outcome"] == "published"
    assert summary["atomic"]["tags_moved"] == 9
    assert summary["atomic"]["rollback_gets"] == 2  # lists 0 and 1 had a previous digest
    end = TagChecker(registry.host).tags(
        [t for i in range(3) for t in tag_refs(registry.host, ns, i)])
    for i, r in enumerate(rows):
        assert [end[t] for t in tag_refs(registry.host, ns, i)] == [r["digest"]] * 3


@slow
def test_phase_1_failure_moves_no_tag(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path,
) -> None:
    seed_release(registry.host, ns, "a", [0, 1, 2])
    seed_release(registry.host, ns, "b", [0, 1])  # list 2's release-b images are missing
    old = tmp_path / "a.yaml"
    old.write_text(plan_text(proxy.host, ns, "a", [0, 1, 2]))
    assert manyfest("publish", str(old)).returncode == 0
    flat = [t for i in range(3) for t in tag_refs(registry.host, ns, i)]
    checker = TagChecker(registry.host)
    before = checker.tags(flat)

    # A source missing: checked before any write.
    plan = tmp_path / "b.yaml"
    plan.write_text(plan_text(proxy.host, ns, "b", [0, 1, 2]))
    puts = proxy.count("PUT")
    run = manyfest("publish", "--atomic", "--json", str(plan))
    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert proxy.count("PUT") == puts, "phase 1 wrote although a list had failed its checks"
    rows, summary = results(run.stdout)
    assert [r["status"] for r in rows] == ["failed"] * 3
    missing = f"{proxy.host}/{ns}-src/app-amd64:b-2"
    assert rows[2]["error"].startswith(f"no such manifest: {missing}"), rows[2]
    for r in rows[:2]:
        assert r["error"].startswith(
            f"not published: --atomic: another list failed in phase 1 ({proxy.host}/{ns}/app:1.2"
            ": no such manifest: "), r["error"]
    for i, r in enumerate(rows):
        tags = tag_refs(registry.host, ns, i)
        assert r["tag_digests"] == {t.rsplit(":", 1)[1]: before[t] for t in tags}
    assert summary["atomic"]["outcome"] == "phase 1 failed"
    last = run.stderr.splitlines()[-1]
    assert last.startswith("--atomic: phase 1 failed: 1 of 3 lists failed (first "
                           f"{proxy.host}/{ns}/app:1.2: no such manifest"), last
    assert "no tag was moved" in last
    assert last.endswith("; see the per-list errors above; fix the failing lists and re-run "
                         "(no tag moved)"), last
    assert checker.tags(flat) == before

    # --fail-fast: the missing source's own error and exit code, as without --atomic.
    run = manyfest("publish", "--atomic", "--fail-fast", "--json", str(plan))
    assert run.returncode == 1, run.stderr
    no_traceback(run.stderr)
    assert proxy.count("PUT") == puts
    rows, summary = results(run.stdout)
    assert summary["stopped"].startswith(f"no such manifest: {missing}")
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert run.stderr.splitlines()[-1].startswith(f"no such manifest: {missing}")

    # A list refused by digest in phase 1: the other lists' pushes happen, no tag moves.
    plan.write_text(plan_text(proxy.host, ns, "b", [0, 1]))
    refused: list[str] = []

    async def refuse(request: web.Request) -> web.StreamResponse | None:
        if is_list_put(request) and not refused:
            refused.append(request.path)
            await request.read()
            body = b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}'
            return web.Response(status=400, body=body,
                                headers={"Content-Type": "application/json"})
        return None

    proxy.before.append(refuse)
    tag_puts = [0]

    async def count_tags(request: web.Request) -> web.StreamResponse | None:
        tag_puts[0] += is_tag_put(request)
        return None

    proxy.before.insert(0, count_tags)
    run = manyfest("publish", "--atomic", "--json", str(plan))
    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    assert refused
    assert tag_puts[0] == 0
    rows, _ = results(run.stdout)
    assert [r["status"] for r in rows] == ["failed"] * 2
    own = [r for r in rows if not r["error"].startswith("not published")]
    other = [r for r in rows if r not in own]
    assert len(own) == 1
    assert len(other) == 1
    assert other[0]["error"].startswith("not published: --atomic: another list failed in "
                                        f"phase 1 ({own[0]['target']}: push list ")
    assert checker.tags(flat) == before


@slow
def test_phase_2_failure_rolls_every_tag_back(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path,
) -> None:
    """One tag PUT refused (403 DENIED): every tag that had a digest is back at it; the new
    tags that moved stay (Distribution refuses tag deletion), and the report says so."""
    seed_release(registry.host, ns, "a", [0, 1, 2, 3])
    seed_release(registry.host, ns, "b", [0, 1, 2, 3, 4, 5])
    old = tmp_path / "a.yaml"
    old.write_text(plan_text(proxy.host, ns, "a", [0, 1, 2, 3]))
    assert manyfest("publish", str(old)).returncode == 0
    order = [4, 5, 0, 1, 2, 3]  # the new lists first: their tags move before the refusal
    flat = {i: tag_refs(registry.host, ns, i) for i in order}
    checker = TagChecker(registry.host)
    before = checker.tags([t for tags in flat.values() for t in tags])
    plan = tmp_path / "b.yaml"
    plan.write_text(plan_text(proxy.host, ns, "b", order))
    digests = new_digests(proxy, plan)
    new_paths = [f"/v2/{ns}/app/manifests/{t}" for i in (4, 5) for t in
                 (f"1.{i}", f"v1.{i}", f"latest-{i}")]
    before_hook, after_hook = deny_tag("v1.2", after_new=new_paths)
    proxy.before.append(before_hook)
    proxy.after.append(after_hook)
    report = tmp_path / "report.jsonl"
    run = manyfest("publish", "--atomic", "--concurrency", "4", "--json", "--report",
                   str(report), str(plan))
    assert run.returncode == 3, run.stderr
    no_traceback(run.stderr)
    rows, summary = results(run.stdout)
    assert [json.loads(line) for line in report.read_text().splitlines()] == rows
    assert [r["status"] for r in rows] == ["failed"] * 6
    end = checker.tags([t for tags in flat.values() for t in tags])
    denied = f"{proxy.host}/{ns}/app:v1.2"
    left: list[str] = []
    for row, i, digest in zip(rows, order, digests, strict=True):
        assert row["atomic"] is True
        tags = flat[i]
        assert row["tag_digests"] == {t.rsplit(":", 1)[1]: end[t] for t in tags}, row
        if i < 4:  # existed before: back where it was
            assert [end[t] for t in tags] == [before[t] for t in tags], row
            assert "rolled back" in row["error"] or "none of its tags had moved" in row["error"]
        else:  # new: absent, or at its new (complete) list and reported
            for t in tags:
                assert end[t] in ("", digest), (t, end[t])
                if end[t]:
                    left.append(t.replace(registry.host, proxy.host))
                    assert "could not be deleted: the registry refuses tag deletion: 400 " \
                           "DIGEST_INVALID" in row["error"], row["error"]
        if i == 2:
            assert row["error"].startswith("--atomic: the PUT of its tag failed (push list "
                                           f"{denied} "), row["error"]
            assert "registry answered 403 (DENIED" in row["error"]
        else:
            assert row["error"].startswith(f"not published: --atomic: phase 2 failed at "
                                           f"{denied} ("), row["error"]
    assert left, "no new tag moved before the refusal"
    atomic = summary["atomic"]
    assert atomic["outcome"] == "rolled back"
    assert atomic["failed_at"] == denied
    assert sorted(atomic["not_rolled_back"]) == sorted(left)
    assert atomic["deleted"] == 0
    assert atomic["rollback_gets"] == 4  # one previous list per existing list, fetched once
    last = run.stderr.splitlines()[-1]
    assert last.startswith(f"--atomic: phase 2 failed at {denied} (push list {denied} "), last
    assert (f"; {atomic['rolled_back']} tag{'s' if atomic['rolled_back'] != 1 else ''} "
            "rolled back, ") in last
    assert (f"{len(left)} new tag{'s' if len(left) != 1 else ''} could not be deleted (the "
            "registry refuses tag deletion: 400 DIGEST_INVALID): ") in last
    assert all(t in last for t in left)
    failed_lines = [line for line in run.stderr.splitlines() if "] failed " in line]
    assert len(failed_lines) == 6

    # The refusal gone, a re-run publishes the release.
    proxy.before.remove(before_hook)
    again = manyfest("publish", "--atomic", "--json", str(plan))
    assert again.returncode == 0, again.stderr
    rows, _ = results(again.stdout)
    for row, i, digest in zip(rows, order, digests, strict=True):
        moved = [end[t] for t in flat[i]]
        want = ("unchanged" if moved == [digest] * 3 else
                "updated" if moved[0] else "created")
        assert (row["status"], row["digest"]) == (want, digest), row
    final = checker.tags([t for tags in flat.values() for t in tags])
    for i, digest in zip(order, digests, strict=True):
        assert [final[t] for t in flat[i]] == [digest] * 3


@slow
def test_sigterm_in_either_phase(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path,
) -> None:
    """SIGTERM in phase 1 moves no tag; in phase 2 the tags moved are moved back."""
    seed_release(registry.host, ns, "a", [0, 1, 2])
    seed_release(registry.host, ns, "b", [0, 1, 2])
    old = tmp_path / "a.yaml"
    old.write_text(plan_text(proxy.host, ns, "a", [0, 1, 2]))
    assert manyfest("publish", str(old)).returncode == 0
    flat = [t for i in range(3) for t in tag_refs(registry.host, ns, i)]
    checker = TagChecker(registry.host)
    before = checker.tags(flat)
    plan = tmp_path / "b.yaml"
    plan.write_text(plan_text(proxy.host, ns, "b", [0, 1, 2]))

    tag_puts = [0]

    async def count_tags(request: web.Request) -> web.StreamResponse | None:
        tag_puts[0] += is_tag_put(request)
        return None

    proxy.before.insert(0, count_tags)
    hold = HoldFrom(proxy, is_child_put, 3)
    run = Run("publish", "--atomic", "--concurrency", "2", "--json", str(plan))
    try:
        hold.wait()
        run.send(signal.SIGTERM)
        hold.release()
        code, stdout, lines = run.finish()
    finally:
        run.kill()
        hold.remove()
    proxy.wait_idle()
    no_traceback(lines)
    assert code == 143, lines
    assert lines[-1].startswith("interrupted by SIGTERM: --atomic: interrupted in phase 1, no "
                                "tag was moved: 0 of 3 lists published"), lines[-1]
    assert tag_puts[0] == 0
    rows, summary = results(stdout)
    assert summary["interrupted"] == "SIGTERM"
    assert summary["atomic"]["phase"] == 1
    assert all(r["atomic"] and r["status"] == "failed" for r in rows)
    assert checker.tags(flat) == before

    hold = HoldFrom(proxy, is_tag_put, 3)
    run = Run("publish", "--atomic", "--concurrency", "2", "--json", str(plan))
    try:
        hold.wait()  # two tags moved, the third PUT held
        run.send(signal.SIGTERM)
        hold.release()
        code, stdout, lines = run.finish()
    finally:
        run.kill()
        hold.remove()
    proxy.wait_idle()
    no_traceback(lines)
    assert code == 143, lines
    end = checker.tags(flat)
    assert lines[-1].startswith("interrupted by SIGTERM: --atomic: interrupted by SIGTERM in "
                                "phase 2; "), lines[-1]
    rows, summary = results(stdout)
    atomic = summary["atomic"]
    assert atomic["outcome"] == "interrupted"
    assert atomic["phase"] == 2
    assert atomic["tags_moved"] >= 2
    assert atomic["rolled_back"] == atomic["tags_moved"]  # every tag existed: all go back
    assert f"; {atomic['rolled_back']} tags rolled back; re-run to finish" in lines[-1]
    assert end == before
    for i, r in enumerate(rows):
        assert r["status"] == "failed"
        assert r["error"].startswith(
            "not published: --atomic: interrupted by SIGTERM in phase 2"), r
        assert r["tag_digests"] == {t.rsplit(":", 1)[1]: before[t]
                                    for t in tag_refs(registry.host, ns, i)}


@slow
def test_signal_in_phase_2_says_at_once_and_a_second_names_the_tags_left_moved(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path,
) -> None:
    """The first SIGINT in phase 2 prints one line at once (how many tags are moved back,
    that a second signal aborts); the second ends the process, its last line naming every
    tag left at its new list (the ones moved, and those whose PUT was in flight)."""
    seed_release(registry.host, ns, "a", [0, 1])
    seed_release(registry.host, ns, "b", [0, 1])
    old = tmp_path / "a.yaml"
    old.write_text(plan_text(proxy.host, ns, "a", [0, 1]))
    assert manyfest("publish", str(old)).returncode == 0
    flat = [t for i in range(2) for t in tag_refs(registry.host, ns, i)]
    checker = TagChecker(registry.host)
    before = checker.tags(flat)
    plan = tmp_path / "b.yaml"
    plan.write_text(plan_text(proxy.host, ns, "b", [0, 1]))
    digests = new_digests(proxy, plan)
    answered: list[str] = []

    async def record(request: web.Request, response: web.Response) -> web.Response:
        if is_tag_put(request) and response.status == 201:
            answered.append(request.path.rsplit("/", 1)[1])
        return response

    proxy.after.append(record)
    hold = HoldFrom(proxy, is_tag_put, 3)  # two tags move; the 3rd and 4th PUTs are held
    run = Run("-q", "publish", "--atomic", "--concurrency", "2", "--json", str(plan))
    try:
        hold.wait()
        hold.wait_seen(4)  # sent once both answers were read: the run knows they moved
        run.send(signal.SIGINT)
        notice = run.wait_line(lambda line: line.startswith("--atomic: SIGINT"), "notice")
        run.send(signal.SIGINT)
        code, stdout, lines = run.finish()
    finally:
        run.kill()
        hold.remove()
        proxy.after.remove(record)
    proxy.wait_idle()
    no_traceback(lines)
    assert code == 130, lines
    assert notice == ("--atomic: SIGINT in phase 2: no more tags move; moving back 2 tags "
                      "moved so far and those of the 2 tags whose PUTs are in flight that land "
                      "(up to 60 s); a second signal aborts and leaves them moved")
    assert stdout == ""  # ended at once: no report
    assert lines[-2] == ("interrupted by SIGINT: SIGINT received while stopping; stopped at "
                         "once (a report not yet written is not written); re-run to finish")
    head = "--atomic: the release is inconsistent: 4 tags left at the new lists (each " \
           "complete): "
    tail = "; re-run to publish the release, or re-publish the previous one"
    assert lines[-1].startswith(head), lines[-1]
    assert lines[-1].endswith(tail), lines[-1]
    named = lines[-1][len(head):-len(tail)].split(", ")
    assert len(answered) == 2, answered
    moved = {f"{proxy.host}/{ns}/app:{t}" for t in answered}
    assert {n for n in named if not n.endswith(" (may have moved)")} == moved
    maybe = {n.removesuffix(" (may have moved)") for n in named} - moved
    assert len(maybe) == 2
    end = checker.tags(flat)
    new_of = {t: digests[i] for i in range(2) for t in tag_refs(registry.host, ns, i)}
    for t in flat:
        shown = t.replace(registry.host, proxy.host)
        if shown in moved:
            assert end[t] == new_of[t], t  # left moved, as the line says
        elif shown not in maybe:
            assert end[t] == before[t], t  # never sent: where it was
        else:
            assert end[t] in (before[t], new_of[t]), t


# ---------------------------------------------------------------------- SIGKILL


@slow
def test_sigkill_in_either_phase_converges(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path,
) -> None:
    """Killed at several points of phase 1 and phase 2 in turn: every tag is at its old
    digest or its new complete list (phase-1 kills moved none); a re-run ends the release."""
    existing, new = list(range(8)), [8, 9]
    seed_release(registry.host, ns, "a", existing)
    seed_release(registry.host, ns, "b", existing + new)
    old = tmp_path / "a.yaml"
    old.write_text(plan_text(proxy.host, ns, "a", existing))
    assert manyfest("publish", str(old)).returncode == 0
    lists = existing + new
    groups = [tag_refs(registry.host, ns, i) for i in lists]
    flat = [t for g in groups for t in g]
    checker = TagChecker(registry.host)
    state = checker.tags(flat)
    original = dict(state)
    plan = tmp_path / "b.yaml"
    plan.write_text(plan_text(proxy.host, ns, "b", lists))
    digests = new_digests(proxy, plan)

    points: list[tuple[str, Callable[[web.Request], bool], int, int]] = [
        ("previous manifest GET", previous_get(ns), 2, 1),
        ("child PUT", is_child_put, 1, 1),
        ("child PUT", is_child_put, 13, 1),
        ("list PUT by digest", is_list_put, 4, 1),
        ("tag PUT", is_tag_put, 1, 2),
        ("tag PUT", is_tag_put, 8, 2),
        ("tag PUT", is_tag_put, 5, 2),
    ]
    for what, match, n, phase in points:
        hold = HoldFrom(proxy, match, n)
        run = Run("publish", "--atomic", "--concurrency", "4", str(plan))
        try:
            hold.wait()
            run.send(signal.SIGKILL)
            code, _, _ = run.finish()
        finally:
            run.kill()
            hold.remove()  # what the killed run had sent may still land
        assert code == -signal.SIGKILL
        proxy.wait_idle()
        after = checker.tags(flat)  # every existing tag points at a complete list
        for g, digest in zip(groups, digests, strict=True):
            for t in g:
                assert after[t] in (original[t], digest), (what, n, t, after[t])
        if phase == 1:
            assert after == state, f"a tag moved in phase 1 ({what} {n})"
        state = after
    moved = sum(state[t] != original[t] for t in flat)
    assert 7 <= moved < len(flat), moved  # the kills left a release half moved

    # Killed while moving tags back: the last tag left to move is refused, the first
    # rollback request (a PUT of a previous manifest, or a DELETE) held.
    pending = [t for g in groups for t in g if state[t] != digests[groups.index(g)]]
    assert len(pending) >= 2, pending
    deny, _ = deny_tag(pending[-1].rsplit(":", 1)[1])
    proxy.before.append(deny)
    hold = HoldFrom(proxy, rollback_request(set(original.values()) - {""}), 1)
    run = Run("publish", "--atomic", "--concurrency", "4", str(plan))
    try:
        hold.wait()
        run.send(signal.SIGKILL)
        code, _, _ = run.finish()
    finally:
        run.kill()
        hold.remove()
        proxy.before.remove(deny)
    assert code == -signal.SIGKILL
    proxy.wait_idle()
    after = checker.tags(flat)
    for g, digest in zip(groups, digests, strict=True):
        for t in g:
            assert after[t] in (original[t], digest), ("rollback", t, after[t])
    state = after

    final = manyfest("publish", "--atomic", "--json", str(plan), timeout=600)
    assert final.returncode == 0, final.stderr
    rows, summary = results(final.stdout)
    assert summary["failed"] == 0
    assert summary["atomic"]["outcome"] == "published"
    for row, g, digest in zip(rows, groups, digests, strict=True):
        now = [state[t] for t in g]
        want = "unchanged" if now == [digest] * 3 else "updated" if now[0] else "created"
        assert (row["status"], row["digest"]) == (want, digest), (row, now)
    end = checker.tags(flat)
    for g, digest in zip(groups, digests, strict=True):
        assert [end[t] for t in g] == [digest] * 3, g


def test_a_move_back_answered_500_after_it_landed_is_looked_up_not_reported_stuck() -> None:
    """A rollback PUT stored, then answered 500 (a proxy's timeout): one HEAD finds the tag
    back at its previous list; the report says so (rolled back, ``tag_digests`` the
    registry's), not "not rolled back" at the new list."""

    class MoveBackLandsThen500(TagDeletingRegistry):
        puts_of_1 = 0

        async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                               built: bool = False) -> str:
            if ref.tag == "1":
                self.puts_of_1 += 1
                if self.puts_of_1 == 3:  # the move back: stored, then 500
                    await super().put_manifest(ref, manifest, built=built)
                    raise RegistryError(f"push list {ref}", status=500, method="PUT",
                                        url=f"http://{ref.registry}/v2/")
            return await super().put_manifest(ref, manifest, built=built)

    fake = MoveBackLandsThen500(refuse_tags=set())
    _images(fake, "before")
    src = "\n".join(f"  - image: {HOST}/app-{a}:1" for a in ("amd64", "arm64"))
    [old] = _run(lambda: ops_publish(Engine(fake.client()), manyfest_api.parse_plan(
        f"image: {HOST}/app:1\nmanifests:\n{src}\n"))).results
    for p in (PLATFORMS[0], PLATFORMS[2]):
        fake.add_image(f"new-{p.architecture}", "1", build_image(p, "after"))
    new = "\n".join(f"  - image: {HOST}/new-{p.architecture}:1" for p in (PLATFORMS[0],
                                                                           PLATFORMS[2]))
    plan = manyfest_api.parse_plan(f"image: {HOST}/app:1\nmanifests:\n{new}\n---\n"
                                   f"image: {HOST}/app:2\nmanifests:\n{new}\n")
    fake.refuse_tags = {"2"}
    report = _run(lambda: ops_publish(Engine(fake.client()), plan,
                                      options=PublishOptions(atomic=True)))
    assert fake.manifests["app"]["1"].digest == old.digest  # the move back landed
    first = report.results[0]
    assert first.status == "failed"
    assert first.tag_digests == {"1": old.digest}
    assert report.atomic is not None
    assert report.atomic["not_rolled_back"] == []
    assert report.atomic["rolled_back"] == 1
    assert report.atomic_line.endswith("; 1 tag rolled back"), report.atomic_line
