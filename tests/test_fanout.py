"""Fan-out: one list to several targets (``targets:`` in plan documents, ``publish --mirror
REGISTRY``).

Plan-level tests (parsing, validation, ``--mirror`` expansion, ``--shard`` grouping, units of
work), publish runs against an in-memory client of several registries (sources resolved once,
a failing target failing only its lists, ``--atomic`` all or none, ``--dry-run``), and lean
end-to-end runs of the CLI against three real registries (the session one for the sources
and two of this module's, one behind a quirk proxy that can refuse writes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from aiohttp import web

from manyfest.content import Manifest
from manyfest.engine import Engine, PublishOptions
from manyfest.errors import PlanError, UsageError
from manyfest.ops import shard as shards
from manyfest.ops.plan import PlanList, fan_out, mirror, parse_documents
from manyfest.ops.publish import plan_units, publish, result_json
from manyfest.ops.since import plan_key
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.registry.client import ManifestHead
from manyfest.transport import Settings
from tests.helpers import (
    head_digest,
    manyfest,
    seed_walkthrough,
    walkthrough_blobs,
    walkthrough_names,
)
from tests.imagewriter import build_image
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer
from tests.test_engine import FakeRegistry, _Totals

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")

PLAN = """\
image: a.io/app:1.0
tags: [latest]
targets: [b.io/app:1.0, c.io/org/app:1.0]
manifests:
  - image: a.io/app-amd64:1.0
  - image: a.io/app-arm64:1.0
