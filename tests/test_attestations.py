"""Index sources and attestations in create / create --amend / push / publish; duplicate
platforms refused in create, annotate and publish (issue 7).

Sources are buildx-shaped OCI indexes (``build_attested_index``: a real-size image + an
in-toto attestation manifest ``unknown/unknown`` with ``vnd.docker.reference.type`` and
``vnd.docker.reference.digest``) pushed to the real test registry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.errors import PlanError, PlatformError
from manyfest.ops.entries import DUPLICATE_HINT, Listed, check_unique_platforms
from manyfest.ops.plan import parse_documents
from manyfest.platform import Platform
from manyfest.reference import filesafe
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, docker, docker_cli, manyfest, seed_built
from tests.imagewriter import (
    AttestedIndex,
    build_attested_index,
    build_image,
    push_attested_index,
    push_image,
)
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

T = TypeVar("T")
AMD64, ARM64 = PLATFORMS[0], PLATFORMS[2]


def _client_run(fn: Callable[[RegistryClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Transport(Settings()) as transport:
            return await fn(RegistryClient(transport))

    return anyio.run(main)


def _push_indexes(host: str, items: dict[str, AttestedIndex]) -> None:
    """Push each item at ``host/<repository:tag>``."""

    async def push(client: RegistryClient) -> None:
        for name, item in items.items():
            await push_attested_index(client, reference.parse(f"{host}/{name}"), item)

    _client_run(push)


def _descriptors(item: AttestedIndex) -> list[dict[str, Any]]:
    """The item's index entries: [image descriptor, attestation descriptor]."""
    entries: list[dict[str, Any]] = json.loads(item.index.raw)["manifests"]
    return entries


def _store_dir(list_ref: str) -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "manifests" / filesafe(reference.parse(list_ref))


def _docker_list_bytes(entries: list[dict[str, Any]]) -> bytes:
    """A list as `docker manifest push` lays it out (3-space indent, docker's key order)."""
    ordered = [
        {k: e[k] for k in ("mediaType", "size", "digest", "annotations", "platform") if k in e}
        for e in entries
    ]
    media_type = (mediatypes.OCI_INDEX if entries[0]["mediaType"] == mediatypes.OCI_MANIFEST
                  else mediatypes.DOCKER_LIST)
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": ordered}
    return json.dumps(doc, indent=3).encode()


def _exact_list_bytes(entries: list[dict[str, Any]]) -> bytes:
    """A list of source-index entries as manyfest writes it (push and publish alike): the
    exact descriptors, in their own key order, 3-space indent."""
    doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    return json.dumps(doc, indent=3).encode()


def _check_all_present(target: str, entries: list[dict[str, Any]]) -> None:
    """Every child of the list, and every blob of every child, is in the target repository."""

    async def check(client: RegistryClient) -> None:
        ref = reference.parse(target)
        for entry in entries:
            head = await client.head_manifest(ref.with_digest(entry["digest"]))
            assert head is not None, entry["digest"]
            child = await client.get_manifest(ref.with_digest(entry["digest"]))
            assert child.size == entry["size"]
            for blob in child.blobs():
                assert await client.blob_exists(ref, blob.digest), (entry["digest"], blob.digest)

    _client_run(check)


def _get(ref: str) -> Manifest:
    return _client_run(lambda client: client.get_manifest(reference.parse(ref)))


# ---------------------------------------------------------------- the first case


