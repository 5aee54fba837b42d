"""``publish --shard K/N``: the partition (ops/shard.py), the flag, and a sharded run end to
end (two shards published against the real registry, their reports merged)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import anyio
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from manyfest import reference
from manyfest.errors import UsageError
from manyfest.ops import shard as shards
from manyfest.ops.plan import PlanList, parse_documents
from manyfest.platform import Platform
from manyfest.reference import Reference, registry_key
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import REPO_ROOT, manyfest, seed
from tests.registry_server import RegistryServer

EXPECTED = "expected K/N, whole numbers with 1 <= K <= N (e.g. 2/4)"
HINT = "give this job's shard number and the number of shards"


def _list(registry: str, repository: str, tag: str, number: int = 1) -> PlanList:
    return PlanList(Reference(registry, repository, tag), (), {}, (), number)


def _plan(spec: list[tuple[str, int]]) -> list[PlanList]:
    """``[(repository, lists)]`` → that many lists per repository, interleaved."""
    out: list[PlanList] = []
    for i in range(max(n for _, n in spec)):
        out += [_list("reg.example", repo, f"v{i}") for repo, n in spec if i < n]
    return out


# --- the partition -------------------------------------------------------------------------

def test_parse_accepts_k_of_n() -> None:
    assert shards.parse("1/1") == (1, 1)
    assert shards.parse("2/4") == (2, 4)
    assert shards.parse("4/4") == (4, 4)
    assert shards.parse("03/12") == (3, 12)


@pytest.mark.parametrize("text", ["0/3", "4/3", "x/y", "1/0", "0/0", "1", "1/", "/2", "-1/3",
                                  "1/2/3", " 1/2", "1/2 ", "1 / 2", "１/２", "1.0/2", ""])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(UsageError) as info:
        shards.parse(text)
    assert info.value.exit_code == 2
    assert info.value.one_line() == f"--shard {text!r}: {EXPECTED}; {HINT}"


def test_parse_refuses_more_shards_than_the_limit() -> None:
    """N up to MAX_SHARDS (1,000,000) is taken; larger is a usage error saying the limit,
    however many digits N has (Python refuses to convert more than 4300: never tried)."""
    assert shards.MAX_SHARDS == 1_000_000
    assert shards.parse("1000000/1000000") == (1_000_000, 1_000_000)
    assert shards.parse("7/0001000000") == (7, 1_000_000)
    assert shards.parse("0" * 5000 + "2/" + "0" * 5000 + "3") == (2, 3)
    too_many = "N is at most 1000000 (more shards than repositories are empty anyway)"
    for text, shown in [("1/1000001", "'1/1000001'"),
                        ("1/99999999999999999999", "'1/99999999999999999999'"),
                        ("1/" + "9" * 5000, "'1/999999999999999999'... (5002 characters)"),
                        ("9" * 5000 + "/" + "9" * 5000,
                         "'99999999999999999999'... (10001 characters)")]:
        with pytest.raises(UsageError) as info:
            shards.parse(text)
        assert info.value.exit_code == 2
        assert info.value.one_line() == f"--shard {shown}: {too_many}; {HINT}"
    # K too large for N, however long: the usual message, the value cut short
    with pytest.raises(UsageError) as info:
        shards.parse("9" * 5000 + "/2")
    assert info.value.one_line() == (
        f"--shard '99999999999999999999'... (5002 characters): {EXPECTED}; {HINT}")


def test_a_large_n_costs_nothing_more() -> None:
    """N = 1,000,000 for 3 repositories: the same partition as N = 3 (shards 4 and up are
    empty), and no memory in proportion to N (a heap of N entries is ~100 MB; this peak is
    measured, not timed)."""
    plan = _plan([("a", 3), ("b", 2), ("c", 1)])
    small = shards.assign(plan, 3)
    assert small == {"reg.example/a": 1, "reg.example/b": 2, "reg.example/c": 3}
    tracemalloc.start()
    try:
        large = shards.assign(plan, shards.MAX_SHARDS)
        last = shards.select(plan, shards.MAX_SHARDS, shards.MAX_SHARDS)
        third = shards.select(plan, 3, shards.MAX_SHARDS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert large == small
    assert (last, third) == ([], [p for p in plan if p.target.repository == "c"])
    assert peak < 64 * 1024, peak
    # far past the CLI's limit too (assign takes any count): nothing is made per shard
    assert shards.assign(plan, 10**30) == small
    assert shards.select(plan, 10**30, 10**30) == []
    # more repositories than shards: every shard is used, the rule unchanged
    assert shards.assign(plan, 2) == {"reg.example/a": 1, "reg.example/b": 2,
                                      "reg.example/c": 2}


def test_counts_are_the_shard_events_fields() -> None:
    plan = _plan([("d", 1), ("c", 3), ("a", 5), ("b", 3)])
    second = shards.select(plan, 2, 2)
    assert shards.counts(plan, second, 2, 2) == {
        "shard": 2, "shards": 2, "lists": 6, "repositories": 2, "plan_lists": 12,
        "plan_repositories": 4}
    assert shards.counts(plan, [], 9, 9) == {
        "shard": 9, "shards": 9, "lists": 0, "repositories": 0, "plan_lists": 12,
        "plan_repositories": 4}


def test_documented_example() -> None:
    """docs/releases.md's worked example: a 5, b 3, c 3, d 1 lists in 2 shards."""
    plan = _plan([("d", 1), ("c", 3), ("a", 5), ("b", 3)])
    assert shards.assign(plan, 2) == {
        "reg.example/a": 1, "reg.example/b": 2, "reg.example/c": 2, "reg.example/d": 1,
    }
    first = shards.select(plan, 1, 2)
    assert [p.target.repository for p in first].count("a") == 5
    assert {p.target.repository for p in first} == {"a", "d"}
    assert len(first) == len(shards.select(plan, 2, 2)) == 6
    # plan order is kept within a shard
    assert first == [p for p in plan if p.target.repository in ("a", "d")]
    assert shards.describe(plan, first, 1, 2) == "shard 1/2: 6 of 12 lists, 2 of 4 repositories"