"""

MATRIX = """\
matrix: {version: ["1.0", "1.1"]}
image: a.io/app:{version}
targets: ["b.io/app:{version}", "c.io/org/app:v{version}"]
aliases: {version: version}
platforms: [linux/amd64]
template: a.io/app-{arch}:{version}
"""


def _error(text: str) -> str:
    with pytest.raises(PlanError) as info:
        parse_documents(text, "plan.yaml")
    assert info.value.exit_code == 2
    return info.value.one_line()


def _targets(plan: list[PlanList]) -> list[tuple[str, list[str], str]]:
    return [(str(p.target), p.tags, str(p.mirror_of or "")) for p in plan]


# --- targets: in plan documents -------------------------------------------------------------

def test_each_target_is_a_list_after_its_first_with_the_same_entries_and_tags() -> None:
    plan = parse_documents(PLAN)
    assert _targets(plan) == [
        ("a.io/app:1.0", ["1.0", "latest"], ""),
        ("b.io/app:1.0", ["1.0", "latest"], "a.io/app:1.0"),
        ("c.io/org/app:1.0", ["1.0", "latest"], "a.io/app:1.0"),
    ]
    first = plan[0]
    for other in plan[1:]:
        assert other.entries == first.entries
        assert other.document == 1
        assert other.targets == ()
        assert first.targets == ()


def test_matrix_targets_are_templates_and_get_the_aliases_of_their_list() -> None:
    plan = parse_documents(MATRIX)
    assert _targets(plan) == [
        ("a.io/app:1.0", ["1.0"], ""),
        ("b.io/app:1.0", ["1.0"], "a.io/app:1.0"),
        ("c.io/org/app:v1.0", ["v1.0"], "a.io/app:1.0"),
        ("a.io/app:1.1", ["1.1", "1", "latest"], ""),
        ("b.io/app:1.1", ["1.1", "1", "latest"], "a.io/app:1.1"),
        ("c.io/org/app:v1.1", ["v1.1", "1", "latest"], "a.io/app:1.1"),
    ]
    assert [str(e.ref) for e in plan[4].entries] == ["a.io/app-amd64:1.1"]


def test_a_target_whose_tag_is_one_of_the_extra_tags_has_it_once() -> None:
    plan = parse_documents(PLAN.replace("c.io/org/app:1.0", "c.io/org/app:latest"))
    assert _targets(plan)[2] == ("c.io/org/app:latest", ["latest"], "a.io/app:1.0")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("c.io/org/app:1.0", "b.io/app:1.0",
     "plan.yaml: document 1: targets[1]: b.io/app:1.0 is also targets[0]; give each target "
     "once"),
    ("c.io/org/app:1.0", "a.io:80/app:1.0",
     "plan.yaml: document 1: targets[1]: a.io:80/app:1.0 is the image itself; targets name "
     "the other places the list goes; leave image out"),
    ("c.io/org/app:1.0", "c.io/org/app",
     "plan.yaml: document 1: targets[1]: 'c.io/org/app' has no tag; write the tag: "
     "c.io/org/app:1.0 (a target is a full reference registry/repository:tag)"),
    ("c.io/org/app:1.0", "c.io/Org/app:1.0",
     "plan.yaml: document 1: targets[1]: invalid reference format: 'c.io/Org/app:1.0': repository "
     "name must be lowercase; each entry of targets is another full reference "
     "registry/repository:tag that gets the same list and the same tags (docs/plan.md)"),
    ("c.io/org/app:1.0", "c.io/org/app@sha256:" + "a" * 64,
     "plan.yaml: document 1: targets[1]: the target 'c.io/org/app@sha256:" + "a" * 64
     + "' must be a tag, not a digest; each entry of targets is another full reference "
     "registry/repository:tag that gets the same list and the same tags (docs/plan.md)"),
    ("c.io/org/app:1.0", "a.io/app:latest",
     "plan.yaml: document 1: targets: a.io/app:latest is also a tag of document 1; each tag "
     "can be written by one list only"),
])
def test_targets_are_checked(old: str, new: str, message: str) -> None:
    assert _error(PLAN.replace(old, new)) == message


def test_a_target_another_document_writes_is_refused_naming_both() -> None:
    other = "---\nimage: b.io/app:1.0\nmanifests: [{image: a.io/app-amd64:1.0}]\n"
    assert _error(PLAN + other) == (
        "plan.yaml: document 2: image: b.io/app:1.0 is also a target of document 1; each "
        "tag can be written by one list only"
    )


def test_matrix_targets_with_an_unknown_placeholder_or_no_matrix_key_are_refused() -> None:
    assert _error(MATRIX.replace("b.io/app:{version}", "b.io/app:{versoin}")) == (
        "plan.yaml: document 1: targets[0]: unknown placeholder {versoin}; placeholders "
        "defined for targets[0]: {version}, {patch}, {major}, {minor}"
    )
    assert _error(MATRIX.replace("b.io/app:{version}", "b.io/app:fixed")) == (
        "plan.yaml: document 1 (version='1.1'): targets: b.io/app:fixed is also a target of "
        "document 1 (version='1.0'); each tag can be written by one list only"
    )


def test_targets_of_the_wrong_shape_and_a_subject_naming_one_repository() -> None:
    assert _error(PLAN.replace("[b.io/app:1.0, c.io/org/app:1.0]", "b.io/app:1.0")) == (
        "plan.yaml: document 1: targets: expected a list of strings, got 'b.io/app:1.0'; fix "
        "the plan file (manifest-tool's YAML spec: image, tags, manifests)"
    )
    assert _error(PLAN + "subject: a.io/app@sha256:" + "b" * 64 + "\n") == (
        "plan.yaml: document 1: subject: 'a.io/app@sha256:" + "b" * 64 + "' names one "
        "repository, and the list has other targets; write the subject as @DIGEST or :TAG: "
        "it is then looked up in each target's repository"
    )
    plan = parse_documents(PLAN + "subject: ':sbom'\n")
    assert {p.subject for p in plan} == {":sbom"}


# --- --mirror REGISTRY -----------------------------------------------------------------------

def test_mirror_adds_each_first_target_on_each_registry_after_the_documents_targets() -> None:
    doc2 = "---\nimage: a.io/tool:2\nmanifests: [{image: a.io/tool-amd64:2}]\n"
    plan = mirror(parse_documents(PLAN + doc2), ["m.io", "127.0.0.1:5000"])
    assert _targets(plan) == [
        ("a.io/app:1.0", ["1.0", "latest"], ""),
        ("b.io/app:1.0", ["1.0", "latest"], "a.io/app:1.0"),
        ("c.io/org/app:1.0", ["1.0", "latest"], "a.io/app:1.0"),
        ("m.io/app:1.0", ["1.0", "latest"], "a.io/app:1.0"),
        ("127.0.0.1:5000/app:1.0", ["1.0", "latest"], "a.io/app:1.0"),
        ("a.io/tool:2", ["2"], ""),
        ("m.io/tool:2", ["2"], "a.io/tool:2"),
        ("127.0.0.1:5000/tool:2", ["2"], "a.io/tool:2"),
    ]
    assert mirror(plan[:1], []) == plan[:1]


@pytest.mark.parametrize(("registries", "message"), [
    (["ghcr.io/org"], "--mirror 'ghcr.io/org': expected a registry host[:port], not a "
     "reference"),
    (["https://ghcr.io"], "--mirror 'https://ghcr.io': expected a registry host[:port], not "
     "a reference"),
    ([""], "--mirror '': expected a registry host[:port], not a reference"),
    (["ghcr.io:"], "--mirror 'ghcr.io:': expected a registry host[:port], not a reference"),
    (["m.io", "m.io:80"], "--mirror 'm.io:80' given twice; give each registry once"),
    (["a.io"], "--mirror a.io: the registry of a.io/app:1.0 (document 1) itself; a mirror "
     "goes to the same repository path on another registry"),
    (["b.io"], "--mirror b.io: b.io/app:1.0 is also the target of b.io/app:1.0 (document 1); "
     "a mirror goes to the same repository path on another registry: leave out a registry "
     "the plan already writes to"),
])
def test_mirror_values_are_checked(registries: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        mirror(parse_documents(PLAN), registries)
    assert info.value.exit_code == 2
    text = info.value.one_line()
    assert text.startswith(message), text


def test_two_lists_mirrored_onto_one_tag_are_refused() -> None:
    two = ("image: a.io/app:1\nmanifests: [{image: a.io/x:1}]\n---\n"
           "image: b.io/app:1\nmanifests: [{image: a.io/x:1}]\n")
    with pytest.raises(UsageError) as info:
        mirror(parse_documents(two), ["m.io"])
    assert info.value.one_line().startswith(
        "--mirror m.io: m.io/app:1 is also the target of m.io/app:1 (document 1)")


def test_publish_refuses_a_mirror_that_is_not_a_registry_before_any_request(
        tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    proc = manyfest("publish", "--mirror", "ghcr.io/org/app", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "--mirror 'ghcr.io/org/app': expected a registry host[:port], not a reference; give "
        "the registry only (ghcr.io, registry.example:5000): each list goes to the same "
        "repository path there")


# --- --shard, units of work, plan keys -------------------------------------------------------

def test_shard_keeps_a_lists_targets_and_mirrors_in_one_shard() -> None:
    docs = "\n---\n".join(
        f"image: a.io/app{i}:1\ntargets: [b.io/app{i}:1, c.io/x/app{i}:1]\n"
        f"manifests: [{{image: a.io/src{i}:1}}]" for i in range(6)
    )
    plan = mirror(parse_documents(docs), ["m.io"])
    assert len(plan) == 24
    for n in (2, 3, 4, 6, 7):
        seen: list[str] = []
        for k in range(1, n + 1):
            selected = shards.select(plan, k, n)
            seen += [str(p.target) for p in selected]
            documents = {p.document for p in selected}
            # every target of a document in the same shard as its first
            assert len(selected) == 4 * len(documents)
        assert sorted(seen) == sorted(str(p.target) for p in plan)
    assert shards.groups(plan)["m.io/app3"] == "a.io/app3"


def test_shard_groups_repositories_a_fan_out_links_transitively() -> None:
    docs = ("image: a.io/one:1\ntargets: [b.io/shared:1]\nmanifests: [{image: a.io/s:1}]\n"
            "---\nimage: c.io/two:1\ntargets: [b.io/shared:2]\nmanifests: [{image: a.io/s:1}]\n"
            "---\nimage: d.io/three:1\nmanifests: [{image: a.io/s:1}]\n")
    plan = parse_documents(docs)
    groups = shards.groups(plan)
    assert groups == {"a.io/one": "a.io/one", "b.io/shared": "a.io/one",
                      "c.io/two": "a.io/one", "d.io/three": "d.io/three"}
    assert shards.assign(plan, 2) == {"a.io/one": 1, "b.io/shared": 1, "c.io/two": 1,
                                      "d.io/three": 2}
    # Without fan-out a repository is its own group: the rule is the one it was.
    plain = parse_documents(docs.replace("targets: [b.io/shared:1]\n", "").replace(
        "targets: [b.io/shared:2]\n", ""))
    assert shards.groups(plain) == {r: r for r in ("a.io/one", "c.io/two", "d.io/three")}


def test_each_target_has_its_own_plan_key() -> None:
    plan = parse_documents(PLAN)
    keys = {plan_key(p, PublishOptions()) for p in plan}
    assert len(keys) == 3


# --- publishing against an in-memory client of several registries ---------------------------

class Registries:
    """The RegistryClient calls the engine makes, dispatched to one :class:`FakeRegistry` per
    registry. A mount never crosses registries (202: the engine copies); a copy across
    registries reads the source registry's bytes (a ``GET blob`` in its calls) and writes the
    target's (a ``copy``)."""

    def __init__(self, *hosts: str) -> None:
        self.fakes = {host: FakeRegistry() for host in hosts}
        self.transport = _Totals()
        self.transport.settings = Settings()  # type: ignore[attr-defined]

    def __getitem__(self, host: str) -> FakeRegistry:
        return self.fakes[host]

    def client(self) -> RegistryClient:
        return cast(RegistryClient, self)

    async def head_manifest(self, ref: Reference, *, push: bool = False) -> ManifestHead | None:
        return await self.fakes[ref.registry].head_manifest(ref, push=push)

    async def get_manifest(self, ref: Reference) -> Manifest:
        return await self.fakes[ref.registry].get_manifest(ref)

    async def get_blob(self, ref: Reference, digest: str) -> bytes:
        return await self.fakes[ref.registry].get_blob(ref, digest)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        return await self.fakes[ref.registry].put_manifest(ref, manifest, built=built)

    async def delete_manifest(self, ref: Reference) -> bool:
        fake = self.fakes[ref.registry]
        fake.calls.append(("DELETE", ref.repository, ref.reference))
        return fake.manifests.get(ref.repository, {}).pop(ref.reference, None) is not None

    async def mount_blob(self, target: Reference, digest: str, source: Reference) -> bool:
        if source.registry != target.registry:
            self.fakes[target.registry].calls.append(("mount", target.repository, digest))
            return False
        return await self.fakes[target.registry].mount_blob(target, digest, source)

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        fake = self.fakes[ref.registry]
        fake.calls.append(("HEAD blob", ref.repository, digest))
        await anyio.lowlevel.checkpoint()
        return digest in fake.blobs.get(ref.repository, {})

    async def copy_blob(self, source: Reference, target: Reference, digest: str,
                        size: int | None = None, *, data: bytes | None = None) -> int:
        src, dst = self.fakes[source.registry], self.fakes[target.registry]
        held = data
        if held is None:
            src.calls.append(("stream blob", source.repository, digest))
        dst.calls.append(("copy", target.repository, digest))
        await anyio.lowlevel.checkpoint()
        data = src.blobs[source.repository][digest]
        assert held in (None, data)
        dst.blobs.setdefault(target.repository, {})[digest] = data
        return len(data)

    async def copy_blob_unless_present(self, source: Reference, target: Reference,
                                       digest: str, size: int | None = None, *,
                                       data: bytes | None = None) -> int | None:
        """The upload's POST asking to mount from the target repository itself: ``None``
        (201) when it has the blob, else the copy."""
        dst = self.fakes[target.registry]
        dst.calls.append(("probe", target.repository, digest))
        if digest in dst.blobs.get(target.repository, {}):
            return None
        return await self.copy_blob(source, target, digest, size, data=data)


