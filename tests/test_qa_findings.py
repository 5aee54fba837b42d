"""Faults a new user found (QA report findings 5, 11 and 12), each kept as a test of its kind.

End to end against real registries (Distribution 2.8): the session registry and a second one
of this module's own (copies and lists between registries).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.helpers import PLATFORMS, head_digest, manyfest, seed, seed_built
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture
def other(second_registry: RegistryServer) -> RegistryServer:
    """The second registry (:func:`tests.conftest.second_registry`): where copies and lists go."""
    return second_registry


# ------------------------------------------------ 5: --dry-run and what copy: documents bring


def test_dry_run_takes_what_a_copy_document_brings_as_a_source(
        registry: RegistryServer, other: RegistryServer, ns: str, tmp_path: Path) -> None:
    """A list whose source a ``copy:`` document of the same plan brings: the dry run checks
    it as the copy's source (and says so), exit 0, the list digest the real run makes."""
    r1, r2 = registry.host, other.host
    digests = seed(r1, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns),
                        (f"{ns}/app-arm64:1", PLATFORMS[2], ns)])
    arm = digests[f"{ns}/app-arm64:1"]
    layout = tmp_path / "promo"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""\
copy: {r1}/{ns}/app-arm64:1
to: [{r2}/{ns}/promo/app-arm64, oci:{layout}]
---
image: {r2}/{ns}/promo/final:1
manifests:
  - image: {r2}/{ns}/promo/app-arm64:1
  - image: {r1}/{ns}/app-amd64:1
---
image: {r1}/{ns}/promo/fromlayout:1
manifests:
  - image: oci:{layout}:1
""")
    dry = manyfest("publish", "--dry-run", str(plan))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    heads = [line for line in lines if line.startswith("would ")]
    final, fromlayout = (line.split()[-1] for line in heads[2:])
    assert heads == [
        f"would create {r2}/{ns}/promo/app-arm64:1 {arm}",
        f"would create oci:{layout}:1 {arm}",
        f"would create {r2}/{ns}/promo/final:1 {final}",
        f"would create {r1}/{ns}/promo/fromlayout:1 {fromlayout}",
    ]
    said = [line.strip() for line in lines if line.startswith("  source ")]
    assert said == [
        f"source {r2}/{ns}/promo/app-arm64:1: not there yet; checked at "
        f"{r1}/{ns}/app-arm64@{arm}, which a copy: document brings here",
        f"source oci:{layout}:1: not there yet; checked at {r1}/{ns}/app-arm64@{arm}, "
        "which a copy: document brings here",
    ]
    # the list's blobs are mounted from where the copy puts them, as the real run does
    assert f"  push child {arm} (linux/arm64/v8)" in lines
    assert any(line.startswith("  mount ") and line.endswith(f" from {r2}/{ns}/promo/app-arm64")
               for line in lines)
    assert not layout.exists()
    assert head_digest(f"{r2}/{ns}/promo/app-arm64:1") == ""
    real = manyfest("publish", "--json", str(plan))
    assert real.returncode == 0, real.stderr
    done = {(r["target"], r["status"], r["digest"]) for r in json.loads(real.stdout)["results"]}
    assert done == {
        (f"{r2}/{ns}/promo/app-arm64:1", "created", arm),
        (f"oci:{layout}:1", "created", arm),
        (f"{r2}/{ns}/promo/final:1", "created", final),
        (f"{r1}/{ns}/promo/fromlayout:1", "created", fromlayout),
    }
    assert head_digest(f"{r2}/{ns}/promo/final:1") == final
    # once the copies are there, the dry run resolves the sources where they are: no note
    again = manyfest("publish", "--dry-run", str(plan))
    assert again.returncode == 0, again.stderr
    assert "not there yet" not in again.stdout
    assert f"unchanged {r2}/{ns}/promo/final:1 {final}" in again.stdout.splitlines()


def test_dry_run_with_a_failing_copy_still_fails_the_list(
        registry: RegistryServer, other: RegistryServer, ns: str, tmp_path: Path) -> None:
    """A copy that would fail brings nothing: the list naming its target still fails."""
    r1, r2 = registry.host, other.host
    seed(r1, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""copy: {r1}/{ns}/nothing:1
to: {r2}/{ns}/promo/nothing
---
image: {r2}/{ns}/promo/final:1
manifests:
  - image: {r2}/{ns}/promo/nothing:1
  - image: {r1}/{ns}/app-amd64:1
""")
    dry = manyfest("publish", "--dry-run", str(plan))
    assert dry.returncode == 3, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would fail {r2}/{ns}/promo/nothing:1: no such manifest: {r1}/{ns}/nothing:1: "
        "registry answered 404; push the image first, or check its name and tag",
        f"would fail {r2}/{ns}/promo/final:1: no such manifest: {r2}/{ns}/promo/nothing:1: "
        "registry answered 404 (MANIFEST_UNKNOWN: manifest unknown (detail: {\"Tag\":\"1\"})); "
        "push the image first, or check its name and tag",
    ]


