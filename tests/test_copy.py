"""``manyfest copy`` and ``copy:`` plan documents: exact copies between repositories and
registries (docs/registries.md "Copy and promotion").

End to end against real registries (Distribution 2.8): the session registry for sources and a
second registry of this module's own as the target (copies between registries), an index of
real-size images with attestation manifests, a nested index and an artifact manifest whose
config is not an image config. Differential against ``skopeo copy --all``: the same digests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.engine import Engine, ListResult
from manyfest.errors import PlanError
from manyfest.ops.plan import parse_plan
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.registry.client import next_link
from manyfest.transport import Settings, Transport
from tests.helpers import REPO_ROOT, head_digest
from tests.helpers import manyfest as run_manyfest
from tests.imagewriter import (
    Image,
    build_attested_index,
    build_image,
    push_image,
)
from tests.quirk_proxy import Before, QuirkProxy
from tests.registry_server import RegistryServer
from tests.test_engine import HOST as FAKE
from tests.test_engine import FakeRegistry

slow = pytest.mark.slow  # the end-to-end tests (see pyproject markers); units are not

ARTIFACT_TYPE = "application/vnd.example.sbom.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture
def target(second_registry: RegistryServer) -> RegistryServer:
    """The second registry (:func:`tests.conftest.second_registry`): the copies' target."""
    return second_registry


# ------------------------------------------------------------------ a release index


@dataclass(frozen=True)
class Release:
    """An index as a release pipeline pushes it: two platforms with attestations, a nested
    one-platform index, an artifact manifest; every manifest by digest, the index at a tag."""

    index: Manifest
    manifests: dict[str, Manifest]
    """Every manifest of the tree by digest (the index's children and the nested index's)."""
    blobs: set[str]


def _artifact(seed: str) -> Image:
    """An artifact manifest (an SBOM): config ``application/vnd.oci.empty.v1+json``, an
    ``artifactType``, one JSON layer; not an image."""
    config = b"{}"
    body = json.dumps({"sbom": seed, "packages": [f"pkg-{i}" for i in range(200)]}).encode()
    import hashlib

    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    ldig = "sha256:" + hashlib.sha256(body).hexdigest()
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY, "digest": cdig, "size": len(config)},
        "layers": [{"mediaType": "application/spdx+json", "digest": ldig, "size": len(body)}],
    }
    raw = json.dumps(doc, indent=1).encode()
    return Image(Manifest.from_bytes(raw), ((cdig, config), (ldig, body)))


def build_release(seed: str, *, nested_index: bool = True, compact: bool = False
                  ) -> tuple[Release, list[Image], Manifest | None]:
    """The release index, its images (to push by digest) and the nested index (``None``
    without). ``compact``: the index in Go's compact JSON, its artifact entry without
    ``artifactType``, which skopeo 1.9 writes again as it read it (it re-encodes other
    bytes: an indented index, a descriptor's ``artifactType`` dropped)."""
    amd = build_attested_index(Platform("linux", "amd64"), f"{seed} amd64")
    arm = build_attested_index(Platform("linux", "arm64", "v8"), f"{seed} arm64")
    nested = build_attested_index(Platform("linux", "arm", "v7"), f"{seed} arm")
    sbom = _artifact(seed)
    entries = []
    for item in (amd, arm):
        entries.extend(json.loads(item.index.raw)["manifests"])
    if nested_index:
        entries.append({"mediaType": nested.index.media_type, "digest": nested.index.digest,
                        "size": nested.index.size})
    entries.append({"mediaType": sbom.manifest.media_type, "digest": sbom.manifest.digest,
                    "size": sbom.manifest.size,
                    **({} if compact else {"artifactType": ARTIFACT_TYPE})})
    doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries,
           "annotations": {"org.opencontainers.image.version": seed}}
    raw = (json.dumps(doc, separators=(",", ":")) if compact else json.dumps(doc, indent=2)
           ).encode()
    index = Manifest.from_bytes(raw)
    images = [amd.image, amd.attestation, arm.image, arm.attestation, sbom]
    if nested_index:
        images[4:4] = [nested.image, nested.attestation]
    manifests = {i.manifest.digest: i.manifest for i in images}
    if nested_index:
        manifests[nested.index.digest] = nested.index
    blobs = {d for i in images for d in i.blob_digests}
    return Release(index, manifests, blobs), images, nested.index if nested_index else None