FAILED_ERROR = (
    r"target registry {c}: push manifest {c}/{ns}/{app}@sha256:[0-9a-f]{{64}} "
    r"\(application/vnd\.docker\.distribution\.manifest\.v2\+json\): registry answered 403 "
    r"\(DENIED: "
    r"requested access to the resource is denied\); check that your account may push to "
    r"\(or pull from\) this repository"
)
"""The one-line error of a list whose target registry refuses manifest PUTs (regex)."""

SRC, B, C = "src.test:5000", "b.test:5000", "c.test:5000"


def _seeded(seed: str) -> Registries:
    regs = Registries(SRC, B, C)
    for p in (AMD64, ARM64):
        regs[SRC].add_image(f"app-{p.architecture}", "1", build_image(p, seed))
    return regs


def _fan_plan(documents: int = 1, *, first: str = SRC) -> list[PlanList]:
    docs = "\n---\n".join(
        f"image: {first}/app{i}:1\ntags: [latest]\ntargets: [{B}/app{i}:1, {C}/org/app{i}:1]\n"
        f"manifests: [{{image: {SRC}/app-amd64:1}}, {{image: {SRC}/app-arm64:1}}]"
        for i in range(documents)
    )
    return parse_documents(docs)


def _publish(regs: Registries, plan: list[PlanList], **kw: Any) -> Any:
    return anyio.run(lambda: publish(Engine(regs.client()), plan, **kw))


