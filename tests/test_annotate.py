"""``annotate --annotation`` (local entries, written by push) and ``annotate --remote``.

Against the real registry with real-size images (12 layers, 6-10 KiB configs) and
buildx-shaped indexes (image + attestation per platform):

* local: ``--annotation k=v`` / ``k=`` / ``--remove-annotation k`` land in the store's
  ``Descriptor.annotations`` (platform untouched); ``push`` writes them into the OCI index
  (exact bytes and digest); on a Docker manifest list they are refused before any write;
  docker keeps them when it annotates the entry and pushes without them;
* remote: the index at LIST's tag is rewritten with only the change (every other byte as
  served: top-level fields, the other descriptors, attestations), PUT back to the tag with
  one GET, one HEAD and one PUT (no child or blob request); the entry named by digest, by
  platform, or by a reference whose digest is an entry; refusals (not an entry, not an
  index, annotations on a Docker list, an invalid platform, the tag moved meanwhile) write
  nothing; a change that changes nothing says so and writes nothing; a signal during the
  GET leaves the tag, during the PUT says the outcome is unknown (one line, 130/143).
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from aiohttp import web

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.ops.entries import DUPLICATE_HINT
from manyfest.reference import filesafe
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, docker, head_digest, manyfest, requires_docker, seed_built
from tests.imagewriter import AttestedIndex, build_attested_index, push_attested_index
from tests.quirk_proxy import Hold, QuirkProxy
from tests.registry_server import RegistryServer
from tests.signal_helpers import Run, assert_one_line, expect_code

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

OCI_INDEX = mediatypes.OCI_INDEX
TITLE = "org.opencontainers.image.title"


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


def _get(ref: str) -> Manifest:
    async def get() -> Manifest:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).get_manifest(reference.parse(ref))

    return anyio.run(get)


def _put(ref: str, raw: bytes) -> str:
    async def put() -> str:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).put_manifest(
                reference.parse(ref), Manifest.from_bytes(raw)
            )

    return anyio.run(put)


def _docker_bytes(doc: dict[str, Any]) -> bytes:
    """docker's list layout: 3-space indent, no trailing newline, HTML-escaped."""
    text = json.dumps(doc, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)  # only ever inside strings
    return msgspec.json.format(text.encode(), indent=3)


def _entry(manifest: Manifest, platform: dict[str, str],
           annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": manifest.media_type, "size": manifest.size,
                           "digest": manifest.digest}
    if annotations:
        out["annotations"] = annotations
    out["platform"] = platform
    return out


def _store_entry(list_ref: str, image_ref: str) -> dict[str, Any]:
    home = Path.home()
    path = home / ".docker" / "manifests" / filesafe(list_ref) / filesafe(image_ref)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# ---------------------------------------------------------------------- local entries


def test_local_annotations_go_into_the_pushed_oci_index(registry: RegistryServer,
                                                         ns: str) -> None:
    host = registry.host
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm64:1", PLATFORMS[2], ns)]
    images = seed_built(host, names, oci=True)
    amd, arm = (images[n].manifest for n, _, _ in names)
    refs = [f"{host}/{n}" for n, _, _ in names]
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, *refs, check=True)

    ann = manyfest("annotate", "--annotation", f"{TITLE}=amd64 <build>", "--annotation",
                   "empty=", "--annotation", "a=b=c", target, refs[0])
    assert ann.returncode == 0, ann.stderr
    assert (ann.stdout, ann.stderr) == ("", "")
    stored = _store_entry(target, refs[0])["Descriptor"]
    assert stored["annotations"] == {"a": "b=c", "empty": "", TITLE: "amd64 <build>"}
    assert stored["platform"] == {"architecture": "amd64", "os": "linux"}  # untouched

    push = manyfest("push", target)
    assert push.returncode == 0, push.stderr
    expected = _docker_bytes({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            _entry(amd, {"architecture": "amd64", "os": "linux"},
                   {"a": "b=c", "empty": "", TITLE: "amd64 <build>"}),
            _entry(arm, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ]})
    assert b"\\u003cbuild\\u003e" in expected  # Go's json.Marshal escaping
    listed = _get(target)
    assert listed.raw == expected
    assert push.stdout.splitlines()[-1] == listed.digest == "sha256:" + hashlib.sha256(
        expected).hexdigest()

    removed = manyfest("annotate", "--remove-annotation", "empty", "--remove-annotation", "a",
                       "--remove-annotation", "never-set", target, refs[0])
    assert removed.returncode == 0, removed.stderr
    assert _store_entry(target, refs[0])["Descriptor"]["annotations"] == {TITLE: "amd64 <build>"}
    again = manyfest("push", target)
    assert again.returncode == 0, again.stderr
    expected = _docker_bytes({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            _entry(amd, {"architecture": "amd64", "os": "linux"}, {TITLE: "amd64 <build>"}),
            _entry(arm, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ]})
    assert _get(target).raw == expected


