"""``manyfest inspect``: --raw, --platform, --format json|table|TEMPLATE, -v concurrency.

Cases, all against the real registry with buildx-shaped lists (images + attestation
manifests ``unknown/unknown``) of real-size images:

* ``--raw``: stdout is the registry's exact bytes (sha256 equals ``Docker-Content-Digest``)
  for a list, an image and a list's child (``--platform``); for a local list, the bytes
  ``push`` then writes (the pushed digest is their sha256);
* ``--platform``: the child docker's ``--platform`` picks (the exact variant before list
  order, list order among equals), printed as ``inspect`` prints that image, and ``-v``'s
  form equal to that child's object in ``inspect -v LIST``; attestations never match; no
  match, or an image of another platform, is one line naming the reference, the platform
  asked and the platforms the list has (exit 1); a bad platform exits 2;
* ``--format table``: exact lines (header, one row per entry, attestations labelled
  ``attestation of <digest>``); an image is one row; a local list is its entries;
* ``--format TEMPLATE``: exact lines per entry, ``{{json ...}}`` fields; an unknown field
  exits 2 naming it and listing the fields, before any request (the proxy saw none);
* ``-v`` on a remote list fetches its children concurrently: the proxy holds every child GET
  until all of them are in flight at once (a sequential client never gets there);
* the library: ``Session.inspect(raw=True)`` returns bytes, ``platform``/``format`` as text;
  bad options are refused before any request.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest

from manyfest import jsonfmt, mediatypes, reference
from manyfest.api import Session
from manyfest.content import Manifest
from manyfest.errors import PlatformError, UsageError
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import manyfest
from tests.imagewriter import (
    AttestedIndex,
    Image,
    build_attested_index,
    build_image,
    push_attested_index,
    push_image,
)
from tests.quirk_proxy import Hold, QuirkProxy
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")
ARMV7 = Platform("linux", "arm", "v7")
NS = "inspect-src"


def run_bytes(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI in a subprocess, stdout and stderr as bytes (nothing decoded)."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "manyfest", *args], capture_output=True,
                          env=env, timeout=120, check=False)


def served(host: str, repository: str, ref: str) -> tuple[bytes, str]:
    """GET a manifest straight from the registry: (body, Docker-Content-Digest)."""
    request = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{ref}",
                                     headers={"Accept": mediatypes.ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), response.headers["Docker-Content-Digest"]


@dataclass(frozen=True)
class Seeded:
    """The module's content: ``<NS>/app:1`` (3 images, then 3 attestations), per-arch
    indexes ``<NS>/app:<arch>``, and variant lists ``<NS>/variants:*``."""

    host: str
    items: dict[str, AttestedIndex]
    listed: Manifest
    arm64_v9: Image
    arm64_bare: Image

    @property
    def app(self) -> str:
        return f"{self.host}/{NS}/app"

    def descriptors(self) -> list[dict[str, object]]:
        return list(json.loads(self.listed.raw)["manifests"])


def _index(entries: list[dict[str, object]]) -> Manifest:
    doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    return Manifest.from_bytes(json.dumps(doc, indent=2).encode())


def _entry(image: Image, platform: dict[str, str]) -> dict[str, object]:
    m = image.manifest
    return {"mediaType": m.media_type, "digest": m.digest, "size": m.size, "platform": platform}


@pytest.fixture(scope="module")
def seeded(registry: RegistryServer) -> Seeded:
    host = registry.host
    items = {p.architecture: build_attested_index(p, "inspect") for p in (AMD64, ARM64, ARMV7)}
    v9 = build_image(Platform("linux", "arm64", "v9"), "inspect-v9", oci=True)
    bare = build_image(Platform("linux", "arm64"), "inspect-bare", oci=True)
    descs = {arch: json.loads(item.index.raw)["manifests"] for arch, item in items.items()}
    # One buildx multi-platform push: every image, then every attestation.
    listed = _index([d[0] for d in descs.values()] + [d[1] for d in descs.values()])

    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            app = reference.parse(f"{host}/{NS}/app:1")
            for arch, item in items.items():
                await push_attested_index(client, app.with_tag(arch), item)
            await client.put_manifest(app, listed)
            variants = reference.parse(f"{host}/{NS}/variants:1")
            for image in (v9, bare, items["arm64"].image):
                await push_image(client, variants.with_digest(image.manifest.digest), image)
            arm64 = {"architecture": "arm64", "os": "linux"}
            v8 = items["arm64"].image
            await client.put_manifest(variants.with_tag("v9-first"), _index(
                [_entry(v9, {**arm64, "variant": "v9"}), _entry(v8, {**arm64, "variant": "v8"})]
            ))
            await client.put_manifest(variants.with_tag("bare-first"), _index(
                [_entry(bare, arm64), _entry(v8, {**arm64, "variant": "v8"})]
            ))

    anyio.run(push)
    return Seeded(host, items, listed, v9, bare)


# ---------------------------------------------------------------------- --raw


def test_raw_is_the_exact_bytes_served(seeded: Seeded) -> None:
    body, digest = served(seeded.host, f"{NS}/app", "1")
    proc = run_bytes("inspect", "--raw", f"{seeded.app}:1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == body == seeded.listed.raw
    assert "sha256:" + hashlib.sha256(proc.stdout).hexdigest() == digest == seeded.listed.digest
    assert proc.stderr == b""
    # An image by tag (a per-arch index's image by digest) and an index by digest.
    image = seeded.items["arm"].image.manifest
    by_digest = run_bytes("inspect", "--raw", f"{seeded.app}@{image.digest}")
    assert by_digest.returncode == 0, by_digest.stderr
    assert by_digest.stdout == image.raw
    per_arch = run_bytes("inspect", "--raw", f"{seeded.app}:amd64")
    assert per_arch.stdout == seeded.items["amd64"].index.raw
    assert served(seeded.host, f"{NS}/app", "amd64")[1] == seeded.items["amd64"].index.digest


def test_raw_with_platform_is_the_childs_bytes(seeded: Seeded) -> None:
    for wanted, arch in (("linux/arm64", "arm64"), ("linux/arm/v7", "arm"),
                         ("linux/amd64", "amd64")):
        proc = run_bytes("inspect", "--raw", "--platform", wanted, f"{seeded.app}:1")
        assert proc.returncode == 0, proc.stderr
        child = seeded.items[arch].image.manifest
        body, digest = served(seeded.host, f"{NS}/app", child.digest)
        assert proc.stdout == body == child.raw
        assert "sha256:" + hashlib.sha256(proc.stdout).hexdigest() == digest == child.digest


def test_raw_of_a_local_list_is_what_push_writes(seeded: Seeded, ns: str) -> None:
    host = seeded.host
    images = [seeded.items[a].image.manifest for a in ("amd64", "arm")]
    refs = [f"{seeded.app}@{m.digest}" for m in images]
    target = f"{host}/{ns}/local:1"
    manyfest("create", target, *refs, check=True)
    raw = run_bytes("inspect", "--raw", target)
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["manifests"][0]["digest"] in {m.digest for m in images}
    assert not raw.stdout.endswith(b"\n")  # nothing added: docker's bytes end with '}'
    chosen = run_bytes("inspect", "--raw", "--platform", "linux/arm", target)
    assert chosen.stdout == seeded.items["arm"].image.manifest.raw
    entry = run_bytes("inspect", "--raw", target, refs[0])
    assert entry.stdout == images[0].raw
    pushed = manyfest("push", target, check=True)
    digest = pushed.stdout.splitlines()[-1]
    assert digest == "sha256:" + hashlib.sha256(raw.stdout).hexdigest()
    assert served(host, f"{ns}/local", "1") == (raw.stdout, digest)
    helped = manyfest("inspect", "--help", check=True).stdout
    assert "the bytes `push` would write" in " ".join(helped.split())


# ---------------------------------------------------------------------- --platform


def test_platform_picks_the_child_printed_as_an_image(seeded: Seeded) -> None:
    child = seeded.items["arm64"].image.manifest
    for wanted in ("linux/arm64", "linux/arm64/v8", "linux/aarch64"):
        proc = manyfest("inspect", "--platform", wanted, f"{seeded.app}:1")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == jsonfmt.indent(child.raw).decode() + "\n"
        assert proc.stdout == manyfest("inspect", f"{seeded.app}@{child.digest}").stdout
    # -v: that child's object in `inspect -v LIST`.
    everything = json.loads(manyfest("inspect", "-v", f"{seeded.app}:1", check=True).stdout)
    assert [e["Descriptor"]["digest"] for e in everything] == [
        d["digest"] for d in seeded.descriptors()
    ]
    for i, wanted in enumerate(("linux/amd64", "linux/arm64/v8", "linux/arm/v7")):
        one = manyfest("inspect", "-v", "--platform", wanted, f"{seeded.app}:1", check=True)
        assert json.loads(one.stdout) == everything[i]
        assert everything[i]["Ref"] == f"{seeded.app}:1@{everything[i]['Descriptor']['digest']}"


def test_platform_prefers_the_exact_variant_then_list_order(seeded: Seeded) -> None:
    v8 = seeded.items["arm64"].image.manifest
    variants = f"{seeded.host}/{NS}/variants"

    def picked(wanted: str, tag: str) -> str:
        proc = run_bytes("inspect", "--raw", "--platform", wanted, f"{variants}:{tag}")
        assert proc.returncode == 0, proc.stderr
        return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()

    # [arm64/v9, arm64/v8]: linux/arm64 means v8, so the second; v9 asked: the first.
    assert picked("linux/arm64", "v9-first") == v8.digest
    assert picked("linux/arm64/v9", "v9-first") == seeded.arm64_v9.manifest.digest
    # [arm64 (no variant: v8), arm64/v8]: equal after normalisation, so list order.
    assert picked("linux/arm64/v8", "bare-first") == seeded.arm64_bare.manifest.digest
    assert picked("linux/arm64", "bare-first") == seeded.arm64_bare.manifest.digest


def test_platform_no_match_is_one_line(seeded: Seeded) -> None:
    ref = f"{seeded.app}:1"
    has = "linux/amd64, linux/arm64/v8, linux/arm/v7"
    for wanted in ("linux/s390x", "unknown/unknown", "linux/arm/v6", "windows/amd64"):
        proc = manyfest("inspect", "--platform", wanted, ref)
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert proc.stderr == (f"no manifest for {wanted} in {ref}: its platforms are {has}; "
                               "ask for one of the platforms it has\n")
    raw = run_bytes("inspect", "--raw", "--platform", "linux/s390x", ref)
    assert (raw.returncode, raw.stdout) == (1, b"")
    # An image: its platform (from its config) must match.
    image = f"{seeded.app}@{seeded.items['amd64'].image.manifest.digest}"
    same = manyfest("inspect", "--platform", "linux/amd64", image)
    assert same.returncode == 0, same.stderr
    assert same.stdout == manyfest("inspect", image).stdout
    other = manyfest("inspect", "--platform", "linux/arm64", image)
    assert other.returncode == 1
    assert other.stderr == (f"no manifest for linux/arm64 in {image}: it is an image for "
                            "linux/amd64; ask for one of the platforms it has\n")


def test_platform_on_a_local_list(seeded: Seeded, ns: str) -> None:
    refs = [f"{seeded.app}@{seeded.items[a].image.manifest.digest}" for a in ("amd64", "arm")]
    target = f"{seeded.host}/{ns}/local:1"
    manyfest("create", target, *refs, check=True)
    for flags in ([], ["-v"]):
        chosen = manyfest("inspect", *flags, "--platform", "linux/arm/v7", target, check=True)
        assert chosen.stdout == manyfest("inspect", *flags, target, refs[1], check=True).stdout
    missing = manyfest("inspect", "--platform", "linux/arm64", target)
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"no manifest for linux/arm64 in {target}: its platforms "
                                     "are linux/amd64, linux/arm/v7;")
    entry = manyfest("inspect", "--platform", "linux/arm64", target, refs[0])
    assert entry.returncode == 1
    assert "it is an image for linux/amd64" in entry.stderr


def test_bad_platform_and_option_pairs_exit_2() -> None:
    # 127.0.0.1:1 has no registry: a request would fail with exit 1, not 2.
    ref = "127.0.0.1:1/a/b:1"
    cases = {
        ("--platform", "linux"): "invalid platform 'linux'",
        ("--raw", "-v"): "--raw and -v cannot be used together",
        ("--raw", "--format", "table"): "--raw and --format cannot be used together",
        ("-v", "--format", "table"): "-v only applies to --format json",
        ("--format", "yaml"): "--format 'yaml': expected json, table or a template",
    }
    for flags, needle in cases.items():
        proc = manyfest("inspect", *flags, ref)
        assert proc.returncode == 2, (flags, proc.stderr)
        assert needle in proc.stderr
        assert len(proc.stderr.splitlines()) == 1


# ---------------------------------------------------------------------- --format


def _table(rows: list[tuple[str, ...]]) -> str:
    """docker's tabwriter (min width 10, padding 3) over a header and ``rows``."""
    header = ("PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE", "ATTESTATION", "ANNOTATIONS")
    lines = [header, *rows]
    widths = [max(10, *(len(line[i]) + 3 for line in lines)) for i in range(5)]
    return "".join(
        "".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + line[5] + "\n"
        for line in lines
    )