def test_sources_are_resolved_once_for_every_target() -> None:
    regs = _seeded("once")
    plan = _fan_plan(2)
    report = _publish(regs, plan)
    assert [r.status for r in report.results] == ["created"] * 6
    src = regs[SRC]
    # 2 sources: one manifest GET and one config GET each, whatever the number of targets
    assert src.count("GET") == 2
    assert src.count("GET blob") == 2
    assert src.count("HEAD") == 0
    assert src.count("PUT", "app-amd64") == 0
    digests = {r.digest for r in report.results}
    assert len(digests) == 1
    for host, repo in ((SRC, "app0"), (B, "app0"), (C, "org/app1")):
        for tag in ("1", "latest"):
            assert regs[host].manifests[repo][tag].digest in digests
    lines = [result_json(r) for r in report.results]
    assert ["mirror_of" in line for line in lines] == [False, True, True] * 2
    assert lines[1]["mirror_of"] == lines[2]["mirror_of"] == f"{SRC}/app0:1"
    assert lines[4]["mirror_of"] == f"{SRC}/app1:1"
    assert lines[0]["sources"] == lines[1]["sources"] == lines[2]["sources"]
    # every blob in every target repository; the children pushed once per repository
    blobs = {d for repo in ("app-amd64", "app-arm64") for d in src.blobs[repo]}
    for host, repo in ((B, "app0"), (B, "app1"), (C, "org/app0"), (C, "org/app1")):
        assert set(regs[host].blobs[repo]) == blobs
        assert regs[host].count("PUT", repo) == 2 + 2  # 2 children, the list, one more tag
    # the configs cross from the bytes read for their platforms; only layers are streamed
    copies = sum(regs[h].count("copy") for h in (B, C))
    assert src.count("stream blob") == copies - 2 * 2  # 2 configs into B and into C
    assert src.count("GET blob") == 2


