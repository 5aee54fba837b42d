"""Unit tests of manyfest.engine against an in-memory registry client (no network, no process).

:class:`FakeRegistry` has the interface of :class:`~manyfest.registry.RegistryClient` that the
engine uses and behaves as Distribution does where the engine depends on it: a manifest PUT is
refused while a blob or child it names is missing from the repository, a mount answers 201
only when the source repository holds the blob, a missing manifest is a 404. Every call is
recorded in order, so the tests check what the engine asks, how often and in which order.
The images are of real sizes (``tests.imagewriter``: 12 layers, 6-10 KiB configs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from manyfest import mediatypes, reference
from manyfest.cache import FactCache
from manyfest.content import Manifest
from manyfest.engine import Child, Engine, OnceMap, PublishOptions, Source, run_all
from manyfest.errors import ErrorDetail, ManifestRejectedError, NotFoundError, UsageError
from manyfest.events import Copied, Event, Finished, Mounted, Pushed, Resolved, Skipped
from manyfest.ops.plan import PlanList, load
from manyfest.ops.publish import StopRequest, publish
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.registry.client import ManifestHead
from manyfest.transport import RequestStats
from tests.imagewriter import AttestedIndex, Image, build_attested_index, build_image

HOST = "127.0.0.1:5000"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")
ARMV7 = Platform("linux", "arm", "v7")


@dataclass
class FakeRegistry:
    """An in-memory registry with the RegistryClient calls the engine makes.

    Attributes:
        manifests: ``{repository: {tag or digest: Manifest}}``.
        blobs: ``{repository: {digest: bytes}}``.
        calls: every call as ``(method, repository, tag or digest)``, in the order made.
        mount_refused: mounts answer 202 (an upload session: the engine must copy).
        refuse_put: repositories whose manifest PUTs are refused (400 MANIFEST_INVALID).
    """

    manifests: dict[str, dict[str, Manifest]] = field(default_factory=dict)
    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    mount_refused: bool = False
    refuse_put: set[str] = field(default_factory=set)

    # ----------------------------------------------------------- seeding (no calls recorded)

    def add_image(self, repository: str, tag: str, image: Image) -> Manifest:
        """Store ``image``'s blobs and manifest (by digest and at ``tag``)."""
        repo_blobs = self.blobs.setdefault(repository, {})
        for digest, data in image.blobs:
            repo_blobs[digest] = data
        assert not image.streamed, "the fake holds small blobs only"
        self._store(repository, image.manifest, tag)
        return image.manifest

    def add_index(self, repository: str, tag: str, item: AttestedIndex) -> Manifest:
        """Store an attested index, its image and attestation, as buildx pushes them."""
        for image in (item.image, item.attestation):
            self.add_image(repository, image.manifest.digest, image)
        self._store(repository, item.index, tag)
        return item.index

    def _store(self, repository: str, manifest: Manifest, tag: str) -> None:
        repo = self.manifests.setdefault(repository, {})
        repo[manifest.digest] = manifest
        repo[tag] = manifest

    def count(self, method: str, repository: str | None = None) -> int:
        """How many ``method`` calls were made (in ``repository`` when given)."""
        return sum(1 for m, r, _ in self.calls if m == method and repository in (None, r))

    def client(self) -> RegistryClient:
        """This fake, typed as the client the engine takes."""
        return cast(RegistryClient, self)

    # ----------------------------------------------------------- the client's interface

    def _missing(self, method: str, ref: Reference, what: str) -> NotFoundError:
        return NotFoundError(
            f"{what} {ref}", status=404, method=method, url=f"http://{ref.registry}/v2/",
            errors=(ErrorDetail("MANIFEST_UNKNOWN", "manifest unknown"),),
        )

    async def head_manifest(self, ref: Reference, *, push: bool = False) -> ManifestHead | None:
        """HEAD: the digest, size and media type, or None (404)."""
        self.calls.append(("HEAD+push" if push else "HEAD", ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        found = self.manifests.get(ref.repository, {}).get(ref.reference)
        return ManifestHead(found.digest, found.size, found.media_type) if found else None

    async def get_manifest(self, ref: Reference) -> Manifest:
        """GET: the exact bytes, or NotFoundError."""
        self.calls.append(("GET", ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        found = self.manifests.get(ref.repository, {}).get(ref.reference)
        if found is None:
            raise self._missing("GET", ref, "get manifest")
        return found

    async def get_blob(self, ref: Reference, digest: str) -> bytes:
        """GET a blob (the engine reads configs only)."""
        self.calls.append(("GET blob", ref.repository, digest))
        await anyio.lowlevel.checkpoint()
        return self.blobs[ref.repository][digest]

    async def mount_blob(self, target: Reference, digest: str, source: Reference) -> bool:
        """201 (True) when the source repository holds the blob; 202 (False) otherwise."""
        self.calls.append(("mount", target.repository, digest))
        await anyio.lowlevel.checkpoint()
        data = self.blobs.get(source.repository, {}).get(digest)
        if data is None or self.mount_refused:
            return False
        self.blobs.setdefault(target.repository, {})[digest] = data
        return True

    async def copy_blob(self, source: Reference, target: Reference, digest: str,
                        size: int | None = None) -> int:
        """Copy the bytes from the source repository; returns their size."""
        self.calls.append(("copy", target.repository, digest))
        await anyio.lowlevel.checkpoint()
        data = self.blobs.get(source.repository, {}).get(digest)
        if data is None:
            raise NotFoundError(
                f"get blob {source.name}@{digest}", status=404, method="GET",
                url=f"http://{HOST}/v2/", errors=(ErrorDetail("BLOB_UNKNOWN", "blob unknown"),),
            )
        assert size in (None, len(data)), f"size {size} sent for a blob of {len(data)} bytes"
        self.blobs.setdefault(target.repository, {})[digest] = data
        return len(data)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        """PUT; refused while anything the manifest names is missing from the repository."""
        self.calls.append(("PUT", ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        if ref.repository in self.refuse_put:
            raise ManifestRejectedError(
                f"push manifest {ref}", status=400, method="PUT", url=f"http://{HOST}/v2/",
                errors=(ErrorDetail("MANIFEST_INVALID", "manifest invalid"),),
            )
        if manifest.is_index:
            present = self.manifests.get(ref.repository, {})
            missing = [d.digest for d in manifest.index().manifests if d.digest not in present]
            code = "MANIFEST_UNKNOWN"
        else:
            present_blobs = self.blobs.get(ref.repository, {})
            missing = [b.digest for b in manifest.blobs() if b.digest not in present_blobs]
            code = "MANIFEST_BLOB_UNKNOWN_BY_FAKE"  # not retried by the engine
        if missing:
            raise ManifestRejectedError(
                f"push manifest {ref}", status=400, method="PUT", url=f"http://{HOST}/v2/",
                errors=(ErrorDetail(code, f"missing {missing[0]}"),),
            )
        self._store(ref.repository, manifest, ref.reference)
        return manifest.digest


def _ref(text: str) -> Reference:
    return reference.parse(f"{HOST}/{text}")


def _images(fake: FakeRegistry, seed: str,
            platforms: tuple[Platform, ...] = (AMD64, ARM64)) -> list[Reference]:
    """One image per platform in ``app-<arch>:1``; returns their references."""
    refs = []
    for p in platforms:
        repo = f"app-{p.architecture}"
        fake.add_image(repo, "1", build_image(p, seed))
        refs.append(_ref(f"{repo}:1"))
    return refs


async def _children(engine: Engine, refs: list[Reference]) -> list[Child]:
    children = []
    for ref in refs:
        source = await engine.resolve(ref)
        children.append(Child(source, source.platform))
    return children


async def _publish(engine: Engine, target: str, refs: list[Reference],
                   **kw: Any) -> Any:
    return await engine.publish(_ref(target), await _children(engine, refs), **kw)


def _expected_list(manifests: list[tuple[Manifest, Platform]]) -> bytes:
    """The Docker manifest list docker writes: 3-space indent, docker's key order."""
    entries = []
    for m, p in manifests:
        plat = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            plat["variant"] = p.variant
        entries.append({"mediaType": m.media_type, "size": m.size, "digest": m.digest,
                        "platform": plat})
    doc = {"schemaVersion": 2, "mediaType": mediatypes.DOCKER_LIST, "manifests": entries}
    return json.dumps(doc, indent=3).encode()


def _run(fn: Callable[[], Any]) -> Any:
    return anyio.run(fn)


# ------------------------------------------------------------------ build_list


def test_publish_builds_dockers_bytes_and_puts_them_at_the_tag() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "build")
    engine = Engine(fake.client())
    result = _run(lambda: _publish(engine, "app:1", refs))
    sources = [fake.manifests[r.repository]["1"] for r in refs]
    expected = _expected_list(list(zip(sources, (AMD64, ARM64), strict=True)))
    stored = fake.manifests["app"]["1"]
    assert stored.raw == expected
    assert result.status == "created"
    assert result.digest == stored.digest == Manifest.from_bytes(expected).digest
    assert result.old_digest == ""
    assert stored.media_type == mediatypes.DOCKER_LIST
    assert fake.manifests["app"][stored.digest] is stored
    # Both children are now in the target repository, with every blob they name.
    for m in sources:
        assert fake.manifests["app"][m.digest] is m
        assert {b.digest for b in m.blobs()} <= set(fake.blobs["app"])
    assert result.pushed_children == [m.digest for m in sources]


def test_build_list_keeps_entry_order_and_chooses_the_oci_index_for_oci_children() -> None:
    fake = FakeRegistry()
    arm = fake.add_image("arm", "1", build_image(ARMV7, "oci", oci=True))
    amd = fake.add_image("amd", "1", build_image(AMD64, "oci", oci=True))
    engine = Engine(fake.client())

    async def build() -> Manifest:
        children = await _children(engine, [_ref("arm:1"), _ref("amd:1")])
        return await engine.build_list(_ref("app:1"), children, {"a": "1"}, PublishOptions())

    listed = _run(build)
    doc = json.loads(listed.raw)
    assert listed.media_type == doc["mediaType"] == mediatypes.OCI_INDEX
    assert [e["digest"] for e in doc["manifests"]] == [arm.digest, amd.digest]
    assert doc["manifests"][0]["platform"] == {"architecture": "arm", "os": "linux",
                                               "variant": "v7"}
    assert doc["annotations"] == {"a": "1"}
    assert fake.count("PUT") == 0  # building writes nothing


def test_annotations_on_a_docker_list_are_refused_before_any_write() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "usage")
    engine = Engine(fake.client())
    result = _run(lambda: _publish(engine, "app:1", refs, annotations={"a": "1"}))
    assert result.status == "failed"
    assert isinstance(result.error, UsageError)
    assert "asked for a Docker manifest list" in str(result.error)
    assert [c for c in fake.calls if c[0] not in ("GET", "GET blob")] == []


# ------------------------------------------------------------------ dedupe


def test_lists_sharing_sources_share_the_work() -> None:
    """Four lists of one release (1.2.3, 1.2, 1, latest) in two target repositories, published
    concurrently by one engine: every source is read once, every blob mounted and every child
    pushed once per target repository."""
    fake = FakeRegistry()
    refs = _images(fake, "dedupe", (AMD64, ARM64, ARMV7))
    engine = Engine(fake.client())
    events: list[Event] = []
    engine.on_event = events.append
    targets = [f"{repo}:{tag}" for repo in ("app", "mirror") for tag in ("1.2.3", "1.2")]

    async def main() -> list[Any]:
        results: list[Any] = [None] * len(targets)

        async def one(i: int) -> None:
            results[i] = await _publish(engine, targets[i], refs)

        async with anyio.create_task_group() as tg:
            for i in range(len(targets)):
                tg.start_soon(one, i)
        return results

    results = _run(main)
    assert [r.status for r in results] == ["created"] * 4
    assert len({r.digest for r in results}) == 1
    sources = [fake.manifests[r.repository]["1"] for r in refs]
    blobs = {b.digest for m in sources for b in m.blobs()}
    assert fake.count("GET") == 3  # each source manifest once
    assert fake.count("GET blob") == 3  # each config once
    for repo in ("app", "mirror"):
        assert fake.count("mount", repo) == len(blobs)  # each blob once per repository
        mounted = [d for m, r, d in fake.calls if m == "mount" and r == repo]
        assert sorted(mounted) == sorted(blobs)
        child_puts = [d for m, r, d in fake.calls if m == "PUT" and r == repo
                      and d.startswith("sha256:")]
        assert sorted(child_puts) == sorted(s.digest for s in sources)
        assert fake.count("PUT", repo) == 3 + 2  # 3 children, 2 tags
    assert sum(isinstance(e, Resolved) for e in events) == 3
    assert sum(isinstance(e, Mounted) for e in events) == 2 * len(blobs)
    assert sum(isinstance(e, Pushed) for e in events) == 2 * 3
    assert sum(isinstance(e, Finished) for e in events) == 4


def test_extra_tags_share_one_list_and_the_first_tag_is_written_first() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "tags")
    engine = Engine(fake.client())
    result = _run(lambda: _publish(engine, "app:1.2.3", refs, extra_tags=["1.2", "1", "latest"]))
    assert result.status == "created"
    assert result.tags == ["1.2.3", "1.2", "1", "latest"]
    tag_puts = [d for m, r, d in fake.calls if m == "PUT" and not d.startswith("sha256:")]
    assert tag_puts[0] == "1.2.3"
    assert sorted(tag_puts[1:]) == ["1", "1.2", "latest"]
    assert {fake.manifests["app"][t].digest for t in result.tags} == {result.digest}


def test_a_child_already_in_the_target_repository_is_not_pushed_again() -> None:
    fake = FakeRegistry()
    fake.add_image("app", "amd64", build_image(AMD64, "same"))
    fake.add_image("app", "arm64", build_image(ARM64, "same"))
    engine = Engine(fake.client())
    result = _run(lambda: _publish(engine, "app:1", [_ref("app:amd64"), _ref("app:arm64")]))
    assert result.status == "created"
    assert fake.count("mount") == 0
    assert [(m, d) for m, _, d in fake.calls if m == "PUT"] == [("PUT", "1")]
    assert result.pushed_children == []


def test_the_same_child_twice_in_one_list_is_pushed_once() -> None:
    fake = FakeRegistry()
    [ref] = _images(fake, "twice", (AMD64,))
    engine = Engine(fake.client())

    async def main() -> Any:
        source = await engine.resolve(ref)
        again = Child(source, Platform("linux", "amd64", "", "", ("sse4",)))
        return await engine.publish(_ref("app:1"), [Child(source, source.platform), again])

    result = _run(main)
    assert result.status == "created"
    assert result.pushed_children == [fake.manifests[ref.repository]["1"].digest]
    assert len(json.loads(fake.manifests["app"]["1"].raw)["manifests"]) == 2


# ------------------------------------------------------------------ unchanged


def test_a_tag_that_holds_the_list_is_unchanged_and_nothing_is_written() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "unchanged")
    first = _run(lambda: _publish(Engine(fake.client()), "app:1", refs, extra_tags=["latest"]))
    fake.calls.clear()
    events: list[Event] = []
    again = _run(lambda: _publish(Engine(fake.client(), events.append), "app:1", refs,
                                  extra_tags=["latest"]))
    assert again.status == "unchanged"
    assert again.digest == again.old_digest == first.digest
    written = [c for c in fake.calls if c[0] in ("PUT", "mount", "copy")]
    assert written == []
    assert sorted(d for m, r, d in fake.calls if m == "HEAD+push") == ["1", "latest"]
    assert [e for e in events if isinstance(e, Skipped)] == [
        Skipped(target=f"{HOST}/app:1", digest=first.digest)]


def test_only_the_tag_that_moved_is_written() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "moved")
    first = _run(lambda: _publish(Engine(fake.client()), "app:1", refs, extra_tags=["latest"]))
    older = fake.add_image("old", "1", build_image(AMD64, "older"))
    fake.manifests["app"]["latest"] = older  # someone moved one tag
    fake.calls.clear()
    again = _run(lambda: _publish(Engine(fake.client()), "app:1", refs, extra_tags=["latest"]))
    assert again.status == "updated"  # the first tag held it: old_digest is the list's own
    assert again.old_digest == first.digest
    tag_puts = [d for m, _, d in fake.calls if m == "PUT" and not d.startswith("sha256:")]
    assert tag_puts == ["latest"]  # the tag that still holds the list is not written
    assert fake.manifests["app"]["latest"].digest == first.digest


def test_a_tag_holding_the_list_proves_its_children_only_the_other_tags_are_put() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "proven")
    first = _run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                  extra_tags=["latest", "stable"]))
    older = fake.add_image("old", "1", build_image(AMD64, "older-proven"))
    fake.manifests["app"]["latest"] = older  # one extra tag moved away, one deleted
    del fake.manifests["app"]["stable"]
    fake.calls.clear()
    dry = _run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                extra_tags=["latest", "stable"],
                                options=PublishOptions(dry_run=True)))
    assert dry.actions == [
        f"put {HOST}/app:latest -> {first.digest} (now {older.digest})",
        f"put {HOST}/app:stable -> {first.digest} (new tag)",
    ]
    fake.calls.clear()
    again = _run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                  extra_tags=["latest", "stable"]))
    assert again.status == "updated"
    assert again.old_digest == first.digest
    assert again.pushed_children == []
    in_app = [(m, d) for m, r, d in fake.calls if r == "app"]
    # Three HEADs of the tags, then only the two tags that moved: no mount, no child PUT.
    assert sorted(in_app[:3]) == [("HEAD+push", "1"), ("HEAD+push", "latest"),
                                  ("HEAD+push", "stable")]
    assert sorted(in_app[3:]) == [("PUT", "latest"), ("PUT", "stable")]
    assert fake.count("mount") == fake.count("copy") == 0
    assert fake.manifests["app"]["latest"].digest == fake.manifests["app"]["stable"].digest \
        == first.digest


