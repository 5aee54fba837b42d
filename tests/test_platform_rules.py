"""Platform rules on a real registry: the platform table under --platform-check in create,
annotate and publish; publish's --platform filter; require_platforms / --require-platforms.

Images are real-sized (tests/helpers.py seed helpers); messages, exit codes and digests are
asserted exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from manyfest import reference
from manyfest.content import Entry, encode_list
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, head_digest, manyfest, platform_suffix, seed, seed_built
from tests.imagewriter import AttestedIndex, Image, build_attested_index, push_attested_index
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

ODD = Platform("linux", "amd64", "v8")
"""What a past bug refused when an image config declared it: taken as built by default."""
ODD_MESSAGE = "unsupported variant 'v8' for architecture 'amd64' (linux/amd64/v8)"
AMD64_HINT = "amd64 takes v1, v2, v3 or v4 (v8 is an arm64 variant)"
BUILT_HINT = (
    "the image's config declares this platform: rebuild it, set the platform (`manyfest "
    "annotate`, or a platform in the plan), or pass --platform-check warn to take it as built"
)
REQUIRED_HINT = (
    "add the missing sources (a tag that lost an architecture is left where it was), or "
    "change require_platforms / --require-platforms"
)
FILTER_HINT = "drop or widen --platform, or add a source for the platform"


def _entries(ref: str) -> list[dict[str, Any]]:
    """The entries of the list at ``ref``, exactly as the registry serves them."""

    async def go() -> bytes:
        async with Transport(Settings()) as transport:
            return (await RegistryClient(transport).get_manifest(reference.parse(ref))).raw

    entries: list[dict[str, Any]] = json.loads(anyio.run(go))["manifests"]
    return entries


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def _result(proc: Any) -> dict[str, Any]:
    (result,) = json.loads(proc.stdout)["results"]
    return dict(result)


def _expected(images: list[tuple[Image, Platform]]) -> str:
    """The digest of the list manyfest builds (docker's bytes) from these images."""
    entries = [
        Entry(i.manifest.media_type, i.manifest.size, i.manifest.digest, p) for i, p in images
    ]
    return encode_list(entries).digest


def _store_dir(name: str) -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "manifests" / name


def _push_attested(host: str, items: dict[str, AttestedIndex]) -> None:
    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for name, item in items.items():
                await push_attested_index(client, reference.parse(f"{host}/{name}"), item)

    anyio.run(push)


# ------------------------------------------------------------------ create


def test_create_takes_config_platforms_as_built_with_a_warning(registry: RegistryServer,
                                                               ns: str) -> None:
    host = registry.host
    seed(host, [(f"{ns}/odd:1", ODD, ns), (f"{ns}/arm64:1", PLATFORMS[2], ns)])
    odd, arm64 = f"{host}/{ns}/odd:1", f"{host}/{ns}/arm64:1"

    created = manyfest("create", f"{host}/{ns}/app:1", odd, arm64)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created manifest list {host}/{ns}/app:1\n"
    assert created.stderr == (
        f"warning: {odd}: {ODD_MESSAGE}; not in the platform table, kept as built\n"
    )
    shown = json.loads(manyfest("inspect", "-v", f"{host}/{ns}/app:1", odd, check=True).stdout)
    assert shown["Descriptor"]["platform"] == {"architecture": "amd64", "os": "linux",
                                               "variant": "v8"}

    refused = manyfest("create", "--platform-check", "error", f"{host}/{ns}/app:2", odd, arm64)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == f"{odd}: {ODD_MESSAGE}; {BUILT_HINT}\n"
    assert not _store_dir(f"127.0.0.1-{registry.port}_{ns}_app-2").exists()

    quiet = manyfest("create", "--platform-check", "off", f"{host}/{ns}/app:3", odd, arm64)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    warned = manyfest("create", "--platform-check", "warn", f"{host}/{ns}/app:4", odd, arm64)
    assert warned.returncode == 0
    assert _warnings(warned.stderr) == [
        f"warning: {odd}: {ODD_MESSAGE}; not in the platform table, kept as built"
    ]
    # valid platforms: silent under every mode
    for mode in ("error", "warn"):
        fine = manyfest("create", "--platform-check", mode, f"{host}/{ns}/fine:{mode}", arm64)
        assert (fine.returncode, fine.stderr) == (0, "")


# ------------------------------------------------------------------ annotate


def test_annotate_platform_check(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    seed(host, [(f"{ns}/arm64:1", PLATFORMS[2], ns)])
    target, arm64 = f"{host}/{ns}/app:ann", f"{host}/{ns}/arm64:1"
    manyfest("create", target, arm64, check=True)
    entry = _store_dir(f"127.0.0.1-{registry.port}_{ns}_app-ann") / (
        f"127.0.0.1-{registry.port}_{ns}_arm64-1")
    before = entry.read_bytes()

    def platform() -> dict[str, str]:
        shown = json.loads(manyfest("inspect", "-v", target, arm64, check=True).stdout)
        return dict(shown["Descriptor"]["platform"])

    # written by the user: refused by default and under error
    for flags in ([], ["--platform-check", "error"]):
        refused = manyfest("annotate", *flags, "--arch", "amd64", "--variant", "v8", target,
                           arm64)
        assert refused.returncode == 2
        assert refused.stderr == f"{arm64}: {ODD_MESSAGE}; {AMD64_HINT}\n"
        assert entry.read_bytes() == before

    warned = manyfest("annotate", "--platform-check", "warn", "--arch", "amd64", "--variant",
                      "v8", target, arm64)
    assert warned.returncode == 0
    assert warned.stderr == (
        f"warning: {arm64}: {ODD_MESSAGE}; not in the platform table, kept as written\n"
    )
    assert platform() == {"architecture": "amd64", "os": "linux", "variant": "v8"}

    # os/arch/variant not given: the entry's platform is checked as read, a warning by default
    kept = manyfest("annotate", "--os-version", "1.0", target, arm64)
    assert kept.returncode == 0
    assert kept.stderr == (
        f"warning: {arm64}: {ODD_MESSAGE}; not in the platform table, kept as built\n"
    )
    assert platform() == {"architecture": "amd64", "os": "linux", "os.version": "1.0",
                          "variant": "v8"}
    strict = manyfest("annotate", "--platform-check", "error", "--os-version", "2.0", target,
                      arm64)
    assert strict.returncode == 2
    assert strict.stderr == f"{arm64}: {ODD_MESSAGE}; {BUILT_HINT}\n"
    assert platform()["os.version"] == "1.0"

    off = manyfest("annotate", "--platform-check", "off", "--arch", "arm64", "--variant", "v7",
                   target, arm64)
    assert (off.returncode, off.stderr) == (0, "")
    assert platform() == {"architecture": "arm64", "os": "linux", "os.version": "1.0",
                          "variant": "v7"}
    fixed = manyfest("annotate", "--variant", "v8.2", target, arm64)
    assert (fixed.returncode, fixed.stderr) == (0, "")
    assert platform()["variant"] == "v8.2"


# ------------------------------------------------------------------ publish: the table


def test_publish_warns_about_config_platforms_once(registry: RegistryServer, ns: str,
                                                   tmp_path: Path) -> None:
    """A config saying linux/amd64/v8 publishes as built (the past bug refused it), with one
    warning naming the image even when two lists use it."""
    host = registry.host
    built = seed_built(host, [(f"{ns}/odd:1", ODD, ns), (f"{ns}/arm64:1", PLATFORMS[2], ns)])
    odd = f"{host}/{ns}/odd:1"
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n---\n".join(
        f"image: {host}/{ns}/app:{tag}\nmanifests:\n  - image: {odd}\n"
        f"  - image: {host}/{ns}/arm64:1\n"
        for tag in ("1", "2")
    ))
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    assert _warnings(proc.stderr) == [
        f"warning: {odd}: {ODD_MESSAGE}; not in the platform table, kept as built"
    ]
    expected = _expected([(built[f"{ns}/odd:1"], ODD), (built[f"{ns}/arm64:1"], PLATFORMS[2])])
    results = json.loads(proc.stdout)["results"]
    assert [(r["status"], r["digest"]) for r in results] == [("created", expected)] * 2
    assert head_digest(f"{host}/{ns}/app:1") == expected

    # --platform-check error refuses it: the list fails before any write (exit 3)
    strict = manyfest("publish", "--json", "--platform-check", "error", "--target",
                      f"{host}/{ns}/app:strict", "--template", f"{host}/{ns}/ARCH:1",
                      "--platforms", "linux/arm64")
    assert strict.returncode == 0, strict.stderr  # arm64 only: valid
    plan_strict = tmp_path / "strict.yaml"
    plan_strict.write_text(plan.read_text().split("\n---\n")[0].replace(
        f"{host}/{ns}/app:1", f"{host}/{ns}/app:strict2") + "platform_check: error\n")
    refused = manyfest("publish", "--json", str(plan_strict))
    assert refused.returncode == 3
    result = _result(refused)
    assert result["status"] == "failed"
    assert result["error"] == f"{odd}: {ODD_MESSAGE}; {BUILT_HINT}"
    assert (result["digest"], result["old_digest"]) == ("", "")
    assert head_digest(f"{host}/{ns}/app:strict2") == ""
    assert _warnings(refused.stderr) == []
    # the flag overrides the plan key for every list
    off = manyfest("publish", "--json", "--platform-check", "off", str(plan_strict))
    assert off.returncode == 0, off.stderr
    assert _warnings(off.stderr) == []
    assert _result(off)["digest"] == expected
    flagged = manyfest("publish", "--json", "--platform-check", "error", str(plan))
    assert flagged.returncode == 3
    assert [r["error"] for r in json.loads(flagged.stdout)["results"]] == [
        f"{odd}: {ODD_MESSAGE}; {BUILT_HINT}"] * 2