def test_a_failing_target_fails_only_its_lists() -> None:
    regs = _seeded("one-fails")
    regs[C].refuse_put = {"org/app0", "org/app1"}
    report = _publish(regs, _fan_plan(2))
    assert [(str(r.target), r.status) for r in report.results] == [
        (f"{SRC}/app0:1", "created"), (f"{B}/app0:1", "created"), (f"{C}/org/app0:1", "failed"),
        (f"{SRC}/app1:1", "created"), (f"{B}/app1:1", "created"), (f"{C}/org/app1:1", "failed"),
    ]
    failed = report.results[2]
    assert failed.mirror_of == f"{SRC}/app0:1"
    assert failed.error is not None
    assert failed.error.one_line().startswith(  # its sources are on another registry
        f"target registry {C}: push manifest {C}/org/app0@sha256:")
    assert "1" not in regs[C].manifests.get("org/app0", {})
    assert report.failed == 2


def test_atomic_publishes_every_target_of_every_list_or_none() -> None:
    regs = _seeded("atomic")
    regs[C].refuse_put = {"org/app1"}
    report = _publish(regs, _fan_plan(2), options=PublishOptions(atomic=True))
    assert [r.status for r in report.results] == ["failed"] * 6
    assert report.atomic is not None
    assert report.atomic["outcome"] == "phase 1 failed"
    for host, repo in ((SRC, "app0"), (B, "app0"), (B, "app1"), (C, "org/app0")):
        tags = regs[host].manifests.get(repo, {})
        assert not {"1", "latest"} & set(tags), (host, repo)
    assert [r.mirror_of for r in report.results] == ["", f"{SRC}/app0:1", f"{SRC}/app0:1",
                                                     "", f"{SRC}/app1:1", f"{SRC}/app1:1"]
    # nothing refused: every target of every list
    ok = _seeded("atomic")
    report = _publish(ok, _fan_plan(2), options=PublishOptions(atomic=True))
    assert [r.status for r in report.results] == ["created"] * 6
    assert ok[C].manifests["org/app1"]["latest"].digest == report.results[5].digest


