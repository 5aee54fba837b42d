"""The scale benchmark: CPU per list and peak RSS of one publish run, from 200 to 10,000 lists.

    .venv/bin/python -m benchmarks.scale [--lists 20,200,10000] [--lists-per-source 20]
        [--repositories 1] [--compare-src DIR] [--profile DIR] [--live-src]
        [--seed-mode files|http] [--out DIR]

Shape of a run of N lists (the same for every N, so CPU per list is comparable):

* N / ``--lists-per-source`` source tag sets (at least 1), each the 4 images of one seeded
  tag (``bench/app-{amd64,arm,arm64,win}:1.x.y``, real-shape images: 6-10 KiB configs, 12
  layers, 9 of them the platform's base), for the largest N, once per benchmark. By default
  (``--seed-mode files``) they are written into the registry's storage before it starts
  (``benchmarks.harness.seed_storage``: the same bytes as a push, 10,000 tag sets = 40,000
  images in under 4 minutes on 2 cores); ``--seed-mode http`` pushes them through the
  running registry (``benchmarks.harness.seed``: about 50 minutes for 40,000 images);
* list ``i`` is ``scale/<run>/app<i mod R>:v<i>`` (R = ``--repositories``, default 1: a
  catalogue of tags of one repository) of the 4 images of source tag set ``i mod S``: the
  lists of one set share its resolution (4 manifest GETs, 4 config GETs), its 4 child PUTs
  and its 16 own blobs' mounts; every list costs its target HEAD and its list PUT; the
  platforms' 36 base blobs are mounted once per target repository;
* a manifest-tool plan, one document per list (N documents), published cold with
  ``python -m manyfest publish --report FILE PLAN.yaml`` (progress lines on stderr, as in CI).

Each run is one child process measured by ``tests.measure`` (wall, own CPU and peak RSS from
``os.wait4``). The table's ``net`` columns subtract the smallest run B (by default 20 lists,
one source set: interpreter start-up, imports, session, the base blobs): ``CPU ms/list net =
(CPU(N) - CPU(B)) / (N - B)``, ``RSS KiB/list net = (peak RSS(N) - peak RSS(B)) / (N - B)``;
with one repository and B a multiple of ``--lists-per-source``, every list beyond B costs the
same requests (HEAD + PUT, and a 1/20 share of a source set), so the net CPU per list of 200
and 10,000 lists compare like for like. Every list of the report must be ``created`` and a
sample of 50 tags per run is read back from the registry (children as seeded).

The ``engine CPU ms/list`` column is :mod:`benchmarks.scale_engine` on the same code: the
publish engine alone (``ops.publish.publish``, plan parsed, no I/O) against the tests'
in-memory registry, same shape; ``of which GC`` its time in the cyclic garbage collector.

``--compare-src DIR`` (another checkout's ``src``, e.g. a ``git worktree`` of the commit
before a change) runs every N with that code too, interleaved with this one, in the same
registry: before/after in one table, under the same load.

``--profile DIR`` runs each N a second time under cProfile (``DIR/scale-<N>.prof``, outside
the table). Results: ``benchmarks/results/scale-latest.{json,txt}``. Nothing asserts a
timing; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import harness, plans
from tests.measure import measure
from tests.registry_server import RegistryServer, find_binary

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE = 50
"""Tags read back from the registry per run."""


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split(
        "\n")[0])
    p.add_argument("--lists", type=_ints, default=[20, 200, 10000],
                   help="list counts, one run each (default 20,200,10000; the smallest is the "
                   "baseline of the net columns)")
    p.add_argument("--lists-per-source", type=int, default=20,
                   help="lists sharing one source tag set (default 20)")
    p.add_argument("--repositories", type=int, default=1,
                   help="target repositories per run (default 1)")
    p.add_argument("--compare-src", type=Path,
                   help="also run every N with the manyfest package under DIR (a src/ "
                   "directory), interleaved")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each N below 5,000 lists (default 3; the table shows the "
                   "median CPU and wall, the largest RSS); bigger runs once")
    p.add_argument("--profile", type=Path, help="also run each N under cProfile into DIR")
    p.add_argument("--seed-mode", choices=("files", "http"), default="files",
                   help="files (default): write the source images into the registry's "
                   "storage before it starts; http: push them to the running registry")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--live-src", action="store_true",
                   help="run src/ as it is at each moment, not a snapshot taken at the start")
    args = p.parse_args(argv)
    if not args.lists or min(args.lists) < 1 or args.lists_per_source < 1:
        p.error("--lists and --lists-per-source must be >= 1")
    args.lists = sorted(set(args.lists))
    return args


@dataclass(slots=True)
class ScaleRun:
    """One measured run."""

    code: str
    lists: int
    source_sets: int
    repositories: int
    wall_s: float
    cpu_s: float
    rss_mb: float
    exit_code: int
    requests: int
    registry_cpu_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    verified: int = 0
    errors: list[str] = field(default_factory=list)
    plan_bytes: int = 0
    runs: int = 1
    engine_cpu_s: float = 0.0
    engine_gc_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """For the results file."""
        doc = asdict(self)
        for key in ("wall_s", "cpu_s", "rss_mb", "registry_cpu_s"):
            doc[key] = round(doc[key], 4)
        doc["cpu_ms_per_list"] = round(1000 * self.cpu_s / self.lists, 3)
        return doc


def source_sets(lists: int, per_source: int) -> int:
    """Source tag sets of a run of ``lists`` lists."""
    return max(1, lists // per_source)


def write_plan(path: Path, host: str, name: str, lists: int, sets: int, repos: int) -> None:
    """The plan of one run: list i is ``scale/<name>/app<i % repos>:v<i>`` from source set
    ``i % sets`` (see the module docstring)."""
    def document(i: int) -> str:
        tag = harness.tag_of(i % sets)
        sources = [f"{host}/{harness.source_repo(s)}:{tag}" for s in harness.PLATFORMS]
        target = f"{host}/scale/{name}/app{i % repos}:v{i}"
        return plans.plan_document(target, zip(sources, harness.PLATFORMS.values(),
                                               strict=True))

    plans.write_plan(path, (document(i) for i in range(lists)))


def run_one(registry: RegistryServer, seeded: harness.Seeded, workdir: Path, lists: int,
            args: argparse.Namespace, *, code: str = "this", repeat: int = 0,
            profile: Path | None = None) -> ScaleRun:
    """Publish one plan of ``lists`` lists, cold, and measure the process (the code on
    :data:`harness.SOURCE_PATH`, labelled ``code``)."""
    sets = source_sets(lists, args.lists_per_source)
    repos = min(args.repositories, lists)
    name = f"{code}-n{lists}-r{repeat}" + ("-prof" if profile else "")
    rundir = workdir / name
    rundir.mkdir(parents=True)
    plan = rundir / "plan.yaml"
    write_plan(plan, registry.host, name, lists, sets, repos)
    report = rundir / "report.jsonl"
    env = harness.base_env(rundir)
    env["MANYFEST_CACHE_DIR"] = str(rundir / "cache")
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "manyfest", "publish", "--report", str(report), str(plan)]
    window = harness.RegistryWindow(registry).open()
    m = measure(cmd, env=env, workdir=rundir / "proc", timeout=1800)
    seen = window.close()
    run = ScaleRun(code=code, lists=lists, source_sets=sets, repositories=repos, wall_s=m.wall_s,
                   cpu_s=m.cpu_s, rss_mb=m.rss_mb, exit_code=m.exit_code, requests=seen.total,
                   registry_cpu_s=seen.cpu_s, plan_bytes=plan.stat().st_size)
    if m.exit_code != 0:
        run.errors.append(f"exit {m.exit_code}: {m.stderr_tail[-300:]}")
    try:
        lines = report.read_bytes().splitlines()
    except OSError as exc:
        lines = []
        run.errors.append(f"no report: {exc}")
    for line in lines:
        status = json.loads(line)["status"]
        run.statuses[status] = run.statuses.get(status, 0) + 1
    if len(lines) != lists:
        run.errors.append(f"report has {len(lines)} lines for {lists} lists")
    for repo in range(repos):
        mine = list(range(repo, lists, repos))
        want = max(1, SAMPLE // repos)
        picked = mine[:: max(1, len(mine) // want)][:want]
        expected = {f"v{i}": seeded.children[harness.tag_of(i % sets)] for i in picked}
        found = harness.verify(registry.host, f"scale/{name}/app{repo}", list(expected),
                               expected)
        run.verified += found.ok
        run.errors.extend(found.errors[:3])
    engine = engine_only(lists, args.lists_per_source)
    run.engine_cpu_s, run.engine_gc_s = engine.get("cpu_s", 0.0), engine.get("gc_s", 0.0)
    return run


def engine_only(lists: int, per_source: int) -> dict[str, Any]:
    """:mod:`benchmarks.scale_engine` in a child process on the code under test: the publish
    engine's own CPU for ``lists`` lists against an in-memory registry (no I/O)."""
    with tempfile.TemporaryDirectory(prefix="manyfest-scale-engine-") as home:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale_engine", str(lists),
             "--lists-per-source", str(per_source)],
            env=harness.base_env(Path(home)), cwd=harness.ROOT, capture_output=True,
            timeout=900, check=False,
        )
    try:
        doc: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        return {"error": out.stderr[-300:].decode(errors="replace")}
    return doc


