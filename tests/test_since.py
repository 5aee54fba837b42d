"""Incremental runs: ``publish --since REPORT``, ``--trust-report``, ``--unchanged-by children``.

Unit tests of the plan key and the report reader; end to end against the real registry
behind :class:`tests.quirk_proxy.QuirkProxy`, counting requests per method and path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyfest import reference
from manyfest.content import Entry, Manifest, encode_list
from manyfest.engine import PublishOptions, list_identity
from manyfest.errors import UsageError
from manyfest.ops import plan as plans
from manyfest.ops import reports
from manyfest.ops.since import parse_report, plan_key
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import head_digest, manyfest, seed
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _key(text: str, **opts: object) -> str:
    [item] = plans.parse_documents(text)
    return plan_key(item, PublishOptions(**opts))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- plan key


def test_plan_key_ignores_key_order_and_spelled_defaults() -> None:
    short = f"""
image: r.example/app:1
tags: ["b", "a"]
manifests:
  - image: r.example/app-amd64@{D1}
  - image: r.example/app-arm64:1
"""
    spelled = f"""
manifests:
  - platform: {{}}
    image: r.example/app-amd64@{D1}
  - image: r.example/app-arm64:1
attestations: keep
allow_duplicate_platforms: "false"
media_type: auto
artifact_type: ""
labels_to_annotations: "false"
annotations: {{}}
tags: ["a", "b"]
image: r.example/app:1
"""
    key = _key(short)
    assert key.startswith("sha256:")
    assert len(key) == 71
    assert _key(spelled) == key
    assert _key(short, media_type="auto") == key  # '' is auto


@pytest.mark.parametrize("change", [
    "image: r.example/app:2",                      # another target
    "tags: [b, a, c]",                             # another tag
    "media_type: oci",
    "annotations: {k: v}",
    "attestations: drop",
    "allow_duplicate_platforms: 'true'",
    "require_platforms: [linux/amd64]",
    "artifact_type: application/x.test",
])
def test_plan_key_changes_with_every_setting(change: str) -> None:
    base = {"image": "image: r.example/app:1", "tags": "tags: [a, b]"}
    name = change.split(":", 1)[0]
    doc = {**base, name: change}
    text = "\n".join(doc.values()) + f"\nmanifests:\n  - image: r.example/app-amd64@{D1}\n"
    plain = "\n".join(base.values()) + f"\nmanifests:\n  - image: r.example/app-amd64@{D1}\n"
    assert _key(text) != _key(plain)


def test_plan_key_entries_order_override_and_options() -> None:
    one = f"image: r.example/app:1\nmanifests:\n  - image: r.example/a@{D1}\n" \
          f"  - image: r.example/b@{D2}\n"
    swapped = f"image: r.example/app:1\nmanifests:\n  - image: r.example/b@{D2}\n" \
              f"  - image: r.example/a@{D1}\n"
    override = f"image: r.example/app:1\nmanifests:\n  - image: r.example/a@{D1}\n" \
               f"    platform: {{variant: v8}}\n  - image: r.example/b@{D2}\n"
    keys = {_key(one), _key(swapped), _key(override), _key(one, style="manifest-tool"),
            _key(one, unchanged_by="children")}
    assert len(keys) == 5
    assert _key(one, dry_run=True, verify=True) == _key(one)  # they change nothing written
    [item] = plans.parse_documents(one)
    filtered = plan_key(item, PublishOptions(), [AMD64])
    assert filtered != _key(one)
    assert plan_key(item, PublishOptions(), [AMD64, ARM64]) == \
        plan_key(item, PublishOptions(), [ARM64, AMD64])


_DEFAULTS = {
    "attestations": "keep", "allow_duplicate_platforms": "false", "media_type": "auto",
    "artifact_type": '""', "subject": '""', "labels_to_annotations": "false",
    "annotations": "{}", "require_platforms": "[]", "platform_check": '""',
}


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(["image", "tags", "manifests", *_DEFAULTS]),
       spelled=st.sets(st.sampled_from(sorted(_DEFAULTS))),
       tags=st.permutations(["b", "c", "d"]))
def test_plan_key_property_same_list_same_key(order: list[str], spelled: set[str],
                                              tags: list[str]) -> None:
    values = {
        "image": "r.example/app:a",
        "tags": "[" + ", ".join(tags) + "]",
        "manifests": f"\n  - image: r.example/x@{D1}\n  - image: r.example/y:1",
        **{k: v for k, v in _DEFAULTS.items() if k in spelled},
    }
    text = "".join(f"{k}: {values[k]}\n" for k in order if k in values)
    canonical = (f"image: r.example/app:a\ntags: [b, c, d]\nmanifests:\n"
                 f"  - image: r.example/x@{D1}\n  - image: r.example/y:1\n")
    assert _key(text) == _key(canonical)


# ------------------------------------------------------------------------- report reader


def _line(**fields: object) -> bytes:
    doc = {"target": "r.example/app:1", "tags": ["1"], "digest": D1, "old_digest": "",
           "status": "created", "plan_key": "sha256:" + "a" * 64,
           "sources": {"r.example/a:1": D2}, **fields}
    return json.dumps(doc).encode()


def test_report_reader_keeps_published_lines_with_a_plan_key() -> None:
    data = b"\n".join([
        _line(),
        _line(target="r.example/app:2", status="failed"),
        _line(target="r.example/app:3", dry_run=True),
        _line(target="r.example/app:4", plan_key=None),  # an older report
        b"",
        json.dumps({"target": "r.example/app:5", "status": "unchanged", "digest": D1,
                    "tags": ["5"]}).encode(),
    ]) + b"\n"
    since = parse_report(data, "old.jsonl")
    assert since.lines == 5
    assert list(since.priors) == ["r.example/app:1"]
    prior = since.priors["r.example/app:1"]
    assert (prior.digest, prior.sources) == (D1, {"r.example/a:1": D2})
    # Why each other line proves nothing: the reason --since reports for its list.
    assert since.unusable == {"r.example/app:2": "failed", "r.example/app:3": "dry-run",
                              "r.example/app:4": "no-line", "r.example/app:5": "no-line"}
    assert since.counts == {"dry-run": 1, "failed": 1, "no-line": 2, "published": 1}
    assert since.warning() is None


@pytest.mark.parametrize(("lines", "counts"), [
    ([_line(dry_run=True), _line(target="r.example/app:2", dry_run=True)],
     "2 dry-run lines, 0 published"),
    ([_line(status="failed"), _line(target="r.example/app:2", plan_key=None)],
     "1 failed line, 1 line without plan_key/sources (an older report), 0 published"),
    ([], "no lines"),
])
def test_report_reader_warns_when_no_line_is_usable(lines: list[bytes], counts: str) -> None:
    since = parse_report(b"\n".join(lines), "d1.jsonl")
    assert since.priors == {}
    assert since.warning() == (f"--since d1.jsonl: no line can prove a list unchanged "
                               f"({counts}): every list goes the normal way")


def test_report_reader_reads_a_json_document() -> None:
    doc = {"results": [json.loads(_line())], "summary": {"lists": 1}}
    since = parse_report(json.dumps(doc, indent=2).encode(), "old.json", trust=True)
    assert list(since.priors) == ["r.example/app:1"]
    assert since.trust


@pytest.mark.parametrize(("data", "where"), [
    (_line() + b"\n{not json\n", "old.jsonl:2: not JSON"),
    (b"[1, 2]\n", "old.jsonl:1: expected a JSON object (one list), got list"),
    (_line() + b"\n" + _line()[:-5] + b"\n", "old.jsonl:2: not JSON"),
    (b'{"results": 3, "summary": {}}', "old.jsonl: results: expected a list"),
    (b'{"target": 1}\n', "old.jsonl:1: target: expected a reference, got 1"),
    (_line(tags="1") + b"\n", "old.jsonl:1: tags: expected a list of tags"),
    (_line(status="done") + b"\n", "old.jsonl:1: status: expected one of created"),
    (_line(dry_run="yes") + b"\n", "old.jsonl:1: dry_run: expected true or false"),
])
def test_report_reader_names_the_bad_line(data: bytes, where: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_report(data, "old.jsonl")
    assert info.value.one_line().startswith(f"--since {where}")
    assert "\n" not in info.value.one_line()
    # report merge reads it the same way: the same message, but for the --since prefix.
    with pytest.raises(UsageError) as merged:
        reports.parse(data, "old.jsonl")
    assert f"--since {merged.value.message}" == info.value.message


# ------------------------------------------------------------------------- child identity


def _entries(*pairs: tuple[str, Platform]) -> list[Entry]:
    from manyfest import mediatypes

    return [Entry(mediatypes.DOCKER_MANIFEST, 1234, d, p) for d, p in pairs]


def test_list_identity_ignores_layout_not_order_or_platform() -> None:
    entries = _entries((D1, AMD64), (D2, ARM64))
    docker = encode_list(entries, style="docker")
    tool = encode_list(entries, style="manifest-tool")
    compact = encode_list(entries, style="compact")
    assert len({docker.digest, tool.digest, compact.digest}) == 3
    assert list_identity(docker) == list_identity(tool) == list_identity(compact)
    swapped = encode_list(_entries((D2, ARM64), (D1, AMD64)))
    assert list_identity(swapped) != list_identity(docker)
    other = encode_list(_entries((D1, AMD64), (D2, Platform("linux", "arm64"))))
    assert list_identity(other) != list_identity(docker)
    oci = encode_list(entries, media_type="application/vnd.oci.image.index.v1+json")
    assert list_identity(oci) != list_identity(docker)


# ------------------------------------------------------------------------- end to end


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


def _put(ref: str, manifest: Manifest) -> None:
    async def put() -> None:
        async with Transport(Settings()) as transport:
            await RegistryClient(transport).put_manifest(reference.parse(ref), manifest)

    anyio.run(put)


def _manifest_requests(proxy: QuirkProxy) -> dict[str, int]:
    return {m: proxy.count(m, "/manifests/") for m in ("HEAD", "GET", "PUT")}


def _plan(host: str, ns: str, digests: dict[str, str], note: str = "") -> str:
    """Four lists: a and b (with an extra tag) from sources named by digest, c and d from
    the same two source tags."""
    amd, arm = f"{ns}/src-amd64:1", f"{ns}/src-arm64:1"
    pinned = [f"  - image: {host}/{amd.split(':')[0]}@{digests[amd]}",
              f"  - image: {host}/{arm.split(':')[0]}@{digests[arm]}"]
    tagged = [f"  - image: {host}/{amd}", f"  - image: {host}/{arm}"]
    docs = [
        [f"image: {host}/{ns}/app:a", "manifests:", *pinned],
        [f"image: {host}/{ns}/app:b", 'tags: ["b2"]', *([f"annotations: {{note: {note}}}",
                                                        "media_type: oci"] if note else []),
         "manifests:", *pinned],
        [f"image: {host}/{ns}/app:c", "manifests:", *tagged],
        [f"image: {host}/{ns}/app:d", "manifests:", *tagged],
    ]
    return "\n---\n".join("\n".join(d) for d in docs) + "\n"


def _lines(path: Path) -> dict[str, dict[str, object]]:
    return {d["target"].rsplit(":", 1)[1]: d
            for d in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_since_costs_one_head_per_list(proxy: QuirkProxy, ns: str, tmp_path: Path) -> None:
    host = proxy.host
    digests = seed(host, [(f"{ns}/src-amd64:1", AMD64, ns + "a"),
                          (f"{ns}/src-arm64:1", ARM64, ns + "b"),
                          (f"{ns}/src-amd64:2", AMD64, ns + "c")])
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan(host, ns, digests))
    first = tmp_path / "first.jsonl"
    done = manyfest("publish", "--report", str(first), str(plan))
    assert done.returncode == 0, done.stderr
    lines = _lines(first)
    assert {k: v["status"] for k, v in lines.items()} == dict.fromkeys("abcd", "created")
    amd_tag, arm_tag = f"{host}/{ns}/src-amd64:1", f"{host}/{ns}/src-arm64:1"
    assert lines["c"]["sources"] == {amd_tag: digests[f"{ns}/src-amd64:1"],
                                     arm_tag: digests[f"{ns}/src-arm64:1"]}
    assert str(lines["a"]["plan_key"]).startswith("sha256:")
    assert len({v["plan_key"] for v in lines.values()}) == 4
    assert "dry_run" not in lines["a"]

    # Unchanged: a HEAD per list (its first tag only) and per distinct source tag; no GET.
    proxy.seen.clear()
    second = tmp_path / "second.jsonl"
    again = manyfest("publish", "--since", str(first), "--report", str(second), str(plan))
    assert again.returncode == 0, again.stderr
    assert _manifest_requests(proxy) == {"HEAD": 4 + 2, "GET": 0, "PUT": 0}
    assert proxy.count("HEAD", f"/{ns}/app/manifests/b2") == 0
    assert proxy.count("HEAD", f"/{ns}/src-amd64/manifests/1") == 1
    assert sum(n for k, n in proxy.seen.items() if "/blobs/" in k) == 0
    lines2 = _lines(second)
    for name in "abcd":
        assert lines2[name]["status"] == "unchanged"
        assert lines2[name]["since"] == "matched"
        for key in ("digest", "plan_key", "sources", "tags"):
            assert lines2[name][key] == lines[name][key]
        assert lines2[name]["old_digest"] == lines[name]["digest"]
    assert proxy.count("GET", "") == 1
    assert proxy.seen["GET /v2/"] == 1
    assert sum(proxy.seen.values()) == 7
    assert lines2["a"]["requests"] == lines2["b"]["requests"] == 1
    # 2 target HEADs + 2 source HEADs + the ping, counted against the first list asking
    assert lines2["c"]["requests"] + lines2["d"]["requests"] == 5
    assert f"4 unchanged since {first}" in again.stderr
    assert "checking 4 lists" in again.stderr.splitlines()[0], again.stderr

    # --trust-report: only the source tags are asked; --json document as the report.
    # The report read may be the one written (read whole first, replaced atomically after).
    in_place = tmp_path / "in-place.jsonl"
    in_place.write_bytes(first.read_bytes())
    proxy.seen.clear()
    trusted = manyfest("publish", "--since", str(in_place), "--trust-report", "--json",
                       "--report", str(in_place), str(plan))
    assert trusted.returncode == 0, trusted.stderr
    assert _manifest_requests(proxy) == {"HEAD": 2, "GET": 0, "PUT": 0}
    doc = json.loads(trusted.stdout)
    assert doc["summary"]["since"] == {"report": str(in_place), "matched": 4}
    assert [v["since"] for v in _lines(in_place).values()] == ["matched"] * 4
    assert [v["requests"] for v in _lines(in_place).values()] == [0, 0, 3, 0]  # ping+2 HEADs
    report_json = tmp_path / "report.json"
    report_json.write_text(trusted.stdout)
    proxy.seen.clear()
    dry = manyfest("publish", "--since", str(report_json), "--dry-run", "--json", str(plan))
    assert dry.returncode == 0, dry.stderr
    assert _manifest_requests(proxy) == {"HEAD": 6, "GET": 0, "PUT": 0}
    dry_results = json.loads(dry.stdout)["results"]
    assert [r["status"] for r in dry_results] == ["unchanged"] * 4
    assert all(r["dry_run"] is True for r in dry_results)
    dry_report = tmp_path / "dry.json"
    dry_report.write_text(dry.stdout)  # dry-run lines prove nothing: all go the normal way
    proxy.seen.clear()
    from_dry = manyfest("publish", "--since", str(dry_report), "--json", str(plan))
    assert [r["since"] for r in json.loads(from_dry.stdout)["results"]] == ["dry-run"] * 4
    assert (f"warning: --since {dry_report}: no line can prove a list unchanged (4 dry-run "
            "lines, 0 published): every list goes the normal way") in from_dry.stderr
    assert proxy.count("HEAD", f"/{ns}/app/manifests/b2") == 1  # every tag HEADed

    # A source tag moves (src-amd64:1 re-tagged to another image): c and d go the normal way
    # and are updated; a and b (pinned) stay matched. app:a moved behind manyfest's back:
    # the HEAD sees it, the list goes the normal way and is put back.
    _put(f"{host}/{ns}/src-amd64:1",
         _manifest(f"{host}/{ns}/src-amd64@{digests[f'{ns}/src-amd64:2']}"))
    current = _manifest(f"{host}/{ns}/app:a").index().manifests[0]
    assert current.platform is not None
    only_amd = encode_list([Entry(current.media_type, current.size, current.digest, AMD64)])
    _put(f"{host}/{ns}/app:a", only_amd)
    assert head_digest(f"{host}/{ns}/app:a") == only_amd.digest
    plan.write_text(_plan(host, ns, digests, note="changed"))  # b's plan entry changed
    third = tmp_path / "third.jsonl"
    moved = manyfest("publish", "--since", str(second), "--report", str(third), str(plan))
    assert moved.returncode == 0, moved.stderr
    lines3 = _lines(third)
    assert {k: (v["status"], v["since"]) for k, v in lines3.items()} == {
        "a": ("updated", "tag-moved"), "b": ("updated", "plan-changed"),
        "c": ("updated", "source-changed"), "d": ("updated", "source-changed")}
    assert lines3["a"]["digest"] == lines["a"]["digest"]
    assert head_digest(f"{host}/{ns}/app:a") == lines["a"]["digest"]
    assert lines3["c"]["sources"][amd_tag] == digests[f"{ns}/src-amd64:2"]
    assert head_digest(f"{host}/{ns}/app:d") == lines3["d"]["digest"] != lines["d"]["digest"]
    assert head_digest(f"{host}/{ns}/app:b2") == lines3["b"]["digest"] != lines["b"]["digest"]


@pytest.mark.slow
def test_since_with_atomic_leaves_matched_lists_out_of_both_phases(
    proxy: QuirkProxy, ns: str, tmp_path: Path
) -> None:
    """``--atomic --since``: lists the report proves unchanged take no part in the two
    phases (no PUT, no previous-manifest GET); the changed list is published all or none;
    the report has every list in plan order, with plan keys for the next ``--since``."""
    host = proxy.host
    digests = seed(host, [(f"{ns}/src-amd64:1", AMD64, ns + "a"),
                          (f"{ns}/src-arm64:1", ARM64, ns + "b")])
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan(host, ns, digests))
    first = tmp_path / "first.jsonl"
    done = manyfest("publish", "--atomic", "--report", str(first), str(plan))
    assert done.returncode == 0, done.stderr
    lines = _lines(first)
    assert [v["status"] for v in lines.values()] == ["created"] * 4
    assert all(v["atomic"] is True and str(v["plan_key"]).startswith("sha256:")
               for v in lines.values())

    plan.write_text(_plan(host, ns, digests, note="changed"))  # b's entry changed
    proxy.seen.clear()
    second = tmp_path / "second.jsonl"
    again = manyfest("publish", "--atomic", "--since", str(first), "--report", str(second),
                     str(plan))
    assert again.returncode == 0, again.stderr
    lines2 = _lines(second)
    assert list(lines2) == ["a", "b", "c", "d"]
    assert {k: (v["status"], v["since"]) for k, v in lines2.items()} == {
        "a": ("unchanged", "matched"), "b": ("updated", "plan-changed"),
        "c": ("unchanged", "matched"), "d": ("unchanged", "matched")}
    assert all(v["atomic"] is True for v in lines2.values())
    # b alone is written: its children and its list by digest, then its two tags; no tag
    # of a, c or d
    puts = {k: n for k, n in proxy.seen.items() if k.startswith("PUT ") and "/manifests/" in k}
    assert sorted(k.rsplit("/", 1)[1] for k in puts) == sorted(
        ["b", "b2", str(lines2["b"]["digest"]), *(d for d in digests.values())])
    assert head_digest(f"{host}/{ns}/app:b2") == lines2["b"]["digest"] != lines["b"]["digest"]
    for name in "acd":
        assert lines2[name]["digest"] == lines[name]["digest"]
        assert head_digest(f"{host}/{ns}/app:{name}") == lines[name]["digest"]
    assert f"3 unchanged since {first}" in again.stderr, again.stderr


def _manifest(ref: str) -> Manifest:
    async def get() -> Manifest:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).get_manifest(reference.parse(ref))

    return anyio.run(get)


def test_since_usage_errors(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: 127.0.0.1:1/app:1\nmanifests:\n  - image: 127.0.0.1:1/a@{D1}\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_line() + b"\nnot json\n")
    wrong = tmp_path / "bad2.jsonl"
    wrong.write_text('{"target": 1}\n')
    for args, message in [
        (["--since", str(bad)], f"--since {bad}:2: not JSON"),
        (["--since", str(wrong)], f"--since {wrong}:1: target: expected a reference, got 1"),
        (["--since", str(tmp_path / "missing.jsonl")],
         f"--since {tmp_path / 'missing.jsonl'}: cannot read it"),
        (["--trust-report"], "--trust-report needs --since REPORT"),
    ]:
        proc = manyfest("publish", *args, str(plan))
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.splitlines()
        assert message in line


def _children_plan(host: str, ns: str, tags: list[str], order: tuple[str, str] = ("amd64",
                   "arm64")) -> str:
    docs = []
    for name in ("x", "y"):
        lines = [f"image: {host}/{ns}/app:{name}"]
        extra = [t.replace("x", name) for t in tags]
        if extra:
            lines.append("tags: [" + ", ".join(f'"{t}"' for t in extra) + "]")
        lines.append("manifests:")
        lines += [f"  - image: {host}/{ns}/src-{arch}:1" for arch in order]
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


@pytest.mark.slow
def test_unchanged_by_children(proxy: QuirkProxy, ns: str, tmp_path: Path) -> None:
    host = proxy.host
    seed(host, [(f"{ns}/src-amd64:1", AMD64, ns + "a"), (f"{ns}/src-arm64:1", ARM64, ns + "b")])
    plan = tmp_path / "plan.yaml"
    plan.write_text(_children_plan(host, ns, ["x2"]))
    # x and y written by "another tool": x in manifest-tool's 2-space layout, y by hand
    # (keys in another order, one-space indent, a trailing newline).
    tool = manyfest("publish", "--json-style", "manifest-tool", "--json", str(plan))
    assert tool.returncode == 0, tool.stderr
    tool_digest = json.loads(tool.stdout)["results"][0]["digest"]
    index = _manifest(f"{host}/{ns}/app:y").index()
    entries = []
    for d in index.manifests:
        assert d.platform is not None
        platform = {"os": d.platform.os, "architecture": d.platform.architecture}
        if d.platform.variant:
            platform["variant"] = d.platform.variant
        entries.append({"platform": platform, "size": d.size, "digest": d.digest,
                        "mediaType": d.media_type})
    doc = {"manifests": entries, "mediaType": index.media_type, "schemaVersion": 2}
    hand = Manifest.from_bytes((json.dumps(doc, indent=1) + "\n").encode())
    for tag in ("y", "y2"):
        _put(f"{host}/{ns}/app:{tag}", hand)
    docker_dry = json.loads(manyfest("publish", "--dry-run", "--json", str(plan)).stdout)
    docker_digest = docker_dry["results"][0]["digest"]
    assert len({tool_digest, hand.digest, docker_digest}) == 3
    assert [r["status"] for r in docker_dry["results"]] == ["updated", "updated"]

    # Same children and platforms in another layout: unchanged, the tags keep their bytes;
    # each other digest is fetched once (one GET by digest per list), nothing is written.
    proxy.seen.clear()
    report = tmp_path / "kept.jsonl"
    kept = manyfest("publish", "--unchanged-by", "children", "--json", "--report", str(report),
                    str(plan))
    assert kept.returncode == 0, kept.stderr
    x, y = json.loads(kept.stdout)["results"]
    assert (x["status"], x["digest"], x["old_digest"]) == ("unchanged", tool_digest, tool_digest)
    assert (y["status"], y["digest"]) == ("unchanged", hand.digest)
    assert proxy.count("GET", f"/{ns}/app/manifests/{tool_digest}") == 1
    assert proxy.count("GET", f"/{ns}/app/manifests/{hand.digest}") == 1
    assert _manifest_requests(proxy)["PUT"] == 0
    assert x["requests"] >= 3  # HEAD x, HEAD x2, GET
    assert sum(n for k, n in proxy.seen.items() if "/blobs/" in k) == 0

    # The report of such a run proves the kept lists next time: one HEAD each, no GET. By
    # digest the plan key differs (the run compares otherwise): the normal way.
    proxy.seen.clear()
    since = manyfest("publish", "--unchanged-by", "children", "--since", str(report), "--json",
                     str(plan))
    assert [(r["since"], r["digest"]) for r in json.loads(since.stdout)["results"]] == [
        ("matched", tool_digest), ("matched", hand.digest)]
    assert _manifest_requests(proxy) == {"HEAD": 2 + 2, "GET": 0, "PUT": 0}  # + source tags
    by_digest = manyfest("publish", "--dry-run", "--since", str(report), "--json", str(plan))
    assert [r["since"] for r in json.loads(by_digest.stdout)["results"]] == [
        "plan-changed", "plan-changed"]

    # A new extra tag gets the bytes the first tag holds (every tag agrees), no child push.
    plan.write_text(_children_plan(host, ns, ["x2", "x3"]))
    proxy.seen.clear()
    grown = manyfest("publish", "--unchanged-by", "children", "--json", str(plan))
    assert grown.returncode == 0, grown.stderr
    x, y = json.loads(grown.stdout)["results"]
    assert (x["status"], x["digest"], x["old_digest"]) == ("updated", tool_digest, tool_digest)
    assert head_digest(f"{host}/{ns}/app:x3") == tool_digest
    assert head_digest(f"{host}/{ns}/app:y3") == hand.digest
    assert _manifest(f"{host}/{ns}/app:y3").raw == hand.raw
    assert _manifest_requests(proxy)["PUT"] == 2  # x3 and y3 only
    assert proxy.count("PUT", f"/{ns}/app/manifests/x3") == 1
    assert sum(n for k, n in proxy.seen.items() if "/blobs/" in k) == 0

    # Another order of the children is another list: updated, as by digest.
    plan.write_text(_children_plan(host, ns, ["x2", "x3"], order=("arm64", "amd64")))
    swapped = manyfest("publish", "--unchanged-by", "children", "--json", str(plan))
    assert swapped.returncode == 0, swapped.stderr
    x, y = json.loads(swapped.stdout)["results"]
    assert x["status"] == "updated"
    assert x["digest"] not in (tool_digest, docker_digest)
    assert head_digest(f"{host}/{ns}/app:x3") == x["digest"]


# ------------------------------------------------------------------------- engine, in memory


def test_same_children_keeps_an_extra_tag_and_fetches_each_digest_once() -> None:
    from manyfest.engine import Engine
    from tests.test_engine import FakeRegistry, _images, _publish

    fake = FakeRegistry()
    refs = _images(fake, "children")
    tool = _run_publish(fake, refs, "app:1", style="manifest-tool", tags=["2", "3"])
    del fake.manifests["app"]["1"]  # the first tag is gone; 2 and 3 hold the other layout
    fake.calls.clear()
    opts = PublishOptions(unchanged_by="children", verify=True)
    result = anyio.run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                        extra_tags=["2", "3"], options=opts))
    assert result.status == "created"
    assert result.verified  # the tags kept are checked against what they hold
    assert result.digest != tool.digest  # the first tag gets the list built (docker layout)
    assert [c for c in fake.calls if c[:2] == ("GET", "app")] == [("GET", "app", tool.digest)]
    assert [d for m, _, d in fake.calls if m == "PUT" and not d.startswith("sha256:")] == ["1"]
    assert fake.manifests["app"]["2"].digest == fake.manifests["app"]["3"].digest == tool.digest
    assert fake.manifests["app"]["1"].digest == result.digest

    # By digest (the default) the same tags move.
    again = anyio.run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                                       extra_tags=["2", "3"]))
    assert again.status == "updated"
    assert fake.manifests["app"]["3"].digest == result.digest


def _run_publish(fake: object, refs: list[reference.Reference], target: str, *,
                 style: str, tags: list[str]) -> object:
    from manyfest.engine import Engine, ListResult
    from tests.test_engine import FakeRegistry, _publish

    assert isinstance(fake, FakeRegistry)
    opts = PublishOptions(style=style)  # type: ignore[arg-type]
    result = anyio.run(lambda: _publish(Engine(fake.client()), target, refs, extra_tags=tags,
                                        options=opts))
    assert isinstance(result, ListResult)
    assert result.status == "created"
    return result


def test_check_in_memory_shares_source_heads_and_sends_mismatches_the_normal_way() -> None:
    from manyfest.engine import Engine
    from manyfest.ops.since import Prior, Since, check
    from manyfest.transport import RequestStats
    from tests.test_engine import HOST, FakeRegistry, _images, _publish

    fake = FakeRegistry()
    refs = _images(fake, "check")
    built = anyio.run(lambda: _publish(Engine(fake.client()), "app:1", refs))
    amd, arm = (str(r) for r in refs)
    pinned = f"{HOST}/app-arm64@{fake.manifests['app-arm64']['1'].digest}"
    text = "\n---\n".join([
        f"image: {HOST}/app:1\nmanifests:\n  - image: {amd}\n  - image: {pinned}",
        f"image: {HOST}/app:2\nmanifests:\n  - image: {amd}\n  - image: {arm}",
        f"image: {HOST}/app:3\nsubject: ':1'\nmedia_type: oci\nmanifests:\n  - image: {amd}",
        f"image: {HOST}/app:4\nmanifests:\n  - image: {amd}\n  - image: {pinned}",
    ])
    plan = plans.parse_documents(text)
    keys = [plan_key(item, PublishOptions()) for item in plan]
    digests = {amd: fake.manifests["app-amd64"]["1"].digest,
               arm: fake.manifests["app-arm64"]["1"].digest, pinned: pinned.split("@")[1]}

    def prior(i: int, **kw: object) -> Prior:
        item = plan[i]
        fields: dict[str, object] = {
            "target": str(item.target), "tags": item.tags, "digest": built.digest,
            "plan_key": keys[i], "sources": {str(e.ref): digests[str(e.ref)]
                                             for e in item.entries}, **kw}
        return Prior(**fields)  # type: ignore[arg-type]

    since = Since("old.jsonl", {p.target: p for p in (
        prior(0), prior(1, sources={amd: digests[amd], arm: D1}), prior(2), prior(3))})
    stats = [RequestStats() for _ in plan]
    fake.manifests["app"]["4"] = fake.manifests["app"]["1"]
    fake.calls.clear()
    checked = anyio.run(lambda: check(Engine(fake.client()), plan, keys, since, stats=stats))
    assert checked.outcome == {0: "matched", 1: "source-changed", 2: "subject-tag",
                               3: "matched"}
    assert sorted(checked.matched) == [0, 3]
    assert checked.matched[0].digest == built.digest
    assert checked.matched[0].sources == {amd: digests[amd], pinned: digests[pinned]}
    # one HEAD per distinct source tag (amd64:1 shared by three candidates, arm64:1), one
    # per matched list's first tag; no GET; nothing for the list whose source moved.
    assert sorted(fake.calls) == sorted([
        ("HEAD", "app-amd64", "1"), ("HEAD", "app-arm64", "1"), ("HEAD", "app", "1"),
        ("HEAD", "app", "4")])

    fake.calls.clear()
    since.trust = True
    trusted = anyio.run(lambda: check(Engine(fake.client()), plan, keys, since,
                                      stats=[RequestStats() for _ in plan]))
    assert sorted(trusted.matched) == [0, 3]
    assert sorted(fake.calls) == [("HEAD", "app-amd64", "1"), ("HEAD", "app-arm64", "1")]


def test_check_in_memory_says_why_a_line_is_unusable_and_warns_once() -> None:
    from manyfest.engine import Engine
    from manyfest.events import Event, Warned
    from manyfest.ops.since import check
    from manyfest.transport import RequestStats
    from tests.test_engine import HOST, FakeRegistry

    fake = FakeRegistry()
    text = "\n---\n".join(f"image: {HOST}/app:{n}\nmanifests:\n  - image: {HOST}/a@{D1}"
                          for n in (1, 2, 3))
    plan = plans.parse_documents(text)
    keys = [plan_key(item, PublishOptions()) for item in plan]
    data = b"\n".join([_line(target=f"{HOST}/app:1", status="failed"),
                       _line(target=f"{HOST}/app:2", dry_run=True)])
    since = parse_report(data, "d1.jsonl")
    events: list[Event] = []
    checked = anyio.run(lambda: check(Engine(fake.client(), on_event=events.append), plan,
                                      keys, since, stats=[RequestStats() for _ in plan]))
    assert checked.outcome == {0: "failed", 1: "dry-run", 2: "no-line"}
    assert checked.matched == {}
    assert fake.calls == []
    warned = [e for e in events if isinstance(e, Warned)]
    assert [e.message for e in warned] == [
        "--since d1.jsonl: no line can prove a list unchanged (1 dry-run line, 1 failed "
        "line, 0 published): every list goes the normal way"]
