"""Unit tests of the cross-registry blob rule (:meth:`manyfest.engine.Engine.ensure_blob`)
against an in-memory pair of registries, and of the chunked-upload helpers of the client.

:class:`Registries` has the :class:`~manyfest.registry.RegistryClient` calls the engine makes,
keyed by (registry, repository), and behaves as Distribution does where the engine depends on
it: a mount answers 201 only when the source repository of the *same* registry holds the blob
(a mount naming another registry's repository finds nothing), a manifest PUT is refused
while a blob it names is missing. Every call is recorded with both registries, so the tests
check that a blob crosses once per target registry and that no mount crosses registries.
Images are of real sizes (``tests.imagewriter``: 12 layers, 6-10 KiB configs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import anyio
import pytest

from manyfest import reference
from manyfest.content import Manifest
from manyfest.engine import Child, Engine, PublishOptions, name_registry
from manyfest.errors import (
    AuthenticationError,
    AuthorizationError,
    DigestMismatchError,
    ErrorDetail,
    ManifestRejectedError,
    NotFoundError,
)
from manyfest.events import Copied, Event, Mounted
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.registry.client import MAX_CHUNK, UPLOAD_CHUNK, ManifestHead, range_end
from manyfest.transport import Transport
from tests.imagewriter import AttestedIndex, Image, build_attested_index, build_image

BUILD = "127.0.0.1:5001"
"""The source registry (where builds go)."""
HUB = "127.0.0.1:5002"
MIRROR = "127.0.0.1:5003"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


@dataclass
class Call:
    """One call: method, the registry and repository it went to, the digest or reference,
    and for mounts and copies where the bytes came from (``registry/repository``)."""

    method: str
    registry: str
    repository: str
    what: str
    origin: str = ""
    held: bool = False
    """A copy of bytes the engine held (a config read for its platform): no source read."""


@dataclass
class Registries:
    """Several in-memory registries behind one client interface."""

    manifests: dict[tuple[str, str], dict[str, Manifest]] = field(default_factory=dict)
    blobs: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    mount_refused: set[str] = field(default_factory=set)
    """Registries whose mounts answer 202."""
    copy_refused: dict[tuple[str, str], Exception] = field(default_factory=dict)
    """(registry, repository) whose uploads fail with this error."""

    def add_image(self, registry: str, repository: str, tag: str, image: Image) -> Manifest:
        repo = self.blobs.setdefault((registry, repository), {})
        for digest, data in image.blobs:
            repo[digest] = data
        self._store(registry, repository, image.manifest, tag)
        return image.manifest

    def add_index(self, registry: str, repository: str, tag: str, item: AttestedIndex) -> None:
        """Store an attested index, its image and attestation, as buildx pushes them."""
        for image in (item.image, item.attestation):
            self.add_image(registry, repository, image.manifest.digest, image)
        self._store(registry, repository, item.index, tag)

    def _store(self, registry: str, repository: str, manifest: Manifest, tag: str) -> None:
        repo = self.manifests.setdefault((registry, repository), {})
        repo[manifest.digest] = manifest
        repo[tag] = manifest

    def client(self) -> RegistryClient:
        return cast(RegistryClient, self)

    def of(self, method: str, registry: str | None = None) -> list[Call]:
        return [c for c in self.calls
                if c.method == method and registry in (None, c.registry)]

    async def head_manifest(self, ref: Reference, *, push: bool = False) -> ManifestHead | None:
        self.calls.append(Call("HEAD", ref.registry, ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        found = self.manifests.get((ref.registry, ref.repository), {}).get(ref.reference)
        return ManifestHead(found.digest, found.size, found.media_type) if found else None

    async def get_manifest(self, ref: Reference) -> Manifest:
        self.calls.append(Call("GET", ref.registry, ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        found = self.manifests.get((ref.registry, ref.repository), {}).get(ref.reference)
        if found is None:
            raise NotFoundError(f"get manifest {ref}", status=404, method="GET",
                                url=f"http://{ref.registry}/v2/{ref.repository}/manifests/x")
        return found

    async def get_blob(self, ref: Reference, digest: str) -> bytes:
        self.calls.append(Call("GET blob", ref.registry, ref.repository, digest))
        await anyio.lowlevel.checkpoint()
        return self.blobs[(ref.registry, ref.repository)][digest]

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        self.calls.append(Call("HEAD blob", ref.registry, ref.repository, digest))
        await anyio.lowlevel.checkpoint()
        return digest in self.blobs.get((ref.registry, ref.repository), {})

    async def mount_blob(self, target: Reference, digest: str, source: Reference) -> bool:
        # As Distribution: `from` names a repository of *this* registry.
        self.calls.append(Call("mount", target.registry, target.repository, digest,
                               f"{target.registry}/{source.repository}"))
        await anyio.lowlevel.checkpoint()
        data = self.blobs.get((target.registry, source.repository), {}).get(digest)
        if data is None or target.registry in self.mount_refused:
            return False
        self.blobs.setdefault((target.registry, target.repository), {})[digest] = data
        return True

    async def copy_blob_unless_present(self, source: Reference, target: Reference,
                                       digest: str, size: int | None = None, *,
                                       data: bytes | None = None) -> int | None:
        # The upload's POST with ?mount=<digest>&from=<target repository>: 201 when that
        # repository has the blob (a registry that does not mount answers 202 anyway).
        self.calls.append(Call("probe", target.registry, target.repository, digest))
        await anyio.lowlevel.checkpoint()
        there = digest in self.blobs.get((target.registry, target.repository), {})
        if there and target.registry not in self.mount_refused:
            return None
        return await self.copy_blob(source, target, digest, size, data=data)

    async def copy_blob(self, source: Reference, target: Reference, digest: str,
                        size: int | None = None, *, data: bytes | None = None) -> int:
        self.calls.append(Call("copy", target.registry, target.repository, digest,
                               f"{source.registry}/{source.repository}", data is not None))
        await anyio.lowlevel.checkpoint()
        if data is not None:
            # verified bytes the engine read from the source earlier
            assert data == self.blobs[(source.registry, source.repository)][digest]
        refused = self.copy_refused.get((target.registry, target.repository))
        if refused is not None:
            raise refused
        data = self.blobs.get((source.registry, source.repository), {}).get(digest)
        if data is None:
            raise NotFoundError(
                f"get blob {source.name}@{digest}", status=404, method="GET",
                url=f"http://{source.registry}/v2/{source.repository}/blobs/{digest}",
                errors=(ErrorDetail("BLOB_UNKNOWN", "blob unknown"),))
        assert size in (None, len(data))
        self.blobs.setdefault((target.registry, target.repository), {})[digest] = data
        return len(data)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        self.calls.append(Call("PUT", ref.registry, ref.repository, ref.reference))
        await anyio.lowlevel.checkpoint()
        key = (ref.registry, ref.repository)
        if manifest.is_index:
            present = self.manifests.get(key, {})
            missing = [d.digest for d in manifest.index().manifests if d.digest not in present]
        else:
            there = self.blobs.get(key, {})
            missing = [b.digest for b in manifest.blobs() if b.digest not in there]
        if missing:
            raise ManifestRejectedError(
                f"push manifest {ref}", status=400, method="PUT", url=f"http://{ref.registry}/",
                errors=(ErrorDetail("MANIFEST_BLOB_UNKNOWN_BY_FAKE", missing[0]),))
        self._store(ref.registry, ref.repository, manifest, ref.reference)
        return manifest.digest


def _ref(registry: str, text: str) -> Reference:
    return reference.parse(f"{registry}/{text}")


def _seed(regs: Registries, seed: str = "x", tag: str = "1") -> tuple[list[Reference], set[str]]:
    """Two images on BUILD; their references and every distinct blob digest."""
    refs, blobs = [], set()
    for p in (AMD64, ARM64):
        image = build_image(p, seed)
        regs.add_image(BUILD, f"app-{p.architecture}", tag, image)
        refs.append(_ref(BUILD, f"app-{p.architecture}:{tag}"))
        blobs |= {d for d, _ in image.blobs}
    return refs, blobs


def _configs(regs: Registries, refs: list[Reference]) -> set[str]:
    return {regs.manifests[(r.registry, r.repository)][r.reference].image().config.digest
            for r in refs}


async def _publish_all(engine: Engine, refs: list[Reference],
                       targets: list[Reference]) -> list[str]:
    children = []
    for ref in refs:
        source = await engine.resolve(ref)
        children.append(Child(source, source.platform))
    results = {}

    async def one(target: Reference) -> None:
        results[str(target)] = await engine.publish(target, children)

    async with anyio.create_task_group() as tg:
        for t in targets:
            tg.start_soon(one, t)
    for r in results.values():
        assert r.error is None, r.error
    return [results[str(t)].status for t in targets]


def test_each_blob_crosses_once_per_target_registry_then_mounts_inside_it() -> None:
    regs = Registries()
    refs, blobs = _seed(regs)
    configs = _configs(regs, refs)
    events: list[Event] = []
    engine = Engine(regs.client(), events.append)
    targets = [_ref(HUB, f"team/app{i}:1") for i in range(4)] + [
        _ref(MIRROR, f"mirror/app{i}:1") for i in range(3)]
    statuses = anyio.run(_publish_all, engine, refs, targets)
    assert statuses == ["created"] * 7
    for registry, repos in ((HUB, 4), (MIRROR, 3)):
        copies = regs.of("copy", registry)
        # once per target registry, each from its source repository on BUILD
        assert sorted(c.what for c in copies) == sorted(blobs)
        assert {c.origin.split("/")[0] for c in copies} == {BUILD}
        # the configs from the bytes read for their platforms, the layers streamed
        assert {c.what for c in copies if c.held} == configs
        mounts = regs.of("mount", registry)
        assert len(mounts) == len(blobs) * (repos - 1)
        # every mount stays inside its registry, from the repository the bytes went to
        for m in mounts:
            [home] = [c for c in copies if c.what == m.what]
            assert m.origin == f"{registry}/{home.repository}"
            assert m.repository != home.repository
        # no HEAD: the upload's POST asks the first repository whether it has the blob
        assert not regs.of("HEAD blob", registry)
        probes = regs.of("probe", registry)
        assert sorted((c.repository, c.what) for c in probes) == sorted(
            (c.repository, c.what) for c in copies)
        for i in range(repos):
            repo = f"team/app{i}" if registry == HUB else f"mirror/app{i}"
            assert set(regs.blobs[(registry, repo)]) == blobs
    assert not regs.of("mount", BUILD)
    assert not regs.of("copy", BUILD)
    # each config read once from BUILD (its platform), however many registries it goes to
    assert sorted(c.what for c in regs.of("GET blob", BUILD)) == sorted(configs)
    assert sum(isinstance(e, Copied) for e in events) == 2 * len(blobs)
    assert sum(isinstance(e, Mounted) for e in events) == 5 * len(blobs)


def test_children_keep_their_exact_bytes_across_registries() -> None:
    regs = Registries()
    refs, _ = _seed(regs)
    engine = Engine(regs.client())
    anyio.run(_publish_all, engine, refs, [_ref(HUB, "app:1")])
    for ref in refs:
        src = regs.manifests[(BUILD, ref.repository)]["1"]
        there = regs.manifests[(HUB, "app")][src.digest]
        assert there.raw == src.raw


def test_an_index_source_on_another_registry_is_flattened_and_copied() -> None:
    regs = Registries()
    item = build_attested_index(AMD64, "idx")
    regs.add_index(BUILD, "app", "1", item)
    engine = Engine(regs.client())

    async def go() -> str:
        source = await engine.resolve(_ref(BUILD, "app:1"))
        result = await engine.publish(_ref(HUB, "rel/app:1"), list(source.entries),
                                      options=PublishOptions(media_type="oci"))
        assert result.error is None, result.error
        return result.digest

    anyio.run(go)
    for image in (item.image, item.attestation):
        assert regs.manifests[(HUB, "rel/app")][image.manifest.digest].raw == image.manifest.raw
    assert {c.origin for c in regs.of("copy", HUB)} == {f"{BUILD}/app"}


def test_a_blob_already_in_the_first_repository_is_not_sent_again() -> None:
    regs = Registries()
    refs, blobs = _seed(regs)
    engine = Engine(regs.client())
    anyio.run(_publish_all, engine, refs, [_ref(HUB, "app:1")])
    again = Engine(regs.client())
    regs.calls.clear()
    anyio.run(_publish_all, again, refs, [_ref(HUB, "app:2")])
    assert not regs.of("copy")
    assert not regs.of("HEAD blob")
    assert sorted(c.what for c in regs.of("probe", HUB)) == sorted(blobs)


def test_held_config_bytes_are_let_go_with_their_source() -> None:
    regs = Registries()
    refs, _ = _seed(regs)
    configs = _configs(regs, refs)
    engine = Engine(regs.client())

    async def go() -> None:
        sources = [await engine.resolve(r) for r in refs]
        assert {d for _, d in engine._held} == configs
        for source in sources:
            engine.forget(source)
        assert not engine._held
        assert engine._held_bytes == 0
        regs.calls.clear()
        result = await engine.publish(_ref(HUB, "app:1"),
                                      [Child(s, s.platform) for s in sources])
        assert result.error is None, result.error

    anyio.run(go)
    # crossing after that reads each config from the source again, once (for the copy
    # and its platform both), and uploads the bytes read
    assert sorted(c.what for c in regs.of("GET blob", BUILD)) == sorted(configs)
    assert {c.what for c in regs.of("copy", HUB) if c.held} == configs


def test_a_config_is_read_once_for_a_copy_and_for_the_platform_of_another_source() -> None:
    # An index source's child and an image source share an image (so its config): the
    # index's list crosses to another registry first, the image is resolved after. The
    # config is read once: by the crossing, for its platform too, and the image's platform
    # comes from that read (before, the crossing streamed it and the platform read it
    # again, or the other way round when the platform read was still in flight).
    regs = Registries()
    item = build_attested_index(AMD64, "shared")
    regs.add_index(BUILD, "multi", "1", item)
    regs.add_image(BUILD, "app-amd64", "1", item.image)
    config = item.image.manifest.image().config.digest
    engine = Engine(regs.client())

    async def go() -> Platform | None:
        index = await engine.resolve(_ref(BUILD, "multi:1"))
        result = await engine.publish(_ref(HUB, "rel/from-index:1"), list(index.entries),
                                      options=PublishOptions(media_type="oci"))
        assert result.error is None, result.error
        image = await engine.resolve(_ref(BUILD, "app-amd64:1"))
        return image.platform

    assert anyio.run(go) == AMD64
    assert [c.what for c in regs.of("GET blob", BUILD)].count(config) == 1
    [copy] = [c for c in regs.of("copy", HUB) if c.what == config]
    assert copy.held
    assert copy.origin == f"{BUILD}/multi"
    assert regs.blobs[(HUB, "rel/from-index")][config] == dict(item.image.blobs)[config]


def test_a_registry_that_does_not_mount_gets_a_head_before_a_first_crossing() -> None:
    regs = Registries(mount_refused={HUB})
    refs, _ = _seed(regs)
    engine = Engine(regs.client())
    # a:1 then b:1: b's mounts from a answer 202 although a holds every blob
    for name in ("a:1", "b:1"):
        anyio.run(_publish_all, engine, refs, [_ref(HUB, name)])
    assert not regs.of("HEAD blob")
    more, more_blobs = _seed(regs, "y", "2")
    new = more_blobs - set(regs.blobs[(HUB, "a")])  # not crossed yet in this run
    more_configs = _configs(regs, more)
    assert more_configs < new
    for digest in new:  # c already has them (a run before this one put them there)
        regs.blobs.setdefault((HUB, "c"), {})[digest] = b"x"
    regs.calls.clear()
    anyio.run(_publish_all, engine, more, [_ref(HUB, "c:2")])
    # the layers looked up first and not sent; the configs (held, small) uploaded from memory
    assert sorted(c.what for c in regs.of("HEAD blob", HUB)) == sorted(new - more_configs)
    copied = {c.what for c in regs.of("copy", HUB) if c.what in new}
    assert copied == more_configs
    assert all(c.held for c in regs.of("copy", HUB) if c.what in more_configs)


def test_a_refused_mount_inside_the_target_registry_streams_again() -> None:
    regs = Registries(mount_refused={HUB})
    refs, blobs = _seed(regs)
    engine = Engine(regs.client())
    anyio.run(_publish_all, engine, refs, [_ref(HUB, "a:1"), _ref(HUB, "b:1")])
    assert sorted(c.what for c in regs.of("copy", HUB)) == sorted(list(blobs) * 2)
    assert len(regs.of("mount", HUB)) == len(blobs)  # tried once per blob, refused


def test_a_target_side_refusal_of_the_first_repository_leaves_the_others_to_copy() -> None:
    regs = Registries()
    refs, blobs = _seed(regs)
    regs.copy_refused[(HUB, "denied")] = AuthorizationError(
        f"upload to {HUB}/denied", status=403, method="POST",
        url=f"http://{HUB}/v2/denied/blobs/uploads/")
    engine = Engine(regs.client())

    async def go() -> tuple[str, str]:
        children = []
        for ref in refs:
            source = await engine.resolve(ref)
            children.append(Child(source, source.platform))
        first = await engine.publish(_ref(HUB, "denied:1"), children)
        second = await engine.publish(_ref(HUB, "ok:1"), children)
        assert first.error is not None
        assert first.error.message.startswith(f"target registry {HUB}: upload to ")
        assert second.error is None, second.error
        return first.status, second.status

    assert anyio.run(go) == ("failed", "created")
    assert set(regs.blobs[(HUB, "ok")]) == blobs


def test_a_source_side_failure_is_not_tried_again_for_other_repositories() -> None:
    regs = Registries()
    refs, _ = _seed(regs)
    engine = Engine(regs.client())

    async def go() -> list[str]:
        children = []
        for ref in refs:
            source = await engine.resolve(ref)
            children.append(Child(source, source.platform))
        gone = children[0].source.manifest.blobs()[-1].digest
        del regs.blobs[(BUILD, refs[0].repository)][gone]
        out = []
        for name in ("a:1", "b:1"):
            result = await engine.publish(_ref(HUB, name), children)
            assert result.error is not None
            out.append(result.error.message)
        assert sum(c.what == gone for c in regs.of("copy", HUB)) == 1
        return out

    first, second = anyio.run(go)
    assert first == second
    assert first.startswith(f"source registry {BUILD}: get blob {BUILD}/app-amd64@sha256:")


def test_a_source_on_the_target_registry_still_mounts_from_its_repository() -> None:
    regs = Registries()
    image = build_image(AMD64, "same")
    regs.add_image(HUB, "build/app", "1", image)
    engine = Engine(regs.client())
    anyio.run(_publish_all, engine, [_ref(HUB, "build/app:1")], [_ref(HUB, "rel/app:1")])
    assert not regs.of("copy")
    assert not regs.of("HEAD blob")
    assert {c.origin for c in regs.of("mount")} == {f"{HUB}/build/app"}


def test_dry_run_says_copy_for_blobs_from_another_registry() -> None:
    regs = Registries()
    refs, _ = _seed(regs)
    engine = Engine(regs.client())

    async def go() -> list[str]:
        children = []
        for ref in refs:
            source = await engine.resolve(ref)
            children.append(Child(source, source.platform))
        result = await engine.publish(_ref(HUB, "app:1"), children,
                                      options=PublishOptions(dry_run=True))
        return result.actions

    actions = anyio.run(go)
    blob_lines = [a for a in actions if a.startswith(("copy ", "mount "))]
    assert blob_lines
    assert all(a.startswith("copy sha256:") for a in blob_lines)
    assert all(a.endswith((f"from {BUILD}/app-amd64", f"from {BUILD}/app-arm64"))
               for a in blob_lines)


@pytest.mark.parametrize(("error", "side", "registry"), [
    (AuthenticationError(f"get blob {BUILD}/app@sha256:ab", status=401, method="GET",
                         url=f"http://{BUILD}/v2/app/blobs/sha256:ab"), "source", BUILD),
    (AuthenticationError(f"start upload of sha256:ab to {HUB}/app", status=401,
                         method="POST", url=f"http://{HUB}/v2/app/blobs/uploads/"),
     "target", HUB),
    (DigestMismatchError(f"get blob {BUILD}/app@sha256:ab: content has digest sha256:cd"),
     "source", BUILD),
    (AuthorizationError(f"upload sha256:ab to {HUB}/app", status=403, method="PUT",
                        url="http://auth.example/token"), "target", HUB),
])
def test_errors_of_a_cross_registry_copy_name_the_registry_that_failed(
        error: AuthenticationError, side: str, registry: str) -> None:
    source, target = _ref(BUILD, "app:1"), _ref(HUB, "app:1")
    hint = error.hint
    named = name_registry(error, source, target)
    assert named is error
    assert str(named).startswith(f"{side} registry {registry}: ")
    assert named.hint == hint
    assert name_registry(named, source, target).message == named.message  # once


def test_range_end_reads_both_spellings() -> None:
    assert range_end("0-1048575") == 1048575
    assert range_end("bytes=0-99") == 99
    assert range_end("") is None
    assert range_end("0-x") is None


def test_chunk_size_follows_the_registry() -> None:
    client = RegistryClient(cast(Transport, object()))
    assert client._chunk_for(HUB, 0) == 0  # monolithic unless asked
    assert client._chunk_for(HUB, 1 << 20) == UPLOAD_CHUNK
    assert client._chunk_for(HUB, 20 << 20) == 20 << 20
    assert client._chunk_for(HUB, MAX_CHUNK + 1) == 0  # too much to hold: monolithic
    assert client._smaller_chunks(HUB, 0)  # a 413 to a monolithic PUT
    assert client._chunk_for(HUB, 0) == UPLOAD_CHUNK
    assert client._smaller_chunks(HUB, UPLOAD_CHUNK)  # a 413 to a PATCH
    assert client._chunk_for(HUB, 0) == UPLOAD_CHUNK // 2
    assert client._chunk_for(MIRROR, 0) == 0  # per registry