async def _push_release(ref: Reference, seed: str, nested_index: bool,
                        compact: bool) -> Release:
    release, images, nested = build_release(seed, nested_index=nested_index, compact=compact)
    async with Transport(Settings()) as transport:
        client = RegistryClient(transport)
        for image in images:
            await push_image(client, ref.with_digest(image.manifest.digest), image)
        if nested is not None:
            await client.put_manifest(ref.with_digest(nested.digest), nested)
        await client.put_manifest(ref, release.index)
    return release


def push_release(ref: str, seed: str, *, nested_index: bool = True,
                 compact: bool = False) -> Release:
    """Push a release index at ``ref`` (every child by digest first)."""
    return anyio.run(_push_release, reference.parse(ref), seed, nested_index, compact)


async def _fetch(ref: Reference) -> tuple[bytes, str]:
    async with Transport(Settings()) as transport:
        m = await RegistryClient(transport).get_manifest(ref)
        return m.raw, m.media_type


def fetch(ref: str) -> bytes:
    """The exact bytes ``ref`` serves (verified by the client)."""
    return anyio.run(_fetch, reference.parse(ref))[0]


async def _blob_present(ref: Reference, digests: set[str]) -> set[str]:
    async with Transport(Settings()) as transport:
        client = RegistryClient(transport)
        return {d for d in digests if await client.blob_exists(ref, d)}


def assert_exact_copy(release: Release, dst: str) -> None:
    """``dst`` holds the release index byte for byte, every manifest of its tree (by
    digest, same bytes) and every blob."""
    assert fetch(dst) == release.index.raw
    ref = reference.parse(dst)
    for digest, manifest in release.manifests.items():
        assert fetch(str(ref.with_digest(digest))) == manifest.raw, digest
    present = anyio.run(_blob_present, ref, release.blobs)
    assert present == release.blobs


def registry_requests(server: RegistryServer) -> list[str]:
    """The requests the registry logged so far (``METHOD path``), one per request."""
    server.request_count()  # until the registry has logged what it answered
    out = []
    for line in server.log_path.read_text().splitlines():
        if "response completed" not in line:
            continue
        method = re.search(r'http\.request\.method=(\S+)', line)
        uri = re.search(r'http\.request\.uri=(?:"([^"]+)"|(\S+))', line)
        if method and uri:
            out.append(f"{method.group(1)} {uri.group(1) or uri.group(2)}")
    return out


# ------------------------------------------------------------------ end to end


@slow
def test_copy_index_across_registries_exactly_then_recopy_is_two_heads(
        registry: RegistryServer, target: RegistryServer, ns: str) -> None:
    src = f"{registry.host}/{ns}/app:1.2.3"
    release = push_release(src, ns)
    dst = f"{target.host}/{ns}/app"
    mirror = f"{target.host}/{ns}/mirror:stable"
    proc = run_manyfest("copy", src, dst, mirror)
    assert proc.returncode == 0, proc.stderr
    digest = release.index.digest
    assert proc.stdout.splitlines() == [
        f"created {dst}:1.2.3@{digest} from {src}",
        f"created {mirror}@{digest} from {src}",
        digest,
    ]
    assert proc.stderr == ""
    assert_exact_copy(release, f"{dst}:1.2.3")
    assert_exact_copy(release, mirror)

    # Again: each target tag already holds the digest. One HEAD of the source tag (shared
    # by both copies) and one HEAD per target tag: nothing else, nothing written.
    before_src, before_dst = len(registry_requests(registry)), len(registry_requests(target))
    proc = run_manyfest("copy", "--json", src, dst, mirror)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(r["kind"], r["source"], r["target"], r["status"], r["digest"])
            for r in report["results"]] == [
        ("copy", src, f"{dst}:1.2.3", "unchanged", digest),
        ("copy", src, mirror, "unchanged", digest),
    ]
    src_log = registry_requests(registry)[before_src:]
    dst_log = registry_requests(target)[before_dst:]
    assert [r for r in src_log if r != "GET /v2/"] == [f"HEAD /v2/{ns}/app/manifests/1.2.3"]
    assert sorted(r for r in dst_log if r != "GET /v2/") == sorted([
        f"HEAD /v2/{ns}/app/manifests/1.2.3", f"HEAD /v2/{ns}/mirror/manifests/stable"])
    assert report["summary"]["requests"] == len(src_log) + len(dst_log)
    assert report["summary"]["manifest_gets"] == 0