# ------------------------------------------ 11: a failure between registries names its registry


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry with htpasswd basic auth (user/pass) to which this test has no login."""
    workdir = tmp_path_factory.mktemp("qa-locked")
    line = subprocess.run(["htpasswd", "-Bbn", "user", "pass"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (workdir / "htpasswd").write_text(line + "\\n")
    server = RegistryServer(workdir=workdir / "registry", htpasswd=workdir / "htpasswd")
    server.start()
    yield server
    server.stop()


def test_failures_between_registries_lead_with_the_registry(
        registry: RegistryServer, locked: RegistryServer, ns: str, tmp_path: Path) -> None:
    """docs/registries.md: a failed copy between registries leads with ``source registry
    <host>:`` or ``target registry <host>:``: a registry down (its /v2/ probe) and one
    refusing credentials (its first HEAD), on either side, for ``copy`` and ``publish``."""
    r1, down, auth = registry.host, "127.0.0.1:1", locked.host
    seed(r1, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])
    src = f"{r1}/{ns}/app-amd64:1"
    refused = (f"GET http://{down}/v2/: cannot connect to {down}: Connection refused; "
               f"check that the registry is running and listens on {down}")
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    unauthorized = (f"registry answered 401; no credentials for {auth} in {config}: log in "
                    f"with `manyfest login {auth}`")
    cases = [
        (f"{down}/{ns}/app:1", f"{r1}/{ns}/copy", f"source registry {down}: {refused}"),
        (src, f"{down}/{ns}/app", f"target registry {down}: {refused}"),
        (f"{auth}/{ns}/app:1", f"{r1}/{ns}/copy",
         f"source registry {auth}: look up {auth}/{ns}/app:1: {unauthorized}"),
        (src, f"{auth}/{ns}/app", f"target registry {auth}: look up {auth}/{ns}/app:1: "
         f"{unauthorized}"),
    ]
    for source, target, error in cases:
        proc = manyfest("copy", source, target)
        dst = target if target.endswith(":1") else f"{target}:1"
        assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
        assert proc.stderr.splitlines() == [f"copy {source} to {dst} failed: {error}"]
        # a list of the same source and target, published: the same registry named
        plan = tmp_path / "plan.yaml"
        plan.write_text(f"image: {dst}\nmanifests:\n  - image: {source}\n")
        proc = manyfest("publish", str(plan))
        assert proc.returncode == 3, proc.stderr
        [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("[1/1] failed ")]
        lead = error.split(": ", 1)[0]  # `source registry HOST` / `target registry HOST`
        advice = error.rsplit("; ", 1)[1]  # the advice for that registry
        assert line.startswith(f"[1/1] failed {dst}: {lead}: "), line
        assert line.endswith(f"; {advice}"), line
        assert line.count(f"{lead}: ") == 1, line  # named once


# ------------------------------------------------------------------ 12: copy's output


def test_all_tags_copies_and_reports_in_the_registry_order(
        registry: RegistryServer, other: RegistryServer, ns: str, tmp_path: Path) -> None:
    """``copy --all-tags`` copies, prints and reports the tags in the order the registry
    lists them (Distribution 2.8 lists ``latest, 2, 1`` unpaged, lexically when paged):
    manyfest keeps that order, it does not reverse or sort it."""
    r1, r2 = registry.host, other.host
    digests = seed(r1, [(f"{ns}/app:{tag}", PLATFORMS[i % 2], f"{ns} {tag}")
                        for i, tag in enumerate(("1", "2", "latest"))])
    for flags, repo in (([], "app"), (["--tag-page-size", "1"], "paged")):
        order = registry_tags(f"http://{r1}/v2/{ns}/app/tags/list" + ("?n=1" if flags else ""))
        assert sorted(order) == ["1", "2", "latest"]
        report = tmp_path / f"{repo}.jsonl"
        proc = manyfest("copy", "--all-tags", *flags, "--report", str(report),
                        f"{r1}/{ns}/app", f"{r2}/{ns}/{repo}")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [
            f"created {r2}/{ns}/{repo}:{t}@{digests[f'{ns}/app:{t}']} from {r1}/{ns}/app:{t}"
            for t in order]
        reported = [json.loads(line)["target"] for line in report.read_text().splitlines()]
        assert reported == [f"{r2}/{ns}/{repo}:{t}" for t in order]


def registry_tags(url: str) -> list[str]:
    """The tags the registry lists at ``url``, page after page (its ``Link`` headers)."""
    tags: list[str] = []
    while url:
        with urllib.request.urlopen(url) as answer:
            tags += json.loads(answer.read())["tags"]
            link = re.match(r"<([^>]+)>", answer.headers.get("Link", ""))
        url = urllib.parse.urljoin(url, link.group(1)) if link else ""
    return tags


def test_a_failed_copy_leaves_the_digest_of_those_that_landed(
        registry: RegistryServer, other: RegistryServer, ns: str) -> None:
    """One of two copies failing (its registry down): stdout has the copy that landed and
    its digest alone on the last line (what landed, as docker and crane print it), exit 3."""
    r1, r2, down = registry.host, other.host, "127.0.0.1:1"
    [digest] = seed(r1, [(f"{ns}/app:1", PLATFORMS[0], ns)]).values()
    src = f"{r1}/{ns}/app:1"
    proc = manyfest("copy", src, f"{down}/{ns}/y", f"{r2}/{ns}/z")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == [f"created {r2}/{ns}/z:1@{digest} from {src}", digest]
    assert proc.stderr.splitlines()[0].startswith(
        f"copy {src} to {down}/{ns}/y:1 failed: target registry {down}: ")
    assert proc.stderr.splitlines()[-1] == (
        "1 of 2 copies failed; see the errors above; re-run to retry the failed copies "
        "(what was copied is skipped)")


def test_list_lines_follow_their_phase_header(registry: RegistryServer, ns: str,
                                              tmp_path: Path) -> None:
    """A list failing on its source is finished while other sources still resolve: its
    ``[1/3] failed`` line comes after the ``publishing 3 lists`` header, never before."""
    host = registry.host
    seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])
    plan = tmp_path / "plan.yaml"
    plan.write_text("---\n".join(
        f"image: {host}/{ns}/list{i}:1\nmanifests:\n  - image: {host}/{ns}/{src}:1\n"
        for i, src in enumerate(("nothing", "app-amd64", "nothing-either"))))
    for flags, header in (([], "publishing 3 lists"),
                          (["--dry-run"], "checking 3 lists (--dry-run)")):
        proc = manyfest("publish", *flags, str(plan))
        assert proc.returncode == 3, proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[:2] == ["resolving 3 sources", header], lines
        assert sorted(line.split()[1] for line in lines[2:5]) == (
            ["created", "failed", "failed"] if not flags
            else ["failed", "failed", "unchanged"]), lines


def test_a_blob_the_source_lost_gets_advice_about_the_source(
        registry: RegistryServer, other: RegistryServer, ns: str, tmp_path: Path) -> None:
    """A source whose registry answers 404 BLOB_UNKNOWN for a blob its manifest names (its
    config while resolving; a layer while streaming it to another registry): the advice is
    that the source is incomplete, not "push the image first"."""
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)]
    [image] = seed_built(registry.host, names).values()
    config, layer = image.blobs[0][0], image.blobs[-1][0]
    proxy = QuirkProxy(registry.host).start()
    lost = {config}

    async def gone(request: web.Request) -> web.StreamResponse | None:
        if request.method in ("GET", "HEAD") and request.path.rpartition("/")[2] in lost:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message":
                                                  "blob unknown to registry"}]}, status=404)
        return None

    proxy.before.append(gone)
    advice = ("the source is incomplete: its manifest names this blob, which its repository "
              "does not hold (lost or garbage-collected); push the image to the source again")
    src = f"{proxy.host}/{ns}/app-amd64:1"
    plan = tmp_path / "plan.yaml"
    try:
        plan.write_text(f"image: {proxy.host}/{ns}/app:1\nmanifests:\n  - image: {src}\n")
        proc = manyfest("publish", str(plan))
        assert proc.returncode == 3, proc.stderr
        assert f"[1/1] failed {proxy.host}/{ns}/app:1: get blob {proxy.host}/{ns}/app-amd64@" \
            f"{config}: registry answered 404 (BLOB_UNKNOWN: blob unknown to registry); " \
            f"{advice}" in proc.stderr.splitlines(), proc.stderr
        lost.clear()
        lost.add(layer)
        dst = f"{other.host}/{ns}/app"
        proc = manyfest("copy", src, dst)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines() == [
            f"copy {src} to {dst}:1 failed: source registry {proxy.host}: get blob "
            f"{proxy.host}/{ns}/app-amd64@{layer}: registry answered 404 (BLOB_UNKNOWN: blob "
            f"unknown to registry); {advice}"]
    finally:
        proxy.stop()
    assert head_digest(f"{dst}:1") == ""