def test_annotations_on_a_docker_list_are_refused_at_push(registry: RegistryServer,
                                                          ns: str) -> None:
    host = registry.host
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm:1", PLATFORMS[1], ns)]
    images = seed_built(host, names)  # Docker schema2: the list is a Docker manifest list
    refs = [f"{host}/{n}" for n, _, _ in names]
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, *refs, check=True)
    manyfest("annotate", "--annotation", "k=v", target, refs[1], check=True)
    push = manyfest("push", target)
    assert push.returncode == 2
    assert push.stdout == ""
    [line] = push.stderr.splitlines()
    assert line == (
        f"{target} would be a Docker manifest list ({mediatypes.DOCKER_LIST}), whose entries "
        f"have no annotations; annotated: {refs[1]} (k); descriptor annotations need an OCI "
        "index: push with --media-type oci (or create the list with it), or remove them: "
        f"`manyfest annotate --remove-annotation KEY {target} IMAGE`"
    )
    assert head_digest(target) == ""  # nothing written

    manyfest("annotate", "--remove-annotation", "k", target, refs[1], check=True)
    push = manyfest("push", target)
    assert push.returncode == 0, push.stderr
    amd, arm = (images[n].manifest for n, _, _ in names)
    assert _get(target).raw == _docker_bytes({
        "schemaVersion": 2, "mediaType": mediatypes.DOCKER_LIST, "manifests": [
            _entry(amd, {"architecture": "amd64", "os": "linux"}),
            _entry(arm, {"architecture": "arm", "os": "linux", "variant": "v7"}),
        ]})


@requires_docker
def test_docker_keeps_and_ignores_stored_annotations(registry: RegistryServer, ns: str) -> None:
    """docker reads an annotated entry manyfest wrote, keeps the annotations when it annotates
    it, and pushes the list without them (docker drops descriptor annotations)."""
    host = registry.host
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm64:1", PLATFORMS[2], ns)]
    images = seed_built(host, names, oci=True)
    refs = [f"{host}/{n}" for n, _, _ in names]
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, *refs, check=True)
    manyfest("annotate", "--annotation", f"{TITLE}=arm", target, refs[1], check=True)
    docker("manifest", "annotate", "--os-features", "x", target, refs[1], check=True)
    stored = _store_entry(target, refs[1])["Descriptor"]
    assert stored["annotations"] == {TITLE: "arm"}
    assert stored["platform"]["os.features"] == ["x"]
    d_pushed = docker("manifest", "push", "--insecure", target, check=True)
    amd, arm = (images[n].manifest for n, _, _ in names)
    plain = _docker_bytes({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            _entry(amd, {"architecture": "amd64", "os": "linux"}),
            _entry(arm, {"architecture": "arm64", "os": "linux", "os.features": ["x"],
                         "variant": "v8"}),
        ]})
    assert _get(target).raw == plain
    assert d_pushed.stdout.splitlines()[-1] == "sha256:" + hashlib.sha256(plain).hexdigest()
    pushed = manyfest("push", target, check=True)  # manyfest writes them
    with_title = _docker_bytes({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            _entry(amd, {"architecture": "amd64", "os": "linux"}),
            _entry(arm, {"architecture": "arm64", "os": "linux", "os.features": ["x"],
                         "variant": "v8"}, {TITLE: "arm"}),
        ]})
    assert _get(target).raw == with_title
    assert pushed.stdout.splitlines()[-1] == "sha256:" + hashlib.sha256(with_title).hexdigest()