@slow
def test_copy_skips_children_the_target_has_and_moves_a_tag(
        registry: RegistryServer, ns: str) -> None:
    """Within one registry: a second release sharing nothing but the repository; copying
    the first, then the second over the same tag, HEADs the children by digest and writes
    only what is missing; the tag is ``updated``."""
    first = push_release(f"{registry.host}/{ns}/staging:1", f"{ns} one")
    second = push_release(f"{registry.host}/{ns}/staging:2", f"{ns} two")
    dst = f"{registry.host}/{ns}/prod:latest"
    proc = run_manyfest("copy", f"{registry.host}/{ns}/staging:1", dst)
    assert proc.returncode == 0, proc.stderr
    assert_exact_copy(first, dst)
    proc = run_manyfest("copy", "--dry-run", f"{registry.host}/{ns}/staging:2", dst)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (f"would update {dst}@{second.index.digest} from "
                        f"{registry.host}/{ns}/staging:2")
    children = [line.split()[-1] for line in lines if line.startswith("  copy child ")]
    assert set(children) == set(second.manifests)  # nothing shared: every child missing
    # children before parents: the nested index after its own two children
    nested = next(d for d, m in second.manifests.items() if m.is_index)
    nested_children = {d["digest"] for d in json.loads(second.manifests[nested].raw)["manifests"]}
    assert all(children.index(c) < children.index(nested) for c in nested_children)
    assert lines[-2] == f"  put {dst} -> {second.index.digest} (now {first.index.digest})"
    assert head_digest(dst) == first.index.digest  # --dry-run wrote nothing
    proc = run_manyfest("copy", "--report", str(Path(registry.workdir) / f"{ns}.jsonl"),
                        f"{registry.host}/{ns}/staging:2", dst)
    assert proc.returncode == 0, proc.stderr
    assert_exact_copy(second, dst)
    [line] = (Path(registry.workdir) / f"{ns}.jsonl").read_text().splitlines()
    doc = json.loads(line)
    assert (doc["kind"], doc["status"], doc["old_digest"], doc["digest"]) == (
        "copy", "updated", first.index.digest, second.index.digest)


@slow
def test_copy_by_digest_to_a_repository_puts_no_tag(registry: RegistryServer,
                                                     target: RegistryServer, ns: str) -> None:
    release = push_release(f"{registry.host}/{ns}/app:1", ns)
    src = f"{registry.host}/{ns}/app@{release.index.digest}"
    dst = f"{target.host}/{ns}/pinned"
    proc = run_manyfest("copy", src, dst)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"created {dst}@{release.index.digest} from {src}", release.index.digest]
    assert fetch(f"{dst}@{release.index.digest}") == release.index.raw
    assert head_digest(f"{dst}:latest") == ""


def paged_tags(proxy: QuirkProxy) -> Before:
    """Tag lists paginated as the distribution-spec says (Distribution 2.8 ignores ``n``):
    the tags in lexical order, at most ``n`` after ``last``, and while more remain a
    ``Link: <...?n=<n>&last=<last tag sent>>; rel="next"`` header (an absolute URL on the
    second page, a path elsewhere: both forms are allowed)."""
    pages = {"count": 0}

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method != "GET" or not request.path.endswith("/tags/list"):
            return None
        upstream = await proxy.forward(request, query="")
        assert upstream.body is not None
        every = sorted(json.loads(bytes(upstream.body))["tags"])
        n = int(request.query.get("n", len(every)))
        last = request.query.get("last", "")
        rest = [t for t in every if t > last]
        page, more = rest[:n], rest[n:]
        pages["count"] += 1
        headers = {}
        if more:
            url = f"{request.path}?n={n}&last={page[-1]}"
            if pages["count"] == 2:
                url = f"http://{proxy.host}{url}"
            headers["Link"] = f'<{url}>; rel="next"'
        name = request.path.removeprefix("/v2/").removesuffix("/tags/list")
        return web.json_response({"name": name, "tags": page}, headers=headers)

    return quirk


