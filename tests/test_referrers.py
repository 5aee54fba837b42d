"""Referrers travel with children: cosign tags, the referrers tag schema, the referrers API.

The stock registry (Distribution 2.8) has no referrers API (404 to ``/referrers/``): the
fallback tag path is tested against it directly, through a counting proxy (``plain``). The
API path runs through :class:`tests.referrers_api.ReferrersApi` on a second proxy (``api``),
a registry of its own as clients see it (another host:port) in front of the same storage.

Sources: ``a`` on the stock registry (an amd64 image with a cosign signature, an SBOM
attached through the fallback tag and a cosign signature of that SBOM) and ``a-api`` behind
the API (an arm64 image with an SBOM and a signature of the SBOM listed by the API, and a
cosign attestation).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.reference import Reference
from manyfest.referrers import fallback_tag
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, manyfest
from tests.imagewriter import Image, build_image, push_built, push_image
from tests.quirk_proxy import QuirkProxy
from tests.referrers_api import ReferrersApi
from tests.registry_server import RegistryServer
from tests.signing import (
    SPDX,
    Artifact,
    attach_cosign,
    attach_fallback,
    cosign_attestation,
    cosign_signature,
    fallback_descriptor,
    fallback_index,
    oci_referrer,
    oci_signature,
    push_artifact,
    sbom_document,
)

pytestmark = pytest.mark.slow
AMD64, ARM64 = PLATFORMS[0], PLATFORMS[2]


@dataclass
class Proxies:
    plain: QuirkProxy
    api: QuirkProxy
    emulation: ReferrersApi


@pytest.fixture(scope="module")
def proxies(registry: RegistryServer) -> Iterator[Proxies]:
    plain = QuirkProxy(registry.host).start()
    api = QuirkProxy(registry.host)
    emulation = ReferrersApi(api).install()
    api.start()
    try:
        yield Proxies(plain, api, emulation)
    finally:
        plain.stop()
        api.stop()


@dataclass
class Seeded:
    amd64: Image
    arm64: Image
    sig: Artifact        # cosign .sig of amd64 (in a)
    sbom: Artifact       # OCI referrer of amd64, listed by a's fallback tag
    sbom_sig: Artifact   # cosign .sig of that SBOM (in a)
    sbom_api: Artifact   # OCI referrer of arm64, listed by the API (in a-api)
    sbom_api_sig: Artifact  # OCI referrer of sbom_api, listed by the API
    att: Artifact        # cosign .att of arm64 (in a-api)


def _run(fn):  # type: ignore[no-untyped-def]
    return anyio.run(fn)


def seed_sources(p: Proxies, ns: str) -> Seeded:
    amd64 = build_image(AMD64, f"{ns} amd64", oci=True)
    arm64 = build_image(ARM64, f"{ns} arm64", oci=True)
    _run(lambda: push_built(p.plain.host, {f"{ns}/a:amd64": amd64}))
    _run(lambda: push_built(p.api.host, {f"{ns}/a-api:arm64": arm64}))
    a = reference.parse(f"{p.plain.host}/{ns}/a")
    a_api = reference.parse(f"{p.api.host}/{ns}/a-api")
    sig = cosign_signature(a.name, amd64.manifest.digest, ns, signatures=2)
    sbom = oci_referrer(amd64.manifest, SPDX, SPDX, sbom_document(f"{ns} amd64"))
    sbom_sig = cosign_signature(a.name, sbom.digest, f"{ns} sbom")
    sbom_api = oci_referrer(arm64.manifest, SPDX, SPDX, sbom_document(f"{ns} arm64"))
    sbom_api_sig = oci_signature(sbom_api.manifest, ns)
    att = cosign_attestation(arm64.manifest.digest, ns)

    async def attach() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            await attach_cosign(client, a, amd64.manifest.digest, sig, ".sig")
            await attach_fallback(client, a, sbom)
            await attach_cosign(client, a, sbom.digest, sbom_sig, ".sig")
            await push_artifact(client, a_api, sbom_api)
            await push_artifact(client, a_api, sbom_api_sig)
            await attach_cosign(client, a_api, arm64.manifest.digest, att, ".att")

    _run(attach)
    assert p.emulation.listed(f"{ns}/a-api", arm64.manifest.digest) == [sbom_api.digest]
    assert p.emulation.listed(f"{ns}/a-api", sbom_api.digest) == [sbom_api_sig.digest]
    return Seeded(amd64, arm64, sig, sbom, sbom_sig, sbom_api, sbom_api_sig, att)


def _plan(path: Path, target: str, sources: list[str]) -> Path:
    lines = [f"image: {target}", "manifests:"] + [f"  - image: {s}" for s in sources]
    path.write_text("\n".join(lines) + "\n")
    return path


def _publish(plan: Path, *extra: str) -> tuple[dict[str, object], str]:
    proc = manyfest("publish", "--json", *extra, str(plan))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    return doc["results"][0], proc.stderr


def _head(ref: str) -> str:
    async def run() -> str:
        async with Transport(Settings()) as transport:
            found = await RegistryClient(transport).head_manifest(reference.parse(ref))
            return found.digest if found else ""
    return str(_run(run))


def _tags(repo: str) -> list[str]:
    async def run() -> list[str]:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).list_tags(reference.parse(repo))
    return list(_run(run))


def _index(repo: Reference, subject: str) -> list[dict[str, object]]:
    async def run() -> list[dict[str, object]]:
        async with Transport(Settings()) as transport:
            return await fallback_index(RegistryClient(transport), repo, subject)
    return list(_run(run))


def test_publish_carries_referrers_to_both_kinds_of_registry(
        proxies: Proxies, ns: str, tmp_path: Path) -> None:
    p = proxies
    s = seed_sources(p, ns)
    sources = [f"{p.plain.host}/{ns}/a:amd64", f"{p.api.host}/{ns}/a-api:arm64"]
    amd, arm = s.amd64.manifest.digest, s.arm64.manifest.digest

    # --- into the stock registry (no API): fallback tags and cosign tags in b
    b = reference.parse(f"{p.plain.host}/{ns}/b")
    result, _ = _publish(_plan(tmp_path / "b.yaml", f"{b.name}:1", sources))
    assert result["status"] == "created"
    assert result["referrers"] == [
        {"subject": amd, "digest": s.sbom.digest, "media_type": mediatypes.OCI_MANIFEST,
         "artifact_type": SPDX, "via": "tag"},
        {"subject": s.sbom.digest, "digest": s.sbom_sig.digest,
         "media_type": mediatypes.OCI_MANIFEST, "artifact_type": mediatypes.OCI_CONFIG,
         "via": "cosign"},
        {"subject": amd, "digest": s.sig.digest, "media_type": mediatypes.OCI_MANIFEST,
         "artifact_type": mediatypes.OCI_CONFIG, "via": "cosign"},
        {"subject": arm, "digest": s.sbom_api.digest, "media_type": mediatypes.OCI_MANIFEST,
         "artifact_type": SPDX, "via": "api"},
        {"subject": s.sbom_api.digest, "digest": s.sbom_api_sig.digest,
         "media_type": mediatypes.OCI_MANIFEST,
         "artifact_type": "application/vnd.example.signature.v1+json", "via": "api"},
        {"subject": arm, "digest": s.att.digest, "media_type": mediatypes.OCI_MANIFEST,
         "artifact_type": mediatypes.OCI_CONFIG, "via": "cosign"},
    ]
    # identical digests in b: cosign tags, and the fallback tags listing the OCI referrers
    assert _head(f"{b.name}:{fallback_tag(amd)}.sig") == s.sig.digest
    assert _head(f"{b.name}:{fallback_tag(s.sbom.digest)}.sig") == s.sbom_sig.digest
    assert _head(f"{b.name}:{fallback_tag(arm)}.att") == s.att.digest
    for art in (s.sbom, s.sbom_api, s.sbom_api_sig):
        assert _head(f"{b.name}@{art.digest}") == art.digest
    assert _index(b, amd) == [fallback_descriptor(s.sbom)]
    assert _index(b, arm) == [fallback_descriptor(s.sbom_api)]
    assert _index(b, s.sbom_api.digest) == [fallback_descriptor(s.sbom_api_sig)]
    # the stock registry was probed once, and never again
    assert p.plain.count("GET", "/referrers/") == 1

    # --- into the registry with the API: referrers PUT with their subject, no fallback tag
    c_name = f"{p.api.host}/{ns}/c"
    result, _ = _publish(_plan(tmp_path / "c.yaml", f"{c_name}:1", sources))
    assert result["status"] == "created"
    assert [r["digest"] for r in result["referrers"]] == [
        s.sbom.digest, s.sbom_sig.digest, s.sig.digest, s.sbom_api.digest,
        s.sbom_api_sig.digest, s.att.digest]
    assert p.emulation.listed(f"{ns}/c", amd) == [s.sbom.digest]
    assert p.emulation.listed(f"{ns}/c", arm) == [s.sbom_api.digest]
    assert p.emulation.listed(f"{ns}/c", s.sbom_api.digest) == [s.sbom_api_sig.digest]
    tags = _tags(c_name)
    assert sorted(tags) == sorted(["1", f"{fallback_tag(amd)}.sig",
                                   f"{fallback_tag(s.sbom.digest)}.sig",
                                   f"{fallback_tag(arm)}.att"])


def test_a_cosign_tag_the_target_has_is_kept(proxies: Proxies, ns: str, tmp_path: Path) -> None:
    """The target's own signature (another key's) at the cosign tag is never untagged: the
    source's signature lands by digest only, and a warning says so."""
    p = proxies
    s = seed_sources(p, ns)
    amd = s.amd64.manifest.digest
    d = reference.parse(f"{p.plain.host}/{ns}/d")
    theirs = cosign_signature(d.name, amd, f"{ns} production key")
    assert theirs.digest != s.sig.digest

    async def sign_target() -> None:
        async with Transport(Settings()) as transport:
            await attach_cosign(RegistryClient(transport), d, amd, theirs, ".sig")

    _run(sign_target)
    result, stderr = _publish(_plan(tmp_path / "d.yaml", f"{d.name}:1",
                                    [f"{p.plain.host}/{ns}/a:amd64"]))
    assert result["status"] == "created"
    sig_tag = f"{d.name}:{fallback_tag(amd)}.sig"
    assert _head(sig_tag) == theirs.digest
    assert _head(f"{d.name}@{s.sig.digest}") == s.sig.digest
    assert (f"{sig_tag} holds {theirs.digest}, not {p.plain.host}/{ns}/a's {s.sig.digest}: "
            f"kept; the source's is in {d.name} by digest only") in stderr
    # the other referrers still travel
    assert _index(d, amd) == [fallback_descriptor(s.sbom)]