def test_dry_run_shows_every_target_and_writes_nothing() -> None:
    from manyfest.cli.progress import plan_lines

    regs = _seeded("dry")
    report = _publish(regs, _fan_plan(1), options=PublishOptions(dry_run=True))
    assert [r.status for r in report.results] == ["created"] * 3
    assert all(f.count("PUT") == 0 and f.count("copy") == 0 for f in regs.fakes.values())
    lines = plan_lines(report)
    digest = report.results[0].digest
    heads = [line for line in lines if not line.startswith("  ")]
    assert heads == [f"would create {SRC}/app0:1 {digest}", f"would create {B}/app0:1 {digest}",
                     f"would create {C}/org/app0:1 {digest}"]
    assert lines.count(f"  mirror of {SRC}/app0:1 (the same list and tags)") == 2
    assert f"  put {C}/org/app0:latest -> {digest} (new tag)" in lines


def test_units_stay_per_target_repository() -> None:
    """Lists with the same bytes are one unit only within one repository: the targets on
    other registries are units of their own; a target in the first one's repository (another
    tag) joins its unit and is ``same_as`` it."""
    regs = _seeded("units")
    text = (f"image: {SRC}/app:1\ntargets: [{B}/app:1, {C}/app:1, {SRC}/app:stable]\n"
            f"manifests: [{{image: {SRC}/app-amd64:1}}]\n")
    plan = parse_documents(text)

    async def built() -> dict[int, list[Any]]:
        from manyfest.engine import Child

        engine = Engine(regs.client())
        source = await engine.resolve(plan[0].entries[0].ref)
        return {i: [Child(source, source.platform)] for i in range(len(plan))}

    children = anyio.run(built)
    assert plan_units(plan, children, PublishOptions()) == [[0, 3], [1], [2]]
    report = _publish(regs, plan)
    assert [(r.status, r.same_as, r.mirror_of) for r in report.results] == [
        ("created", "", ""), ("created", "", f"{SRC}/app:1"), ("created", "", f"{SRC}/app:1"),
        ("created", f"{SRC}/app:1", f"{SRC}/app:1"),
    ]
    assert regs[SRC].manifests["app"]["stable"].digest == report.results[0].digest


def test_fan_out_of_lists_without_targets_is_the_plan() -> None:
    plan = parse_documents("image: a.io/x:1\nmanifests: [{image: a.io/y:1}]\n")
    assert fan_out(plan) == plan
    assert plan[0].mirror_of is None


# --- end to end: three real registries -------------------------------------------------------




@dataclass
class Three:
    """The end-to-end registries: ``a`` a proxy in front of the session registry (sources
    and first targets: it counts the source reads), ``b`` a registry of this module, ``c``
    a proxy in front of another (its ``before`` quirks are the test's to set)."""

    a: QuirkProxy
    b: RegistryServer
    c: QuirkProxy


@pytest.fixture(scope="module")
def three(registry: RegistryServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Three]:
    b = RegistryServer(workdir=tmp_path_factory.mktemp("fanout-b")).start()
    c = RegistryServer(workdir=tmp_path_factory.mktemp("fanout-c")).start()
    a_proxy = QuirkProxy(registry.host).start()
    c_proxy = QuirkProxy(c.host).start()
    try:
        yield Three(a_proxy, b, c_proxy)
    finally:
        c_proxy.stop()
        a_proxy.stop()
        b.stop()
        c.stop()


@pytest.fixture
def regs(three: Three) -> Iterator[Three]:
    """:func:`three` with no quirk and fresh request counts."""
    three.a.seen.clear()
    three.c.seen.clear()
    three.c.before.clear()
    yield three
    three.c.before.clear()


