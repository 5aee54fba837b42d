"""The 3-registry fan-out row: ``python -m benchmarks.fanout``.

One plan of ``--lists`` lists (default 30; 4 platform images each, real-shape configs of 6-10
KiB and 8 layers, the lower 5 the platform's base; two tags per list) published to three
loopback registries, each behind its own relay adding ``--rtt-ms`` (default 20). The source
images are on the first registry (the build registry): it gets the lists by mounts, the two
others by blob copies streamed from it.

Side by side, each into fresh repositories:

* **one run**: one ``manyfest publish`` with ``targets:`` (the second registry) and
  ``--mirror`` (the third): every source resolved once;
* **three runs**: three ``manyfest publish`` processes one after the other, one plan per
  registry, each with a fresh cache of its own (three pipeline jobs);
* **three runs, shared cache**: the same, the three sharing one cache (the second and third
  confirm each source with a HEAD instead of a GET).

Requests are counted by the registries (their ``response completed`` log lines), per
registry and in total; ``source reads`` are the manifest GETs and HEADs the build registry
answered on the sources' repositories. Every run must publish every tag with the same list
digests as the others (checked; a mismatch is a PROBLEM line and exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from benchmarks import harness
from benchmarks.relay import RelayProcess
from manyfest.platform import Platform
from tests.imagewriter import Shape, build_images, distinct_blobs, push_built
from tests.measure import measure
from tests.registry_server import RegistryServer

PLATFORMS = {
    "amd64": Platform("linux", "amd64"),
    "arm64": Platform("linux", "arm64", "v8"),
    "armv7": Platform("linux", "arm", "v7"),
    "ppc64le": Platform("linux", "ppc64le"),
}
SHAPE = Shape(layers=8, shared_layers=5)
SOURCES = "fanout-src/app"
"""The source repositories' prefix on the build registry (``fanout-src/app-<platform>``)."""


def versions(lists: int) -> list[str]:
    """``1.0.0``, ``1.1.0``...: one list per version."""
    return [f"1.{i}.0" for i in range(lists)]


def seed(host: str, lists: int) -> int:
    """Push ``lists`` x 4 source images; returns the distinct blobs a repository needs."""
    names = [(f"{SOURCES}-{s}:{v}", p, f"fanout {s} {v}")
             for v in versions(lists) for s, p in PLATFORMS.items()]
    images = build_images(names, shape=SHAPE)
    anyio.run(lambda: push_built(host, images, check_blobs=False))
    return len(distinct_blobs(images.values()))


def write_plan(path: Path, build: str, first: str, repository: str, lists: int,
               targets: list[str]) -> None:
    """One manifest-tool document per version: ``<first>/<repository>:<v>`` (and
    ``<v>-stable``), sources on ``build``, ``targets:`` on each of ``targets``."""
    docs = []
    for v in versions(lists):
        lines = [f"image: {first}/{repository}:{v}", f'tags: ["{v}-stable"]']
        if targets:
            lines.append("targets: [" + ", ".join(f"{t}/{repository}:{v}" for t in targets)
                         + "]")
        lines.append("manifests:")
        lines += [f"  - image: {build}/{SOURCES}-{s}:{v}" for s in PLATFORMS]
        docs.append("\n".join(lines))
    path.write_text("\n---\n".join(docs) + "\n")


@dataclass(slots=True)
class Result:
    """One case: its processes' wall time summed, requests per registry, digests."""

    case: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    requests: list[int] = field(default_factory=lambda: [0, 0, 0])
    source_reads: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    """``registry index/tag`` → list digest."""
    problems: list[str] = field(default_factory=list)


def _publish(args: list[str], workdir: Path, cache: Path) -> tuple[float, float, dict[str, Any],
                                                                      str]:
    env = harness.base_env(workdir)
    env["MANYFEST_CACHE_DIR"] = str(cache)
    if not harness.SOURCE_PATH:  # this checkout's sources, not the installed package's
        env["PYTHONPATH"] = os.pathsep.join([str(harness.ROOT / "src"), env["PYTHONPATH"]])
    m = measure([sys.executable, "-m", "manyfest", "publish", "--json", *args], env=env,
                workdir=workdir)
    try:
        doc: dict[str, Any] = json.loads(m.stdout)
    except ValueError:
        doc = {}
    return m.wall_s, m.cpu_s, doc, (m.stderr_tail.strip()[-300:] if m.exit_code else "")


def _record(result: Result, doc: dict[str, Any], hosts: list[str], error: str) -> None:
    if error:
        result.problems.append(f"{result.case}: exit non-zero: {error}")
    for r in doc.get("results", []):
        if r["status"] != "created":
            result.problems.append(f"{result.case}: {r['target']} {r['status']}")
        registry = r["target"].split("/", 1)[0]
        for tag in r["tags"]:
            result.digests[f"{hosts.index(registry)}/{tag}"] = r["digest"]


