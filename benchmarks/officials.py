"""The official-images benchmark row: ``python -m benchmarks.officials``.

The shape of one Docker official image repository (issue 9), written out explicitly:

* 20 versions (``3.9.0`` .. ``3.13.3``: 5 series x 4 patches), each one list of 8 Linux
  children (linux/amd64, arm/v5, arm/v7, arm64/v8, 386, mips64le, ppc64le, s390x) at 4 tags
  (``3.12.1``, ``3.12.1-bookworm``, ``3.12.1-debian-12``, ``3.12.1-debian-12-r0``): one
  manifest-tool document per version, its tags written in it;
* shared tags spanning 10 entries, as official images combine Linux and Windows entries:
  for each series, a list at ``3.<minor>`` of the newest patch's 8 Linux children plus its
  2 Windows images (windows/amd64 ltsc2022 and 1809, each its own entry); the newest series'
  list is also written as two more documents with the same entries, at ``3`` and
  ``latest`` (shared tags documents: one unit of work with 3 tags).

So 27 plan lists, 25 distinct lists, 87 tags, 170 children. Images are real-shape
(``tests.imagewriter``: 6-10 KiB configs; 6 layers, the lower 4 the platform's base).

Side by side in one run, the same plan, each peer into a fresh target repository through a
relay adding ``--rtt-ms``: manyfest (own fresh cache), the limit client
(:mod:`benchmarks.limit_client`: the fewest requests; children and mounts once, one PUT per
extra tag) and, when the docker CLI is installed, a ``docker manifest create`` + ``push``
loop (one per tag: docker pushes one tag per list). Cold runs are repeated ``--repeat``
times (medians); then the unchanged re-run (manyfest with its warm cache; the limit client
cannot tell ``unchanged``, so it publishes everything again). Requests are counted by the
registry (its ``response completed`` log lines). Targets: manyfest's cold requests
<= 1.1x the limit client's, its wall time <= 1.15x.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from benchmarks import harness
from benchmarks.relay import RelayProcess
from manyfest.platform import Platform
from tests.imagewriter import Shape, build_images, distinct_blobs, push_built
from tests.measure import Measured, measure
from tests.registry_server import RegistryServer

LINUX: dict[str, Platform] = {
    "amd64": Platform("linux", "amd64"),
    "arm32v5": Platform("linux", "arm", "v5"),
    "arm32v7": Platform("linux", "arm", "v7"),
    "arm64v8": Platform("linux", "arm64", "v8"),
    "i386": Platform("linux", "386"),
    "mips64le": Platform("linux", "mips64le"),
    "ppc64le": Platform("linux", "ppc64le"),
    "s390x": Platform("linux", "s390x"),
}
WINDOWS: dict[str, Platform] = {
    "win-ltsc2022": Platform("windows", "amd64", "", "10.0.20348.2113"),
    "win-1809": Platform("windows", "amd64", "", "10.0.17763.5122"),
}
SERIES = (9, 10, 11, 12, 13)
PATCHES = 4
SHAPE = Shape(layers=6, shared_layers=4)
"""Fewer layers than the main benchmark (seeding 180 images), configs still 6-10 KiB."""


def versions() -> list[str]:
    """The 20 versions, oldest first."""
    return [f"3.{m}.{p}" for m in SERIES for p in range(PATCHES)]


def version_tags(v: str) -> list[str]:
    """A version's 4 tags, its own first."""
    return [v, f"{v}-bookworm", f"{v}-debian-12", f"{v}-debian-12-r0"]