def _denied() -> Any:
    """Every manifest PUT answered 403 DENIED (blobs are taken), as a registry refusing a
    push the token does not cover; whatever way blobs cross registries, the first refusal a
    list meets is its first child's PUT."""
    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and "/manifests/" in request.path:
            await request.read()
            body = b'{"errors":[{"code":"DENIED","message":"requested access to the ' \
                b'resource is denied"}]}'
            return web.Response(status=403, body=body,
                                headers={"Content-Type": "application/json"})
        return None
    return quirk


def _report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_plan(tmp_path: Path, regs: Three, ns: str, apps: tuple[str, ...]) -> Path:
    """One document per app: ``A/<ns>/<app>:1`` (tag latest too), targets ``B/<ns>/<app>:1``,
    the 4 walkthrough images of ``<ns>`` as sources (on A, through its proxy)."""
    a, b = regs.a.host, regs.b.host
    docs = []
    for app in apps:
        sources = "".join(f"  - image: {a}/{name}\n" for name, _, _ in walkthrough_names(ns))
        docs.append(f"image: {a}/{ns}/{app}:1\ntags: [latest]\ntargets: [{b}/{ns}/{app}:1]\n"
                    f"manifests:\n{sources}")
    path = tmp_path / "plan.yaml"
    path.write_text("---\n".join(docs))
    return path