@pytest.mark.parametrize(("flags", "message"), [
    (["--annotation", "novalue"], "--annotation 'novalue': expected KEY=VALUE"),
    (["--annotation", "=v"], "--annotation '=v': expected KEY=VALUE"),
    (["--remove-annotation", "k=v"], "--remove-annotation 'k=v': expected a KEY"),
    (["--annotation", "k=v", "--remove-annotation", "k"],
     "annotation 'k' is both set and removed"),
])
def test_annotation_flags_are_checked(flags: list[str], message: str) -> None:
    proc = manyfest("annotate", *flags, "127.0.0.1:1/a/list:1", "127.0.0.1:1/a/b:1")
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith(message + "; ")


# ---------------------------------------------------------------------- remote lists


def _buildx_list(host: str, ns: str) -> tuple[str, bytes, dict[str, AttestedIndex]]:
    """Push two buildx-shaped per-platform indexes into ``<ns>/app`` (tags ``amd64``,
    ``arm64``) and a combined compact index at ``<ns>/app:1`` (images, then attestations,
    an index annotation): what ``buildx imagetools create`` makes of them."""
    items = {p.architecture: build_attested_index(p, ns) for p in (PLATFORMS[0], PLATFORMS[2])}

    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for arch, item in items.items():
                await push_attested_index(client, reference.parse(f"{host}/{ns}/app:{arch}"),
                                          item)
                await client.put_manifest(reference.parse(f"{host}/{ns}/app:{arch}-image"),
                                          item.image.manifest)

    anyio.run(push)
    descs = [json.loads(items[a].index.raw)["manifests"] for a in ("amd64", "arm64")]
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [descs[0][0], descs[1][0], descs[0][1], descs[1][1]],
           "annotations": {"org.opencontainers.image.created": "2026-12-01T00:00:00Z"}}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    _put(f"{host}/{ns}/app:1", raw)
    return f"{ns}/app", raw, items


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _manifest_requests(proxy: QuirkProxy) -> dict[str, int]:
    return {key: n for key, n in proxy.seen.items() if "/manifests/" in key or "/blobs/" in key}