@pytest.mark.parametrize("where", ["other-repos", "target-repo"])
def test_create_push_attested_sources(registry: RegistryServer, ns: str, where: str) -> None:
    """`create LIST a b` of two buildx-style per-arch tags, then `push`: both images, then
    both attestations, exact descriptors; every child and blob in the target repository."""
    host = registry.host
    if where == "other-repos":
        names = {"amd64": f"{ns}/app-amd64:1", "arm64": f"{ns}/app-arm64:1"}
    else:
        names = {"amd64": f"{ns}/app:amd64", "arm64": f"{ns}/app:arm64"}
    items = {names["amd64"]: build_attested_index(AMD64, ns),
             names["arm64"]: build_attested_index(ARM64, ns)}
    _push_indexes(host, items)
    amd, arm = items[names["amd64"]], items[names["arm64"]]
    target = f"{host}/{ns}/app:1"
    a_ref, b_ref = f"{host}/{names['amd64']}", f"{host}/{names['arm64']}"

    created = manyfest("create", target, a_ref, b_ref)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created manifest list {target}\n"
    assert created.stderr == (
        f"warning: {a_ref} is an index: added its 1 image and 1 attestation\n"
        f"warning: {b_ref} is an index: added its 1 image and 1 attestation\n"
    )
    # docker's layout: one file per entry, named after <name>:<tag>@<child digest>
    expected_files = {}
    for ref, item in ((a_ref, amd), (b_ref, arm)):
        for desc in _descriptors(item):
            expected_files[filesafe(f"{ref}@{desc['digest']}")] = (f"{ref}@{desc['digest']}", desc)
    store = _store_dir(target)
    assert sorted(p.name for p in store.iterdir()) == sorted(expected_files)
    for name, (ref, desc) in expected_files.items():
        stored = json.loads((store / name).read_bytes())
        assert stored["Ref"] == ref
        assert stored["Descriptor"] == desc  # digest, size, mediaType, platform, annotations

    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr == ""
    order = [_descriptors(amd)[0], _descriptors(arm)[0], _descriptors(amd)[1],
             _descriptors(arm)[1]]
    # the entries are the source indexes' exact descriptors (their own key order), as
    # `publish` writes them, so both commands give one digest for the same sources
    expected = _exact_list_bytes(order)
    digest = "sha256:" + hashlib.sha256(expected).hexdigest()
    lines = pushed.stdout.splitlines()
    assert lines[-1] == digest
    if where == "other-repos":
        assert lines[:-1] == [
            f"Pushed ref {host}/{ns}/app@{d['digest']} with digest: {d['digest']}" for d in order
        ]
    else:
        assert lines[:-1] == []
    listed = _get(target)
    assert listed.raw == expected
    assert listed.media_type == mediatypes.OCI_INDEX
    assert json.loads(listed.raw)["manifests"] == order
    _check_all_present(target, order)
    published = manyfest("publish", "--target", f"{host}/{ns}/app:2", "--json",
                         "--platforms", "linux/amd64,linux/arm64",
                         "--template", f"{host}/{names['amd64'].replace('amd64', 'ARCH')}")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["results"][0]["digest"] == digest


def test_docker_reads_and_pushes_what_manyfest_stored(registry: RegistryServer, ns: str) -> None:
    """docker's CLI reads (inspect, inspect -v, inspect LIST ENTRY) and pushes a list whose
    entries manyfest flattened from index sources."""
    if docker_cli() is None:
        pytest.skip("the docker CLI is not installed: the differential check needs it")
    host = registry.host
    items = {f"{ns}/app-amd64:1": build_attested_index(AMD64, ns),
             f"{ns}/app-arm64:1": build_attested_index(ARM64, ns)}
    _push_indexes(host, items)
    target = f"{host}/{ns}/app:d"
    refs = [f"{host}/{name}" for name in items]
    manyfest("create", target, *refs, check=True)
    # what manyfest stored, in docker's order (file names)
    stored = []
    for ref, item in zip(refs, items.values(), strict=True):
        for desc in _descriptors(item):
            stored.append((filesafe(f"{ref}@{desc['digest']}"), f"{ref}@{desc['digest']}", desc))
    stored.sort()

    shown = docker("manifest", "inspect", "-v", target)
    assert shown.returncode == 0, shown.stderr
    docs = json.loads(shown.stdout)
    assert [(d["Ref"], d["Descriptor"]) for d in docs] == [(r, desc) for _, r, desc in stored]
    plain = docker("manifest", "inspect", target)
    assert plain.returncode == 0, plain.stderr
    entries = json.loads(plain.stdout)["manifests"]
    # docker's rebuilt list drops descriptor annotations
    bare = [{k: v for k, v in desc.items() if k != "annotations"} for _, _, desc in stored]
    assert entries == bare
    one = docker("manifest", "inspect", target, stored[0][1])
    assert one.returncode == 0, one.stderr

    pushed = docker("manifest", "push", "--insecure", target)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.splitlines()
    assert lines[:-1] == [
        f"Pushed ref {host}/{ns}/app@{d['digest']} with digest: {d['digest']}" for d in bare
    ]
    expected = _docker_list_bytes(bare)
    assert lines[-1] == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert _get(target).raw == expected
    _check_all_present(target, bare)


# ---------------------------------------------------------------- --attestations