def source(suffix: str, version: str) -> str:
    """The source repository:tag of one platform's image of ``version``."""
    return f"off/src-{suffix}:{version}"


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One plan list: target tags (first = the list's tag) and sources (repository:tag)."""

    tags: tuple[str, ...]
    sources: tuple[str, ...]


def plan_items() -> list[PlanItem]:
    """The 27 plan lists in plan order: 20 versions, then the shared tags (see the module)."""
    items = [PlanItem(tuple(version_tags(v)), tuple(source(s, v) for s in LINUX))
             for v in versions()]
    for m in SERIES:
        newest = f"3.{m}.{PATCHES - 1}"
        shared = tuple(source(s, newest) for s in [*LINUX, *WINDOWS])
        items.append(PlanItem((f"3.{m}",), shared))
        if m == SERIES[-1]:
            items.append(PlanItem(("3",), shared))
            items.append(PlanItem(("latest",), shared))
    return items


def seed_sources(host: str) -> int:
    """Push every source image (8 Linux per version, 2 Windows per series' newest patch);
    returns the distinct blobs a new target repository needs."""
    names: list[tuple[str, Platform, str]] = []
    for v in versions():
        names += [(source(s, v), p, f"official {s} {v}") for s, p in LINUX.items()]
    for m in SERIES:
        v = f"3.{m}.{PATCHES - 1}"
        names += [(source(s, v), p, f"official {s} {v}") for s, p in WINDOWS.items()]
    images = build_images(names, shape=SHAPE)
    anyio.run(lambda: push_built(host, images, check_blobs=False))
    return len(distinct_blobs(images.values()))


def floor_requests(items: list[PlanItem], blobs: int) -> int:
    """The limit client's requests for a cold run: per distinct child GET manifest, GET
    config, PUT by digest; one PUT per tag; one mount per distinct blob."""
    children = {s for item in items for s in item.sources}
    return 3 * len(children) + sum(len(i.tags) for i in items) + blobs


def write_plan(path: Path, host: str, repository: str, items: list[PlanItem]) -> None:
    """manifest-tool YAML, one document per plan list (platforms from the configs)."""
    docs = []
    for item in items:
        lines = [f"image: {host}/{repository}:{item.tags[0]}"]
        if item.tags[1:]:
            lines.append("tags: [" + ", ".join(f'"{t}"' for t in item.tags[1:]) + "]")
        lines.append("manifests:")
        lines += [f"  - image: {host}/{s}" for s in item.sources]
        docs.append("\n".join(lines))
    path.write_text("\n---\n".join(docs) + "\n")


@dataclass(slots=True)
class Run:
    """One measured run of one peer."""

    peer: str
    case: str
    wall_s: float
    cpu_s: float
    requests: int
    kinds: dict[str, int]
    ok: bool
    detail: str = ""
    digests: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _manyfest(host: str, repository: str, items: list[PlanItem], workdir: Path,
              cache: Path, src: Path) -> tuple[Measured, dict[str, str], dict[str, Any]]:
    plan = workdir / "plan.yaml"
    if not plan.exists():
        write_plan(plan, host, repository, items)
    env = harness.base_env(workdir)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(harness.ROOT)])
    env["MANYFEST_CACHE_DIR"] = str(cache)
    case = "warm" if any(cache.iterdir()) else "cold"
    m = measure([sys.executable, "-m", "manyfest", "publish", "--json", str(plan)], env=env,
                workdir=workdir / f"manyfest-{case}")
    digests: dict[str, str] = {}
    summary: dict[str, Any] = {}
    try:
        doc = json.loads(m.stdout)
        summary = doc["summary"]
        for r in doc["results"]:
            summary.setdefault("statuses", {}).setdefault(r["status"], 0)
            summary["statuses"][r["status"]] += 1
            for tag in r["tags"]:
                digests[tag] = r["digest"]
    except (ValueError, KeyError, TypeError):
        summary = {"report_error": m.stdout[:300].decode(errors="replace")}
    return m, digests, summary


def _limit(host: str, repository: str, items: list[PlanItem], workdir: Path,
           concurrency: int) -> tuple[Measured, dict[str, str], dict[str, Any]]:
    job = workdir / "limit-job.json"
    job.write_text(json.dumps({"registry": host, "lists": [
        {"repository": repository, "tag": i.tags[0], "extra_tags": list(i.tags[1:]),
         "sources": list(i.sources)} for i in items]}))
    m = measure([sys.executable, "-m", "benchmarks.limit_client", str(job), "--concurrency",
                 str(concurrency)], env=harness.base_env(workdir), workdir=workdir / "limit")
    digests: dict[str, str] = {}
    summary: dict[str, Any] = {}
    try:
        summary = json.loads(m.stdout)
        by_tag = {k.rsplit(":", 1)[1]: v for k, v in summary["digests"].items()}
        for i in items:
            if i.tags[0] in by_tag:
                digests.update(dict.fromkeys(i.tags, by_tag[i.tags[0]]))
    except (ValueError, KeyError, TypeError):
        summary = {"report_error": m.stdout[:300].decode(errors="replace")}
    return m, digests, summary


_DOCKER_LOOP = """\
set -eu
while read -r -u 3 target sources; do
  # shellcheck disable=SC2086
  docker manifest create --insecure "$target" $sources >/dev/null
  docker manifest push --insecure --purge "$target" >/dev/null
done 3< "$1"
"""