def test_remote_annotation_rewrites_only_that_entry(registry: RegistryServer, proxy: QuirkProxy,
                                                    ns: str) -> None:
    repo, raw, items = _buildx_list(registry.host, ns)
    target = f"{proxy.host}/{repo}:1"
    arm = json.loads(items["arm64"].index.raw)["manifests"][0]
    proc = manyfest("annotate", "--remote", target, arm["digest"], "--annotation", f"{TITLE}=arm")
    assert proc.returncode == 0, proc.stderr
    new_arm = {"mediaType": arm["mediaType"], "digest": arm["digest"], "size": arm["size"],
               "annotations": {TITLE: "arm"}, "platform": arm["platform"]}
    assert raw.count(_compact(arm)) == 1
    expected = raw.replace(_compact(arm), _compact(new_arm))
    listed = _get(f"{registry.host}/{repo}:1")
    assert listed.raw == expected  # every other byte as served
    assert proc.stdout == listed.digest + "\n"
    assert listed.digest == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert proc.stderr == ""
    # One GET, one HEAD (the tag has not moved), one PUT; no child or blob request.
    assert _manifest_requests(proxy) == {
        f"GET /v2/{repo}/manifests/1": 1,
        f"HEAD /v2/{repo}/manifests/1": 1,
        f"PUT /v2/{repo}/manifests/1": 1,
    }

    # The same again: nothing to change, nothing written, the digest printed.
    proxy.seen.clear()
    same = manyfest("annotate", "--remote", target, arm["digest"], "--annotation", f"{TITLE}=arm")
    assert same.returncode == 0, same.stderr
    assert same.stdout == listed.digest + "\n"
    assert same.stderr == (f"{target}: entry {arm['digest']} already has these values; "
                           "nothing was written\n")
    assert _manifest_requests(proxy) == {f"GET /v2/{repo}/manifests/1": 1}

    # By platform and by a reference (a tag HEADed): platform fields and a removal.
    amd = json.loads(items["amd64"].index.raw)["manifests"][0]
    by_platform = manyfest("annotate", "--remote", target, "linux/amd64", "--os-features",
                           "sse4", "--annotation", "a=")
    assert by_platform.returncode == 0, by_platform.stderr
    new_amd = {"mediaType": amd["mediaType"], "digest": amd["digest"], "size": amd["size"],
               "annotations": {"a": ""},
               "platform": {**amd["platform"], "os.features": ["sse4"]}}
    expected = expected.replace(_compact(amd), _compact(new_amd))
    assert _get(f"{registry.host}/{repo}:1").raw == expected
    by_ref = manyfest("annotate", "--remote", target, f"{proxy.host}/{repo}:amd64-image",
                      "--remove-annotation", "a")
    assert by_ref.returncode == 0, by_ref.stderr
    annotated_amd = _compact(new_amd)
    del new_amd["annotations"]
    expected = expected.replace(annotated_amd, _compact(new_amd))
    final = _get(f"{registry.host}/{repo}:1")
    assert final.raw == expected
    assert by_ref.stdout == final.digest + "\n"
    # The attestations and the index annotation are as served; children untouched.
    for arch in ("amd64", "arm64"):
        assert _compact(json.loads(items[arch].index.raw)["manifests"][1]) in final.raw
    assert final.raw.endswith(b',"annotations":{"org.opencontainers.image.created":'
                              b'"2026-12-01T00:00:00Z"}}')