def test_skip_unchanged_off_always_puts() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "push")
    _run(lambda: _publish(Engine(fake.client()), "app:1", refs))
    fake.calls.clear()
    again = _run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                  options=PublishOptions(skip_unchanged=False)))
    assert again.status == "created"  # nothing was looked up: no old digest known
    assert fake.count("HEAD") + fake.count("HEAD+push") == 0
    assert [d for m, _, d in fake.calls if m == "PUT"][-1] == "1"


def test_dry_run_reads_and_reports_but_writes_nothing() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "dry")
    result = _run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                   options=PublishOptions(dry_run=True)))
    assert result.status == "created"
    assert [c for c in fake.calls if c[0] in ("PUT", "mount", "copy", "HEAD+push")] == []
    assert "app" not in fake.manifests
    sources = [fake.manifests[r.repository]["1"] for r in refs]
    mounts = [a for a in result.actions if a.startswith("mount ")]
    assert len(mounts) == sum(len(m.blobs()) for m in sources)
    assert [a for a in result.actions if a.startswith("push child ")] == [
        f"push child {m.digest} ({p})" for m, p in zip(sources, (AMD64, ARM64), strict=True)]
    assert result.actions[-1] == f"put {HOST}/app:1 -> {result.digest} (new tag)"


# ------------------------------------------------------------------ failures