def test_ties_go_to_the_lowest_shard_and_names_break_ties() -> None:
    plan = _plan([("zeta", 2), ("alpha", 2), ("mid", 2)])
    assert shards.assign(plan, 3) == {
        "reg.example/alpha": 1, "reg.example/mid": 2, "reg.example/zeta": 3,
    }
    assert shards.assign(plan, 4) == {
        "reg.example/alpha": 1, "reg.example/mid": 2, "reg.example/zeta": 3,
    }
    assert shards.select(plan, 4, 4) == []


def test_one_registry_under_two_spellings_is_one_repository() -> None:
    """``host`` and ``host:80`` are one registry (as the plan's tag check says): their lists
    of one repository stay in one shard."""
    plan = [_list("reg.example", "app", "1"), _list("reg.example:80", "app", "2"),
            _list("reg.example", "other", "1")]
    for n in (2, 3):
        assigned = shards.assign(plan, n)
        assert set(assigned) == {"reg.example/app", "reg.example/other"}
        assert assigned["reg.example/app"] == 1


def test_the_partition_does_not_depend_on_the_hash_seed() -> None:
    code = (
        "from manyfest.ops.shard import assign\n"
        "from manyfest.ops.plan import PlanList\n"
        "from manyfest.reference import Reference\n"
        "plan = [PlanList(Reference('r.example', f'repo{i % 37}', f't{i}'), (), {}, (), 1)"
        " for i in range(500)]\n"
        "print(sorted(assign(plan, 7).items()))\n"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed_value), timeout=120).stdout
        for seed_value in ("0", "1", "12345")
    }
    assert len(outs) == 1


_REGISTRIES = st.sampled_from(["reg.example", "reg.example:80", "other.example:5000"])
_PLANS = st.lists(
    st.tuples(_REGISTRIES, st.sampled_from(["a", "b", "c/d", "e", "lib/f", "g", "h"]),
              st.integers(0, 30)),
    min_size=1, max_size=60,
).map(lambda items: [_list(r, repo, f"t{tag}", i) for i, (r, repo, tag) in enumerate(items)])