def test_publish_written_platforms(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    """A platform the plan writes is refused before any request by default; under warn it is
    published as written, with a warning."""
    host = registry.host
    built = seed_built(host, [(f"{ns}/amd64:1", PLATFORMS[0], ns)])
    src = f"{host}/{ns}/amd64:1"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n  - image: {src}\n"
                    "    platform: {os: linux, architecture: amd64, variant: v8}\n")
    before = registry.request_count()
    refused = manyfest("publish", str(plan))
    assert refused.returncode == 2
    assert refused.stderr == (
        f"{plan}: document 1: manifests[0].platform ({src}): {ODD_MESSAGE}; {AMD64_HINT}\n"
    )
    args = ("--target", f"{host}/{ns}/app:2", "--template", f"{host}/{ns}/ARCH:1",
            "--platforms", "linux/amd64/v8")
    from_args = manyfest("publish", *args)
    assert from_args.returncode == 2
    assert from_args.stderr == (
        f"arguments: manifests[0].platform ({src}): {ODD_MESSAGE}; {AMD64_HINT}\n"
    )
    assert registry.request_count() == before

    warned = manyfest("publish", "--json", "--platform-check", "warn", str(plan))
    assert warned.returncode == 0, warned.stderr
    assert _warnings(warned.stderr) == [
        f"warning: {src}: {ODD_MESSAGE}; not in the platform table, kept as written"
    ]
    expected = _expected([(built[f"{ns}/amd64:1"], ODD)])
    assert _result(warned)["digest"] == expected
    assert _entries(f"{host}/{ns}/app:1")[0]["platform"] == {
        "architecture": "amd64", "os": "linux", "variant": "v8"}
    plan_key = tmp_path / "warn.yaml"
    plan_key.write_text(plan.read_text().replace("app:1", "app:3") + "platform_check: warn\n")
    keyed = manyfest("publish", "--json", str(plan_key))
    assert keyed.returncode == 0, keyed.stderr
    assert _result(keyed)["digest"] == expected

    # a partial override (variant only) is checked once the config gives os/arch
    partial = tmp_path / "partial.yaml"
    partial.write_text(f"image: {host}/{ns}/app:4\nmanifests:\n  - image: {src}\n"
                       "    platform: {variant: v9}\n")
    failed = manyfest("publish", "--json", str(partial))
    assert failed.returncode == 3
    assert _result(failed)["error"] == (
        f"{src}: unsupported variant 'v9' for architecture 'amd64' (linux/amd64/v9); "
        f"{AMD64_HINT}"
    )
    assert head_digest(f"{host}/{ns}/app:4") == ""