def test_one_failed_list_does_not_fail_the_others() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "isolate")
    fake.refuse_put.add("refusing")
    engine = Engine(fake.client())

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}

        async def one(target: str, sources: list[Reference]) -> None:
            out[target] = await _publish(engine, target, sources)

        async def missing() -> None:
            try:
                await engine.resolve(_ref("nowhere:1"))
            except NotFoundError as exc:
                out["nowhere"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "app:1", refs)
            tg.start_soon(one, "refusing:1", refs)
            tg.start_soon(one, "other:1", refs)
            tg.start_soon(missing)
        return out

    out = _run(main)
    assert out["app:1"].status == out["other:1"].status == "created"
    refused = out["refusing:1"]
    assert refused.status == "failed"
    assert isinstance(refused.error, ManifestRejectedError)
    assert "MANIFEST_INVALID" in str(refused.error)
    assert "1" not in fake.manifests.get("refusing", {})  # the tag was left where it was
    assert str(out["nowhere"]).startswith(f"no such manifest: {HOST}/nowhere:1: registry "
                                          "answered 404 (MANIFEST_UNKNOWN")


def test_a_failed_child_leaves_the_tag_where_it_was() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "old")
    before = _run(lambda: _publish(Engine(fake.client()), "app:1", refs))
    new_refs = _images(fake, "new")
    # A blob of the new arm64 image is lost from its source: the copy cannot happen.
    arm = fake.manifests["app-arm64"]["1"]
    lost = arm.blobs()[-1].digest
    del fake.blobs["app-arm64"][lost]
    result = _run(lambda: _publish(Engine(fake.client()), "app:1", new_refs))
    assert result.status == "failed"
    assert result.old_digest == before.digest
    assert fake.manifests["app"]["1"].digest == before.digest
    list_puts = [d for m, _, d in fake.calls if m == "PUT" and d == "1"]
    assert list_puts == ["1"]  # the first run's only