@settings(max_examples=200, deadline=None)
@given(_PLANS, st.integers(1, 9), st.randoms(use_true_random=False))
def test_shards_partition_the_plan(plan: list[PlanList], n: int, rnd: random.Random) -> None:
    parts = [shards.select(plan, k, n) for k in range(1, n + 1)]
    # disjoint, and together exactly the plan (each list once, plan order in each shard)
    ids = [id(p) for part in parts for p in part]
    assert len(ids) == len(set(ids)) == len(plan)
    for part in parts:
        positions = [next(i for i, q in enumerate(plan) if q is p) for p in part]
        assert positions == sorted(positions)
    # a repository's lists are in one shard
    owner: dict[tuple[str, str], int] = {}
    for k, part in enumerate(parts, start=1):
        for p in part:
            key = (registry_key(p.target.registry), p.target.repository)
            assert owner.setdefault(key, k) == k
    # balanced: the heaviest shard exceeds the lightest by at most the largest repository
    sizes: dict[tuple[str, str], int] = {}
    for p in plan:
        key = (registry_key(p.target.registry), p.target.repository)
        sizes[key] = sizes.get(key, 0) + 1
    loads = [len(part) for part in parts]
    assert max(loads) - min(loads) <= max(sizes.values())
    # no shard is empty while another holds two repositories
    if min(loads) == 0:
        assert all(len({shards.repository(p) for p in part}) <= 1 for part in parts)
    # the order of the plan's documents does not change the partition
    shuffled = list(plan)
    rnd.shuffle(shuffled)
    assert shards.assign(shuffled, n) == shards.assign(plan, n)


# --- the flag ------------------------------------------------------------------------------

_PLAN_TEXT = """\
image: reg.example/ns/app:1
manifests: [{image: reg.example/ns/src:1}]
---
image: reg.example/ns/app:2
manifests: [{image: reg.example/ns/src:1}]
---
image: reg.example/ns/other:1
manifests: [{image: reg.example/ns/src:1}]
"""


@pytest.mark.parametrize("value", ["0/3", "4/3", "x/y", "1/0"])
def test_bad_shard_is_a_usage_error(value: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN_TEXT)
    proc = manyfest("publish", "--shard", value, str(plan))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"--shard {value!r}: {EXPECTED}; {HINT}\n"


def test_an_absurd_n_is_a_usage_error_not_a_bug(tmp_path: Path) -> None:
    """QA: 1/99999999999999999999 was OOM-killed, 1/<5000 nines> an internal error. Both are
    one line, exit 2, before the plan is read; N = 1,000,000 is taken (an empty shard)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN_TEXT)
    too_many = "N is at most 1000000 (more shards than repositories are empty anyway)"
    for value, shown in [("1/99999999999999999999", "'1/99999999999999999999'"),
                         ("1/" + "9" * 5000, "'1/999999999999999999'... (5002 characters)")]:
        proc = manyfest("publish", "--dry-run", "--shard", value, str(plan))
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == f"--shard {shown}: {too_many}; {HINT}\n"
    proc = manyfest("publish", "--dry-run", "--shard", "999999/1000000", str(plan))
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert proc.stderr == ("shard 999999/1000000: 0 of 3 lists, 0 of 2 repositories: "
                           "nothing to publish\n")


def test_bad_shard_is_refused_before_the_plan_is_read(tmp_path: Path) -> None:
    proc = manyfest("publish", "--shard", "4/3", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2
    assert proc.stderr == f"--shard '4/3': {EXPECTED}; {HINT}\n"


def test_empty_shard_exits_0_with_a_note_and_empty_reports(tmp_path: Path) -> None:
    """3 lists in 2 repositories, shard 3 of 3 holds none: nothing is sent (the registry
    named does not exist), the note says so, --report is an empty file, --json has no
    results."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN_TEXT)
    out = tmp_path / "report-3.jsonl"
    out.write_text("old content\n")
    proc = manyfest("publish", "--shard", "3/3", "--json", "--report", str(out), str(plan))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "shard 3/3: 0 of 3 lists, 0 of 2 repositories: nothing to publish\n"
    doc = json.loads(proc.stdout)
    assert doc["results"] == []
    assert doc["summary"]["lists"] == 0
    assert doc["summary"]["failed"] == 0
    assert out.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "plan.yaml", "report-3.jsonl"]
    # -q: data on stdout, errors on stderr, nothing else (QA: the note was still printed)
    proc = manyfest("-q", "publish", "--shard", "3/3", "--dry-run", str(plan))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    proc = manyfest("publish", "--shard", "3/3", "--json", str(plan), "-q")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout)["results"] == []