def test_attestations_drop_on_create_and_publish(registry: RegistryServer, ns: str,
                                                 tmp_path: Path) -> None:
    host = registry.host
    items = {f"{ns}/app-amd64:1": build_attested_index(AMD64, ns),
             f"{ns}/app-arm64:1": build_attested_index(ARM64, ns)}
    _push_indexes(host, items)
    refs = [f"{host}/{name}" for name in items]
    amd, arm = items.values()
    images = [_descriptors(amd)[0], _descriptors(arm)[0]]

    target = f"{host}/{ns}/app:c"
    created = manyfest("create", "--attestations", "drop", target, *refs)
    assert created.returncode == 0, created.stderr
    assert created.stderr == "".join(
        f"warning: {r} is an index: added its 1 image; dropped its 1 attestation "
        "(--attestations drop)\n" for r in refs
    )
    assert sorted(p.name for p in _store_dir(target).iterdir()) == sorted(
        filesafe(f"{r}@{d['digest']}") for r, d in zip(refs, images, strict=True)
    )
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    assert _get(target).raw == _exact_list_bytes(images)
    bad = manyfest("create", "--attestations", "maybe", f"{host}/{ns}/app:x", *refs)
    assert bad.returncode == 2
    assert bad.stderr == ("--attestations 'maybe': expected one of keep, drop; see "
                          "`manyfest create --help`\n")

    # publish: plan key, and the flag overriding it
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:p\nattestations: drop\nmanifests:\n"
        + "".join(f"  - image: {r}\n" for r in refs)
    )
    done = manyfest("publish", "--json", str(plan))
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["results"]
    assert result["status"] == "created"
    assert json.loads(_get(f"{host}/{ns}/app:p").raw)["manifests"] == images
    kept = manyfest("publish", "--json", "--attestations", "keep", str(plan))
    assert kept.returncode == 0, kept.stderr
    [result] = json.loads(kept.stdout)["results"]
    assert result["status"] == "updated"
    assert json.loads(_get(f"{host}/{ns}/app:p").raw)["manifests"] == [
        *images, _descriptors(amd)[1], _descriptors(arm)[1]
    ]


# ---------------------------------------------------------------- refusals


def test_attestation_named_directly(registry: RegistryServer, ns: str) -> None:
    """An attestation manifest named by digest: refused without its image, naming both
    digests; with its image it is stored as buildx would list it."""
    host = registry.host
    item = build_attested_index(AMD64, ns)
    _push_indexes(host, {f"{ns}/app-amd64:1": item})
    image, attestation = (d["digest"] for d in _descriptors(item))
    att_ref = f"{host}/{ns}/app-amd64@{attestation}"
    img_ref = f"{host}/{ns}/app-amd64@{image}"
    target = f"{host}/{ns}/app:1"

    alone = manyfest("create", target, att_ref)
    assert alone.returncode == 2
    assert alone.stderr == (
        f"{att_ref} is the attestation manifest {attestation} of image {image}, which is not "
        f"in {target}; add the image too (or the index holding both), or leave the "
        "attestation out\n"
    )
    assert not _store_dir(target).exists()

    dropped = manyfest("create", "--attestations", "drop", target, att_ref, img_ref)
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stderr == (
        f"warning: {att_ref} is an attestation manifest (of image {image}): not added "
        "(--attestations drop)\n"
    )
    assert [p.name for p in _store_dir(target).iterdir()] == [filesafe(img_ref)]
    manyfest("rm", target, check=True)

    both = manyfest("create", target, att_ref, img_ref)
    assert (both.returncode, both.stderr) == (0, ""), both.stderr
    stored = json.loads((_store_dir(target) / filesafe(att_ref)).read_bytes())
    assert stored["Descriptor"] == _descriptors(item)[1]
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(_get(target).raw)["manifests"] == _descriptors(item)


def test_nested_index_and_absent_image_refused(registry: RegistryServer, ns: str,
                                               tmp_path: Path) -> None:
    host = registry.host
    item = build_attested_index(AMD64, ns)
    other = build_attested_index(ARM64, ns)
    inner_ref = reference.parse(f"{host}/{ns}/src:inner")
    nested = Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
        "manifests": [{"mediaType": mediatypes.OCI_INDEX, "digest": item.index.digest,
                       "size": item.index.size}],
    }).encode())
    # an index holding an attestation whose image is another index's
    orphan = Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
        "manifests": [_descriptors(item)[0], _descriptors(other)[1]],
    }).encode())

    async def push(client: RegistryClient) -> None:
        await push_attested_index(client, inner_ref, item)
        await push_attested_index(client, inner_ref.with_tag("other"), other)
        await client.put_manifest(inner_ref.with_tag("nested"), nested)
        await client.put_manifest(inner_ref.with_tag("orphan"), orphan)

    _client_run(push)
    target = f"{host}/{ns}/app:1"
    nest = manyfest("create", target, f"{host}/{ns}/src:nested")
    assert nest.returncode == 1
    assert nest.stderr == (
        f"{host}/{ns}/src:nested: entry {item.index.digest} is itself an index (nested "
        "indexes are not flattened); name the inner index or its images directly\n"
    )
    absent = manyfest("create", target, f"{host}/{ns}/src:orphan")
    assert absent.returncode == 1
    orphan_line = (
        f"{host}/{ns}/src:orphan: attestation {_descriptors(other)[1]['digest']} describes "
        f"image {other.image.manifest.digest}, which is not in the index; re-push the index "
        "with the image it attests, or name the image directly"
    )
    assert absent.stderr == orphan_line + "\n"
    assert not _store_dir(target).exists()
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {target}\nmanifests:\n  - image: {host}/{ns}/src:orphan\n")
    published = manyfest("publish", "--json", str(plan))
    assert published.returncode == 3
    [result] = json.loads(published.stdout)["results"]
    assert result["error"] == orphan_line