def test_table_of_a_remote_list(seeded: Seeded) -> None:
    proc = manyfest("inspect", "--format", "table", f"{seeded.app}:1")
    assert proc.returncode == 0, proc.stderr
    rows = []
    for arch, platform in (("amd64", "linux/amd64"), ("arm64", "linux/arm64/v8"),
                           ("arm", "linux/arm/v7")):
        m = seeded.items[arch].image.manifest
        rows.append((platform, m.digest, str(m.size), mediatypes.OCI_MANIFEST, "-", "-"))
    for arch in ("amd64", "arm64", "arm"):
        att, image = seeded.items[arch].attestation.manifest, seeded.items[arch].image.manifest
        rows.append(("unknown/unknown", att.digest, str(att.size), mediatypes.OCI_MANIFEST,
                     f"attestation of {image.digest}",
                     f"vnd.docker.reference.digest={image.digest},"
                     "vnd.docker.reference.type=attestation-manifest"))
    assert proc.stdout == _table(rows)
    assert proc.stdout.splitlines()[0].split() == [
        "PLATFORM", "DIGEST", "SIZE", "MEDIA", "TYPE", "ATTESTATION", "ANNOTATIONS"
    ]
    # --platform: the chosen child's row; an image: one row, its platform from its config.
    chosen = manyfest("inspect", "-f", "table", "--platform", "linux/arm/v7", f"{seeded.app}:1")
    assert chosen.stdout == _table([rows[2]])
    image_ref = f"{seeded.app}@{seeded.items['arm64'].image.manifest.digest}"
    image = manyfest("inspect", "--format", "table", image_ref)
    assert image.stdout == _table([rows[1]])
    line = manyfest("inspect", "--format", "{{.Ref}} {{.Platform}} {{.Size}}", image_ref)
    assert line.stdout == f"{image_ref} linux/arm64/v8 {rows[1][2]}\n"