# ------------------------------------------------------------------ copy


@pytest.fixture
def other(second_registry: RegistryServer) -> RegistryServer:
    """The second registry (:func:`tests.conftest.second_registry`): copies between registries."""
    return second_registry


@dataclass
class SignedRelease:
    """An OCI index of two images at ``<repo>:1.0``; the amd64 child signed (cosign) with an
    SBOM (fallback tag), the index signed twice: cosign, and an OCI referrer (fallback tag)."""

    repo: Reference
    index: Manifest
    amd64: Image
    arm64: Image
    child_sig: Artifact
    child_sbom: Artifact
    index_sig: Artifact
    index_osig: Artifact


def seed_release(p: Proxies, ns: str, name: str = "rel") -> SignedRelease:
    amd64 = build_image(AMD64, f"{ns} rel amd64", oci=True)
    arm64 = build_image(ARM64, f"{ns} rel arm64", oci=True)
    repo = reference.parse(f"{p.plain.host}/{ns}/{name}")
    entries = [{"mediaType": i.manifest.media_type, "digest": i.manifest.digest,
                "size": i.manifest.size, "platform": plat}
               for i, plat in ((amd64, {"architecture": "amd64", "os": "linux"}),
                               (arm64, {"architecture": "arm64", "os": "linux",
                                        "variant": "v8"}))]
    index = Manifest.from_bytes(json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries},
        indent=2).encode())
    child_sig = cosign_signature(repo.name, amd64.manifest.digest, f"{ns} child")
    child_sbom = oci_referrer(amd64.manifest, SPDX, SPDX, sbom_document(f"{ns} rel"))
    index_sig = cosign_signature(repo.name, index.digest, f"{ns} index", signatures=2)
    index_osig = oci_signature(index, f"{ns} index")

    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for image in (amd64, arm64):
                await push_image(client, repo.with_digest(image.manifest.digest), image)
            await client.put_manifest(repo.with_tag("1.0"), index)
            await attach_cosign(client, repo, amd64.manifest.digest, child_sig, ".sig")
            await attach_fallback(client, repo, child_sbom)
            await attach_cosign(client, repo, index.digest, index_sig, ".sig")
            await attach_fallback(client, repo, index_osig)

    _run(push)
    return SignedRelease(repo, index, amd64, arm64, child_sig, child_sbom, index_sig,
                         index_osig)