def run_case(case: str, servers: list[RegistryServer], hosts: list[str], lists: int,
             work: Path, counter: int) -> Result:
    """Publish the plan to the three registries as ``case`` says; count and time it."""
    result = Result(case)
    windows = [harness.RegistryWindow(s).open() for s in servers]
    start_offset = servers[0].log_path.stat().st_size
    repository = f"fanout-out/r{counter:02d}/app"
    rundir = work / f"r{counter:02d}"
    rundir.mkdir(parents=True)
    if case == "one run":
        plan = rundir / "plan.yaml"
        write_plan(plan, hosts[0], hosts[0], repository, lists, [hosts[1]])
        cache = rundir / "cache"
        wall, cpu, doc, error = _publish(["--mirror", hosts[2], str(plan)], rundir / "run",
                                         cache)
        result.wall_s, result.cpu_s = wall, cpu
        _record(result, doc, hosts, error)
    else:
        shared = rundir / "cache"
        for k, host in enumerate(hosts):
            plan = rundir / f"plan-{k}.yaml"
            write_plan(plan, hosts[0], host, repository, lists, [])
            cache = shared if case.endswith("shared cache") else rundir / f"cache-{k}"
            wall, cpu, doc, error = _publish([str(plan)], rundir / f"run-{k}", cache)
            result.wall_s += wall
            result.cpu_s += cpu
            _record(result, doc, hosts, error)
    for k, w in enumerate(windows):
        result.requests[k] = w.close().total
    result.source_reads = _sources_read(servers[0], start_offset)
    return result


def _sources_read(server: RegistryServer, offset: int) -> dict[str, int]:
    """Manifest GETs and HEADs on the source repositories since ``offset`` of the log."""
    with server.log_path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    out = {"GET": 0, "HEAD": 0}
    for line in data.splitlines():
        if b"response completed" not in line or f"/v2/{SOURCES}-".encode() not in line:
            continue
        if b"/manifests/" not in line:
            continue
        for method in out:
            if f"http.request.method={method}".encode() in line:
                out[method] += 1
    return out


CASES = ("one run", "three runs", "three runs, shared cache")


def main(argv: list[str] | None = None) -> int:
    """Start three registries and relays, seed, run every case, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout")
    parser.add_argument("--lists", type=int, default=30, help="lists in the plan")
    parser.add_argument("--rtt-ms", type=float, default=20.0,
                        help="round-trip time each relay adds (ms)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (medians)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="manyfest-fanout-"))
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="manyfest-fanout-reg-", dir=shm)) if shm.is_dir() \
        else work
    results: list[Result] = []
    try:
        servers = [RegistryServer(workdir=base / f"registry-{k}").start() for k in range(3)]
        try:
            blobs = seed(servers[0].host, args.lists)
            print(f"seeded {args.lists * len(PLATFORMS)} images ({blobs} distinct blobs) on "
                  f"the build registry; {args.lists} lists x 2 tags to 3 registries, rtt "
                  f"{args.rtt_ms:g} ms", flush=True)
            relays = [RelayProcess(s.host, args.rtt_ms).start() for s in servers]
            try:
                hosts = [r.host for r in relays]
                counter = 0
                for _ in range(args.repeat):
                    for case in CASES:
                        counter += 1
                        r = run_case(case, servers, hosts, args.lists, work, counter)
                        results.append(r)
                        print(f"  {case:26} {r.wall_s:7.2f} s {sum(r.requests):6d} requests "
                              f"{r.requests}", flush=True)
            finally:
                for relay in relays:
                    relay.stop()
        finally:
            for s in servers:
                s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    return _report(results, args)


def _report(results: list[Result], args: argparse.Namespace) -> int:
    problems = [p for r in results for p in r.problems]
    reference = next((r.digests for r in results if r.case == "one run" and r.digests), {})
    expected = 3 * 2 * args.lists
    for r in results:
        if len(r.digests) != expected:
            problems.append(f"{r.case}: {len(r.digests)} tags published, not {expected}")
        if reference and r.digests != reference:
            problems.append(f"{r.case}: list digests differ from the one run's")
    print()
    print(f"3-registry fan-out: {args.lists} lists x 4 platforms x 2 tags to 3 registries "
          f"(sources on the first), rtt {args.rtt_ms:g} ms, medians of {args.repeat}")
    print(f"{'case':26} {'requests':>9} {'reg 1':>6} {'reg 2':>6} {'reg 3':>6} "
          f"{'source GET/HEAD':>16} {'wall s':>8} {'cpu s':>7} {'req x one':>10} "
          f"{'wall x one':>11}")
    one = [r for r in results if r.case == "one run"]
    base_req = statistics.median(sum(r.requests) for r in one) if one else 0
    base_wall = statistics.median(r.wall_s for r in one) if one else 0
    for case in CASES:
        chosen = [r for r in results if r.case == case]
        if not chosen:
            continue
        req = statistics.median(sum(r.requests) for r in chosen)
        per = [statistics.median(r.requests[k] for r in chosen) for k in range(3)]
        wall = statistics.median(r.wall_s for r in chosen)
        cpu = statistics.median(r.cpu_s for r in chosen)
        reads = chosen[0].source_reads
        print(f"{case:26} {req:9.0f} {per[0]:6.0f} {per[1]:6.0f} {per[2]:6.0f} "
              f"{reads.get('GET', 0):>8}/{reads.get('HEAD', 0):<7} {wall:8.2f} {cpu:7.2f} "
              f"{req / base_req if base_req else 0:10.3f} "
              f"{wall / base_wall if base_wall else 0:11.3f}")
    for p in problems:
        print(f"PROBLEM: {p}")
    if args.json:
        args.json.write_text(json.dumps([{
            "case": r.case, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "requests": r.requests,
            "source_reads": r.source_reads} for r in results], indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