def test_amend_replaces_what_a_tag_gave(registry: RegistryServer, ns: str) -> None:
    """`create --amend` of an index tag that moved: the old tag's entries are replaced."""
    host = registry.host
    old = build_attested_index(AMD64, ns + "old")
    new = build_attested_index(AMD64, ns + "new")
    arm = build_attested_index(ARM64, ns)
    _push_indexes(host, {f"{ns}/app-amd64:1": old, f"{ns}/app-arm64:1": arm})
    target = f"{host}/{ns}/app:1"
    a_ref, b_ref = f"{host}/{ns}/app-amd64:1", f"{host}/{ns}/app-arm64:1"
    manyfest("create", target, a_ref, b_ref, check=True)
    _push_indexes(host, {f"{ns}/app-amd64:1": new})
    amended = manyfest("create", "--amend", target, a_ref)
    assert amended.returncode == 0, amended.stderr
    assert amended.stderr == f"warning: {a_ref} is an index: added its 1 image and 1 attestation\n"
    assert sorted(p.name for p in _store_dir(target).iterdir()) == sorted(
        [filesafe(f"{a_ref}@{d['digest']}") for d in _descriptors(new)]
        + [filesafe(f"{b_ref}@{d['digest']}") for d in _descriptors(arm)]
    )
    manyfest("push", target, check=True)
    assert json.loads(_get(target).raw)["manifests"] == [
        _descriptors(new)[0], _descriptors(arm)[0], _descriptors(new)[1], _descriptors(arm)[1]
    ]


# ---------------------------------------------------------------- duplicate platforms


def test_duplicate_platforms_create_annotate_publish(registry: RegistryServer, ns: str,
                                                     tmp_path: Path) -> None:
    """The issue's case: img:v0 and img:v1, both linux/amd64, in create, annotate, publish."""
    host = registry.host
    seed_built(host, [(f"{ns}/img:v0", AMD64, ns + "0"), (f"{ns}/img:v1", AMD64, ns + "1"),
                      (f"{ns}/img:arm", ARM64, ns)])
    v0, v1, arm = (f"{host}/{ns}/img:{t}" for t in ("v0", "v1", "arm"))
    target = f"{host}/{ns}/list:1"
    same = f"{v0} and {v1} have the same platform linux/amd64; {DUPLICATE_HINT}\n"

    # create
    refused = manyfest("create", target, v0, v1)
    assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", same)
    assert not _store_dir(target).exists()
    allowed = manyfest("create", "--allow-duplicate-platforms", target, v0, v1)
    assert allowed.returncode == 0, allowed.stderr
    manyfest("rm", target, check=True)

    # create --amend: the image added duplicates one already there
    manyfest("create", target, v0, arm, check=True)
    amend = manyfest("create", "--amend", target, v1)
    assert (amend.returncode, amend.stderr) == (2, same)
    assert len(list(_store_dir(target).iterdir())) == 2

    # annotate: arm64 made amd64 duplicates v0 (named in list order: file names)
    annotated = manyfest("annotate", "--arch", "amd64", target, arm)
    assert annotated.returncode == 2
    assert annotated.stderr == (
        f"{arm} and {v0} have the same platform linux/amd64; {DUPLICATE_HINT}\n"
    )
    stored = json.loads((_store_dir(target) / filesafe(arm)).read_bytes())
    assert stored["Descriptor"]["platform"] == {"architecture": "arm64", "os": "linux",
                                                "variant": "v8"}
    ok = manyfest("annotate", "--allow-duplicate-platforms", "--arch", "amd64", target, arm)
    assert (ok.returncode, ok.stderr) == (0, "")
    stored = json.loads((_store_dir(target) / filesafe(arm)).read_bytes())
    assert stored["Descriptor"]["platform"] == {"architecture": "amd64", "os": "linux"}

    # publish: refused (the list fails, exit 3), then allowed by the flag and by the plan key
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/pub:1\nmanifests:\n  - image: {v0}\n  - image: {v1}\n")
    failed = manyfest("publish", "--json", str(plan))
    assert failed.returncode == 3
    [result] = json.loads(failed.stdout)["results"]
    assert result["error"] == same.rstrip("\n")
    flag = manyfest("publish", "--json", "--allow-duplicate-platforms", str(plan))
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout)["results"][0]["status"] == "created"
    plan.write_text(f"image: {host}/{ns}/pub:2\nallow_duplicate_platforms: true\nmanifests:\n"
                    f"  - image: {v0}\n  - image: {v1}\n")
    key = manyfest("publish", "--json", str(plan))
    assert key.returncode == 0, key.stderr
    assert json.loads(key.stdout)["results"][0]["status"] == "created"