def _raw(ref: str) -> bytes:
    async def run() -> bytes:
        async with Transport(Settings()) as transport:
            return (await RegistryClient(transport).get_manifest(reference.parse(ref))).raw
    return bytes(_run(run))


def _entry(subject: str, art: Artifact, via: str) -> dict[str, str]:
    doc = json.loads(art.manifest.raw)
    kind = doc.get("artifactType") or doc["config"]["mediaType"]
    return {"subject": subject, "digest": art.digest, "media_type": art.manifest.media_type,
            "artifact_type": kind, "via": via}


def test_copy_carries_the_referrers_of_the_index_and_its_children(
        proxies: Proxies, other: RegistryServer, ns: str) -> None:
    """``manyfest copy`` into another repository (mounts) and another registry (streamed):
    the child's signature and SBOM and the index's two signatures come along with the same
    digests; the fallback tags written in each target are byte for byte the source's."""
    p = proxies
    s = seed_release(p, ns)
    src = f"{s.repo.name}:1.0"
    same = reference.parse(f"{p.plain.host}/{ns}/prod")
    far = reference.parse(f"{other.host}/{ns}/mirror")
    amd, idx = s.amd64.manifest.digest, s.index.digest
    probes = p.plain.count("GET", "/referrers/")
    proc = manyfest("copy", "--json", src, same.name, f"{far.name}:stable")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    results = json.loads(proc.stdout)["results"]
    carried = [_entry(amd, s.child_sbom, "tag"), _entry(amd, s.child_sig, "cosign"),
               _entry(idx, s.index_osig, "tag"), _entry(idx, s.index_sig, "cosign")]
    assert [(r["target"], r["status"], r["digest"], r["referrers"]) for r in results] == [
        (f"{same.name}:1.0", "created", idx, carried),
        (f"{far.name}:stable", "created", idx, carried)]
    for repo, tag in ((same, "1.0"), (far, "stable")):
        assert _raw(f"{repo.name}:{tag}") == s.index.raw
        for art in (s.child_sbom, s.index_osig):
            assert _raw(f"{repo.name}@{art.digest}") == art.manifest.raw
        assert _raw(f"{repo.name}:{fallback_tag(amd)}.sig") == s.child_sig.manifest.raw
        assert _raw(f"{repo.name}:{fallback_tag(idx)}.sig") == s.index_sig.manifest.raw
        # the fallback tags: the same bytes as the ones the test helper wrote in the source
        for subject in (amd, idx):
            assert _raw(f"{repo.name}:{fallback_tag(subject)}") == _raw(
                f"{s.repo.name}:{fallback_tag(subject)}")
        assert sorted(_tags(repo.name)) == sorted([
            tag, fallback_tag(amd), f"{fallback_tag(amd)}.sig", fallback_tag(idx),
            f"{fallback_tag(idx)}.sig"])
    assert _index(far, idx) == [fallback_descriptor(s.index_osig)]
    assert _index(far, amd) == [fallback_descriptor(s.child_sbom)]
    # one probe of the source registry's referrers API at most (none if an earlier test of
    # this module's proxy already asked)
    assert p.plain.count("GET", "/referrers/") - probes <= 1

    # again: every tag holds the digest; nothing is looked for, nothing written
    seen = Counter(p.plain.seen)
    proc = manyfest("copy", "--json", src, same.name, f"{far.name}:stable")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["status"], "referrers" in r) for r in results] == [
        ("unchanged", False), ("unchanged", False)]
    asked = p.plain.seen - seen
    asked.pop("GET /v2/", None)
    assert sorted(asked.elements()) == [f"HEAD /v2/{ns}/prod/manifests/1.0",
                                        f"HEAD /v2/{ns}/rel/manifests/1.0"]