@slow
def test_all_tags_paginates_and_copies_every_tag(registry: RegistryServer,
                                                 target: RegistryServer, ns: str) -> None:
    """More tags than one page: ``--all-tags`` asks for pages of 2 (``--tag-page-size``),
    follows the ``Link`` headers to the end (a registry paginating as the spec says) and
    copies each tag."""
    proxy = QuirkProxy(registry.host).start()
    try:
        proxy.before.append(paged_tags(proxy))
        repo = f"{proxy.host}/{ns}/app"
        releases = {}
        for tag in ("1.0", "1.1", "2.0", "latest", "rc"):
            releases[tag] = push_release(f"{registry.host}/{ns}/app:{tag}", f"{ns} {tag}")
        proc = run_manyfest("copy", "--all-tags", "--tag-page-size", "2", repo,
                            f"{target.host}/{ns}/app")
        assert proc.returncode == 0, proc.stderr
        pages = sorted(k for k in proxy.seen if "/tags/list" in k)
        assert pages == sorted([f"GET /v2/{ns}/app/tags/list?n=2",
                                f"GET /v2/{ns}/app/tags/list?n=2&last=1.1",
                                f"GET /v2/{ns}/app/tags/list?n=2&last=latest"])
        assert all(proxy.seen[p] == 1 for p in pages)
    finally:
        proxy.stop()
    lines = proc.stdout.splitlines()
    assert len(lines) == 5  # five digests: no digest-only last line
    for tag, release in releases.items():
        assert f"created {target.host}/{ns}/app:{tag}@{release.index.digest} from " \
            f"{repo}:{tag}" in lines
        assert fetch(f"{target.host}/{ns}/app:{tag}") == release.index.raw


def looping_tags(proxy: QuirkProxy) -> Before:
    """Tag lists whose ``Link`` header always names the first page again (a registry or
    proxy that ignores ``last``): the same two tags on every page."""

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method != "GET" or not request.path.endswith("/tags/list"):
            return None
        name = request.path.removeprefix("/v2/").removesuffix("/tags/list")
        return web.json_response({"name": name, "tags": ["1.0", "1.1"]}, headers={
            "Link": f'<{request.path}?n=2>; rel="next"'})

    return quirk


@slow
def test_all_tags_stops_a_registry_paging_in_a_loop(registry: RegistryServer,
                                                    target: RegistryServer, ns: str) -> None:
    """A tag list whose ``Link`` names a page already read: ``--all-tags`` stops at once
    (the first page asked for once, the page it names not at all) with one line naming the
    repository and the registry's answer; nothing is copied."""
    proxy = QuirkProxy(registry.host).start()
    try:
        proxy.before.append(looping_tags(proxy))
        push_release(f"{registry.host}/{ns}/app:1.0", f"{ns} loop")
        repo = f"{proxy.host}/{ns}/app"
        proc = run_manyfest("copy", "--all-tags", "--tag-page-size", "2", repo,
                            f"{target.host}/{ns}/app")
        pages = {k: n for k, n in proxy.seen.items() if "/tags/list" in k}
    finally:
        proxy.stop()
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.splitlines() == [
        f"list tags of {repo}: the registry pages in a loop: its Link header "
        f'(</v2/{ns}/app/tags/list?n=2>; rel="next") names a page already read: registry '
        "answered 200; the registry or a proxy in front of it is broken: report it to its "
        "operator"]
    assert pages == {f"GET /v2/{ns}/app/tags/list?n=2": 1}
    assert head_digest(f"{target.host}/{ns}/app:1.0") == ""


