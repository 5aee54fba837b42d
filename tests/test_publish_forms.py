"""End to end: `manyfest publish` of a compact (matrix) plan and of a from-args list."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from manyfest import mediatypes, reference
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

VERSIONS = ("1.0.0", "1.1.0", "2.0.0")
FLAVORS = ("", "-alpine")
# linux/amd64, linux/arm64/v8, linux/arm/v7: the order of the plan (not of PLATFORMS)
LINUX = (PLATFORMS[0], PLATFORMS[2], PLATFORMS[1])


def _triple(p: Platform) -> tuple[str, str, str]:
    return (p.os, p.architecture, p.variant)


def _check_lists(
    host: str,
    expected: dict[str, tuple[list[str], list[str], dict[str, str]]],
    platforms: tuple[Platform, ...],
) -> dict[str, str]:
    """Every target and alias tag in ``expected`` (target → (tags, child digests in plan
    order, annotations)) holds one OCI index with those children; returns target → digest."""

    async def run() -> dict[str, str]:
        out: dict[str, str] = {}
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for target, (tags, children, annotations) in expected.items():
                ref = reference.parse(target)
                digest = ""
                for tag in tags:
                    listed = await client.get_manifest(ref.with_tag(tag))
                    assert listed.media_type == mediatypes.OCI_INDEX, tag
                    index = listed.index()
                    assert [m.digest for m in index.manifests] == children, tag
                    assert [_triple(m.platform) for m in index.manifests if m.platform] == [
                        _triple(p) for p in platforms
                    ], tag
                    assert index.annotations == annotations, tag
                    assert digest in ("", listed.digest), tag
                    digest = listed.digest
                out[target] = digest
        return out

    return anyio.run(run)


def test_publish_matrix_plan(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    names = [
        (f"{ns}/app-{p.os}-{p.architecture}{p.variant}:{v}{f}", p, f"{ns} {v}{f} {p}")
        for v in VERSIONS
        for f in FLAVORS
        for p in LINUX
    ]
    assert len(names) == 18
    images = seed(host, names)
    # one manifest-tool document before the compact one: a file may mix them
    seed(host, [(f"{ns}/tool-{platform_suffix(PLATFORMS[0])}:1", PLATFORMS[0], ns)])
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"""\
image: {host}/{ns}/tool:1
manifests:
  - image: {host}/{ns}/tool-{platform_suffix(PLATFORMS[0])}:1
---
matrix:
  version: ["1.0.0", "1.1.0", "2.0.0"]
  flavor: ["", "-alpine"]