# ------------------------------------------------------------------ --referrers skip


def _copy_plan(path: Path, source: str, target: str) -> Path:
    path.write_text(f"copy: {source}\nto:\n  - {target}\n")
    return path


def test_referrers_skip_asks_nothing_and_copy_documents_follow_the_flag(
        proxies: Proxies, ns: str, tmp_path: Path) -> None:
    """``--referrers skip`` (publish, copy, and a plan's ``copy:`` documents under publish's
    flag): not one referrers request (no probe, no tag list), nothing attached in the
    target; without it, a ``copy:`` document carries the referrers as ``manyfest copy``."""
    p = proxies
    seed_sources(p, ns)
    rel = seed_release(p, ns)
    lookups = (p.plain.count("GET", "/referrers/"), p.plain.count("GET", "/tags/list"))
    b = f"{p.plain.host}/{ns}/b"
    result, _ = _publish(_plan(tmp_path / "b.yaml", f"{b}:1", [f"{p.plain.host}/{ns}/a:amd64"]),
                         "--referrers", "skip")
    assert (result["status"], "referrers" in result) == ("created", False)
    proc = manyfest("copy", "--json", "--referrers", "skip", f"{rel.repo.name}:1.0",
                    f"{p.plain.host}/{ns}/copied")
    assert proc.returncode == 0, proc.stderr
    [copied] = json.loads(proc.stdout)["results"]
    assert (copied["status"], "referrers" in copied) == ("created", False)
    doc = _copy_plan(tmp_path / "copy.yaml", f"{rel.repo.name}:1.0", f"{p.plain.host}/{ns}/doc")
    result, _ = _publish(doc, "--referrers", "skip")
    assert (result["kind"], result["status"], "referrers" in result) == (
        "copy", "created", False)
    assert (p.plain.count("GET", "/referrers/"), p.plain.count("GET", "/tags/list")) == lookups
    assert _tags(b) == ["1"]
    assert _tags(f"{p.plain.host}/{ns}/copied") == ["1.0"]
    assert _tags(f"{p.plain.host}/{ns}/doc") == ["1.0"]

    # the same copy: document with the default (copy): the referrers come along
    doc = _copy_plan(tmp_path / "copy2.yaml", f"{rel.repo.name}:1.0",
                     f"{p.plain.host}/{ns}/doc2")
    result, _ = _publish(doc)
    amd, idx = rel.amd64.manifest.digest, rel.index.digest
    assert result["referrers"] == [
        _entry(amd, rel.child_sbom, "tag"), _entry(amd, rel.child_sig, "cosign"),
        _entry(idx, rel.index_osig, "tag"), _entry(idx, rel.index_sig, "cosign")]