def test_a_failed_source_fails_each_list_that_needs_it_once() -> None:
    fake = FakeRegistry()
    engine = Engine(fake.client())

    async def main() -> list[str]:
        errors: list[str] = []

        async def one() -> None:
            try:
                await engine.resolve(_ref("gone:1"))
            except NotFoundError as exc:
                errors.append(exc.hint)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
        return errors

    hints = _run(main)
    assert hints == ["push the image first, or check its name and tag"] * 3
    assert fake.calls == [("GET", "gone", "1")]  # asked once, remembered for every caller


# ------------------------------------------------------------------ order


def test_order_of_work_for_one_list() -> None:
    """resolve sources → HEAD the tag → blobs of a child → that child → the list."""
    fake = FakeRegistry()
    refs = _images(fake, "order")
    result = _run(lambda: _publish(Engine(fake.client()), "app:1", refs))
    assert result.status == "created"
    calls = fake.calls
    index = {c: i for i, c in enumerate(calls)}
    reads = [i for i, c in enumerate(calls) if c[0] in ("GET", "GET blob")]
    [head] = [i for i, c in enumerate(calls) if c[0] == "HEAD+push"]
    assert calls[head] == ("HEAD+push", "app", "1")
    assert max(reads) < head  # sources resolved (manifest, then config) before the HEAD
    for ref in refs:
        child = fake.manifests[ref.repository]["1"]
        assert index[("GET", ref.repository, "1")] < index[
            ("GET blob", ref.repository, child.image().config.digest)]
        put = index[("PUT", "app", child.digest)]
        for blob in child.blobs():
            assert head < index[("mount", "app", blob.digest)] < put
    assert calls[-1] == ("PUT", "app", "1")
    assert len(calls) == 2 * 2 + 1 + sum(
        len(fake.manifests[r.repository]["1"].blobs()) for r in refs) + 2 + 1