def test_remote_refusals_write_nothing(registry: RegistryServer, proxy: QuirkProxy,
                                       ns: str) -> None:
    repo, raw, items = _buildx_list(registry.host, ns)
    target = f"{proxy.host}/{repo}:1"
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    entries = json.loads(raw)["manifests"]

    # A reference whose digest is not an entry (the per-platform index): the entries listed.
    other = f"{proxy.host}/{repo}:amd64"
    proc = manyfest("annotate", "--remote", target, other, "--annotation", "k=v")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    listing = ", ".join(
        f"{e['digest']} ({e['platform']['os']}/{e['platform']['architecture']}"
        f"{'/' + e['platform']['variant'] if e['platform'].get('variant') else ''})"
        for e in entries
    )
    assert line == (f"{other} ({items['amd64'].index.digest}) is not an entry of {target}; "
                    f"its entries: {listing}; name one of the entries by digest or platform")

    # A platform no entry has.
    proc = manyfest("annotate", "--remote", target, "linux/s390x", "--annotation", "k=v")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"platform linux/s390x is not an entry of {target}; ")

    # LIST is an image, not an index.
    image = f"{proxy.host}/{repo}:amd64-image"
    proc = manyfest("annotate", "--remote", image, "linux/amd64", "--annotation", "k=v")
    assert proc.returncode == 1
    assert proc.stderr == (f"{image} is not a manifest list or index (it is "
                           f"{mediatypes.OCI_MANIFEST}); name a multi-platform list; to change "
                           "a local list, drop --remote\n")

    # An invalid resulting platform: the line names the entry.
    proc = manyfest("annotate", "--remote", target, "linux/arm64", "--variant", "v7")
    assert proc.returncode == 2
    arm_digest = json.loads(items["arm64"].index.raw)["manifests"][0]["digest"]
    assert proc.stderr.startswith(f"{proxy.host}/{repo}@{arm_digest}: unsupported variant "
                                  "'v7' for architecture 'arm64'")

    # A platform two entries have: ambiguous, name it by digest.
    dup = json.loads(raw)
    dup["manifests"][1]["platform"] = {"architecture": "amd64", "os": "linux"}
    _put(f"{registry.host}/{repo}:dup", _compact(dup))
    proc = manyfest("annotate", "--remote", f"{proxy.host}/{repo}:dup", "linux/amd64",
                    "--annotation", "k=v")
    assert proc.returncode == 1
    first, second = (e["digest"] for e in dup["manifests"][:2])
    assert proc.stderr == (
        f"platform linux/amd64 names 2 entries of {proxy.host}/{repo}:dup: #1 {first} "
        f"(linux/amd64), #2 {second} (linux/amd64); name the entry by digest\n"
    )

    # No change asked for.
    proc = manyfest("annotate", "--remote", target, "linux/amd64")
    assert proc.returncode == 2
    assert proc.stderr.startswith("annotate --remote: nothing to change; give --annotation")

    # LIST by digest.
    proc = manyfest("annotate", "--remote", f"{proxy.host}/{repo}@{digest}", "linux/amd64",
                    "--annotation", "k=v")
    assert proc.returncode == 2
    assert "must be named by a tag, not a digest" in proc.stderr

    assert not any(key.startswith("PUT ") for key in proxy.seen)
    assert _get(f"{registry.host}/{repo}:1").raw == raw


def test_remote_platform_change_follows_the_platform_rules(registry: RegistryServer,
                                                          ns: str) -> None:
    """annotate --remote refuses, as the local annotate does, a platform another image of the
    index has (attestations never count) unless --allow-duplicate-platforms, and applies
    --platform-check to the platform written (warn: kept with a warning line; off: silent)."""
    repo, raw, items = _buildx_list(registry.host, ns)
    target = f"{registry.host}/{repo}:1"
    amd, amd_att = json.loads(items["amd64"].index.raw)["manifests"]
    arm = json.loads(items["arm64"].index.raw)["manifests"][0]

    proc = manyfest("annotate", "--remote", target, "linux/amd64", "--arch", "arm64",
                    "--variant", "v8")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"{registry.host}/{repo}@{amd['digest']} and {registry.host}/{repo}@{arm['digest']} "
        f"have the same platform linux/arm64/v8; {DUPLICATE_HINT}\n"
    )
    # arm64 written without its default variant is the same platform (normalised).
    proc = manyfest("annotate", "--remote", target, "linux/amd64", "--arch", "arm64")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"{registry.host}/{repo}@{amd['digest']} (linux/arm64) and {registry.host}/{repo}@"
        f"{arm['digest']} (linux/arm64/v8) have the same platform; {DUPLICATE_HINT}\n"
    )
    assert _get(target).raw == raw  # nothing written

    # An attestation is never a duplicate: giving the amd64 one a platform like its own is
    # refused by the table only (unknown/unknown is never checked), and moving the image to
    # a platform nobody has is fine.
    allowed = manyfest("annotate", "--remote", "--allow-duplicate-platforms", target,
                       "linux/amd64", "--arch", "arm64", "--variant", "v8")
    assert allowed.returncode == 0, allowed.stderr
    moved = {**amd, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}
    expected = raw.replace(_compact(amd), _compact(moved))
    listed = _get(target)
    assert listed.raw == expected
    assert allowed.stdout == listed.digest + "\n"
    assert allowed.stderr == ""
    assert _compact(amd_att) in listed.raw

    # --platform-check warn: an invalid written platform is kept, with one warning line.
    warned = manyfest("annotate", "--remote", "--platform-check", "warn", target,
                      arm["digest"], "--variant", "v7")
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr == (
        f"warning: {registry.host}/{repo}@{arm['digest']}: unsupported variant 'v7' for "
        "architecture 'arm64' (linux/arm64/v7); not in the platform table, kept as written\n"
    )
    v7 = {**arm, "platform": {**arm["platform"], "variant": "v7"}}
    expected = expected.replace(_compact(arm), _compact(v7))
    assert _get(target).raw == expected
    # --platform-check off: no check, no line.
    off = manyfest("annotate", "--remote", "--platform-check", "off", target, arm["digest"],
                   "--variant", "v6")
    assert off.returncode == 0, off.stderr
    assert off.stderr == ""
    v6 = {**arm, "platform": {**arm["platform"], "variant": "v6"}}
    assert _get(target).raw == expected.replace(_compact(v7), _compact(v6))