# ------------------------------------------------------------------ stale referrers


def test_a_list_that_moves_names_the_referrers_of_the_old_list(
        proxies: Proxies, ns: str, tmp_path: Path) -> None:
    """A list signed in its repository (cosign, and an OCI signature in the fallback tag),
    then published again with another child: the report's ``stale_referrers`` names both
    signatures of the old digest, and one warning line on stderr says to sign again."""
    p = proxies
    amd64 = build_image(AMD64, f"{ns} stale amd64", oci=True)
    arm64 = build_image(ARM64, f"{ns} stale arm64", oci=True)
    _run(lambda: push_built(p.plain.host, {f"{ns}/s:amd64": amd64, f"{ns}/s:arm64": arm64}))
    c = reference.parse(f"{p.plain.host}/{ns}/c")
    first, _ = _publish(_plan(tmp_path / "1.yaml", f"{c.name}:1", [f"{p.plain.host}/{ns}/s:amd64"]))
    old = str(first["digest"])
    listed = _manifest(f"{c.name}@{old}")
    sig = cosign_signature(c.name, old, f"{ns} list")
    osig = oci_signature(listed, f"{ns} list")

    async def sign() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            await attach_cosign(client, c, old, sig, ".sig")
            await attach_fallback(client, c, osig)

    _run(sign)
    plan = _plan(tmp_path / "2.yaml", f"{c.name}:1",
                 [f"{p.plain.host}/{ns}/s:amd64", f"{p.plain.host}/{ns}/s:arm64"])
    report = tmp_path / "report.jsonl"
    proc = manyfest("publish", "--report", str(report), str(plan))
    assert proc.returncode == 0, proc.stderr
    [line] = report.read_text().splitlines()
    doc = json.loads(line)
    new = doc["digest"]
    assert (doc["status"], doc["old_digest"]) == ("updated", old)
    assert doc["stale_referrers"] == [
        {"subject": old, "digest": osig.digest,
         "artifact_type": "application/vnd.example.signature.v1+json", "via": "tag"},
        {"subject": old, "digest": sig.digest, "artifact_type": mediatypes.OCI_CONFIG,
         "via": "cosign", "tag": f"{fallback_tag(old)}.sig"},
    ]
    warning = (f"warning: {c.name}:1 moved from {old} to {new}: 2 referrers of the old list "
               f"no longer apply ({osig.digest} (application/vnd.example.signature.v1+json), "
               f"{sig.digest} ({fallback_tag(old)}.sig)); sign or attest the new list")
    assert [x for x in proc.stderr.splitlines() if x.startswith("warning:")] == [warning]
    # the old list's signatures are left where they were
    assert _head(f"{c.name}:{fallback_tag(old)}.sig") == sig.digest
    assert _index(c, old) == [fallback_descriptor(osig)]