@slow
def test_copy_plan_documents_with_lists_in_one_run(registry: RegistryServer,
                                                   target: RegistryServer, ns: str,
                                                   tmp_path: Path) -> None:
    """A plan of a list and two ``copy:`` documents (one ``all_tags``): one publish run;
    the report has a line per copy (``kind: copy``, ``source``) beside the list's."""
    release = push_release(f"{registry.host}/{ns}/staging:1.0", ns)
    other = push_release(f"{registry.host}/{ns}/tools:x", f"{ns} tools")
    amd = build_image(Platform("linux", "amd64"), f"{ns} list")

    async def seed() -> None:
        async with Transport(Settings()) as transport:
            await push_image(RegistryClient(transport),
                             reference.parse(f"{registry.host}/{ns}/list-amd64:1"), amd)

    anyio.run(seed)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""\
copy: {registry.host}/{ns}/staging:1.0
to: [{target.host}/{ns}/prod, {target.host}/{ns}/prod:stable]
---
image: {registry.host}/{ns}/list:1
manifests:
  - image: {registry.host}/{ns}/list-amd64:1
---
copy: {registry.host}/{ns}/tools
to: {target.host}/{ns}/tools
all_tags: true
""")
    report_file = tmp_path / "report.jsonl"
    proc = run_manyfest("publish", "--report", str(report_file), str(plan))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in report_file.read_text().splitlines()]
    copies = [(d["source"], d["target"], d["status"], d["digest"])
              for d in lines if d.get("kind") == "copy"]
    assert copies == [
        (f"{registry.host}/{ns}/staging:1.0", f"{target.host}/{ns}/prod:1.0", "created",
         release.index.digest),
        (f"{registry.host}/{ns}/staging:1.0", f"{target.host}/{ns}/prod:stable", "created",
         release.index.digest),
        (f"{registry.host}/{ns}/tools:x", f"{target.host}/{ns}/tools:x", "created",
         other.index.digest),
    ]
    [listed] = [d for d in lines if "kind" not in d]
    assert (listed["target"], listed["status"]) == (f"{registry.host}/{ns}/list:1", "created")
    assert_exact_copy(release, f"{target.host}/{ns}/prod:stable")
    assert_exact_copy(other, f"{target.host}/{ns}/tools:x")


@slow
def test_failed_copy_names_the_reference_and_exit_codes(registry: RegistryServer,
                                                        target: RegistryServer,
                                                        ns: str) -> None:
    missing = f"{registry.host}/{ns}/nothing:1"
    proc = run_manyfest("copy", missing, f"{target.host}/{ns}/x")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"copy {missing} to {target.host}/{ns}/x:1 failed: no such manifest: {missing}: "
        "registry answered 404; push the image first, or check its name and tag"]
    proc = run_manyfest("copy", "--all-tags", f"{registry.host}/{ns}/app:1",
                        f"{target.host}/{ns}/x")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"SRC: {registry.host}/{ns}/app:1 names a tag or digest: --all-tags copies every tag "
        f"of a repository; give the source repository without a tag, e.g. "
        f"{registry.host}/{ns}/app"]


@slow
def test_a_child_served_with_other_bytes_fails_the_copy_and_the_tag_stays(
        registry: RegistryServer, target: RegistryServer, ns: str) -> None:
    """Every fetched manifest is checked against the digest that named it: a child whose
    bytes the source serves changed fails the copy, and the target tag is not written."""
    release = push_release(f"{registry.host}/{ns}/app:1", ns)
    image = next(d for d, m in release.manifests.items() if not m.is_index)
    proxy = QuirkProxy(registry.host).start()

    async def tamper(request: web.Request, response: web.Response) -> web.Response:
        if request.method == "GET" and request.path.endswith(f"/manifests/{image}"):
            assert response.body is not None
            body = bytes(response.body).replace(b'"schemaVersion"', b' "schemaVersion"', 1)
            return web.Response(status=200, body=body, headers={
                k: v for k, v in response.headers.items() if k.lower() != "content-length"})
        return response

    proxy.after.append(tamper)
    try:
        src = f"{proxy.host}/{ns}/app:1"
        proc = run_manyfest("copy", src, f"{target.host}/{ns}/app")
    finally:
        proxy.stop()
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert re.fullmatch(
        re.escape(f"copy {src} to {target.host}/{ns}/app:1 failed: source registry "
                  f"{proxy.host}: manifest {proxy.host}/"
                  f"{ns}/app@{image}: content has digest ") + r"sha256:[0-9a-f]{64}"
        + re.escape(f", expected {image}") + r"(; .*)?", line), line
    assert head_digest(f"{target.host}/{ns}/app:1") == ""


def _docs_copy_blocks() -> list[tuple[str, int]]:
    """The ``<!-- plan copies=N -->`` YAML blocks of docs/plan.md, N copy documents
    (tests/test_docs.py's markers; a plan of copies only has no ``lists=``, so test_docs
    leaves it to us)."""
    text = (REPO_ROOT / "docs" / "plan.md").read_text()
    return [(m.group(2), int(m.group(1))) for m in re.finditer(
        r"<!--\s*plan copies=(\d+)\s*-->\n```yaml\n(.*?)^```", text, re.S | re.M)]


@slow
def test_docs_copy_example_publishes(registry: RegistryServer, ns: str,
                                     tmp_path: Path) -> None:
    """The copy example of docs/plan.md: parsed to the copies it says, dry-run, then run:
    every target holds the source's exact bytes."""
    [(text, documents)] = _docs_copy_blocks()
    text = text.replace("registry.example.com/", f"{registry.host}/{ns}/")
    plan = parse_plan(text, "docs/plan.md")
    assert plan.lists == []
    assert len(plan.copies) == documents
    releases = {}
    copies = 0
    for copy in plan.copies:
        tags = ["1.0", "2.0"] if copy.all_tags else [copy.source.tag or "latest"]
        copies += len(tags) * len(copy.targets)
        for tag in tags:
            ref = str(copy.source.with_tag(tag))
            releases[ref] = push_release(ref, f"{ns} {ref}")
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    proc = run_manyfest("publish", "--dry-run", str(path))
    assert proc.returncode == 0, proc.stderr
    heads = [line for line in proc.stdout.splitlines() if line.startswith("would create ")]
    assert len(heads) == copies, proc.stdout
    proc = run_manyfest("publish", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert len(results) == copies
    for r in results:
        assert r["kind"] == "copy"
        assert r["status"] == "created"
        assert fetch(r["target"]) == releases[r["source"]].index.raw
    assert sorted({r["source"] for r in results}) == sorted(releases)


# ------------------------------------------------------------------ differential


@slow
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_same_digests_as_skopeo_copy_all(registry: RegistryServer, target: RegistryServer,
                                         ns: str, tmp_path: Path) -> None:
    """The same digests as ``skopeo copy --all --preserve-digests`` for an index skopeo can
    copy unchanged: attestations and an artifact manifest, no nested index (skopeo 1.9:
    "Unexpectedly received a manifest list instead of a manifest for a single image"),
    compact JSON (skopeo refuses to preserve the digest of other layouts)."""
    src = f"{registry.host}/{ns}/app:1"
    release = push_release(src, ns, nested_index=False, compact=True)
    (tmp_path / "run").mkdir(exist_ok=True)  # skopeo's $XDG_RUNTIME_DIR
    sk = subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
         "--dest-tls-verify=false", f"docker://{src}", f"docker://{target.host}/{ns}/sk:1"],
        check=False, capture_output=True, text=True, timeout=300)
    assert sk.returncode == 0, sk.stderr
    proc = run_manyfest("copy", src, f"{target.host}/{ns}/mf:1")
    assert proc.returncode == 0, proc.stderr
    assert head_digest(f"{target.host}/{ns}/sk:1") == release.index.digest
    assert head_digest(f"{target.host}/{ns}/mf:1") == release.index.digest
    assert fetch(f"{target.host}/{ns}/sk:1") == fetch(f"{target.host}/{ns}/mf:1")
    for digest in release.manifests:
        for repo in ("sk", "mf"):
            assert head_digest(f"{target.host}/{ns}/{repo}@{digest}") == digest, (repo, digest)