def test_remote_docker_list_platform_change_and_annotation_refusal(
        registry: RegistryServer, proxy: QuirkProxy, ns: str) -> None:
    host = registry.host
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm:1", PLATFORMS[1], ns)]
    seed_built(host, names)
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, *(f"{host}/{n}" for n, _, _ in names), check=True)
    manyfest("push", target, check=True)
    raw = _get(target).raw
    assert raw.startswith(b'{\n   "schemaVersion": 2,\n   "mediaType": "'
                          + mediatypes.DOCKER_LIST.encode())

    via = f"{proxy.host}/{ns}/app:1"
    refused = manyfest("annotate", "--remote", via, "linux/arm/v7", "--annotation", "k=v")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"{via} is a Docker manifest list ({mediatypes.DOCKER_LIST}), whose entries have no "
        "annotations: cannot set k; publish the list as an OCI index "
        "(application/vnd.oci.image.index.v1+json) to carry descriptor annotations\n"
    )
    assert _get(target).raw == raw

    proc = manyfest("annotate", "--remote", via, "linux/arm/v7", "--variant", "v6")
    assert proc.returncode == 0, proc.stderr
    old_arm = (b'"platform": {\n            "architecture": "arm",\n            "os": "linux",'
               b'\n            "variant": "v7"\n         }')
    assert raw.count(old_arm) == 1
    expected = raw.replace(old_arm, old_arm.replace(b'"v7"', b'"v6"'))
    listed = _get(target)
    assert listed.raw == expected
    assert proc.stdout == listed.digest + "\n"


def test_remote_platform_change_to_a_duplicate_is_refused(registry: RegistryServer,
                                                          ns: str) -> None:
    """annotate --remote checks duplicates as the local annotate does; the flag allows."""
    host = registry.host
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm:1", PLATFORMS[1], ns)]
    digests = seed_built(host, names)
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, *(f"{host}/{n}" for n, _, _ in names), check=True)
    manyfest("push", target, check=True)
    raw = _get(target).raw
    arm = digests[names[1][0]].manifest.digest
    amd = digests[names[0][0]].manifest.digest
    refused = manyfest("annotate", "--remote", target, "linux/arm/v7", "--arch", "amd64")
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        f"{host}/{ns}/app@{amd} and {host}/{ns}/app@{arm} have the same platform linux/amd64; "
    )
    assert "--allow-duplicate-platforms" in refused.stderr
    assert _get(target).raw == raw  # nothing written
    allowed = manyfest("annotate", "--remote", target, "linux/arm/v7", "--arch", "amd64",
                       "--allow-duplicate-platforms")
    assert allowed.returncode == 0, allowed.stderr
    assert head_digest(target) == allowed.stdout.strip()
    assert json.loads(_get(target).raw)["manifests"][1]["platform"] == {
        "architecture": "amd64", "os": "linux"}