# ------------------------------------------------------------------ fallback tag writes


def _manifest(ref: str) -> Manifest:
    async def run() -> Manifest:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).get_manifest(reference.parse(ref))
    got: Manifest = _run(run)
    return got


def _index_bytes(*arts: Artifact) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
                       "manifests": [fallback_descriptor(a) for a in arts]},
                      separators=(",", ":")).encode()


def test_two_lists_add_to_one_fallback_tag_through_a_refused_conditional_put(
        proxies: Proxies, ns: str, tmp_path: Path) -> None:
    """One image in two source repositories, each with an SBOM of its own; two lists of one
    run into a repository whose fallback tag for that image already lists a signature. The
    first conditional PUT of the tag is refused (412) after another client added an entry:
    the tag is read again and merged. Every entry is kept: the existing two, then both
    SBOMs, each once."""
    p = proxies
    x = build_image(AMD64, f"{ns} shared", oci=True)
    y = build_image(ARM64, f"{ns} other", oci=True)
    _run(lambda: push_built(p.plain.host, {f"{ns}/a1:x": x, f"{ns}/a2:x": x,
                                           f"{ns}/a2:y": y}))
    a1, a2, b = (reference.parse(f"{p.plain.host}/{ns}/{n}") for n in ("a1", "a2", "b"))
    sbom1 = oci_referrer(x.manifest, SPDX, SPDX, sbom_document(f"{ns} one"))
    sbom2 = oci_referrer(x.manifest, SPDX, SPDX, sbom_document(f"{ns} two"))
    there = oci_signature(x.manifest, f"{ns} there")   # in b before the run
    racer = oci_signature(x.manifest, f"{ns} racer")   # another client, during the run
    digest = x.manifest.digest

    async def attach() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            await attach_fallback(client, a1, sbom1)
            await attach_fallback(client, a2, sbom2)
            await attach_fallback(client, b, there)
            await push_artifact(client, b, racer)

    _run(attach)
    tag_path = f"/v2/{ns}/b/manifests/{fallback_tag(digest)}"
    existing = _manifest(f"{b.name}:{fallback_tag(digest)}")
    conditional: list[str] = []

    async def race(request: web.Request) -> web.StreamResponse | None:
        if request.method != "PUT" or request.path != tag_path:
            return None
        conditional.append(request.headers.get("If-Match", ""))
        if len(conditional) > 1:
            return None
        session = p.plain._session
        assert session is not None
        async with session.put(f"http://{p.plain.upstream}{tag_path}",
                               data=_index_bytes(there, racer),
                               headers={"Content-Type": mediatypes.OCI_INDEX}) as up:
            assert up.status == 201
        return web.Response(status=412, text="precondition failed")

    plan = tmp_path / "two.yaml"
    plan.write_text(f"image: {b.name}:one\nmanifests:\n  - image: {a1.name}:x\n---\n"
                    f"image: {b.name}:two\nmanifests:\n  - image: {a2.name}:x\n"
                    f"  - image: {a2.name}:y\n")
    p.plain.before.append(race)
    try:
        proc = manyfest("publish", "--json", str(plan))
    finally:
        p.plain.before.remove(race)
    assert proc.returncode == 0, proc.stderr
    one, two = json.loads(proc.stdout)["results"]
    assert one["referrers"] == [_entry(digest, sbom1, "tag")]
    assert two["referrers"] == [_entry(digest, sbom2, "tag")]
    listed = _index(b, digest)
    assert listed[:2] == [fallback_descriptor(there), fallback_descriptor(racer)]
    assert sorted(map(json.dumps, listed[2:])) == sorted(
        map(json.dumps, [fallback_descriptor(sbom1), fallback_descriptor(sbom2)]))
    # each PUT was conditional on the ETag read (Distribution's: the quoted digest); the
    # first named the tag as it was before the run
    assert conditional[0] == f'"{existing.digest}"'
    assert len(conditional) == 3
    assert all(conditional)
    for art in (sbom1, sbom2):
        assert _head(f"{b.name}@{art.digest}") == art.digest