def test_duplicate_after_normalisation(registry: RegistryServer, ns: str) -> None:
    """linux/arm64 and linux/arm64/v8 are one platform."""
    host = registry.host
    bare_arm64 = Platform("linux", "arm64")
    seed_built(host, [(f"{ns}/a:1", bare_arm64, ns), (f"{ns}/b:1", ARM64, ns)])
    refused = manyfest("create", f"{host}/{ns}/l:1", f"{host}/{ns}/a:1", f"{host}/{ns}/b:1")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"{host}/{ns}/a:1 (linux/arm64) and {host}/{ns}/b:1 (linux/arm64/v8) have the same "
        f"platform; {DUPLICATE_HINT}\n"
    )


# ---------------------------------------------------------------- units


def test_check_unique_platforms_rules() -> None:
    win = Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",))
    # os.version and os.features count; attestations and unknown platforms never do
    check_unique_platforms([
        Listed("a", win), Listed("b", Platform("windows", "amd64", "", "10.0.20348")),
        Listed("c", Platform("windows", "amd64", "", "10.0.17763.1879")),
        Listed("d", Platform("linux", "amd64")), Listed("e", Platform("linux", "amd64", "v2")),
        Listed("att1", Platform("unknown", "unknown"), attestation=True),
        Listed("att2", Platform("unknown", "unknown"), attestation=True),
        Listed("none1", None), Listed("none2", None),
    ])
    with pytest.raises(PlatformError) as info:
        check_unique_platforms([Listed("a", win), Listed("b", Platform(
            "windows", "amd64", "", "10.0.17763.1879", ("win32k", "win32k")))])
    assert info.value.message == "a and b have the same platform windows/amd64:10.0.17763.1879"
    assert info.value.exit_code == 2
    with pytest.raises(PlatformError) as info:
        check_unique_platforms([Listed("x", Platform("linux", "amd64")),
                                Listed("y", Platform("Linux", "x86_64", "v1"))])
    assert info.value.message == "x (linux/amd64) and y (Linux/x86_64/v1) have the same platform"
    dup = [Listed("p", Platform("linux", "arm", "v7")), Listed("q", Platform("linux", "arm"))]
    check_unique_platforms(dup, allow=True)
    check_unique_platforms([*dup, Listed("r", Platform("linux", "s390x"))], changed={"r"})
    with pytest.raises(PlatformError):
        check_unique_platforms(dup, changed={"q"})


def test_plan_keys() -> None:
    text = (
        "image: r.example/app:1\nattestations: drop\nallow_duplicate_platforms: true\n"
        "manifests: [{image: r.example/a:1}]\n---\n"
        "matrix: {v: ['1', '2']}\nimage: r.example/m:{v}\nattestations: keep\n"
        "allow_duplicate_platforms: 'false'\nplatforms: [linux/amd64]\n"
        "template: r.example/m-{arch}:{v}\n---\n"
        "image: r.example/app:2\nmanifests: [{image: r.example/a:1}]\n"
    )
    lists = parse_documents(text)
    assert [(p.attestations, p.allow_duplicate_platforms) for p in lists] == [
        ("drop", True), ("keep", False), ("keep", False), ("keep", False)
    ]
    with pytest.raises(PlanError) as info:
        parse_documents("image: r.example/app:1\nallow_duplicate_platforms: yes\n"
                        "manifests: [{image: r.example/a:1}]\n")
    assert info.value.message == (
        "plan: document 1: allow_duplicate_platforms: expected true or false, got 'yes'"
    )
    with pytest.raises(PlanError) as info:
        parse_documents("image: r.example/app:1\nattestations: some\n"
                        "manifests: [{image: r.example/a:1}]\n")
    assert info.value.message == (
        "plan: document 1: attestations: expected one of keep, drop, got 'some'"
    )