def test_table_of_a_local_list(seeded: Seeded, ns: str) -> None:
    images = {a: seeded.items[a].image.manifest for a in ("amd64", "arm")}
    refs = [f"{seeded.app}@{m.digest}" for m in images.values()]
    target = f"{seeded.host}/{ns}/local:1"
    manyfest("create", target, *refs, check=True)
    proc = manyfest("inspect", "--format", "table", target, check=True)
    rows = [("linux/amd64" if a == "amd64" else "linux/arm/v7", m.digest, str(m.size),
             m.media_type, "-", "-") for a, m in images.items()]
    # The store's order is its file names' (docker's): ...@sha256:<hex> sorted by digest.
    rows.sort(key=lambda r: r[1])
    assert proc.stdout == _table(rows)
    entry = manyfest("inspect", "--format", "table", target, refs[1], check=True)
    assert entry.stdout == _table([r for r in rows if r[0] == "linux/arm/v7"])
    refs_shown = manyfest("inspect", "--format", "{{.Ref}}", target, check=True).stdout
    assert sorted(refs_shown.splitlines()) == sorted(refs)


def test_template_per_entry(seeded: Seeded) -> None:
    ref = f"{seeded.app}:1"
    proc = manyfest("inspect", "--format",
                    r"{{.Platform}}\t{{.Digest}} {{ .Size }} {{.Attestation}} {{.AttestationFor}}",
                    ref)
    assert proc.returncode == 0, proc.stderr
    expected = []
    for arch, platform in (("amd64", "linux/amd64"), ("arm64", "linux/arm64/v8"),
                           ("arm", "linux/arm/v7")):
        m = seeded.items[arch].image.manifest
        expected.append(f"{platform}\t{m.digest} {m.size} false ")
    for arch in ("amd64", "arm64", "arm"):
        att, image = seeded.items[arch].attestation.manifest, seeded.items[arch].image.manifest
        expected.append(f"unknown/unknown\t{att.digest} {att.size} true {image.digest}")
    assert proc.stdout.split("\n") == [*expected, ""]
    # JSON fields: every line one object, equal to the list's descriptors.
    as_json = manyfest("inspect", "--format",
                       '{"d":{{json .Digest}},"s":{{json .Size}},"p":{{json .Platform}},'
                       '"a":{{json .Annotations}},"m":{{json .MediaType}}}', ref, check=True)
    got = [json.loads(line) for line in as_json.stdout.splitlines()]
    want = [{"d": d["digest"], "s": d["size"], "p": d["platform"],
             "a": d.get("annotations", {}), "m": d["mediaType"]} for d in seeded.descriptors()]
    assert got == want
    whole = manyfest("inspect", "--format", "{{json .}}", "--platform", "linux/amd64", ref,
                     check=True)
    m = seeded.items["amd64"].image.manifest
    assert json.loads(whole.stdout) == {
        "Ref": f"{seeded.app}@{m.digest}", "Digest": m.digest, "Size": m.size,
        "MediaType": mediatypes.OCI_MANIFEST,
        "Platform": {"architecture": "amd64", "os": "linux"}, "Attestation": False,
        "AttestationFor": "", "Annotations": {},
    }
    refs = manyfest("inspect", "--format", "{{.Ref}}", ref, check=True).stdout.splitlines()
    assert refs == [f"{seeded.app}@{d['digest']}" for d in seeded.descriptors()]