# ------------------------------------------------------------------ units


def test_next_link_reads_rfc8288_headers() -> None:
    assert next_link('</v2/a/tags/list?last=b&n=2>; rel="next"') == "/v2/a/tags/list?last=b&n=2"
    assert next_link('<https://r/x?p=1>; rel="prev", <https://r/x?p=3>; rel=next') == \
        "https://r/x?p=3"
    assert next_link('<https://r/x?a,b>; title="x"; rel="last next"') == "https://r/x?a,b"
    assert next_link('<https://r/x>; rel="prev"') == ""
    assert next_link("") == ""


@pytest.mark.parametrize(("text", "error"), [
    ("copy: a/b:1\n", "plan: document 1: missing key 'to' (a list of strings); a copy: "
     "document is copy: SOURCE, to: [TARGET, ...] and optionally all_tags: true "
     "(docs/plan.md)"),
    ("copy: a/b:1\nto: [c/d]\nall_tags: yes\n", "plan: document 1: all_tags: expected true "
     "or false, got 'yes'; a copy: document is copy: SOURCE, to: [TARGET, ...] and "
     "optionally all_tags: true (docs/plan.md)"),
    ("copy: a/b:1\nto: [c/d@sha256:" + "0" * 64 + "]\n",
     "plan: document 1: to: c/d@sha256:" + "0" * 64 + " names a digest: a copy keeps the "
     "source's digest; give a repository (the source's tag is kept) or a reference with a "
     "tag"),
    ("copy: a/b\nto: [c/d:1]\nall_tags: true\n", "plan: document 1: to: c/d:1 has a tag: "
     "all_tags: true copies every tag of the source into a repository; give the target "
     "repository without a tag, e.g. docker.io/c/d"),
    ("copy: a/b:1\nto: [a/b]\n", "plan: document 1: to: docker.io/a/b is the source itself; "
     "give another repository or tag to copy to"),
    ("copy: a/b@sha256:12\nto: [c/d]\n", "plan: document 1: copy: invalid reference "
     "format: 'a/b@sha256:12': "),
    ("copy: a/b:1\nto: [c/d]\nimage: x/y:1\n", None),
])
def test_copy_document_errors_are_one_line(text: str, error: str | None) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(text)
    if error is None:
        assert caught.value.one_line() == "plan: document 1: unknown key 'image'; a copy: " \
            "document is copy: SOURCE, to: [TARGET, ...] and optionally all_tags: true " \
            "(docs/plan.md)"
    elif error.endswith(": "):  # the reference grammar's own words follow
        assert caught.value.one_line().startswith(error)
    else:
        assert caught.value.one_line() == error