def test_plain_images_keep_docker_bytes(registry: RegistryServer, ns: str) -> None:
    """A list of plain images (no attestation, no annotation) keeps docker's file-name order
    and bytes: what build_from_store changed does not touch it."""
    host = registry.host
    built = seed_built(host, [(f"{ns}/z-amd64:1", AMD64, ns), (f"{ns}/a-arm64:1", ARM64, ns)])
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, f"{host}/{ns}/z-amd64:1", f"{host}/{ns}/a-arm64:1", check=True)
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    arm, amd = built[f"{ns}/a-arm64:1"], built[f"{ns}/z-amd64:1"]
    entries = [
        {"mediaType": arm.manifest.media_type, "size": arm.manifest.size,
         "digest": arm.manifest.digest,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": amd.manifest.media_type, "size": amd.manifest.size,
         "digest": amd.manifest.digest, "platform": {"architecture": "amd64", "os": "linux"}},
    ]
    expected = _docker_list_bytes(entries)
    assert _get(target).raw == expected
    assert pushed.stdout.splitlines()[-1] == "sha256:" + hashlib.sha256(expected).hexdigest()


def test_image_without_attestation_index_source(registry: RegistryServer, ns: str) -> None:
    """An index holding a plain image only (no attestation): one image added."""
    host = registry.host
    image = build_image(AMD64, ns, oci=True)
    index = Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
        "manifests": [{"mediaType": image.manifest.media_type, "digest": image.manifest.digest,
                       "size": image.manifest.size,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }).encode())
    ref = reference.parse(f"{host}/{ns}/one:1")

    async def push(client: RegistryClient) -> None:
        await push_image(client, ref.with_digest(image.manifest.digest), image)
        await client.put_manifest(ref, index)

    _client_run(push)
    created = manyfest("create", f"{host}/{ns}/app:1", str(ref))
    assert created.returncode == 0, created.stderr
    assert created.stderr == f"warning: {ref} is an index: added its 1 image\n"


def test_build_from_store_order() -> None:
    """Images in store order, then attestations in their images' order; an attestation whose
    image is not in the list is left out, with a warning."""
    from manyfest.events import Event, Warned
    from manyfest.ops.entries import attestation_annotations
    from manyfest.ops.manifests import build_from_store
    from manyfest.store import StoredImage

    def manifest(n: int) -> Manifest:
        return Manifest.from_bytes(json.dumps({
            "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": "sha256:" + "0" * 64,
                       "size": n},
            "layers": [],
        }).encode())

    unknown = Platform("unknown", "unknown")
    img_a, img_b, att_a, att_b, orphan = (manifest(n) for n in range(5))
    ref = reference.parse("r.example/app:1")
    stored = [  # file-name order: attestations of b and a before the images
        StoredImage(ref.with_digest(att_b.digest), att_b, unknown,
                    attestation_annotations(img_b.digest)),
        StoredImage(ref.with_digest(att_a.digest), att_a, unknown,
                    attestation_annotations(img_a.digest)),
        StoredImage(ref.with_digest(orphan.digest), orphan, unknown,
                    attestation_annotations("sha256:" + "1" * 64)),
        StoredImage(ref.with_digest(img_a.digest), img_a, AMD64),
        StoredImage(ref.with_digest(img_b.digest), img_b, ARM64),
    ]
    events: list[Event] = []
    children = build_from_store(reference.parse("r.example/list:1"), stored, events.append)
    assert [c.source.manifest.digest for c in children] == [
        img_a.digest, img_b.digest, att_a.digest, att_b.digest
    ]
    assert [c.entry().annotations for c in children] == [
        (), (), attestation_annotations(img_a.digest), attestation_annotations(img_b.digest)
    ]
    assert events == [Warned(target="r.example/list:1", message=(
        f"r.example/app@{orphan.digest} in r.example/list:1 is an attestation of "
        f"sha256:{'1' * 64}, which is not in the list: not pushed"
    ))]