def test_a_refused_mount_copies_the_bytes() -> None:
    fake = FakeRegistry(mount_refused=True)
    refs = _images(fake, "copy")
    events: list[Event] = []
    result = _run(lambda: _publish(Engine(fake.client(), events.append), "app:1", refs))
    assert result.status == "created"
    sources = [fake.manifests[r.repository]["1"] for r in refs]
    blobs = {b.digest: b.size for m in sources for b in m.blobs()}
    copied = {e.digest: e.size for e in events if isinstance(e, Copied)}
    assert copied == blobs
    assert fake.count("mount") == fake.count("copy") == len(blobs)
    for digest in blobs:  # each copy right after its refused mount
        i = fake.calls.index(("mount", "app", digest))
        assert ("copy", "app", digest) in fake.calls[i + 1:]
    assert not any(isinstance(e, Mounted) for e in events)


def test_verify_heads_every_tag_and_child() -> None:
    fake = FakeRegistry()
    refs = _images(fake, "verify")
    result = _run(lambda: _publish(Engine(fake.client()), "app:1", refs, extra_tags=["latest"],
                                   options=PublishOptions(verify=True)))
    assert result.verified
    last = fake.calls[-4:]
    children = {fake.manifests[r.repository]["1"].digest for r in refs}
    assert sorted(last) == sorted([("HEAD", "app", "1"), ("HEAD", "app", "latest"),
                                   *(("HEAD", "app", d) for d in children)])


