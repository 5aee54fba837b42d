"""publish modes: --dry-run, --verify, --fail-fast, --json-style, --report; shared work."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from manyfest import digest as digests
from manyfest import reference
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import (
    PLATFORMS,
    REFERRERS_PROBE,
    manyfest,
    platform_suffix,
    referrers_lookups,
    seed,
    seed_built,
)
from tests.imagewriter import Image, distinct_blobs
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


def _doc(host: str, ns: str, target: str, tag: str, tags: list[str] | None = None,
         sources: list[str] | None = None) -> str:
    lines = [f"image: {host}/{ns}/{target}"]
    if tags:
        lines.append("tags: [" + ", ".join(f'"{t}"' for t in tags) + "]")
    lines.append("manifests:")
    for name in sources or [f"app-{platform_suffix(p)}:{tag}" for p in PLATFORMS]:
        lines.append(f"  - image: {host}/{ns}/{name}")
    return "\n".join(lines)


def _seed(host: str, ns: str, tag: str = "1") -> dict[str, Image]:
    return seed_built(host,
                      [(f"{ns}/app-{platform_suffix(p)}:{tag}", p, ns + tag) for p in PLATFORMS])


def _head(host: str, ref: str) -> str:
    async def run() -> str:
        async with Transport(Settings()) as transport:
            found = await RegistryClient(transport).head_manifest(reference.parse(ref))
            return found.digest if found else ""

    return anyio.run(run)


def test_dry_run_writes_nothing(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    built = _seed(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(_doc(host, ns, "app:1", "1", tags=["latest"]))
    dry = manyfest("publish", "--dry-run", "--json", str(plan))
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    [result] = report["results"]
    assert report["summary"]["dry_run"] is True
    assert result["status"] == "created"
    assert result["old_digest"] == ""
    mounts = [a for a in result["actions"] if a.startswith("mount ")]
    pushes = [a for a in result["actions"] if a.startswith("push child ")]
    puts = [a for a in result["actions"] if a.startswith("put ")]
    # one mount per blob of the 4 children (config + layers), one push per child, 2 tags
    assert sorted(a.split()[1] for a in mounts) == sorted(distinct_blobs(built.values()))
    assert (len(mounts), len(pushes), len(puts)) == (len(distinct_blobs(built.values())), 4, 2)
    assert puts[0] == f"put {host}/{ns}/app:1 -> {result['digest']} (new tag)"
    assert _head(host, f"{host}/{ns}/app:1") == ""
    assert _head(host, f"{host}/{ns}/app:latest") == ""
    assert "would publish 1 list: 1 created" in dry.stderr

    real = manyfest("publish", "--json", str(plan))
    assert json.loads(real.stdout)["results"][0]["digest"] == result["digest"]
    again = json.loads(manyfest("publish", "--dry-run", "--json", str(plan)).stdout)
    assert again["results"][0]["status"] == "unchanged"
    assert "actions" not in again["results"][0]


def test_verify_and_report_file(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    _seed(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(_doc(host, ns, "app:1", "1", tags=["1.0", "latest"]))
    report_path = tmp_path / "report.jsonl"
    proc = manyfest("publish", "--verify", "--report", str(report_path), str(plan))
    assert proc.returncode == 0, proc.stderr
    lines = report_path.read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["verified"] is True
    assert line["status"] == "created"
    assert line["tags"] == ["1", "1.0", "latest"]
    assert line["retries"] == 0
    for tag in line["tags"]:
        assert _head(host, f"{host}/{ns}/app:{tag}") == line["digest"]


def test_fail_fast_writes_nothing(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    _seed(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        _doc(host, ns, "good:1", "1") + "\n---\n"
        + _doc(host, ns, "bad:1", "1", sources=["app-amd64:1", "missing:1"])
    )
    before = registry.request_count()
    report_path = tmp_path / "report.jsonl"
    stopped = manyfest("publish", "--fail-fast", "--json", "--report", str(report_path),
                       str(plan))
    assert stopped.returncode == 1
    assert stopped.stderr.strip().splitlines()[-1].startswith(
        f"no such manifest: {host}/{ns}/missing:1: registry answered 404")
    report = json.loads(stopped.stdout)
    assert report["summary"]["stopped"].startswith(f"no such manifest: {host}/{ns}/missing:1")
    good, bad = report["results"]
    assert (good["status"], bad["status"]) == ("failed", "failed")
    assert good["error"].startswith("not published: --fail-fast stopped the run before any write")
    assert bad["error"].startswith(f"no such manifest: {host}/{ns}/missing:1")
    assert [json.loads(line)["status"] for line in report_path.read_text().splitlines()] == [
        "failed", "failed"]
    # only reads happened: 5 GET manifest (one 404), 4 GET config, the ping
    assert registry.request_count() - before == 10
    assert _head(host, f"{host}/{ns}/good:1") == ""

    kept = manyfest("publish", "--json", str(plan))
    assert kept.returncode == 3
    statuses = [r["status"] for r in json.loads(kept.stdout)["results"]]
    assert statuses == ["created", "failed"]


def test_json_style_bytes(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    _seed(host, ns)
    results = {}
    for style, prefix in (("docker", b'{\n   "schemaVersion"'),
                          ("manifest-tool", b'{\n  "schemaVersion"'),
                          ("compact", b'{"schemaVersion":2,')):
        plan = tmp_path / f"{style}.yaml"
        plan.write_text(_doc(host, ns, f"app:{style}", "1"))
        proc = manyfest("publish", "--json-style", style, "--json", str(plan))
        assert proc.returncode == 0, proc.stderr
        digest = json.loads(proc.stdout)["results"][0]["digest"]
        results[style] = digest

        async def get(style: str = style) -> bytes:
            async with Transport(Settings()) as transport:
                ref = reference.parse(f"{host}/{ns}/app:{style}")
                return (await RegistryClient(transport).get_manifest(ref)).raw

        raw = anyio.run(get)
        assert raw.startswith(prefix)
        assert digests.sha256(raw) == digest
    assert len(set(results.values())) == 3
    bad = manyfest("publish", "--json-style", "yaml", str(tmp_path / "docker.yaml"))
    assert bad.returncode == 2


def test_release_tags_share_work(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    """Lists 1.2.3, 1.2, 1, latest of one release share children: the work is done once."""
    host = registry.host
    built = _seed(host, ns, "1.2.3")
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n---\n".join(
        _doc(host, ns, f"app:{tag}", "1.2.3") for tag in ("1.2.3", "1.2", "1", "latest")
    ))
    before = registry.request_count()
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len({r["digest"] for r in report["results"]}) == 1
    # The first list: one GET of the target's tag list (4 tags into a repository that does
    # not exist yet: 404 NAME_UNKNOWN, so no HEAD of any tag), 4 x (GET manifest + GET
    # config), a mount per blob, 4 child PUTs, 1 PUT of its tag; then 1 PUT per other tag;
    # + the ping; + the referrers lookups (the probe and a tag list per source repository,
    # once for all 4 lists).
    first = 1 + 4 * 2 + len(distinct_blobs(built.values())) + 4 + 1
    assert report["summary"]["requests"] == 1 + first + 3 + referrers_lookups(4)
    assert sum(r["manifest_heads"] for r in report["results"]) == 0
    served = registry.request_count() - before
    assert served + REFERRERS_PROBE == report["summary"]["requests"]


def test_unchanged_rerun_costs_five_requests(registry: RegistryServer, ns: str,
                                            tmp_path: Path) -> None:
    """Re-runs: a HEAD per source tag and a HEAD of the target; nothing is PUT."""
    host = registry.host
    _seed(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(_doc(host, ns, "app:1", "1") + "\n---\n"
                    + _doc(host, ns, "app:2", "1", tags=["two"]))
    first = json.loads(manyfest("publish", "--json", str(plan)).stdout)
    assert [r["status"] for r in first["results"]] == ["created", "created"]
    before = registry.request_count()
    again = json.loads(manyfest("publish", "--json", str(plan)).stdout)
    assert [r["status"] for r in again["results"]] == ["unchanged", "unchanged"]
    # The two lists have the same bytes in one repository: one unit of work, its requests
    # on the first list: 4 source HEADs (+ the ping) + 1 HEAD per tag of either list (3).
    assert [r["requests"] for r in again["results"]] == [1 + 4 + 3, 0]
    assert again["results"][1]["same_as"] == again["results"][0]["target"]
    assert registry.request_count() - before == 1 + 5 + 2
    assert all(r["old_digest"] == r["digest"] for r in again["results"])

    # a source tag moved: one GET for it (its config too), and the list is updated
    seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], "moved")])
    moved = json.loads(manyfest("publish", "--json", str(plan)).stdout)
    assert [r["status"] for r in moved["results"]] == ["updated", "updated"]
    assert moved["results"][0]["old_digest"] == first["results"][0]["digest"]


def test_report_path_checked_before_any_work(registry: RegistryServer, ns: str,
                                             tmp_path: Path) -> None:
    host = registry.host
    plan = tmp_path / "plan.yaml"
    plan.write_text(_doc(host, ns, "app:1", "1"))
    before = registry.request_count()
    for bad, problem in ((tmp_path / "no" / "dir" / "r.jsonl", "does not exist"),
                         (tmp_path, "is a directory")):
        proc = manyfest("publish", "--report", str(bad), str(plan))
        assert proc.returncode == 2
        assert problem in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert registry.request_count() == before


def test_dry_run_lines_say_would(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    _seed(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(_doc(host, ns, "app:1", "1") + "\n---\n"
                    + _doc(host, ns, "bad:1", "1", sources=["missing:1"]))
    proc = manyfest("publish", "--dry-run", str(plan))
    assert proc.returncode == 3
    assert f"would be created {host}/{ns}/app:1" in proc.stderr
    assert "lists would fail" in proc.stderr
    assert "nothing was written" in proc.stderr