def test_the_shard_event_carries_its_counts(tmp_path: Path) -> None:
    """--log-format json: the shard line is a ``shard`` event whose fields are the counts."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN_TEXT)
    proc = manyfest("--log-format", "json", "publish", "--shard", "3/3", "--dry-run",
                    str(plan))
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    (line,) = proc.stderr.splitlines()
    event = json.loads(line)
    assert (event["level"], event["event"]) == ("info", "shard")
    assert event["message"] == "shard 3/3: 0 of 3 lists, 0 of 2 repositories: nothing to publish"
    assert event["fields"] == {"shard": 3, "shards": 3, "lists": 0, "repositories": 0,
                               "plan_lists": 3, "plan_repositories": 2}


def test_from_args_is_a_one_list_plan(tmp_path: Path) -> None:
    """From arguments the plan is one list: shard 1/N holds it, the others are empty."""
    args = ("--target", "reg.example/ns/app:1", "--template", "reg.example/ns/app-ARCH:1",
            "--platforms", "linux/amd64")
    proc = manyfest("publish", "--shard", "2/2", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "shard 2/2: 0 of 1 list, 0 of 1 repository: nothing to publish\n"
    proc = manyfest("publish", "--shard", "0/1", *args)
    assert proc.returncode == 2
    assert proc.stderr == f"--shard '0/1': {EXPECTED}; {HINT}\n"


# --- docs/releases.md ----------------------------------------------------------------------

_DOCS = REPO_ROOT / "docs" / "releases.md"
_FENCE = re.compile(r"<!--\s*workflow\s*-->\n```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _workflows() -> list[object]:
    return [yaml.safe_load(m.group(1)) for m in _FENCE.finditer(_DOCS.read_text())]


def test_releases_page_is_linked_and_has_the_section() -> None:
    text = _DOCS.read_text()
    assert "\n## Sharded runs\n" in text
    assert "(releases.md)" in (REPO_ROOT / "docs" / "README.md").read_text()


def test_ci_matrix_example_covers_every_shard_once() -> None:
    """The GitHub Actions example: the matrix values, substituted into the job's command,
    are shards 1..N of N, each once, and the merge job reads every shard's report."""
    docs = [d for d in _workflows() if isinstance(d, dict) and "jobs" in d]
    assert len(docs) == 1
    jobs = docs[0]["jobs"]
    publish = next(j for j in jobs.values() if "strategy" in j)
    values = publish["strategy"]["matrix"]["shard"]
    run = "\n".join(step.get("run", "") for step in publish["steps"])
    command = next(line for line in run.splitlines() if "manyfest publish" in line)
    got = []
    for value in values:
        line = command.replace("${{ matrix.shard }}", str(value))
        flag = re.search(r"--shard (\S+)", line)
        assert flag is not None
        got.append(shards.parse(flag.group(1)))
        assert f"--report report-{value}.jsonl" in line
    assert got == [(k, len(values)) for k in range(1, len(values) + 1)]
    merging = [j for j in jobs.values() if "manyfest report merge" in
               "\n".join(s.get("run", "") for s in j["steps"])]
    assert len(merging) == 1
    assert merging[0]["needs"] in (next(k for k, j in jobs.items() if j is publish),
                                   [next(k for k, j in jobs.items() if j is publish)])