# ------------------------------------------------------------------ index sources


def test_an_index_source_is_flattened_images_then_attestations() -> None:
    fake = FakeRegistry()
    amd = build_attested_index(AMD64, "idx")
    arm = build_attested_index(ARM64, "idx")
    fake.add_index("src", "amd64", amd)
    fake.add_index("src", "arm64", arm)
    engine = Engine(fake.client())

    async def main() -> tuple[list[Source], Any]:
        sources = [await engine.resolve(_ref(f"src:{t}")) for t in ("amd64", "arm64")]
        children = [c for s in sources for c in s.entries]
        opts = PublishOptions(media_type="oci")
        return sources, await engine.publish(_ref("app:1"), children, options=opts)

    sources, result = _run(main)
    for source, item in zip(sources, (amd, arm), strict=True):
        assert source.is_index
        assert source.platform is None
        assert [c.source.manifest.digest for c in source.entries] == [
            item.image.manifest.digest, item.attestation.manifest.digest]
        assert source.entries[1].attestation_for == item.image.manifest.digest
        assert source.entries[0].descriptor == json.dumps(
            json.loads(item.index.raw)["manifests"][0], separators=(",", ":")).encode()
    assert result.status == "created"
    doc = json.loads(fake.manifests["app"]["1"].raw)
    assert [e["digest"] for e in doc["manifests"]] == [
        amd.image.manifest.digest, amd.attestation.manifest.digest,
        arm.image.manifest.digest, arm.attestation.manifest.digest]
    # Children of an index are read by digest; no config is fetched (the index says the
    # platform).
    assert fake.count("GET blob") == 0
    assert fake.count("GET") == 2 + 4