def _docker(host: str, repository: str, items: list[PlanItem],
            workdir: Path) -> tuple[Measured, dict[str, str], dict[str, Any]]:
    lists = workdir / "docker-lists.txt"
    lists.write_text("".join(
        f"{host}/{repository}:{tag} {' '.join(f'{host}/{s}' for s in i.sources)}\n"
        for i in items for tag in i.tags))
    m = measure(["bash", "-c", _DOCKER_LOOP, "docker-loop", str(lists)],
                env=harness.base_env(workdir), workdir=workdir / "docker")
    return m, {}, {}


def main(argv: list[str] | None = None) -> int:
    """Seed, run every peer side by side, print the table (and ``--json`` the records)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.officials")
    parser.add_argument("--rtt-ms", type=float, default=10.0,
                        help="round-trip time the relay adds (ms)")
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per peer (medians)")
    parser.add_argument("--limit-concurrency", type=int, default=64)
    parser.add_argument("--no-docker", action="store_true", help="skip the docker loop")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--src", type=Path, default=harness.ROOT / "src",
                        help="the manyfest package directory to measure (default: this "
                        "checkout's src)")
    parser.add_argument("--compare-src", type=Path,
                        help="also run the manyfest under DIR (another checkout's src, e.g. "
                        "the commit before a change) as peer 'before', interleaved")
    args = parser.parse_args(argv)
    for src in [args.src, args.compare_src]:
        if src is not None:
            # Byte-code compiled beforehand, as an installed copy has it: a shell with
            # PYTHONDONTWRITEBYTECODE would otherwise make every run compile manyfest
            # from source (about 0.1 s of CPU), which the limit client (aiohttp, installed)
            # does not pay.
            compileall.compile_dir(src, quiet=1)
    items = plan_items()
    tags = [t for i in items for t in i.tags]
    work = Path(tempfile.mkdtemp(prefix="manyfest-officials-"))
    shm = Path("/dev/shm")
    storage = Path(tempfile.mkdtemp(prefix="manyfest-off-reg-", dir=shm)) if shm.is_dir() \
        else work / "registry"
    runs: list[Run] = []
    try:
        _run_all(args, items, storage, work, runs)
    finally:
        shutil.rmtree(storage, ignore_errors=True)  # the registry's storage, in /dev/shm
        shutil.rmtree(work, ignore_errors=True)
    return _report(runs, floor_requests(items, _BLOBS[0]) if _BLOBS else 0, tags, args)


_BLOBS: list[int] = []
"""The seeded distinct blob count (set by :func:`_run_all`)."""


def _run_all(args: argparse.Namespace, items: list[PlanItem], storage: Path, work: Path,
             runs: list[Run]) -> None:
    """Start the registry, seed, run every peer (appending to ``runs``)."""
    tags = [t for i in items for t in i.tags]
    with RegistryServer(workdir=storage) as server:
        started = time.monotonic()
        blobs = seed_sources(server.host)
        _BLOBS.append(blobs)
        floor = floor_requests(items, blobs)
        print(f"seeded {len(versions()) * len(LINUX) + len(SERIES) * len(WINDOWS)} images "
              f"({blobs} distinct blobs) in {time.monotonic() - started:.1f} s; "
              f"{len(items)} plan lists, {len(tags)} tags; limit floor {floor} requests",
              flush=True)
        peers = ["limit", "manyfest"] + (["before"] if args.compare_src else [])
        cold_peers = len(peers)
        if not args.no_docker and harness.docker_missing() is None:
            peers.append("docker")
        counter = 0
        with RelayProcess(server.host, args.rtt_ms) as relay:
            for rep in range(args.repeat):
                for peer in peers if rep == 0 else peers[:cold_peers]:
                    counter += 1
                    repository = f"offout/r{counter:02d}-{peer}/python"
                    rundir = work / f"r{counter:02d}-{peer}"
                    rundir.mkdir(parents=True)
                    cases = ["cold"]
                    if rep == 0 and peer != "docker":
                        cases.append("unchanged")
                    cache = rundir / "cache"
                    cache.mkdir()
                    for case in cases:
                        window = harness.RegistryWindow(server).open()
                        if peer in ("manyfest", "before"):
                            src = args.src if peer == "manyfest" else args.compare_src
                            m, digests, extra = _manyfest(relay.host, repository, items, rundir,
                                                          cache, src)
                        elif peer == "limit":
                            m, digests, extra = _limit(relay.host, repository, items, rundir,
                                                       args.limit_concurrency)
                        else:
                            m, digests, extra = _docker(relay.host, repository, items, rundir)
                        seen = window.close()
                        run = Run(peer, case, m.wall_s, m.cpu_s, seen.total, seen.kinds,
                                  m.exit_code == 0, m.stderr_tail.strip()[-300:]
                                  if m.exit_code else "", digests, extra)
                        runs.append(run)
                        print(f"  {peer:8} {case:9} {m.wall_s:7.2f} s  cpu {m.cpu_s:6.2f} s "
                              f"{seen.total:6d} requests  load {os.getloadavg()[0]:.1f}"
                              f"  {'ok' if run.ok else 'FAIL ' + run.detail}", flush=True)


def _median(runs: list[Run], peer: str, case: str) -> tuple[float, float, float] | None:
    """Median (wall s, requests, client CPU s) of the successful runs of ``peer``/``case``."""
    chosen = [r for r in runs if r.peer == peer and r.case == case and r.ok]
    if not chosen:
        return None
    return (statistics.median(r.wall_s for r in chosen),
            statistics.median(r.requests for r in chosen),
            statistics.median(r.cpu_s for r in chosen))


def _report(runs: list[Run], floor: int, tags: list[str], args: argparse.Namespace) -> int:
    problems: list[str] = []
    limit = next((r for r in runs if r.peer == "limit" and r.case == "cold" and r.ok), None)
    for r in runs:
        if not r.ok:
            problems.append(f"{r.peer} {r.case} failed: {r.detail}")
        if r.peer == "limit" and r.case == "cold" and r.requests != floor:
            problems.append(f"limit sent {r.requests} requests, not the floor {floor}")
        if limit is not None and r.digests and r.digests != limit.digests:
            problems.append(f"{r.peer} {r.case}: list digests differ from the limit client's")
        if r.digests and set(r.digests) != set(tags):
            problems.append(f"{r.peer} {r.case}: {len(r.digests)} tags of {len(tags)}")
    print()
    print(f"official-images shape: 20 versions x 8 platforms x 4 tags + shared tags "
          f"(27 plan lists, {len(tags)} tags), rtt {args.rtt_ms:g} ms, medians of "
          f"{args.repeat} cold runs")
    print(f"{'peer':10} {'case':10} {'wall s':>8} {'requests':>9} {'req x limit':>12} "
          f"{'wall x limit':>13} {'cpu s':>7} {'manifest GET/HEAD':>18}")
    for peer, case in [("limit", "cold"), ("manyfest", "cold"), ("before", "cold"),
                       ("docker", "cold"), ("limit", "unchanged"), ("manyfest", "unchanged"),
                       ("before", "unchanged")]:
        got = _median(runs, peer, case)
        if got is None:
            continue
        base = _median(runs, "limit", case)
        rq = f"{got[1] / base[1]:.3f}" if base else "-"
        wl = f"{got[0] / base[0]:.3f}" if base else "-"
        sample = next(r for r in runs if r.peer == peer and r.case == case and r.ok)
        reads = (f"{sample.kinds.get('GET manifest', 0)}/{sample.kinds.get('HEAD manifest', 0)}")
        print(f"{peer:10} {case:10} {got[0]:8.2f} {got[1]:9.0f} {rq:>12} {wl:>13} "
              f"{got[2]:7.2f} {reads:>18}")
    cold_m, cold_l = _median(runs, "manyfest", "cold"), _median(runs, "limit", "cold")
    if cold_m and cold_l:
        req_ratio, wall_ratio = cold_m[1] / cold_l[1], cold_m[0] / cold_l[0]
        print(f"targets: requests {req_ratio:.3f}x (<= 1.1: "
              f"{'met' if req_ratio <= 1.1 else 'MISSED'}), wall {wall_ratio:.3f}x (<= 1.15: "
              f"{'met' if wall_ratio <= 1.15 else 'MISSED'})")
    cold_b = _median(runs, "before", "cold")
    if cold_b and cold_l:
        print(f"before (--compare-src): requests {cold_b[1] / cold_l[1]:.3f}x, wall "
              f"{cold_b[0] / cold_l[0]:.3f}x")
    unchanged = [r for r in runs if r.peer in ("manyfest", "before") and r.case == "unchanged"]
    for r in unchanged:
        statuses = r.extra.get("statuses", {})
        if statuses.get("unchanged") != 27:
            problems.append(f"{r.peer} unchanged re-run statuses {statuses}")
        if r.kinds.get("GET manifest", 0):
            problems.append(f"{r.peer} unchanged re-run: {r.kinds['GET manifest']} manifest GETs")
    for p in problems:
        print(f"PROBLEM: {p}")
    if args.json:
        args.json.write_text(json.dumps([{
            "peer": r.peer, "case": r.case, "wall_s": r.wall_s, "cpu_s": r.cpu_s,
            "requests": r.requests,
            "kinds": r.kinds, "ok": r.ok} for r in runs], indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