def test_indexed_job_example_maps_the_index_to_k() -> None:
    """The Kubernetes example: an Indexed Job of N completions, K = JOB_COMPLETION_INDEX+1."""
    docs = [d for d in _workflows() if isinstance(d, dict) and d.get("kind") == "Job"]
    assert len(docs) == 1
    spec = docs[0]["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    container = spec["template"]["spec"]["containers"][0]
    text = " ".join(container.get("command", []) + container.get("args", []))
    flag = re.search(r"--shard (\S+)", text)
    assert flag is not None
    for index in range(n):  # what the shell expands for each pod
        k = flag.group(1).replace("$((JOB_COMPLETION_INDEX+1))", str(index + 1))
        assert shards.parse(k) == (index + 1, n)


# --- end to end ----------------------------------------------------------------------------

PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
REPOS = {"app-a": 3, "app-b": 2, "app-c": 1}
"""Lists per target repository: in 2 shards, app-a is shard 1, app-b and app-c shard 2."""


def _e2e_plan(host: str, ns: str) -> str:
    docs = []
    for repo, count in REPOS.items():
        for i in range(count):
            lines = [f"image: {host}/{ns}/{repo}:1.{i}", f"tags: [\"v1.{i}\", \"{i}-stable\"]",
                     "manifests:"]
            for p in PLATFORMS:
                lines.append(f"  - image: {host}/{ns}/src-{p.architecture}:{repo}-{i}")
            docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


@pytest.mark.slow
def test_two_shards_publish_the_plan_and_merge(registry: RegistryServer, ns: str,
                                               tmp_path: Path) -> None:
    host = registry.host
    seed(host, [(f"{ns}/src-{p.architecture}:{repo}-{i}", p, f"{ns}-{repo}-{i}")
                for repo, count in REPOS.items() for i in range(count) for p in PLATFORMS])
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(_e2e_plan(host, ns))
    plan = parse_documents(plan_file.read_text())
    every_tag = {str(p.target.with_tag(t)) for p in plan for t in p.tags}
    assert len(every_tag) == 18

    # --dry-run shows only the shard's lists
    dry_report = tmp_path / "dry-1.jsonl"
    proc = manyfest("publish", "--shard", "1/2", "--dry-run", "--json", "--report",
                    str(dry_report), str(plan_file))
    assert proc.returncode == 0, proc.stderr
    assert "shard 1/2: 3 of 6 lists, 1 of 3 repositories\n" in proc.stderr
    assert [r["target"] for r in json.loads(proc.stdout)["results"]] == [
        f"{host}/{ns}/app-a:1.{i}" for i in range(3)]

    reports = []
    for k in (1, 2):
        out = tmp_path / f"report-{k}.jsonl"
        proc = manyfest("publish", "--shard", f"{k}/2", "--report", str(out), str(plan_file))
        assert proc.returncode == 0, proc.stderr
        reports.append(out)
    lines = [[json.loads(line) for line in r.read_text().splitlines()] for r in reports]
    assert {entry["target"].split("/")[2].split(":")[0] for entry in lines[0]} == {"app-a"}
    assert {entry["target"].split("/")[2].split(":")[0] for entry in lines[1]} == {
        "app-b", "app-c"}

    # a dry run's report is not merged with a real run's (QA: it was, without a word)
    proc = manyfest("report", "merge", str(dry_report), str(reports[1]))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"{dry_report}:1 is a list of a --dry-run run and {reports[1]}:1 a list of a real "
        "run; a --dry-run run publishes nothing: merge the reports of real runs only, or of "
        "--dry-run runs only\n")

    merged_file = tmp_path / "report.jsonl"
    proc = manyfest("report", "merge", "-o", str(merged_file), *map(str, reports))
    assert proc.returncode == 0, proc.stderr
    merged = [json.loads(line) for line in merged_file.read_text().splitlines()]
    requests = sum(e["requests"] for e in merged)
    assert proc.stderr == f"merged 2 reports: 6 lists (6 created), {requests} requests\n"
    # every list exactly once, in the order of the reports given; the union of the tags is
    # the unsharded plan's
    assert merged == lines[0] + lines[1]
    assert sorted(e["target"] for e in merged) == sorted(str(p.target) for p in plan)
    assert {f"{e['target'].rsplit(':', 1)[0]}:{t}" for e in merged for t in e["tags"]} == \
        every_tag
    assert all(e["status"] == "created" for e in merged)

    # the digests are the registry's: every tag points at its list's digest
    async def check() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for entry in merged:
                target = reference.parse(entry["target"])
                for tag in entry["tags"]:
                    head = await client.head_manifest(target.with_tag(tag))
                    assert head is not None
                    assert head.digest == entry["digest"], tag

    anyio.run(check)
    # and the unsharded plan, run again, finds every list as the merged report says
    proc = manyfest("publish", "--dry-run", "--json", str(plan_file))
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)["results"]
    assert {(r["target"], r["digest"], r["status"]) for r in again} == {
        (e["target"], e["digest"], "unchanged") for e in merged}