def test_copy_document_forms() -> None:
    plan = parse_plan("copy: reg.example/a:1\nto: reg2.example/b\n---\n"
                      "copy: reg.example/a\nto: [reg2.example/c, reg3.example/c]\n"
                      "all_tags: true\n")
    assert plan.lists == []
    one, two = plan.copies
    assert (str(one.source), [str(t) for t in one.targets], one.all_tags, one.document) == (
        "reg.example/a:1", ["reg2.example/b"], False, 1)
    assert (str(two.source), two.all_tags, two.document) == ("reg.example/a", True, 2)


@slow
def test_commands_list_copy() -> None:
    proc = run_manyfest("--help")
    assert re.search(r"^\s+copy\s+Copy an image or a whole index", proc.stdout, re.M)
    assert (REPO_ROOT / "src/manyfest/cli/copy.py").exists()


# ------------------------------------------------------------------ engine units (in memory)


def _fake_release(fake: FakeRegistry, repository: str, tag: str, seed: str) -> Release:
    """The release index in the in-memory registry: every manifest by digest, the index at
    ``tag``."""
    release, images, nested = build_release(seed)
    for image in images:
        fake.add_image(repository, image.manifest.digest, image)
    assert nested is not None
    fake._store(repository, nested, nested.digest)
    fake._store(repository, release.index, tag)
    return release


def _copy(fake: FakeRegistry, src: str, *dsts: str, dry_run: bool = False,
          engine: Engine | None = None) -> list[ListResult]:
    from manyfest.ops.copy import copy as run_copy
    from manyfest.ops.plan import check_copy

    plan = check_copy(f"{FAKE}/{src}", [f"{FAKE}/{d}" for d in dsts])
    return anyio.run(lambda: run_copy(engine or Engine(fake.client()), [plan],
                                      dry_run=dry_run))