def medians(runs: list[ScaleRun]) -> list[ScaleRun]:
    """One row per (code, lists): median wall and CPU, largest peak RSS, every error."""
    groups: dict[tuple[str, int], list[ScaleRun]] = {}
    for r in runs:
        groups.setdefault((r.code, r.lists), []).append(r)
    rows = []
    for same in groups.values():
        row = replace(same[0], runs=len(same),
                      wall_s=statistics.median(r.wall_s for r in same),
                      cpu_s=statistics.median(r.cpu_s for r in same),
                      rss_mb=max(r.rss_mb for r in same),
                      errors=[e for r in same for e in r.errors],
                      verified=min(r.verified for r in same),
                      engine_cpu_s=statistics.median(r.engine_cpu_s for r in same),
                      engine_gc_s=statistics.median(r.engine_gc_s for r in same))
        rows.append(row)
    return rows


def table(runs: list[ScaleRun]) -> Table:
    """The results table (net columns against the smallest run of the same code)."""
    t = Table(title="manyfest publish, one run per N, 0 ms RTT (cold; net = minus the smallest "
              "run of the same code)", title_justify="left")
    for name in ("code", "lists", "runs", "source sets", "repos", "wall s", "lists/s", "CPU s",
                 "CPU ms/list", "CPU ms/list net", "engine CPU ms/list", "of which GC",
                 "peak RSS MB", "RSS KiB/list net", "req/list", "registry CPU s", "statuses",
                 "verified"):
        t.add_column(name, justify="left" if name == "statuses" else "right")
    for r in sorted(runs, key=lambda r: (r.code != "this", r.lists)):
        base = min((b for b in runs if b.code == r.code), key=lambda b: b.lists)
        net_cpu = net_rss = "-"
        if r.lists > base.lists:
            net_cpu = f"{1000 * (r.cpu_s - base.cpu_s) / (r.lists - base.lists):.2f}"
            net_rss = f"{1024 * (r.rss_mb - base.rss_mb) / (r.lists - base.lists):.2f}"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items()))
        t.add_row(r.code, str(r.lists), str(r.runs), str(r.source_sets), str(r.repositories),
                  f"{r.wall_s:.2f}",
                  f"{r.lists / r.wall_s:.1f}" if r.wall_s else "-", f"{r.cpu_s:.2f}",
                  f"{1000 * r.cpu_s / r.lists:.2f}", net_cpu,
                  f"{1000 * r.engine_cpu_s / r.lists:.3f}", f"{1000 * r.engine_gc_s / r.lists:.3f}",
                  f"{r.rss_mb:.1f}", net_rss,
                  f"{r.requests / r.lists:.2f}", f"{r.registry_cpu_s:.1f}", statuses,
                  f"{r.verified}" + (f" ({len(r.errors)} errors)" if r.errors else ""))
    return t


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.scale``."""
    args = parse_args(argv)
    console = Console(record=True, highlight=False, width=200)
    if find_binary() is None:
        console.print("docker-registry is not installed: run scripts/setup.sh")
        return 1
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="manyfest-scale-"))
    source: dict[str, str] = {}
    codes: dict[str, list[Path]] = {"this": list(harness.SOURCE_PATH)}
    if not args.live_src:
        source = harness.snapshot_source(workdir / "src")
        codes["this"] = list(harness.SOURCE_PATH)
        console.print(f"measuring src/ as of commit {source.get('commit')}"
                      f"{' + uncommitted changes' if source.get('src_changes') else ''}",
                      markup=False)
    if args.compare_src is not None:
        other = workdir / "src-compare"
        shutil.copytree(args.compare_src / "manyfest", other / "manyfest",
                        ignore=shutil.ignore_patterns("__pycache__"))
        codes["compare"] = [other]
        source["compare"] = str(args.compare_src.resolve())
    shm = Path("/dev/shm")
    storage = (Path(tempfile.mkdtemp(prefix="manyfest-scale-reg-", dir=shm))
               if shm.is_dir() and os.access(shm, os.W_OK) else workdir / "registry")
    registry = RegistryServer(workdir=storage)
    runs: list[ScaleRun] = []
    seed_s = 0.0
    try:
        sets = source_sets(max(args.lists), args.lists_per_source)
        t0 = time.monotonic()
        if args.seed_mode == "files":
            seeded = harness.seed_storage(registry, 0, sets)
            seed_s = time.monotonic() - t0
            registry.start()
        else:
            registry.start()
            seeded = harness.seed(registry.host, 0, sets)
            seed_s = time.monotonic() - t0
        console.print(f"docker-registry on {registry.host}; seeded {sets} source tag sets "
                      f"({sets * 4} images, {args.seed_mode}) in {seed_s:.1f} s")
        for n, rep in [(m, k) for m in args.lists
                       for k in range(args.repeat if m < 5000 else 1)]:
            for code, path in codes.items():
                harness.SOURCE_PATH[:] = path
                run = run_one(registry, seeded, workdir, n, args, code=code, repeat=rep)
                runs.append(run)
                console.print(f"{code}: {n} lists: {run.wall_s:.1f} s wall, "
                              f"{run.cpu_s:.2f} s CPU, "
                              f"{run.rss_mb:.1f} MB peak RSS, {run.requests} requests, "
                              f"{run.statuses}{'; ' + run.errors[0] if run.errors else ''}",
                              markup=False)
                if args.profile is not None and n > 1 and rep == 0:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    run_one(registry, seeded, workdir, n, args, code=code,
                            profile=args.profile.resolve() / f"scale-{code}-{n}.prof")
    finally:
        registry.stop()
    console.print(table(medians(runs)))
    console.print(f"plan: {args.lists_per_source} lists per source tag set, "
                  f"{args.repositories} target repositories; seeding ({args.seed_mode}) "
                  f"{seed_s:.0f} s, whole "
                  f"benchmark {time.monotonic() - started:.0f} s; {os.cpu_count()} CPUs, load "
                  f"average {', '.join(f'{v:.2f}' for v in os.getloadavg())}", markup=False)
    doc = {
        "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
                 "versions": harness.tool_versions(), "source": source,
                 "seed_s": round(seed_s, 1), "seed_mode": args.seed_mode},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": [r.to_json() for r in medians(runs)],
        "runs": [r.to_json() for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "scale-latest.txt").write_text(console.export_text())
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(storage, ignore_errors=True)
    bad = [r for r in runs if r.exit_code != 0 or r.errors or r.statuses.get("created") != r.lists]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