# ------------------------------------------------------------------ building blocks


def test_once_map_runs_work_once_per_key_and_remembers_a_failure() -> None:
    runs: list[str] = []
    once: OnceMap[str] = OnceMap()

    async def work(key: str) -> str:
        runs.append(key)
        await anyio.lowlevel.checkpoint()
        if key == "bad":
            raise ValueError(key)
        return key.upper()

    async def main() -> tuple[list[str], list[str]]:
        got: list[str] = []
        failed: list[str] = []

        async def get(key: str) -> None:
            try:
                got.append(await once.get(key, lambda: work(key)))
            except ValueError as exc:
                failed.append(str(exc))

        async with anyio.create_task_group() as tg:
            for key in ("a", "a", "b", "bad", "a", "bad"):
                tg.start_soon(get, key)
        await get("bad")
        return got, failed

    got, failed = _run(main)
    assert sorted(got) == ["A", "A", "A", "B"]
    assert failed == ["bad", "bad", "bad"]
    assert sorted(runs) == ["a", "b", "bad"]


def test_run_all_raises_the_first_error_itself_and_cancels_the_rest() -> None:
    finished: list[str] = []
    never = anyio.Event()

    async def fails() -> None:
        raise NotFoundError("gone", status=404, method="GET", url="http://x/")

    async def waits() -> None:
        await never.wait()
        finished.append("waits")

    async def main() -> None:
        await run_all(waits, fails)

    with pytest.raises(NotFoundError, match=r"^gone: registry answered 404$"):
        _run(main)
    assert finished == []


def test_a_warm_cache_turns_source_reads_into_one_head_each(tmp_path: Path) -> None:
    """Second run with the on-disk cache: each tag is HEADed (still there? same digest?) and
    nothing else is read: no manifest GET, no config GET."""
    fake = FakeRegistry()
    refs = _images(fake, "cache")
    cold = FactCache(tmp_path / "facts")
    first = _run(lambda: _publish(Engine(fake.client(), cache=cold), "app:1", refs))
    cold.flush()
    fake.calls.clear()
    warm = FactCache(tmp_path / "facts")
    again = _run(lambda: _publish(Engine(fake.client(), cache=warm), "app:1", refs))
    assert again.status == "unchanged"
    assert again.digest == first.digest
    reads = sorted(c for c in fake.calls if c[0] != "HEAD+push")
    assert reads == sorted(("HEAD", r.repository, "1") for r in refs)


def test_a_cached_tag_that_moved_is_read_again(tmp_path: Path) -> None:
    """The HEAD shows another digest than the cached one: that manifest (and its config) is
    read, never the cached bytes."""
    fake = FakeRegistry()
    [ref] = _images(fake, "before", (AMD64,))
    cache = FactCache(tmp_path / "facts")
    engine = Engine(fake.client(), cache=cache)
    _run(lambda: engine.resolve(ref))
    moved = fake.add_image(ref.repository, "1", build_image(AMD64, "after"))
    fake.calls.clear()
    source = _run(lambda: Engine(fake.client(), cache=cache).resolve(ref))
    assert source.manifest == moved
    assert [c[0] for c in fake.calls] == ["HEAD", "GET", "GET blob"]


# ------------------------------------------------------------------ units of work (ops.publish)


class _Totals:
    """The two things ops.publish reads from a transport: totals and per-registry counts."""

    def __init__(self) -> None:
        self.total = RequestStats()

    def registry_stats(self) -> dict[str, dict[str, int]]:
        return {}