def test_attestations_in_a_docker_list_refused_by_publish_and_push(
        registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    """A Docker image first and a buildx index: docker's rule makes a Docker manifest list,
    whose entries cannot carry the attestation's ``vnd.docker.reference.*`` annotations.
    ``publish`` refuses it as ``push`` does (it used to write the annotations into the Docker
    list), nothing is written, and both say how to get an OCI index or drop attestations."""
    host = registry.host
    s390x = Platform("linux", "s390x")
    built = seed_built(host, [(f"{ns}/a-s390x:1", s390x, ns)])
    plain = built[f"{ns}/a-s390x:1"].manifest
    item = build_attested_index(ARM64, ns)
    _push_indexes(host, {f"{ns}/b-arm64:1": item})
    image_desc, att_desc = _descriptors(item)
    sources = [f"{host}/{ns}/a-s390x:1", f"{host}/{ns}/b-arm64:1"]
    plain_entry = {"mediaType": plain.media_type, "size": plain.size, "digest": plain.digest,
                   "platform": {"architecture": "s390x", "os": "linux"}}
    keys = "vnd.docker.reference.digest, vnd.docker.reference.type"

    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:p\nmanifests:\n"
                    + "".join(f"  - image: {r}\n" for r in sources))
    refused = manyfest("publish", "--json", str(plan))
    assert refused.returncode == 3, refused.stderr
    [result] = json.loads(refused.stdout)["results"]
    assert result["status"] == "failed"
    assert result["error"] == (
        f"{host}/{ns}/app:p would be a Docker manifest list (its first entry is a Docker "
        f"image), whose entries have no annotations; annotated: {host}/{ns}/b-arm64@"
        f"{att_desc['digest']} ({keys}); pass --media-type oci (plan key media_type: oci) to "
        "write an OCI index, or --attestations drop (plan key attestations: drop) to leave "
        "the attestations out"
    )
    assert _client_run(lambda c: c.head_manifest(reference.parse(f"{host}/{ns}/app:p"))) is None

    dropped = manyfest("publish", "--json", "--attestations", "drop", str(plan))
    assert dropped.returncode == 0, dropped.stderr
    listed = _get(f"{host}/{ns}/app:p")
    assert listed.media_type == mediatypes.DOCKER_LIST
    assert json.loads(listed.raw)["manifests"] == [plain_entry, image_desc]
    assert json.loads(dropped.stdout)["results"][0]["digest"] == listed.digest
    oci = manyfest("publish", "--json", "--media-type", "oci", str(plan))
    assert oci.returncode == 0, oci.stderr
    listed = _get(f"{host}/{ns}/app:p")
    assert listed.media_type == mediatypes.OCI_INDEX
    assert json.loads(listed.raw)["manifests"] == [plain_entry, image_desc, att_desc]

    # push: the same refusal, with create's and push's remedies; nothing written
    target = f"{host}/{ns}/app:c"
    manyfest("create", target, *sources, check=True)
    pushed = manyfest("push", target)
    assert pushed.returncode == 2
    assert pushed.stdout == ""
    assert pushed.stderr == (
        f"{target} would be a Docker manifest list ({mediatypes.DOCKER_LIST}), whose entries "
        f"have no annotations; annotated: {sources[1]}@{att_desc['digest']} ({keys}); "
        "descriptor annotations need an OCI index: push with --media-type oci (or create the "
        "list with it), or leave the attestations out: `manyfest create --amend "
        f"--attestations drop {target} SOURCE...`\n"
    )
    assert _client_run(lambda c: c.head_manifest(reference.parse(target))) is None
    ok = manyfest("push", "--media-type", "oci", target)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(_get(target).raw)["manifests"] == [
        plain_entry, {k: image_desc[k] for k in ("mediaType", "size", "digest", "platform")},
        {k: att_desc[k] for k in ("mediaType", "size", "digest", "annotations", "platform")},
    ]


def test_annotate_or_inspect_an_index_source_by_its_tag(registry: RegistryServer,
                                                        ns: str) -> None:
    """The tag of an index source names no entry (create stored it flattened, one entry per
    child): annotate and inspect LIST TAG list the entries it became and name one to use
    (they advised `create --amend`, which stores the same entries again)."""
    host = registry.host
    item = build_attested_index(AMD64, ns)
    _push_indexes(host, {f"{ns}/app-amd64:1": item})
    source = f"{host}/{ns}/app-amd64:1"
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, source, check=True)
    image_desc, att_desc = _descriptors(item)
    entries = sorted([(f"{source}@{image_desc['digest']}", "linux/amd64"),
                      (f"{source}@{att_desc['digest']}", "unknown/unknown")],
                     key=lambda e: filesafe(e[0]))
    listed = ", ".join(f"{ref} ({platform})" for ref, platform in entries)
    before = {p.name: p.read_bytes() for p in _store_dir(target).iterdir()}
    for args in (["annotate", "--os-features", "sse4", target, source],
                 ["inspect", target, source]):
        proc = manyfest(*args)
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr == (
            f"{source} is an index source of {target}, stored as its entries: {listed}; name "
            f"one entry, e.g. `{source}@{image_desc['digest']}`\n"
        )
    assert {p.name: p.read_bytes() for p in _store_dir(target).iterdir()} == before
    named = manyfest("annotate", "--os-features", "sse4", target,
                     f"{source}@{image_desc['digest']}")
    assert named.returncode == 0, named.stderr
    # a reference that is no source at all keeps docker's message
    other = f"{host}/{ns}/other:1"
    missing = manyfest("inspect", target, other)
    assert missing.returncode == 1
    assert missing.stderr == (f"manifest for image {other} does not exist in {target}; add it "
                              f"with `manyfest create --amend {target} {other}`\n")