@pytest.fixture(scope="module")
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    server = QuirkProxy(registry.host).start()
    yield server
    server.stop()


@pytest.fixture
def clean_proxy(proxy: QuirkProxy) -> Iterator[QuirkProxy]:
    """The module's proxy, no quirks, its request counts reset; held requests released."""
    proxy.before.clear()
    proxy.seen.clear()
    yield proxy
    for quirk in proxy.before:
        if isinstance(quirk, Hold):
            quirk.release()
    proxy.before.clear()


def test_unknown_template_field_exits_2_before_any_request(
    seeded: Seeded, clean_proxy: QuirkProxy
) -> None:
    ref = f"{clean_proxy.host}/{NS}/app:1"
    fields = ".Ref, .Digest, .Size, .MediaType, .Platform, .Attestation, .AttestationFor, " \
             ".Annotations"
    for text, needle in (("{{.Platform}} {{.Arch}}", "unknown field .Arch; the fields are "),
                         ("{{upper .Ref}}", "unsupported action {{upper .Ref}}; the fields are "),
                         ("{{.Ref", "unclosed action")):
        proc = manyfest("inspect", "--format", text, ref)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
        if "fields are" in needle:
            assert needle + fields + ";" in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    assert sum(clean_proxy.seen.values()) == 0
    assert manyfest("inspect", "--format", "{{.Ref}}", ref).returncode == 0
    assert sum(clean_proxy.seen.values()) > 0