def test_children_before_parents_each_once_and_the_tag_last() -> None:
    """Two tags of one repository copied at once: every child PUT once, by digest, after
    its own children (the nested index after its image and attestation) and blobs; each
    blob made present once; the tags last."""
    fake = FakeRegistry()
    release = _fake_release(fake, "staging", "1", "units")
    results = _copy(fake, "staging:1", "prod:a", "prod:b")
    assert [(str(r.target), r.status, r.digest) for r in results] == [
        (f"{FAKE}/prod:a", "created", release.index.digest),
        (f"{FAKE}/prod:b", "created", release.index.digest)]
    puts = [ref for m, repo, ref in fake.calls if m == "PUT" and repo == "prod"]
    assert sorted(puts[:-2]) == sorted(release.manifests)  # each child once, by digest
    assert sorted(puts[-2:]) == ["a", "b"]
    nested = next(d for d, m in release.manifests.items() if m.is_index)
    for child in json.loads(release.manifests[nested].raw)["manifests"]:
        assert puts.index(child["digest"]) < puts.index(nested)
    blob_calls = [ref for m, repo, ref in fake.calls if m in ("mount", "copy") and repo == "prod"]
    assert sorted(set(blob_calls)) == sorted(release.blobs)
    assert len([c for c in fake.calls if c[0] == "mount"]) == len(release.blobs)
    for digest in release.manifests:  # each child GET once from the source, by digest
        assert fake.calls.count(("GET", "staging", digest)) == 1
    assert fake.manifests["prod"]["a"].raw == release.index.raw


def test_recopy_is_two_heads_and_present_children_are_not_fetched() -> None:
    fake = FakeRegistry()
    release = _fake_release(fake, "staging", "1", "again")
    _copy(fake, "staging:1", "prod:1")
    fake.calls.clear()
    [again] = _copy(fake, "staging:1", "prod:1")
    assert again.status == "unchanged"
    assert fake.calls == [("HEAD", "staging", "1"), ("HEAD+push", "prod", "1")]
    # Another tag of the same index in a repository holding every child: HEADs of the
    # children by digest, no GET of them, no blob call; the index PUT at the tag.
    fake.calls.clear()
    fake.manifests["prod"].pop("1")
    [moved] = _copy(fake, "staging:1", "prod:1")
    assert moved.status == "created"
    entries = [e["digest"] for e in json.loads(release.index.raw)["manifests"]]
    assert sorted(c for c in fake.calls if c[0] == "HEAD+push") == sorted(
        [("HEAD+push", "prod", "1")] + [("HEAD+push", "prod", d) for d in entries])
    assert [c for c in fake.calls if c[0] in ("mount", "copy")] == []
    assert ("GET", "staging", release.index.digest) in fake.calls  # the index itself
    assert all(c[0] != "GET" or c[2] == release.index.digest for c in fake.calls)
    assert fake.calls[-1] == ("PUT", "prod", "1")


def test_a_failed_child_leaves_the_tag_and_other_copies_alone() -> None:
    fake = FakeRegistry()
    release = _fake_release(fake, "staging", "1", "fails")
    fake.refuse_put.add("broken")
    results = _copy(fake, "staging:1", "broken:1", "prod:1")
    assert [r.status for r in results] == ["failed", "created"]
    assert results[0].error is not None
    assert "1" not in fake.manifests.get("broken", {})
    assert fake.manifests["prod"]["1"].digest == release.index.digest


def test_dry_run_heads_the_children_and_writes_nothing() -> None:
    fake = FakeRegistry()
    release = _fake_release(fake, "staging", "1", "dry")
    [result] = _copy(fake, "staging:1", "prod:1", dry_run=True)
    assert result.status == "created"
    assert result.dry_run
    assert all(c[0] in ("HEAD", "GET") for c in fake.calls), fake.calls
    assert result.actions[-1] == f"put {FAKE}/prod:1 -> {release.index.digest} (new tag)"
    assert sorted(a.split()[-1] for a in result.actions[:-1]) == sorted(release.manifests)
