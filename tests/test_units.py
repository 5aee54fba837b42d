"""Lists with identical bytes in one repository are one unit of work; manifest reads counted.

Two plan lists (two manifest-tool documents with the same entries) whose bytes are the same
are published once: one HEAD per tag, the children once, one list PUT at the first tag, one
PUT per other tag; each list keeps its own report line (the second ``same_as`` the first).
Manifest GETs (what pull quotas count) and HEADs are counted per list and in the summary;
a warm-cache re-run of an unchanged plan does no manifest GET.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from manyfest import reference
from manyfest.engine import Child, Engine, PublishOptions, Source
from manyfest.ops.plan import PlanList, load, parse_documents
from manyfest.ops.publish import PublishReport, plan_units, publish
from manyfest.platform import Platform
from manyfest.transport.response import RequestStats, is_manifest_path
from tests.helpers import PLATFORMS, head_digest, manyfest, platform_suffix, seed
from tests.imagewriter import build_image
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer
from tests.test_atomic import TagDeletingRegistry
from tests.test_engine import HOST, _images, _run


def _document(host: str, ns: str, target: str, tags: list[str],
              annotations: dict[str, str] | None = None) -> str:
    lines = [f"image: {host}/{ns}/{target}", f"tags: [{', '.join(tags)}]"]
    if annotations:
        lines.append("media_type: oci")
        lines.append("annotations:")
        lines += [f"  {k}: {v}" for k, v in annotations.items()]
    lines.append("manifests:")
    lines += [f"  - image: {host}/{ns}/app-{platform_suffix(p)}:1" for p in PLATFORMS]
    return "\n".join(lines) + "\n"


def _plan(path: Path, *documents: str) -> Path:
    path.write_text("---\n".join(documents))
    return path


def _seed(registry: RegistryServer, ns: str) -> list[str]:
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS]
    digests = seed(registry.host, names)
    return [digests[name] for name, _, _ in names]


# ------------------------------------------------------------------ without a registry


def _source(name: str, platform: Platform, seed_text: str) -> Source:
    image = build_image(platform, seed_text)
    return Source(reference.parse(name), image.manifest, platform)


def test_plan_units_groups_identical_lists_only(tmp_path: Path) -> None:
    host, ns = "127.0.0.1:5000", "units"
    plan = load(_plan(
        tmp_path / "p.yaml",
        _document(host, ns, "app:1.2.3", ["1.2"]),
        _document(host, ns, "app:latest", ["1"]),
        _document(host, ns, "other:1", []),  # another repository
        _document(host, ns, "app:annotated", [], {"org.example.note": "x"}),
        _document(host, ns, "app:edge", []),
    ))
    sources = [_source(f"{host}/{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS]
    children = [Child(s, s.platform) for s in sources]
    built: dict[int, list[Child]] = dict.fromkeys(range(len(plan)), children)
    del built[4]  # a list that failed its checks is never grouped
    assert plan_units(plan, built, PublishOptions()) == [[0, 1], [2], [3], [4]]
    # Another entry order is another list: not grouped.
    built[1] = list(reversed(children))
    assert plan_units(plan, built, PublishOptions()) == [[0], [1], [2], [3], [4]]
    # Another style (a flag of the run) applies to every list: still grouped.
    built[1] = children
    assert plan_units(plan, built, PublishOptions(style="compact"))[0] == [0, 1]
    # --unchanged-by children groups them too (each list's kept tags are its own).
    assert plan_units(plan, built, PublishOptions(unchanged_by="children"))[0] == [0, 1]


def test_manifest_paths_are_told_from_blob_paths() -> None:
    assert is_manifest_path("http://127.0.0.1:5000/v2/a/b/manifests/1.2")
    assert is_manifest_path("/v2/a/manifests/sha256:" + "0" * 64)
    assert is_manifest_path("/v2/a/blobs/manifests/latest")  # repository a/blobs
    assert not is_manifest_path("/v2/a/manifests/blobs/sha256:" + "0" * 64)  # repo a/manifests
    assert not is_manifest_path("/v2/a/blobs/uploads/?mount=x&from=manifests/y")
    assert not is_manifest_path("/v2/")
    stats = RequestStats()
    stats.count_manifest_read("GET")
    stats.count_manifest_read("HEAD")
    stats.count_manifest_read("HEAD")
    stats.count_manifest_read("PUT")
    assert (stats.manifest_gets, stats.manifest_heads) == (1, 2)


# ------------------------------------------------------------------ end to end


@pytest.mark.slow  # end to end
def test_identical_lists_are_one_unit_and_a_warm_rerun_does_no_manifest_get(
        registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    children = _seed(registry, ns)
    proxy = QuirkProxy(registry.host).start()
    try:
        host = proxy.host
        plan = _plan(tmp_path / "p.yaml",
                     _document(host, ns, "app:1.2.3", ["1.2", "1"]),
                     _document(host, ns, "app:latest", ["stable"]))
        report = tmp_path / "report.jsonl"
        cold = manyfest("publish", "--json", "--report", str(report), str(plan))
        assert cold.returncode == 0, cold.stderr
        doc = json.loads(cold.stdout)
        first, second = doc["results"]
        repo = f"/v2/{ns}/app/manifests/"
        tags = ["1.2.3", "1.2", "1", "latest", "stable"]
        # One PUT per tag, no HEAD: 5 tags into a repository that does not exist yet, which
        # one GET of its tag list says (404 NAME_UNKNOWN); the children PUT once each.
        assert proxy.seen[f"GET /v2/{ns}/app/tags/list?n=1"] == 1
        for tag in tags:
            assert proxy.seen[f"HEAD {repo}{tag}"] == 0, tag
            assert proxy.seen[f"PUT {repo}{tag}"] == 1, tag
        for digest in children:
            assert proxy.seen[f"PUT {repo}{digest}"] == 1
        assert proxy.count("PUT", repo) == len(tags) + len(children)
        assert first["target"] == f"{host}/{ns}/app:1.2.3"
        assert first["tags"] == ["1.2.3", "1.2", "1"]
        assert "same_as" not in first
        assert second["target"] == f"{host}/{ns}/app:latest"
        assert second["tags"] == ["latest", "stable"]
        assert second["same_as"] == first["target"]
        assert second["digest"] == first["digest"]
        assert (first["status"], second["status"]) == ("created", "created")
        assert (second["requests"], second["manifest_gets"], second["manifest_heads"]) == (
            0, 0, 0)
        summary = doc["summary"]
        assert summary["requests"] == sum(proxy.seen.values())
        assert first["requests"] == summary["requests"]
        # Cold: 4 source manifests GET by tag; no tag HEAD.
        assert (summary["manifest_gets"], summary["manifest_heads"]) == (4, 0)
        assert (first["manifest_gets"], first["manifest_heads"]) == (4, 0)
        assert [json.loads(line) for line in report.read_text().splitlines()] == doc["results"]

        # Warm re-run, unchanged plan: HEADs only (4 sources by tag, 5 tags; the tag list
        # says the repository exists), no manifest GET.
        proxy.seen.clear()
        warm = manyfest("publish", "--json", str(plan))
        assert warm.returncode == 0, warm.stderr
        doc = json.loads(warm.stdout)
        assert [r["status"] for r in doc["results"]] == ["unchanged", "unchanged"]
        assert proxy.count("GET", "/manifests/") == 0
        assert proxy.count("HEAD", "/manifests/") == 9
        assert (doc["summary"]["manifest_gets"], doc["summary"]["manifest_heads"]) == (0, 9)
        assert proxy.count("PUT") == proxy.count("POST") == 0

        # One new tag on the second list: only that tag is PUT (the list proves its
        # children); the first list is unchanged, the second updated.
        proxy.seen.clear()
        plan = _plan(tmp_path / "p2.yaml",
                     _document(host, ns, "app:1.2.3", ["1.2", "1"]),
                     _document(host, ns, "app:latest", ["stable", "edge"]))
        moved = manyfest("publish", "--json", str(plan))
        assert moved.returncode == 0, moved.stderr
        a, b = json.loads(moved.stdout)["results"]
        assert (a["status"], b["status"]) == ("unchanged", "updated")
        assert b["old_digest"] == b["digest"] == a["digest"]
        assert [k for k in proxy.seen if k.startswith(("PUT", "POST"))] == [
            f"PUT {repo}edge"]
    finally:
        proxy.stop()


@pytest.mark.slow  # end to end
def test_dry_run_shows_the_unit_once(registry: RegistryServer, ns: str,
                                     tmp_path: Path) -> None:
    children = _seed(registry, ns)
    host = registry.host
    plan = _plan(tmp_path / "p.yaml",
                 _document(host, ns, "app:1.2.3", ["1"]),
                 _document(host, ns, "app:latest", []))
    dry = manyfest("publish", "--dry-run", str(plan))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    digest = lines[0].split()[-1]
    assert lines[0] == f"would create {host}/{ns}/app:1.2.3 {digest}"
    pushes = [line for line in lines if line.startswith("  push child ")]
    assert [p.split()[2] for p in pushes] == children
    i = lines.index(f"would create {host}/{ns}/app:latest {digest}")
    assert lines[i - 2:i] == [f"  put {host}/{ns}/app:1.2.3 -> {digest} (new tag)",
                              f"  put {host}/{ns}/app:1 -> {digest} (new tag)"]
    assert lines[i + 1:] == [
        f"  same list as {host}/{ns}/app:1.2.3 (its mounts and child pushes are there)",
        f"  put {host}/{ns}/app:latest -> {digest} (new tag)"]
    assert not any(line.startswith(("  mount", "  push")) for line in lines[i:])


@pytest.mark.slow  # end to end
def test_a_refused_tag_fails_only_its_own_list_of_the_unit(registry: RegistryServer, ns: str,
                                                      tmp_path: Path) -> None:
    _seed(registry, ns)
    proxy = QuirkProxy(registry.host)

    async def refuse_stable(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and request.path.endswith("/manifests/stable"):
            await request.read()
            body = b'{"errors":[{"code":"DENIED","message":"tag stable is immutable"}]}'
            return web.Response(status=403, body=body,
                                headers={"Content-Type": "application/json"})
        return None

    proxy.before.append(refuse_stable)
    proxy.start()
    try:
        host = proxy.host
        plan = _plan(tmp_path / "p.yaml",
                     _document(host, ns, "app:1.2.3", []),
                     _document(host, ns, "app:latest", ["stable"]))
        run = manyfest("publish", "--json", str(plan))
        assert run.returncode == 3, run.stderr
        first, second = json.loads(run.stdout)["results"]
        # The unit's first tag landed before stable was refused: app:1.2.3 (all its tags
        # at the list) is created; app:latest (stable refused) fails with the registry's
        # words.
        assert (first["status"], second["status"]) == ("created", "failed")
        assert first["error"] is None
        assert "tag stable is immutable" in second["error"]
        assert second["same_as"] == first["target"]
        assert proxy.count("PUT", "/manifests/stable") == 1
    finally:
        proxy.stop()


@pytest.mark.slow  # end to end
def test_unchanged_by_children_keeps_the_unit_and_fetches_each_list_once(
        registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    _seed(registry, ns)
    proxy = QuirkProxy(registry.host).start()
    try:
        host = proxy.host
        plan = _plan(tmp_path / "p.yaml",
                     _document(host, ns, "app:3", ["3.0"]),
                     _document(host, ns, "app:latest", ["stable"]))
        # Written by "another tool": manifest-tool's layout, another digest than docker's.
        tool = manyfest("publish", "--json-style", "manifest-tool", "--json", str(plan))
        assert tool.returncode == 0, tool.stderr
        tool_digest = json.loads(tool.stdout)["results"][0]["digest"]
        dry = json.loads(manyfest("publish", "--dry-run", "--json", str(plan)).stdout)
        assert dry["results"][0]["digest"] != tool_digest

        proxy.seen.clear()
        run = manyfest("publish", "--unchanged-by", "children", "--json", str(plan))
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        first, second = doc["results"]
        repo = f"/v2/{ns}/app/manifests/"
        # Four tags hold one previous list: one GET of it for the run, no write.
        assert proxy.seen[f"GET {repo}{tool_digest}"] == 1
        assert proxy.count("GET", repo) == 1
        for tag in ("3", "3.0", "latest", "stable"):
            assert proxy.seen[f"HEAD {repo}{tag}"] == 1, tag
        assert proxy.count("PUT") == proxy.count("POST") == 0
        assert [(r["status"], r["digest"]) for r in doc["results"]] == [
            ("unchanged", tool_digest), ("unchanged", tool_digest)]
        assert "same_as" not in first
        assert second["same_as"] == first["target"] == f"{host}/{ns}/app:3"
        assert (second["requests"], second["manifest_gets"], second["manifest_heads"]) == (
            0, 0, 0)
        assert first["requests"] == doc["summary"]["requests"] == sum(proxy.seen.values())
        # The sources come from the cache (HEADs): the one GET is the previous list.
        assert (doc["summary"]["manifest_gets"], first["manifest_gets"]) == (1, 1)

        # A new tag on the second list gets the bytes its first tag keeps; still one GET.
        plan = _plan(tmp_path / "p2.yaml",
                     _document(host, ns, "app:3", ["3.0"]),
                     _document(host, ns, "app:latest", ["stable", "edge"]))
        proxy.seen.clear()
        dry = manyfest("publish", "--unchanged-by", "children", "--dry-run", str(plan))
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.splitlines() == [
            f"unchanged {host}/{ns}/app:3 {tool_digest}",
            f"would update {host}/{ns}/app:latest {tool_digest} -> {tool_digest}",
            f"  same list as {host}/{ns}/app:3 (its mounts and child pushes are there)",
            f"  put {host}/{ns}/app:edge -> {tool_digest} (new tag)",
        ]
        assert proxy.seen[f"GET {repo}{tool_digest}"] == 1
        assert proxy.count("PUT") == proxy.count("POST") == 0
        proxy.seen.clear()
        grown = manyfest("publish", "--unchanged-by", "children", "--json", str(plan))
        assert grown.returncode == 0, grown.stderr
        a, b = json.loads(grown.stdout)["results"]
        assert (a["status"], b["status"]) == ("unchanged", "updated")
        assert b["digest"] == b["old_digest"] == tool_digest
        assert b["same_as"] == a["target"]
        assert b["requests"] == 0
        assert proxy.seen[f"GET {repo}{tool_digest}"] == 1
        assert [k for k in proxy.seen if k.startswith(("PUT", "POST"))] == [f"PUT {repo}edge"]
        assert head_digest(f"{host}/{ns}/app:edge") == tool_digest
    finally:
        proxy.stop()


# ---------------------------------------------------------------- a unit that fails in part


def _two_lists_one_unit() -> tuple[TagDeletingRegistry, list[PlanList]]:
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, "same")
    src = "\n".join(f"  - image: {HOST}/app-{a}:1" for a in ("amd64", "arm64"))
    plan = parse_documents(f"image: {HOST}/app:1.2.3\nmanifests:\n{src}\n---\n"
                           f"image: {HOST}/app:latest\nmanifests:\n{src}\n")
    return fake, plan


def _publish_in_memory(fake: TagDeletingRegistry, plan: list[PlanList]) -> PublishReport:
    report: PublishReport = _run(lambda: publish(Engine(fake.client()), plan))
    return report


def test_a_unit_failing_at_one_tag_fails_only_the_lists_whose_tags_did_not_land() -> None:
    """Two lists, one unit: a refused tag PUT fails the list it belongs to; the other list,
    whose tag holds the list (before, or moved before the refusal), is not a failure."""
    fake, plan = _two_lists_one_unit()
    [latest] = _publish_in_memory(fake, plan[1:]).results  # latest already holds the list
    assert latest.status == "created"
    fake.refuse_tags = {"1.2.3"}
    first, second = _publish_in_memory(fake, plan).results
    assert (first.status, second.status) == ("failed", "unchanged")
    assert first.error is not None
    assert "app:1.2.3" in first.error.one_line()
    assert second.error is None
    assert second.same_as == str(first.target)
    assert second.digest == latest.digest

    # The first tag moves, the second is refused: the first list is created, the other fails.
    fake.manifests["app"].pop("latest")
    fake.refuse_tags = {"latest"}
    first, second = _publish_in_memory(fake, plan).results
    assert (first.status, second.status) == ("created", "failed")
    assert first.error is None
    assert second.error is not None
    assert "app:latest" in second.error.one_line()
    assert fake.manifests["app"]["1.2.3"].digest == first.digest
    assert "latest" not in fake.manifests["app"]