def _unit_plan(tmp_path: Path, refs: list[Reference],
               documents: list[tuple[str, list[str]]]) -> list[PlanList]:
    """manifest-tool documents ``(target, extra tags)``, each with every one of ``refs``."""
    docs = []
    for target, tags in documents:
        lines = [f"image: {HOST}/{target}"]
        if tags:
            lines.append(f"tags: [{', '.join(tags)}]")
        lines += ["manifests:", *(f"  - image: {r}" for r in refs)]
        docs.append("\n".join(lines))
    path = tmp_path / "plan.yaml"
    path.write_text("\n---\n".join(docs) + "\n")
    return load(path)


def test_identical_lists_are_published_once_with_every_tag(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.transport = _Totals()  # type: ignore[attr-defined]
    refs = _images(fake, "units")
    plan = _unit_plan(tmp_path, refs, [("app:1.2.3", ["1.2"]), ("app:latest", ["1"])])
    events: list[Event] = []
    report = _run(lambda: publish(Engine(fake.client(), events.append), plan))
    first, second = report.results
    tag_puts = [d for m, r, d in fake.calls if m == "PUT" and not d.startswith("sha256:")]
    assert tag_puts[0] == "1.2.3"  # the list at the first tag, then the other tags
    assert sorted(tag_puts[1:]) == ["1", "1.2", "latest"]
    assert sorted(d for m, _, d in fake.calls if m == "HEAD+push") == [
        "1", "1.2", "1.2.3", "latest"]
    assert fake.count("PUT") == 4 + len(refs)  # children once
    assert (first.tags, second.tags) == (["1.2.3", "1.2"], ["latest", "1"])
    assert first.digest == second.digest == fake.manifests["app"]["1"].digest
    assert (first.status, second.status) == ("created", "created")
    assert (first.same_as, second.same_as) == ("", f"{HOST}/app:1.2.3")
    assert [str(e.target) for e in events if isinstance(e, Finished)] == [
        f"{HOST}/app:1.2.3", f"{HOST}/app:latest"]

    # Again, one tag of the second list moved away: only it is PUT; statuses per list.
    fake.manifests["app"]["1"] = fake.manifests["app-amd64"]["1"]
    fake.calls.clear()
    again = _run(lambda: publish(Engine(fake.client()), plan))
    assert [r.status for r in again.results] == ["unchanged", "updated"]
    assert [(m, d) for m, _, d in fake.calls if m in ("PUT", "mount", "copy")] == [("PUT", "1")]

    # --dry-run: the first list shows the unit's mounts and pushes and its own tags; the
    # second only its own tags.
    fresh = FakeRegistry()
    fresh.transport = _Totals()  # type: ignore[attr-defined]
    refs = _images(fresh, "units")
    dry = _run(lambda: publish(Engine(fresh.client()), plan,
                               options=PublishOptions(dry_run=True)))
    a, b = dry.results
    digest = a.digest
    assert a.actions[-2:] == [f"put {HOST}/app:1.2.3 -> {digest} (new tag)",
                              f"put {HOST}/app:1.2 -> {digest} (new tag)"]
    assert sum(x.startswith("push child ") for x in a.actions) == len(refs)
    assert b.actions == [f"put {HOST}/app:latest -> {digest} (new tag)",
                         f"put {HOST}/app:1 -> {digest} (new tag)"]


def test_a_unit_stopped_in_flight_reports_every_list_of_it(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.transport = _Totals()  # type: ignore[attr-defined]
    refs = _images(fake, "stopped")
    plan = _unit_plan(tmp_path, refs, [("app:1", []), ("app:2", ["two"])])
    stop = StopRequest()
    put = fake.put_manifest

    async def stopping_put(ref: Reference, manifest: Manifest, *, built: bool = False) -> str:
        if ref.reference == "1" and ref.repository == "app":
            stop.stop("SIGTERM")  # as the signal handler does, while the unit is in flight
            await anyio.lowlevel.checkpoint()
        return await put(ref, manifest, built=built)

    fake.put_manifest = stopping_put  # type: ignore[method-assign]
    report = _run(lambda: publish(Engine(fake.client()), plan, stop=stop))
    assert report.interrupted == "SIGTERM"
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert [r.tags for r in report.results] == [["1"], ["2", "two"]]
    for r in report.results:
        assert r.error is not None
        assert "while it was being published, before any of its tags moved" in \
            r.error.one_line()
    assert report.not_published == 2
    assert "1" not in fake.manifests.get("app", {})