@pytest.mark.slow
def test_one_run_publishes_to_three_registries_reading_each_source_once(
        regs: Three, registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    seed_walkthrough(registry.host, ns)
    plan = _write_plan(tmp_path, regs, ns, ("app",))
    a, b, c = regs.a.host, regs.b.host, regs.c.host
    targets = [f"{a}/{ns}/app:1", f"{b}/{ns}/app:1", f"{c}/{ns}/app:1"]

    dry = manyfest("publish", "--dry-run", "--mirror", c, str(plan))
    assert dry.returncode == 0, dry.stderr
    heads = [line for line in dry.stdout.splitlines() if line.startswith("would create ")]
    assert [line.split()[2] for line in heads] == targets
    assert dry.stdout.count(f"  mirror of {targets[0]} (the same list and tags)") == 2
    assert all(head_digest(t) == "" for t in targets)
    regs.a.seen.clear()

    report = tmp_path / "r.jsonl"
    # a cache of its own: the dry-run's (its source manifests) would turn the GETs into HEADs
    run = manyfest("publish", "--report", str(report), "--mirror", c, str(plan),
                   env={"MANYFEST_CACHE_DIR": str(tmp_path / "cache-2")})
    assert run.returncode == 0, run.stderr
    lines = _report(report)
    assert [(x["target"], x["status"], x.get("mirror_of")) for x in lines] == [
        (targets[0], "created", None), (targets[1], "created", targets[0]),
        (targets[2], "created", targets[0])]
    digest = lines[0]["digest"]
    assert {x["digest"] for x in lines} == {digest}
    assert digest == heads[0].split()[3]
    for t in targets:
        assert head_digest(t) == digest
        assert head_digest(t.removesuffix(":1") + ":latest") == digest
    assert lines[0]["sources"] == lines[1]["sources"] == lines[2]["sources"]
    # Sources read once: 4 manifest GETs, 4 config GETs, whatever the number of targets;
    # the other blob reads are the layers' copies into B and C (each once per registry:
    # the configs cross from the bytes read for their platforms).
    assert regs.a.count("GET", "/manifests/") == 4
    blobs = walkthrough_blobs(ns)
    assert regs.a.count("GET", "/blobs/") == 4 + 2 * (blobs - 4)

    # --since: every target proved unchanged by the report, no manifest read anywhere.
    regs.a.seen.clear()
    regs.c.seen.clear()
    again = manyfest("publish", "--report", str(tmp_path / "r2.jsonl"), "--since", str(report),
                     "--mirror", c, str(plan))
    assert again.returncode == 0, again.stderr
    second = _report(tmp_path / "r2.jsonl")
    assert [(x["status"], x.get("since"), x.get("mirror_of")) for x in second] == [
        ("unchanged", "matched", None), ("unchanged", "matched", targets[0]),
        ("unchanged", "matched", targets[0])]
    assert regs.a.count("GET", "/manifests/") == 0
    assert regs.c.count("GET", "/manifests/") == 0
    assert regs.a.count("GET", "/blobs/") == 0
    assert regs.c.count("HEAD", f"/v2/{ns}/app/manifests/1") == 1


@pytest.mark.slow
def test_a_registry_refusing_writes_fails_only_its_lists(
        regs: Three, registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    seed_walkthrough(registry.host, ns)
    plan = _write_plan(tmp_path, regs, ns, ("app", "tool"))
    a, b, c = regs.a.host, regs.b.host, regs.c.host
    regs.c.before.append(_denied())
    report = tmp_path / "r.jsonl"
    run = manyfest("publish", "--report", str(report), "--mirror", c, str(plan))
    assert run.returncode == 3, run.stderr
    lines = _report(report)
    assert [(x["target"], x["status"]) for x in lines] == [
        (f"{a}/{ns}/app:1", "created"), (f"{b}/{ns}/app:1", "created"),
        (f"{c}/{ns}/app:1", "failed"),
        (f"{a}/{ns}/tool:1", "created"), (f"{b}/{ns}/tool:1", "created"),
        (f"{c}/{ns}/tool:1", "failed")]
    failed = lines[2]
    assert failed["mirror_of"] == f"{a}/{ns}/app:1"
    for x, app in ((failed, "app"), (lines[5], "tool")):
        # the first child PUT refused (which of the 4 is first is the run's order)
        assert re.fullmatch(FAILED_ERROR.format(c=re.escape(c), ns=ns, app=app),
                            x["error"]), x["error"]
    assert run.stderr.strip().splitlines()[-1] == (
        "2 of 6 lists failed; see the per-list errors above; re-running publishes only what is "
        "missing")
    for x in lines:
        for tag in ("1", "latest"):
            ref = x["target"].removesuffix(":1") + ":" + tag
            assert head_digest(ref) == ("" if x["status"] == "failed" else x["digest"])


@pytest.mark.slow
def test_atomic_moves_no_tag_on_any_registry_when_one_target_refuses(
        regs: Three, registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    seed_walkthrough(registry.host, ns)
    plan = _write_plan(tmp_path, regs, ns, ("app", "tool"))
    c = regs.c.host
    regs.c.before.append(_denied())
    report = tmp_path / "r.jsonl"
    run = manyfest("publish", "--atomic", "--report", str(report), "--mirror", c, str(plan))
    assert run.returncode == 3, run.stderr
    lines = _report(report)
    assert [x["status"] for x in lines] == ["failed"] * 6
    assert [x.get("mirror_of", "") for x in lines] == [
        "", lines[0]["target"], lines[0]["target"], "", lines[3]["target"], lines[3]["target"]]
    assert run.stderr.strip().splitlines()[-1].startswith(
        "--atomic: phase 1 failed: 2 of 6 lists failed")
    for x in lines:
        assert x["atomic"] is True
        for tag in ("1", "latest"):
            assert head_digest(x["target"].removesuffix(":1") + ":" + tag) == ""


@pytest.mark.parametrize(("targets", "held"), [
    ("", False),  # every target on the sources' registry: configs are not kept
    (f"\ntargets: [{B}/app:1]", True),  # one on another registry: they cross from memory
])
def test_configs_are_kept_only_for_a_copy_to_another_registry(targets: str,
                                                              held: bool) -> None:
    regs = _seeded("held")
    plan = parse_documents(
        f"image: {SRC}/app:1{targets}\n"
        f"manifests: [{{image: {SRC}/app-amd64:1}}, {{image: {SRC}/app-arm64:1}}]")
    engine = Engine(regs.client())
    kept: list[int] = []
    hold = engine._hold

    def watched(registry: str, digest: str, data: bytes) -> None:
        hold(registry, digest, data)
        kept.append(len(engine._held))

    engine._hold = watched  # type: ignore[method-assign]
    report = anyio.run(lambda: publish(engine, plan, fail_fast=True))
    assert {r.status for r in report.results} == {"created"}
    assert engine.hold_configs is held
    assert max(kept) == (2 if held else 0)  # the 2 configs, read once each
    assert regs[SRC].count("GET blob") == 2
    if held:
        assert regs[SRC].count("stream blob") == regs[B].count("copy") - 2