# ------------------------------------------------------------------ publish: --platform


def _walkthrough_plan(host: str, ns: str, tag: str) -> str:
    lines = [f"image: {host}/{ns}/app:{tag}", "manifests:"]
    lines += [f"  - image: {host}/{ns}/app-{platform_suffix(p)}:1" for p in PLATFORMS]
    return "\n".join(lines) + "\n"


def test_platform_filter(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    built = seed_built(host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    image = {p: built[f"{ns}/app-{platform_suffix(p)}:1"] for p in PLATFORMS}
    plan = tmp_path / "plan.yaml"
    plan.write_text(_walkthrough_plan(host, ns, "two"))
    proc = manyfest("publish", "--json", "--platform", "linux/arm64", "--platform",
                    "linux/amd64,linux/s390x", str(plan))
    assert proc.returncode == 0, proc.stderr
    # plan order kept (amd64 first), arm64's config variant v8 matches linux/arm64
    expected = _expected([(image[PLATFORMS[0]], PLATFORMS[0]), (image[PLATFORMS[2]],
                                                                PLATFORMS[2])])
    assert _result(proc)["digest"] == expected
    assert head_digest(f"{host}/{ns}/app:two") == expected
    assert [e["digest"] for e in _entries(f"{host}/{ns}/app:two")] == [
        image[PLATFORMS[0]].manifest.digest, image[PLATFORMS[2]].manifest.digest]

    # windows/amd64 with an os.version prefix (docker's --platform matching)
    win = tmp_path / "win.yaml"
    win.write_text(_walkthrough_plan(host, ns, "win"))
    proc = manyfest("publish", "--json", "--platform", "windows/amd64:10.0.17763", str(win))
    assert proc.returncode == 0, proc.stderr
    assert _result(proc)["digest"] == _expected([(image[PLATFORMS[3]], PLATFORMS[3])])

    # nothing matches: the list fails with one line, nothing written
    none = tmp_path / "none.yaml"
    none.write_text(_walkthrough_plan(host, ns, "none"))
    failed = manyfest("publish", "--json", "--platform", "linux/s390x", str(none))
    assert failed.returncode == 3
    assert _result(failed)["error"] == (
        f"{host}/{ns}/app:none: no image matches --platform linux/s390x; its sources have "
        "linux/amd64, linux/arm/v7, linux/arm64/v8, windows/amd64:10.0.17763.1879; "
        f"{FILTER_HINT}"
    )
    assert f"failed {host}/{ns}/app:none: {host}/{ns}/app:none: no image matches" in (
        failed.stderr)
    assert head_digest(f"{host}/{ns}/app:none") == ""

    # a filter outside the table is a usage error, before any request
    before = registry.request_count()
    bad = manyfest("publish", "--platform", "linux/arm64/v7", str(plan))
    assert bad.returncode == 2
    assert bad.stderr == (
        "--platform: linux/arm64/v7: unsupported variant 'v7' for architecture 'arm64' "
        "(linux/arm64/v7); arm64 takes v8, v8.x, v9 or v9.x (arm/v7 is --arch arm --variant "
        "v7)\n"
    )
    # not a platform at all: the advice is about the flag's value, not the plan file
    for flag in ("--platform", "--require-platforms"):
        malformed = manyfest("publish", flag, "linux", str(plan))
        assert malformed.returncode == 2
        assert malformed.stderr == (
            f"{flag}: invalid platform 'linux': expected os/arch[/variant]; use a valid "
            "os/arch/variant, e.g. linux/arm/v7 or linux/arm64/v8\n"
        )
    assert registry.request_count() == before


def test_platform_filter_keeps_attestations_with_their_images(
        registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    items = {f"{ns}/app-{p.architecture}:1": build_attested_index(p, ns)
             for p in (PLATFORMS[0], PLATFORMS[2])}
    _push_attested(host, items)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n"
                    + "".join(f"  - image: {host}/{name}\n" for name in items))
    proc = manyfest("publish", "--json", "--platform", "linux/arm64/v8", str(plan))
    assert proc.returncode == 0, proc.stderr
    arm64 = json.loads(items[f"{ns}/app-arm64:1"].index.raw)["manifests"]
    assert _entries(f"{host}/{ns}/app:1") == arm64  # the image, then its attestation
    assert head_digest(f"{host}/{ns}/app:1") == _result(proc)["digest"]


# ------------------------------------------------------------------ require_platforms


def test_require_platforms_catches_a_release_that_lost_an_architecture(
        registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    """Last writer wins: release 2's arm64 build is missing; `latest` must not move to an
    amd64-only list."""
    host = registry.host
    built = seed_built(host, [
        (f"{ns}/app-amd64:1", PLATFORMS[0], ns), (f"{ns}/app-arm64:1", PLATFORMS[2], ns),
        (f"{ns}/app-amd64:2", PLATFORMS[0], ns + "-2"),
    ])
    release = ("image: {host}/{ns}/app:latest\ntags: [\"{v}\"]\n"
               "require_platforms: [linux/amd64, linux/arm64/v8]\nmanifests:\n{entries}")
    one = tmp_path / "release1.yaml"
    one.write_text(release.format(host=host, ns=ns, v="1", entries=(
        f"  - image: {host}/{ns}/app-amd64:1\n  - image: {host}/{ns}/app-arm64:1\n")))
    first = manyfest("publish", "--json", str(one))
    assert first.returncode == 0, first.stderr
    latest = _expected([(built[f"{ns}/app-amd64:1"], PLATFORMS[0]),
                        (built[f"{ns}/app-arm64:1"], PLATFORMS[2])])
    assert _result(first)["digest"] == latest
    assert head_digest(f"{host}/{ns}/app:latest") == latest

    two = tmp_path / "release2.yaml"
    two.write_text(
        release.format(host=host, ns=ns, v="2",
                       entries=f"  - image: {host}/{ns}/app-amd64:2\n")
        + f"---\nimage: {host}/{ns}/app:2-amd64\nmanifests:\n"
        f"  - image: {host}/{ns}/app-amd64:2\n"
    )
    missing = (f"{host}/{ns}/app:latest: missing required platform linux/arm64/v8; the list "
               f"has linux/amd64; {REQUIRED_HINT}")
    proc = manyfest("publish", "--json", str(two))
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    failed, other = report["results"]
    assert (failed["status"], failed["error"], failed["digest"]) == ("failed", missing, "")
    assert failed["tags"] == ["latest", "2"]
    assert other["status"] == "created"  # keep-going: the other list publishes
    assert report["summary"]["failed"] == 1
    assert f"failed {host}/{ns}/app:latest: {missing}" in proc.stderr
    assert head_digest(f"{host}/{ns}/app:latest") == latest  # not moved
    assert head_digest(f"{host}/{ns}/app:2") == ""

    # --fail-fast: nothing is written at all
    ff = tmp_path / "release2ff.yaml"
    ff.write_text(two.read_text().replace("app:2-amd64", "app:2-ff"))
    stopped = manyfest("publish", "--json", "--fail-fast", str(ff))
    assert stopped.returncode == 1
    assert stopped.stderr.splitlines()[-1] == missing
    a, b = json.loads(stopped.stdout)["results"]
    assert a["error"] == missing
    assert b["error"] == (
        f"not published: --fail-fast stopped the run before any write "
        f"({missing.removesuffix('; ' + REQUIRED_HINT)}); fix the failing lists, or run "
        "without --fail-fast to publish the rest"
    )
    assert head_digest(f"{host}/{ns}/app:2-ff") == ""
    assert head_digest(f"{host}/{ns}/app:latest") == latest

    # --require-platforms on the command line overrides the plan's, for every list
    override = tmp_path / "override.yaml"
    override.write_text(release.format(host=host, ns=ns, v="4", entries=(
        f"  - image: {host}/{ns}/app-amd64:2\n")).replace("app:latest", "app:4-amd64"))
    flagged = manyfest("publish", "--json", "--require-platforms", "linux/amd64", str(override))
    assert flagged.returncode == 0, flagged.stderr
    assert head_digest(f"{host}/{ns}/app:4-amd64") == _result(flagged)["digest"] != ""
    rerun = tmp_path / "rerun.yaml"
    rerun.write_text(f"image: {host}/{ns}/app:3\nmanifests:\n"
                     f"  - image: {host}/{ns}/app-amd64:2\n")
    cli = manyfest("publish", "--json", "--require-platforms", "linux/amd64",
                   "--require-platforms", "linux/arm64/v8,linux/amd64", str(rerun))
    assert cli.returncode == 3
    assert _result(cli)["error"] == (
        f"{host}/{ns}/app:3: missing required platform linux/arm64/v8; the list has "
        f"linux/amd64; {REQUIRED_HINT}"
    )
    assert head_digest(f"{host}/{ns}/app:3") == ""
    # the filter applies first: a required platform filtered away is missing
    filtered = manyfest("publish", "--json", "--platform", "linux/amd64", str(one))
    assert filtered.returncode == 3
    assert _result(filtered)["error"] == missing
    assert head_digest(f"{host}/{ns}/app:latest") == latest


def test_require_platforms_matching(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    """An entry linux/arm64 (no variant) satisfies linux/arm64/v8; attestations never count;
    the compact document's key works per list."""
    host = registry.host
    seed(host, [(f"{ns}/arm64:1", Platform("linux", "arm64"), ns),
                (f"{ns}/amd64:1", PLATFORMS[0], ns)])
    _push_attested(host, {f"{ns}/attested:1": build_attested_index(PLATFORMS[0], ns)})
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "matrix: {n: ['1']}\n"
        f"image: {host}/{ns}/app:{{n}}\n"
        "require_platforms: [linux/arm64/v8, linux/amd64]\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        f"template: {host}/{ns}/{{arch}}:{{n}}\n"
        f"---\nimage: {host}/{ns}/att:1\n"
        "require_platforms: [linux/amd64, linux/arm64, windows/amd64]\n"
        f"manifests:\n  - image: {host}/{ns}/attested:1\n"
    )
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 3
    ok, att = json.loads(proc.stdout)["results"]
    assert ok["status"] == "created", ok["error"]
    assert att["error"] == (
        f"{host}/{ns}/att:1: missing required platforms linux/arm64, windows/amd64; the list "
        f"has linux/amd64; {REQUIRED_HINT}"
    )
    assert head_digest(f"{host}/{ns}/att:1") == ""
    assert [e["platform"] for e in _entries(f"{host}/{ns}/app:1")] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