def test_a_fallback_tag_that_keeps_changing_fails_the_list_with_the_tag_left(
        proxies: Proxies, ns: str, tmp_path: Path) -> None:
    """Every conditional PUT of the fallback tag refused (412): after 5 rounds the list
    fails with one line naming the tag and the advice; the list's tag is not written."""
    p = proxies
    x = build_image(AMD64, f"{ns} busy", oci=True)
    _run(lambda: push_built(p.plain.host, {f"{ns}/a:x": x}))
    a, b = (reference.parse(f"{p.plain.host}/{ns}/{n}") for n in ("a", "b"))
    sbom = oci_referrer(x.manifest, SPDX, SPDX, sbom_document(f"{ns} busy"))
    there = oci_signature(x.manifest, f"{ns} there")

    async def attach() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            await attach_fallback(client, a, sbom)
            await attach_fallback(client, b, there)

    _run(attach)
    tag = fallback_tag(x.manifest.digest)
    tag_path = f"/v2/{ns}/b/manifests/{tag}"

    async def refuse(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and request.path == tag_path:
            return web.json_response({"errors": [{
                "code": "PRECONDITION_FAILED", "message": "the tag changed",
                "detail": "If-Match does not match"}]}, status=412)
        return None

    puts = p.plain.count("PUT", tag_path)  # the test helper's own, attaching ``there``
    p.plain.before.append(refuse)
    try:
        proc = manyfest("publish", str(_plan(tmp_path / "p.yaml", f"{b.name}:1",
                                             [f"{a.name}:x"])))
    finally:
        p.plain.before.remove(refuse)
    assert p.plain.count("PUT", tag_path) - puts == 5
    assert proc.returncode == 3, proc.stderr
    assert f"[1/1] failed {b.name}:1: update referrers tag {b.name}:{tag}: it changed under " \
        "every one of 5 conditional PUTs: registry answered 412 (PRECONDITION_FAILED: the " \
        "tag changed (detail: If-Match does not match)); another client is writing the same " \
        "referrers tag: re-run when it is done" in proc.stderr.splitlines()
    assert _head(f"{b.name}:1") == ""
    assert _index(b, x.manifest.digest) == [fallback_descriptor(there)]


# ------------------------------------------------------------------ OCI layouts


def test_publish_into_an_oci_layout_keeps_referrers_as_tags_of_index_json(
        proxies: Proxies, ns: str, tmp_path: Path) -> None:
    """A layout has no referrers API: the fallback tag and cosign's tags become
    ``org.opencontainers.image.ref.name`` entries of index.json, the referrers blobs of
    the layout with their digests."""
    p = proxies
    s = seed_sources(p, ns)
    out = tmp_path / "layout"
    amd = s.amd64.manifest.digest
    result, _ = _publish(_plan(tmp_path / "l.yaml", f"oci:{out}:1",
                               [f"{p.plain.host}/{ns}/a:amd64"]))
    assert [(r["digest"], r["via"]) for r in result["referrers"]] == [
        (s.sbom.digest, "tag"), (s.sbom_sig.digest, "cosign"), (s.sig.digest, "cosign")]
    index = json.loads((out / "index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
             for m in index["manifests"]}
    assert sorted(names) == sorted(["1", fallback_tag(amd), f"{fallback_tag(amd)}.sig",
                                    f"{fallback_tag(s.sbom.digest)}.sig"])
    assert names[f"{fallback_tag(amd)}.sig"] == s.sig.digest
    assert names[f"{fallback_tag(s.sbom.digest)}.sig"] == s.sbom_sig.digest

    def blob(digest: str) -> bytes:
        return (out / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    fallback = json.loads(blob(names[fallback_tag(amd)]))
    assert fallback["manifests"] == [fallback_descriptor(s.sbom)]
    for art in (s.sbom, s.sig, s.sbom_sig):
        assert blob(art.digest) == art.manifest.raw