# ---------------------------------------------------------------------- -v concurrency


def test_verbose_fetches_children_concurrently(seeded: Seeded, clean_proxy: QuirkProxy) -> None:
    """Every child GET is held at the proxy until all six are in flight at once."""
    children = len(seeded.descriptors())
    hold = Hold(clean_proxy, "GET", f"/{NS}/app/manifests/sha256:")
    clean_proxy.before.append(hold)
    ref = f"{clean_proxy.host}/{NS}/app:1"
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "manyfest", "inspect", "-v", ref],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120  # a hang guard, not a timing assumption
        while hold.count < children and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        in_flight = hold.count
        hold.release()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert in_flight == children, f"only {in_flight} of {children} child GETs were in flight"
    assert proc.returncode == 0, err
    direct = manyfest("inspect", "-v", f"{seeded.app}:1", check=True).stdout
    assert out.decode() == direct.replace(seeded.host, clean_proxy.host)


# ---------------------------------------------------------------------- library


def test_session_inspect_raw_platform_format(seeded: Seeded) -> None:
    async def main() -> tuple[bytes, bytes, str]:
        async with Session() as session:
            raw = await session.inspect(f"{seeded.app}:1", raw=True)
            child = await session.inspect(f"{seeded.app}:1", raw=True, platform="linux/arm64")
            text = await session.inspect(f"{seeded.app}:1", format="{{.Platform}}")
            return raw, child, text

    raw, child, text = anyio.run(main)
    assert raw == seeded.listed.raw
    assert child == seeded.items["arm64"].image.manifest.raw
    assert text == ("linux/amd64\nlinux/arm64/v8\nlinux/arm/v7\n"
                    "unknown/unknown\nunknown/unknown\nunknown/unknown\n")


def test_session_inspect_refuses_bad_options_before_any_request() -> None:
    async def attempt(**options: object) -> None:
        async with Session() as session:
            await session.inspect("127.0.0.1:1/a/b:1", **options)  # type: ignore[call-overload]

    for options, error, needle in (
        ({"format": "{{.Arch}}"}, UsageError, "unknown field .Arch"),
        ({"platform": "linux"}, PlatformError, "invalid platform 'linux'"),
        ({"raw": True, "verbose": True}, UsageError, "--raw and -v"),
        ({"verbose": True, "format": "table"}, UsageError, "-v only applies to --format json"),
    ):
        with pytest.raises(error) as info:
            anyio.run(lambda o=options: attempt(**o))  # type: ignore[misc]
        assert needle in str(info.value)