def test_publish_attestation_named_directly(registry: RegistryServer, ns: str,
                                            tmp_path: Path) -> None:
    """publish takes an attestation manifest named by digest as create does: refused without
    its image (it was published as an unknown/unknown image with no annotation), listed as
    buildx lists it with its image (the same bytes as create + push), left out with
    attestations: drop."""
    host = registry.host
    item = build_attested_index(AMD64, ns)
    other = build_attested_index(ARM64, ns)
    _push_indexes(host, {f"{ns}/app-amd64:1": item, f"{ns}/app-arm64:1": other})
    image, attestation = (d["digest"] for d in _descriptors(item))
    att_ref = f"{host}/{ns}/app-amd64@{attestation}"
    img_ref = f"{host}/{ns}/app-amd64@{image}"
    arm_ref = f"{host}/{ns}/app-arm64:1"

    alone = tmp_path / "alone.yaml"
    alone.write_text(f"image: {host}/{ns}/app:alone\nmanifests:\n  - image: {att_ref}\n"
                     f"  - image: {arm_ref}\n")
    refused = manyfest("publish", "--json", str(alone))
    assert refused.returncode == 3, refused.stderr
    [result] = json.loads(refused.stdout)["results"]
    assert result["error"] == (
        f"{att_ref} is the attestation manifest {attestation} of image {image}, which is not "
        f"in {host}/{ns}/app:alone; add the image too (or the index holding both), or leave "
        "the attestation out"
    )
    assert _client_run(
        lambda c: c.head_manifest(reference.parse(f"{host}/{ns}/app:alone"))) is None
    dropped = manyfest("publish", "--json", "--attestations", "drop", str(alone))
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(_get(f"{host}/{ns}/app:alone").raw)["manifests"] == [
        _descriptors(other)[0]]

    both = tmp_path / "both.yaml"
    both.write_text(f"image: {host}/{ns}/app:both\nmanifests:\n  - image: {att_ref}\n"
                    f"  - image: {img_ref}\n")
    done = manyfest("publish", "--json", str(both))
    assert done.returncode == 0, done.stderr
    listed = _get(f"{host}/{ns}/app:both")
    assert json.loads(listed.raw)["manifests"] == _descriptors(item)
    # create + push of the same two references: the same list, byte for byte
    target = f"{host}/{ns}/app:pushed"
    manyfest("create", target, att_ref, img_ref, check=True)
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    assert _get(target).raw == listed.raw
    assert json.loads(done.stdout)["results"][0]["digest"] == listed.digest
    _check_all_present(f"{host}/{ns}/app:both", _descriptors(item))


def test_index_source_entry_without_platform(registry: RegistryServer, ns: str,
                                             tmp_path: Path) -> None:
    """An index source whose image entry has no platform: publish refuses the list, as push
    refuses the entry create stored (publish wrote an entry without a platform into the
    list); naming the image directly takes its platform from its config."""
    host = registry.host
    image = build_image(AMD64, ns, oci=True)
    index = Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
        "manifests": [{"mediaType": image.manifest.media_type, "digest": image.manifest.digest,
                       "size": image.manifest.size}],
    }).encode())
    ref = reference.parse(f"{host}/{ns}/one:1")

    async def push(client: RegistryClient) -> None:
        await push_image(client, ref.with_digest(image.manifest.digest), image)
        await client.put_manifest(ref, index)

    _client_run(push)
    target = f"{host}/{ns}/app:p"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {target}\nmanifests:\n  - image: {ref}\n")
    refused = manyfest("publish", "--json", str(plan))
    assert refused.returncode == 3, refused.stderr
    [result] = json.loads(refused.stdout)["results"]
    direct = f"{host}/{ns}/one@{image.manifest.digest}"
    assert result["error"] == (
        f"{ref}: entry {image.manifest.digest} has no platform (os and architecture), which "
        f"every image of {target} needs; re-push the index with the entry's platform, or name "
        f"the image directly ({direct}): its platform then comes from its config"
    )
    assert _client_run(lambda c: c.head_manifest(reference.parse(target))) is None

    plan.write_text(f"image: {target}\nmanifests:\n  - image: {direct}\n")
    done = manyfest("publish", "--json", str(plan))
    assert done.returncode == 0, done.stderr
    assert json.loads(_get(target).raw)["manifests"] == [{
        "mediaType": image.manifest.media_type, "size": image.manifest.size,
        "digest": image.manifest.digest, "platform": {"architecture": "amd64", "os": "linux"},
    }]

    # create stores the entry as it is; push refuses it (docker's rule), naming the fix
    listed = f"{host}/{ns}/app:c"
    manyfest("create", listed, str(ref), check=True)
    pushed = manyfest("push", listed)
    assert pushed.returncode == 2
    entry = f"{ref}@{image.manifest.digest}"
    assert pushed.stderr == (
        f"manifest {entry} must have an OS and Architecture to be pushed to a registry; set "
        f"them with `manyfest annotate --os OS --arch ARCH {listed} {entry}`\n"
    )