image: {host}/{ns}/app:{{version}}{{flavor}}
tags: ["{{version}}{{flavor}}-stable"]
annotations: {{org.opencontainers.image.version: "{{version}}"}}
media_type: oci
platforms: [linux/amd64, linux/arm64/v8, linux/arm/v7]
template: {host}/{ns}/app-{{os}}-{{arch}}{{variant}}:{{version}}{{flavor}}
""",
        encoding="utf-8",
    )
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    combos = [f"{v}{f}" for v in VERSIONS for f in FLAVORS]
    assert [(r["target"], r["tags"], r["status"]) for r in report["results"]] == [
        (f"{host}/{ns}/tool:1", ["1"], "created"),
        *((f"{host}/{ns}/app:{c}", [c, f"{c}-stable"], "created") for c in combos),
    ]
    assert report["summary"]["lists"] == 7

    expected = {
        f"{host}/{ns}/app:{v}{f}": (
            [f"{v}{f}", f"{v}{f}-stable"],
            [images[f"{ns}/app-{p.os}-{p.architecture}{p.variant}:{v}{f}"] for p in LINUX],
            {"org.opencontainers.image.version": v},
        )
        for v in VERSIONS
        for f in FLAVORS
    }
    digests = _check_lists(host, expected, LINUX)
    assert digests == {r["target"]: r["digest"] for r in report["results"][1:]}
    assert len(set(digests.values())) == 6

    # `manyfest inspect` of an alias tag shows the children in plan order
    shown = manyfest("inspect", f"{host}/{ns}/app:2.0.0-alpine-stable")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert [m["digest"] for m in doc["manifests"]] == expected[f"{host}/{ns}/app:2.0.0-alpine"][1]
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
    ]
    assert doc["annotations"] == {"org.opencontainers.image.version": "2.0.0"}

    again = json.loads(manyfest("publish", "--json", str(plan)).stdout)
    assert [r["status"] for r in again["results"]] == ["unchanged"] * 7


def test_publish_from_args(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    # manifest-tool's naming: OS, ARCH, VARIANT replaced once each; VARIANT empty for amd64
    images = seed(
        host,
        [(f"{ns}/app-{p.os}-{p.architecture}{p.variant}:1", p, f"{ns} {p}") for p in LINUX],
    )
    proc = manyfest(
        "publish",
        "--platforms", "linux/amd64,linux/arm64/v8",
        "--platforms", "linux/arm/v7",
        "--template", f"{host}/{ns}/app-OS-ARCHVARIANT:1",
        "--target", f"{host}/{ns}/app:1",
        "--tags", "1.0,latest",
        "--tags", "stable",
        "--annotations", "org.opencontainers.image.version=1,com.example.k=v",
        "--media-type", "oci",  # annotations need an OCI index; the children are Docker's
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [result] = report["results"]
    assert (result["target"], result["tags"], result["status"]) == (
        f"{host}/{ns}/app:1",
        ["1", "1.0", "latest", "stable"],
        "created",
    )
    expected = {
        f"{host}/{ns}/app:1": (
            ["1", "1.0", "latest", "stable"],
            [images[f"{ns}/app-{p.os}-{p.architecture}{p.variant}:1"] for p in LINUX],
            {"org.opencontainers.image.version": "1", "com.example.k": "v"},
        )
    }
    assert _check_lists(host, expected, LINUX) == {f"{host}/{ns}/app:1": result["digest"]}


def test_publish_from_args_docker_list(registry: RegistryServer, ns: str) -> None:
    """No annotations: a docker manifest list, as manifest-tool's default type."""
    host = registry.host
    images = seed(host, [(f"{ns}/app-{platform_suffix(p)}:2", p, ns) for p in PLATFORMS[:3]])
    proc = manyfest(
        "publish",
        "--platforms", "linux/amd64, linux/arm/v7 ,linux/arm64/v8",
        "--template", f"{host}/{ns}/app-ARCH:2",
        "--target", f"{host}/{ns}/app:2",
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    async def get() -> list[tuple[str, tuple[str, str, str]]]:
        async with Transport(Settings()) as transport:
            listed = await RegistryClient(transport).get_manifest(
                reference.parse(f"{host}/{ns}/app:2")
            )
            assert listed.media_type == mediatypes.DOCKER_LIST
            return [(m.digest, _triple(m.platform)) for m in listed.index().manifests if m.platform]

    assert anyio.run(get) == [
        (images[f"{ns}/app-{platform_suffix(p)}:2"], _triple(p)) for p in PLATFORMS[:3]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "publish needs PLAN.yaml, or --target, --template and --platforms"),
        (("--tags", "1"), "publish needs PLAN.yaml, or --target, --template and --platforms"),
        (
            ("--target", "a.io/x:1", "--platforms", "linux/amd64"),
            "--platforms, --target given without --template",
        ),
        (("--template", "a.io/x-ARCH:1"), "--template given without --platforms and --target"),
        (("PLAN", "--target", "a.io/x:1"), "PLAN.yaml and --target cannot be used together"),
        (
            ("PLAN", "--tags", "1", "--annotations", "a=b"),
            "PLAN.yaml and --tags, --annotations cannot be used together",
        ),
        (
            (
                "--target", "a.io/x:1", "--template", "a.io/x-ARCH:1",
                "--platforms", "linux/amd64", "--annotations", "a=b=c",
            ),
            "--annotations: 'a=b=c' is not key=value",
        ),
        (
            (
                "--target", "a.io/x:1", "--template", "a.io/x:1",
                "--platforms", "linux/amd64,linux/arm64",
            ),
            "--template: linux/amd64 and linux/arm64 both give 'a.io/x:1'",
        ),
    ],
)  # fmt: skip
def test_publish_usage_errors(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("image: a.io/x:1\nmanifests: [{image: a.io/y:1}]\n")
    proc = manyfest("publish", *(str(plan) if a == "PLAN" else a for a in args))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message + "; "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_publish_matrix_plan_error(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "image: a.io/x:1\nmanifests: [{image: a.io/y:1}]\n---\n"
        "matrix: {version: ['1']}\nimage: 'a.io/x:{version}'\nplatforms: [linux/amd64]\n"
        "template: 'a.io/x-{arch}:{version}{flavour}'\n"
    )
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"{plan}: document 2: template: unknown placeholder {{flavour}}; placeholders "
        "defined for template: {version}, {os}, {arch}, {variant}\n"
    )