def test_remote_entry_on_another_registry_is_not_looked_up(registry: RegistryServer,
                                                           ns: str) -> None:
    """`unknown/unknown` reads as docker.io/unknown/unknown: refused at once (exit 2), never
    asked of another registry (no DNS, no internet)."""
    host = registry.host
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm:1", PLATFORMS[1], ns)]
    seed_built(host, names)
    target = f"{host}/{ns}/app:1"
    manyfest("create", target, *(f"{host}/{n}" for n, _, _ in names), check=True)
    manyfest("push", target, check=True)
    proc = manyfest("annotate", "--remote", target, "unknown/unknown", "--annotation", "k=v")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"unknown/unknown names a manifest on docker.io, not on {host} where {target} is; "
        "its entries: "
    )
    assert proc.stderr.endswith(
        f"; name the entry by digest, by os/arch[/variant], or by a reference on {host} "
        "(attestation entries, unknown/unknown, by digest)\n"
    )
    assert len(proc.stderr.splitlines()) == 1


def test_remote_refuses_when_the_tag_moved(registry: RegistryServer, proxy: QuirkProxy,
                                           ns: str) -> None:
    """Someone publishes between annotate's GET and its PUT: nothing is written."""
    repo, raw, _ = _buildx_list(registry.host, ns)
    intruder = raw.replace(b"2026-12-01T00:00:00Z", b"2026-12-02T00:00:00Z")
    intruder_digest = "sha256:" + hashlib.sha256(intruder).hexdigest()
    published: list[int] = []

    async def publish_first(request: web.Request) -> web.StreamResponse | None:
        if request.method == "HEAD" and request.path == f"/v2/{repo}/manifests/1" \
                and not published:
            assert proxy._session is not None
            async with proxy._session.put(
                f"http://{proxy.upstream}/v2/{repo}/manifests/1", data=intruder,
                headers={"Content-Type": OCI_INDEX},
            ) as resp:
                published.append(resp.status)
        return None

    proxy.before.append(publish_first)
    target = f"{proxy.host}/{repo}:1"
    proc = manyfest("annotate", "--remote", target, "linux/amd64", "--annotation", "k=v")
    assert published == [201]
    assert proc.returncode == 1
    old = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert proc.stderr == (
        f"{target} moved while annotating: it pointed at {old}, now at {intruder_digest}; "
        "nothing was written; someone else published it meanwhile: re-run annotate to change "
        "the new list\n"
    )
    assert not any(key.startswith("PUT ") for key in proxy.seen)
    assert _get(f"{registry.host}/{repo}:1").raw == intruder


@pytest.mark.parametrize(("method", "signum"), [("GET", signal.SIGTERM), ("PUT", signal.SIGINT)])
def test_remote_annotate_interrupted(registry: RegistryServer, proxy: QuirkProxy, ns: str,
                                     method: str, signum: int) -> None:
    """A signal while the GET (nothing written) or the PUT (outcome unknown) is held."""
    repo, raw, _ = _buildx_list(registry.host, ns)
    hold = Hold(proxy, method, f"/v2/{repo}/manifests/1")
    proxy.before.append(hold)
    target = f"{proxy.host}/{repo}:1"
    run = Run("annotate", "--remote", target, "linux/amd64", "--annotation", "k=v")
    try:
        hold.wait_held()
        run.send(signum)
        code, out, lines = run.finish()
    finally:
        hold.release()
        run.kill()
    assert code == expect_code(signum)
    assert out == ""
    line = assert_one_line(lines, signum)
    if method == "GET":
        assert line.endswith(f"{target} was left where it was (nothing was written); re-run "
                             "to annotate")
        proxy.wait_idle()
        assert _get(f"{registry.host}/{repo}:1").raw == raw
    else:
        assert line.endswith(f"the index PUT to {target} was in flight: the tag may point at "
                             "the annotated index or still where it was; re-run annotate to "
                             "settle it")
        proxy.wait_idle()
        now = _get(f"{registry.host}/{repo}:1").raw
        assert now == raw or b'"annotations":{"k":"v"}' in now
