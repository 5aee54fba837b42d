"""The benchmark: manyfest vs a minimal client, docker manifest and buildah, over added RTT.

    .venv/bin/python -m benchmarks.run [--lists N] [--rtt-ms 0,20] [--repeat 3]
        [--peers manyfest,limit,docker,buildah] [--quick] [--chart-ns 50,100,200]
        [--concurrency-sweep 8,16,32,64]

1. starts ``docker-registry`` on a free loopback port and seeds N tags x 4 platforms;
2. for each RTT, each repeat and each peer: starts a relay (:mod:`benchmarks.relay`) that adds
   the RTT, publishes the lists into a fresh target repository through it, counts the
   registry's requests, then checks every published tag (straight from the registry);
   manyfest also re-runs the same plan with its warm cache (the ``unchanged`` case);
3. lists/s vs N for the chart, the 1,000-list peak RSS run, the optional concurrency sweep;
4. prints the table, the ratios and the targets (informational: nothing here asserts), and
   writes ``benchmarks/results/results-<time>.json`` (+ ``latest.json``, ``latest.txt``) and
   ``benchmarks/results/lists_per_s.png``.

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import harness
from benchmarks.relay import RelayProcess
from tests.registry_server import RegistryServer, find_binary

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ("manyfest", "limit", "docker", "buildah")
CHART_PNG = "lists_per_s.png"


# ---------------------------------------------------------------------------- options


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` fills in small defaults for what was not given."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark manyfest publish against a minimal client, docker manifest "
        "and buildah on a loopback registry with added round-trip time.",
    )
    p.add_argument("--lists", type=int, help="lists per run (default 200; --quick 50)")
    p.add_argument("--rtt-ms", type=_floats, default=[0.0, 20.0],
                   help="round-trip times to add, comma-separated (default 0,20)")
    p.add_argument("--repeat", type=int, help="runs per measurement; the median is shown "
                   "(default 3; --quick 1)")
    p.add_argument("--peers", default=",".join(PEERS),
                   help="comma-separated subset of " + ",".join(PEERS))
    p.add_argument("--quick", action="store_true",
                   help="smoke test (~2 min): 50 lists, 1 repeat, small docker/buildah "
                   "subsets, no 1,000-list run")
    p.add_argument("--subset", type=_ints,
                   help="lists for docker and buildah: at 0 ms, at other RTTs (default 10,5; "
                   "--quick 3,2)")
    p.add_argument("--big-lists", type=int,
                   help="lists of the peak-RSS run of manyfest at 0 ms (default 1000; "
                   "--quick 0 = skip)")
    p.add_argument("--chart-ns", type=_ints,
                   help="list counts for the lists/s chart at 0 ms (default 50,100,200; "
                   "--quick 10,25,50)")
    p.add_argument("--concurrency-sweep", type=_ints, default=[],
                   help="also run manyfest --concurrency at each value (N lists, every RTT)")
    p.add_argument("--limit-concurrency", type=int, default=64,
                   help="requests in flight of the limit client (default 64)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--live-src", action="store_true",
                   help="run the peers on src/ as it is at each moment, not on a snapshot "
                   "taken at the start")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep the registry storage, plans and logs (printed at the end)")
    args = p.parse_args(argv)
    quick = args.quick
    if args.lists is None:
        args.lists = 50 if quick else 200
    if args.repeat is None:
        args.repeat = 1 if quick else 3
    if args.subset is None:
        args.subset = [3, 2] if quick else [10, 5]
    if args.big_lists is None:
        args.big_lists = 0 if quick else 1000
    if args.chart_ns is None:
        args.chart_ns = [10, 25, 50] if quick else [50, 100, 200]
    args.peers = [v.strip() for v in args.peers.split(",") if v.strip()]
    unknown = [v for v in args.peers if v not in PEERS]
    if unknown:
        p.error(f"unknown peers {unknown}: choose from {','.join(PEERS)}")
    if args.lists < 1 or args.repeat < 1 or not args.rtt_ms:
        p.error("--lists and --repeat must be >= 1, --rtt-ms not empty")
    return args


# ---------------------------------------------------------------------------- records


@dataclass(slots=True)
class Record:
    """One measured process run."""

    peer: str
    case: str  # cold | unchanged
    rtt_ms: float
    lists: int
    repeat: int
    purpose: str  # main | chart | big | sweep
    concurrency: int | None
    wall_s: float
    user_s: float
    sys_s: float
    rss_mb: float
    exit_code: int
    requests: int
    pings: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    registry_cpu_s: float = 0.0
    relay_cpu_s: float = 0.0
    load_avg: float = 0.0
    client_requests: int | None = None
    verified: int = 0
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        """User + system CPU."""
        return self.user_s + self.sys_s

    def to_json(self) -> dict[str, Any]:
        """The record without per-tag digests."""
        doc = asdict(self)
        doc.pop("digests")
        doc["cpu_s"] = round(self.cpu_s, 4)
        for key in ("wall_s", "user_s", "sys_s", "rss_mb", "registry_cpu_s", "relay_cpu_s"):
            doc[key] = round(doc[key], 4)
        return doc


@dataclass(slots=True)
class Row:
    """The median of the runs of one (peer, case, RTT, lists, concurrency)."""

    peer: str
    case: str
    rtt_ms: float
    lists: int
    concurrency: int | None
    runs: int
    wall_s: float
    wall_min_s: float
    wall_max_s: float
    cpu_s: float
    rss_mb: float
    requests_per_list: float
    requests_per_list_no_ping: float
    registry_cpu_s: float
    verified: str
    failed_runs: int

    @property
    def label(self) -> str:
        """Peer name as shown in the table."""
        name = self.peer if self.case == "cold" else f"{self.peer} ({self.case})"
        return name if self.concurrency is None else f"{name} c={self.concurrency}"

    @property
    def per_list_ms(self) -> float:
        """Wall time per list."""
        return 1000 * self.wall_s / self.lists

    @property
    def cpu_per_list_ms(self) -> float:
        """CPU time per list."""
        return 1000 * self.cpu_s / self.lists

    @property
    def lists_per_s(self) -> float:
        """Throughput."""
        return self.lists / self.wall_s if self.wall_s else 0.0

    def to_json(self) -> dict[str, Any]:
        """For the results file."""
        doc = asdict(self)
        doc.update(label=self.label, per_list_ms=round(self.per_list_ms, 3),
                   cpu_per_list_ms=round(self.cpu_per_list_ms, 3),
                   lists_per_s=round(self.lists_per_s, 3))
        return doc


def aggregate(records: Iterable[Record]) -> list[Row]:
    """Median wall, CPU and requests/list, max RSS, per (peer, case, RTT, lists, conc.)."""
    groups: dict[tuple[str, str, float, int, int | None], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.peer, r.case, r.rtt_ms, r.lists, r.concurrency)].append(r)
    rows = []
    for (peer, case, rtt, lists, conc), runs in groups.items():
        good = [r for r in runs if r.exit_code == 0] or runs
        rows.append(Row(
            peer=peer, case=case, rtt_ms=rtt, lists=lists, concurrency=conc, runs=len(runs),
            wall_s=statistics.median(r.wall_s for r in good),
            wall_min_s=min(r.wall_s for r in good),
            wall_max_s=max(r.wall_s for r in good),
            cpu_s=statistics.median(r.cpu_s for r in good),
            rss_mb=max(r.rss_mb for r in good),
            requests_per_list=statistics.median(r.requests / r.lists for r in good),
            requests_per_list_no_ping=statistics.median(
                (r.requests - r.pings) / r.lists for r in good),
            registry_cpu_s=statistics.median(r.registry_cpu_s for r in good),
            verified=f"{min(r.verified for r in runs)}/{lists}",
            failed_runs=sum(1 for r in runs if r.exit_code != 0 or r.verified != r.lists),
        ))
    order = {p: i for i, p in enumerate(PEERS)}
    rows.sort(key=lambda r: (r.rtt_ms, order.get(r.peer, 9), r.case != "cold",
                             r.concurrency or 0, r.lists))
    return rows


# ---------------------------------------------------------------------------- the bench


class Bench:
    """A registry with seeded sources, and timed runs against it through relays."""

    def __init__(self, args: argparse.Namespace, workdir: Path, console: Console) -> None:
        self.args = args
        self.workdir = workdir
        self.console = console
        # Registry storage in memory when /dev/shm exists: less disk noise, less registry CPU.
        shm = Path("/dev/shm")
        storage = (Path(tempfile.mkdtemp(prefix="manyfest-bench-reg-", dir=shm))
                   if shm.is_dir() and os.access(shm, os.W_OK) else workdir / "registry")
        self.registry = RegistryServer(workdir=storage)
        self.seeded = harness.Seeded()
        self.records: list[Record] = []
        self.counter = 0
        self.seed_s = 0.0
        self.skipped: dict[str, str] = {}
        self.source: dict[str, str] = {}

    def seed(self, n: int) -> None:
        """Make sure tags 0..n-1 exist for the 4 platforms."""
        have = len(self.seeded)
        if n <= have:
            return
        started = time.monotonic()
        self.seeded.update(harness.seed(self.registry.host, have, n))
        took = time.monotonic() - started
        self.seed_s += took
        shape = harness.SHAPE
        self.console.print(f"seeded {(n - have) * 4} images ({n - have} tags x 4 platforms; "
                           f"{shape.layers} layers each, {shape.shared_layers} of them the "
                           f"platform's base) in {took:.1f} s")

    def cold_budget(self, lists: int) -> float:
        """Requests per cold list manyfest may send for a run of ``lists`` lists."""
        return self.seeded.cold_budget([harness.tag_of(i) for i in range(lists)])

    def run(
        self,
        peer: str,
        rtt_ms: float,
        lists: int,
        *,
        purpose: str,
        repeat: int,
        concurrency: int | None = None,
        unchanged: bool = False,
    ) -> list[Record]:
        """One timed run (plus, for manyfest with ``unchanged``, the warm re-run)."""
        self.seed(lists)
        self.counter += 1
        name = f"r{self.counter:03d}-{peer}-{rtt_ms:g}ms"
        rundir = self.workdir / "runs" / name
        rundir.mkdir(parents=True)
        tags = tuple(harness.tag_of(i) for i in range(lists))
        repository = f"out/{name}/app"
        out: list[tuple[str, harness.Measured, harness.RegistryWindow]] = []
        load = os.getloadavg()[0]
        relay = RelayProcess(self.registry.host, rtt_ms)
        with relay:
            job = harness.Job(relay.host, repository, tags)
            runner = self._runner(peer, rundir, concurrency)
            window = harness.RegistryWindow(self.registry).open()
            measured = runner(job)
            out.append(("cold", measured, window.close()))
            if unchanged and peer == "manyfest" and measured.exit_code == 0:
                window = harness.RegistryWindow(self.registry).open()
                measured = runner(job)
                out.append(("unchanged", measured, window.close()))
        found = harness.verify(self.registry.host, repository, tags, self.seeded.children)
        if peer == "limit":
            floor = self.seeded.floor_requests(tags)
            for _case, m, seen in out:
                if m.exit_code == 0 and seen.total != floor:
                    found.errors.append(f"limit sent {seen.total} requests, not the floor "
                                        f"{floor} computed from the images")
        records = []
        for case, m, seen in out:
            record = Record(
                peer=peer, case=case, rtt_ms=rtt_ms, lists=lists, repeat=repeat,
                purpose=purpose, concurrency=concurrency, wall_s=m.wall_s, user_s=m.user_s,
                sys_s=m.sys_s, rss_mb=m.rss_mb, exit_code=m.exit_code, requests=seen.total,
                pings=seen.kinds.get("ping", 0), kinds=seen.kinds,
                registry_cpu_s=seen.cpu_s, relay_cpu_s=relay.cpu_s if case == "cold" else 0.0,
                load_avg=load,
                client_requests=m.extra.get("client_requests"), verified=found.ok,
                errors=found.errors[:5], statuses=m.extra.get("statuses", {}),
                digests=found.digests,
            )
            if m.exit_code != 0:
                last = (m.stderr_tail.strip().splitlines() or [""])[-1]
                record.errors.insert(0, f"exit {m.exit_code}: {last[-300:]}")
            if case == "unchanged" and record.statuses.get("unchanged", 0) != lists:
                record.errors.append(f"statuses {record.statuses}, expected all unchanged")
            records.append(record)
            self._progress(record, name)
        self.records.extend(records)
        return records

    def _runner(
        self, peer: str, rundir: Path, concurrency: int | None
    ) -> Callable[[harness.Job], harness.Measured]:
        if peer == "manyfest":
            cache = rundir / "manyfest-cache"
            cache.mkdir()
            return lambda job: harness.run_manyfest(
                job, rundir, cache_dir=cache, concurrency=concurrency
            )
        if peer == "limit":
            conc = self.args.limit_concurrency
            return lambda job: harness.run_limit(job, rundir, concurrency=conc)
        if peer == "docker":
            return lambda job: harness.run_docker(job, rundir)
        if peer == "buildah":
            return lambda job: harness.run_buildah(job, rundir)
        raise ValueError(peer)

    def _progress(self, r: Record, name: str) -> None:
        state = "ok" if r.exit_code == 0 and r.verified == r.lists and not r.errors else "FAIL"
        case = "" if r.case == "cold" else f" ({r.case})"
        self.console.print(
            f"  {name}{case}: {r.lists} lists {r.wall_s:6.2f} s  cpu {r.cpu_s:5.2f} s  "
            f"rss {r.rss_mb:5.0f} MB  {r.requests / r.lists:5.2f} req/list  "
            f"registry cpu {r.registry_cpu_s:5.2f} s  "
            f"verified {r.verified}/{r.lists}  {state}"
            + ("" if state == "ok" else f"  {'; '.join(r.errors)[:300]}"),
            markup=False, highlight=False,
        )


def subset_for(args: argparse.Namespace, rtt: float) -> int:
    """Lists for docker and buildah at ``rtt``."""
    n: int = args.subset[0] if rtt == 0 else args.subset[-1]
    return min(n, int(args.lists))


def lists_for(args: argparse.Namespace, peer: str, rtt: float) -> int:
    """Lists of a main run of ``peer``."""
    lists: int = args.lists
    return subset_for(args, rtt) if peer in ("docker", "buildah") else lists


# ---------------------------------------------------------------------------- report


def _find(rows: list[Row], peer: str, rtt: float, lists: int | None = None,
          case: str = "cold") -> Row | None:
    for r in rows:
        if (r.peer == peer and r.rtt_ms == rtt and r.case == case and r.concurrency is None
                and (lists is None or r.lists == lists)):
            return r
    return None


def main_table(rows: list[Row]) -> Table:
    """Rows per (peer, RTT, lists)."""
    t = Table(title="Results (median of runs; peak RSS = max)", title_justify="left")
    for name, justify in [
        ("peer", "left"), ("RTT ms", "right"), ("lists", "right"), ("runs", "right"),
        ("wall s", "right"), ("per-list ms", "right"), ("CPU s", "right"),
        ("CPU ms/list", "right"), ("peak RSS MB", "right"), ("req/list", "right"),
        ("lists/s", "right"), ("registry CPU ms/list", "right"), ("verified", "right"),
    ]:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        if r.concurrency is not None:
            continue
        t.add_row(
            r.label, f"{r.rtt_ms:g}", str(r.lists), str(r.runs), f"{r.wall_s:.2f}",
            f"{r.per_list_ms:.1f}", f"{r.cpu_s:.2f}", f"{r.cpu_per_list_ms:.1f}",
            f"{r.rss_mb:.0f}", f"{r.requests_per_list:.2f}", f"{r.lists_per_s:.1f}",
            f"{1000 * r.registry_cpu_s / r.lists:.1f}",
            r.verified + ("" if not r.failed_runs else f" ({r.failed_runs} bad)"),
        )
    return t


def ratios(
    rows: list[Row], records: list[Record], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """manyfest against each peer, per RTT."""
    out: list[dict[str, Any]] = []
    n = args.lists

    def add(rtt: float, what: str, value: float | None, note: str = "") -> None:
        if value is not None:
            out.append({"rtt_ms": rtt, "ratio": what, "value": round(value, 3), "note": note})

    for rtt in args.rtt_ms:
        m = _find(rows, "manyfest", rtt, n)
        if m is None:
            continue
        lim = _find(rows, "limit", rtt, n)
        if lim is not None:
            add(rtt, "manyfest / limit wall time", m.wall_s / lim.wall_s,
                f"{n} lists, medians")
            paired = paired_ratio(records, rtt, n) if args.repeat > 1 else None
            if paired is not None:
                add(rtt, "manyfest / limit wall time, paired", paired,
                    "median of per-repeat ratios (the two run back to back)")
                add(rtt, "manyfest / limit wall time, best runs",
                    m.wall_min_s / lim.wall_min_s, "fastest run of each")
            add(rtt, "manyfest / limit CPU per list", m.cpu_s / lim.cpu_s, f"{n} lists")
            add(rtt, "manyfest / limit peak RSS", m.rss_mb / lim.rss_mb)
            add(rtt, "manyfest / limit requests per list",
                m.requests_per_list / lim.requests_per_list)
        for peer in ("docker", "buildah"):
            other = _find(rows, peer, rtt)
            if other is not None:
                add(rtt, f"{peer} per-list time / manyfest per-list time",
                    other.per_list_ms / m.per_list_ms,
                    f"{peer}: {other.lists} lists in a loop, manyfest: {n} lists at once")
                add(rtt, f"{peer} CPU per list / manyfest CPU per list",
                    other.cpu_per_list_ms / m.cpu_per_list_ms)
        warm = _find(rows, "manyfest", rtt, n, case="unchanged")
        if warm is not None:
            add(rtt, "manyfest unchanged / cold wall time", warm.wall_s / m.wall_s)
    return out


def paired_ratio(records: list[Record], rtt: float, lists: int) -> float | None:
    """Median over repeats of manyfest's wall / limit's wall in the same repeat."""
    walls: dict[tuple[str, int], float] = {}
    for r in records:
        if (r.purpose == "main" and r.case == "cold" and r.rtt_ms == rtt and r.lists == lists
                and r.exit_code == 0):
            walls[(r.peer, r.repeat)] = r.wall_s
    pairs = [walls[("manyfest", k)] / walls[("limit", k)]
             for (peer, k) in walls if peer == "manyfest" and ("limit", k) in walls]
    return statistics.median(pairs) if pairs else None


def targets(rows: list[Row], args: argparse.Namespace,
            cold_budget: Callable[[int], float]) -> list[dict[str, str]]:
    """The issue's targets, PASS/FAIL (informational); ``cold_budget(lists)``: requests per
    cold list allowed for a run of that many lists (:meth:`Bench.cold_budget`)."""
    out: list[dict[str, str]] = []
    n = args.lists
    at_n = "" if n == 200 else f" (measured at {n} lists, not 200)"

    def add(target: str, measured: str, ok: bool | None) -> None:
        out.append({"target": target, "measured": measured,
                    "result": "n/a" if ok is None else ("PASS" if ok else "FAIL")})

    for rtt in (0.0, 20.0):
        m, lim = _find(rows, "manyfest", rtt, n), _find(rows, "limit", rtt, n)
        if m and lim:
            ratio = m.wall_s / lim.wall_s
            add(f"200 lists within 1.25x of limit's wall time at {rtt:g} ms",
                f"{ratio:.2f}x ({m.wall_s:.2f} s vs {lim.wall_s:.2f} s){at_n}", ratio <= 1.25)
        else:
            add(f"200 lists within 1.25x of limit's wall time at {rtt:g} ms", "not run", None)
    for rtt, factor in ((0.0, 4.0), (20.0, 40.0)):
        m, d = _find(rows, "manyfest", rtt, n), _find(rows, "docker", rtt)
        label = f">= {factor:g}x faster per list than the docker loop at {rtt:g} ms"
        if m and d:
            speed = d.per_list_ms / m.per_list_ms
            add(label, f"{speed:.1f}x ({d.per_list_ms:.0f} vs {m.per_list_ms:.1f} ms/list)",
                speed >= factor)
        else:
            add(label, "not run", None)
    cold = [r for r in rows if r.peer == "manyfest" and r.case == "cold"
            and r.concurrency is None]
    warm = [r for r in rows if r.peer == "manyfest" and r.case == "unchanged"]
    # Budgets from the seeded images (benchmarks/README.md): a cold list may cost the floor
    # the limit client sends (3 per child + 1 list PUT + its share of the run's distinct
    # blob mounts) plus 1 HEAD of its tag; an unchanged one 4 source HEADs + 1 target HEAD.
    budgets: tuple[tuple[str, list[Row], Callable[[int], float]], ...] = (
        ("cold", cold, cold_budget),
        ("unchanged", warm, lambda lists: 5.0),
    )
    for label, measured, budget in budgets:
        if not measured:
            add(f"requests per {label} list within the budget", "not run", None)
            continue
        worst = max(measured, key=lambda r: r.requests_per_list_no_ping - budget(r.lists))
        limit = budget(worst.lists)
        add(f"<= {limit:.2f} requests per {label} list ({worst.lists} lists; budget from "
            "the images)" if label == "cold" else f"<= {limit:g} requests per {label} list",
            f"{worst.requests_per_list_no_ping:.2f} + the run's ping(s) "
            f"({worst.requests_per_list:.3f} with them; worst row)",
            worst.requests_per_list_no_ping <= limit + 1e-9)
    for rtt in args.rtt_ms:
        m, lim = _find(rows, "manyfest", rtt, n), _find(rows, "limit", rtt, n)
        if m and lim:
            ratio = m.cpu_s / lim.cpu_s
            add(f"CPU per list within 1.5x of limit at {rtt:g} ms",
                f"{ratio:.2f}x ({m.cpu_per_list_ms:.1f} vs {lim.cpu_per_list_ms:.1f} ms/list)",
                ratio <= 1.5)
    big = [r for r in rows if r.peer == "manyfest" and r.lists >= 1000 and r.case == "cold"]
    if big:
        rss = max(r.rss_mb for r in big)
        add(f"{big[0].lists} lists under 150 MB peak RSS", f"{rss:.0f} MB", rss < 150)
    else:
        add("1000 lists under 150 MB peak RSS", "not run (--quick or --big-lists 0)", None)
    bad = [r for r in rows if r.failed_runs]
    add("every published tag verified (list of the 4 expected children)",
        "all runs" if not bad else "failures: " + ", ".join(
            f"{r.label} {r.rtt_ms:g} ms" for r in bad), not bad)
    return out


def digest_agreement(records: list[Record]) -> list[str]:
    """Do peers publish the same list bytes for the same tag? (first repeat of main runs)"""
    by: dict[tuple[str, float], dict[str, str]] = {}
    for r in records:
        if r.purpose == "main" and r.case == "cold" and (r.peer, r.rtt_ms) not in by:
            by[(r.peer, r.rtt_ms)] = r.digests
    notes = []
    for (peer, rtt), digests in sorted(by.items()):
        if peer == "manyfest":
            continue
        mine = by.get(("manyfest", rtt))
        if not mine:
            continue
        common = [t for t in digests if t in mine]
        same = sum(1 for t in common if digests[t] == mine[t])
        notes.append(f"{rtt:g} ms: {peer} published the same list digest as manyfest for "
                     f"{same}/{len(common)} tags")
    return notes


def kinds_table(records: list[Record]) -> Table:
    """Requests per list by kind, from the registry's log (first main run of each row)."""
    t = Table(title="Requests per list by kind (registry log; pings per run)",
              title_justify="left")
    for name in ("peer", "RTT ms", "lists", "requests per list"):
        t.add_column(name, justify="left" if name in ("peer", "requests per list") else "right")
    seen: set[tuple[str, str, float]] = set()
    order = {p: i for i, p in enumerate(PEERS)}
    for r in sorted(records, key=lambda r: (r.rtt_ms, order.get(r.peer, 9), r.case)):
        key = (r.peer, r.case, r.rtt_ms)
        if r.purpose != "main" or key in seen:
            continue
        seen.add(key)
        parts = [f"{kind} {count / r.lists:g}" for kind, count in sorted(r.kinds.items())
                 if kind != "ping"]
        if r.pings:
            parts.append(f"ping {r.pings}/run")
        label = r.peer if r.case == "cold" else f"{r.peer} ({r.case})"
        t.add_row(label, f"{r.rtt_ms:g}", str(r.lists), ", ".join(parts))
    return t


def sweep_table(rows: list[Row], args: argparse.Namespace) -> Table | None:
    """manyfest wall time per --concurrency value and RTT."""
    sweep = [r for r in rows if r.concurrency is not None]
    if not sweep:
        return None
    t = Table(title=f"manyfest --concurrency sweep ({args.lists} lists, median wall s, "
              "lists/s)", title_justify="left")
    t.add_column("concurrency", justify="right")
    for rtt in args.rtt_ms:
        t.add_column(f"{rtt:g} ms wall s", justify="right")
        t.add_column(f"{rtt:g} ms lists/s", justify="right")
        t.add_column(f"{rtt:g} ms CPU s", justify="right")
    best = {rtt: min((r for r in sweep if r.rtt_ms == rtt), key=lambda r: r.wall_s,
                     default=None) for rtt in args.rtt_ms}
    for conc in args.concurrency_sweep:
        cells = [str(conc)]
        for rtt in args.rtt_ms:
            r = next((x for x in sweep if x.rtt_ms == rtt and x.concurrency == conc), None)
            if r is None:
                cells += ["-", "-", "-"]
                continue
            star = " *" if best[rtt] is r else ""
            cells += [f"{r.wall_s:.2f}{star}", f"{r.lists_per_s:.1f}", f"{r.cpu_s:.2f}"]
        t.add_row(*cells)
    return t


def chart(rows: list[Row], args: argparse.Namespace, path: Path) -> str:
    """lists/s vs N at 0 ms for manyfest and the limit client; returns a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("chart skipped: matplotlib is not installed "
                "(.venv/bin/pip install -e '.[bench]')")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    plotted = False
    for peer, style in (("manyfest", "o-"), ("limit", "s--")):
        chosen = sorted(
            (r for r in rows
             if r.peer == peer and r.rtt_ms == 0 and r.case == "cold" and r.concurrency is None
             and r.lists in args.chart_ns),
            key=lambda r: r.lists,
        )
        points = [(r.lists, r.lists_per_s) for r in chosen]
        if points:
            plotted = True
            low = [r.lists_per_s - r.lists / r.wall_max_s for r in chosen]
            high = [r.lists / r.wall_min_s - r.lists_per_s for r in chosen]
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[low, high],
                        fmt=style, capsize=4,
                        label=peer if peer == "manyfest" else "limit client")
            for x, y in points:
                ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)
    if not plotted:
        plt.close(fig)
        return "chart skipped: no manyfest or limit runs at 0 ms"
    ax.set_xlabel("lists published in one run (N)")
    ax.set_ylabel("lists/s (wall, incl. process start)")
    ax.set_title(f"manyfest publish vs limit client, loopback, 0 ms RTT\n"
                 f"({os.cpu_count()} cores; median of {args.repeat}, bars: fastest-slowest run)",
                 fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"


# ---------------------------------------------------------------------------- main


def plan_runs(args: argparse.Namespace, bench: Bench) -> None:
    """Run everything the options ask for, in an order that spreads noise across peers."""
    peers = [p for p in args.peers if p not in bench.skipped]
    for rtt in args.rtt_ms:
        bench.console.print(f"[bold]RTT {rtt:g} ms[/bold]")
        for rep in range(args.repeat):
            for peer in peers:
                bench.run(peer, rtt, lists_for(args, peer, rtt), purpose="main", repeat=rep,
                          unchanged=True)
    chart_peers = [p for p in ("manyfest", "limit") if p in peers]
    if chart_peers and args.chart_ns:
        bench.console.print("[bold]chart points (0 ms)[/bold]")
        for rep in range(args.repeat):
            for n in args.chart_ns:
                for peer in chart_peers:
                    bench.run(peer, 0.0, n, purpose="chart", repeat=rep)
    if args.big_lists and "manyfest" in peers:
        bench.console.print(f"[bold]{args.big_lists} lists, manyfest, 0 ms (peak RSS)[/bold]")
        bench.run("manyfest", 0.0, args.big_lists, purpose="big", repeat=0)
    if args.concurrency_sweep and "manyfest" in peers:
        bench.console.print("[bold]manyfest --concurrency sweep[/bold]")
        for rtt in args.rtt_ms:
            for rep in range(args.repeat):
                for conc in args.concurrency_sweep:
                    bench.run("manyfest", rtt, args.lists, purpose="sweep", repeat=rep,
                              concurrency=conc)


def report(bench: Bench, args: argparse.Namespace, started: float) -> dict[str, Any]:
    """Print the tables; return the results document."""
    console = bench.console
    rows = aggregate(r for r in bench.records if r.purpose != "chart")
    chart_rows = aggregate(r for r in bench.records if r.purpose == "chart")
    have = {(r.peer, r.case, r.rtt_ms, r.lists) for r in rows}
    shown = rows + [r for r in chart_rows if (r.peer, r.case, r.rtt_ms, r.lists) not in have]
    order = {p: i for i, p in enumerate(PEERS)}
    shown.sort(key=lambda r: (r.rtt_ms, order.get(r.peer, 9), r.case != "cold",
                              r.concurrency or 0, r.lists))
    console.print()
    console.print(main_table(shown))
    rat = ratios(rows, bench.records, args)
    if rat:
        t = Table(title="Ratios (median wall / CPU; > 1 means manyfest is smaller/faster "
                  "for the docker and buildah rows)", title_justify="left")
        for name in ("RTT ms", "ratio", "value", "note"):
            t.add_column(name, justify="right" if name in ("RTT ms", "value") else "left")
        for r in rat:
            t.add_row(f"{r['rtt_ms']:g}", r["ratio"], f"{r['value']:.2f}", r["note"])
        console.print(t)
    console.print(kinds_table(bench.records))
    tgt = targets(rows, args, bench.cold_budget)
    t = Table(title="Targets (informational; not assertions)", title_justify="left")
    for name in ("target", "measured", "result"):
        t.add_column(name)
    for r in tgt:
        color = {"PASS": "green", "FAIL": "red"}.get(r["result"], "yellow")
        t.add_row(r["target"], r["measured"], f"[{color}]{r['result']}[/{color}]")
    console.print(t)
    sweep = sweep_table(rows, args)
    if sweep is not None:
        console.print(sweep)
    notes = digest_agreement(bench.records)
    for peer, reason in bench.skipped.items():
        notes.append(f"{peer} skipped: {reason}")
    notes.append(chart(chart_rows, args, args.out / CHART_PNG))
    total = time.monotonic() - started
    notes.append(f"seeding took {bench.seed_s:.1f} s; whole benchmark {total:.0f} s; "
                 f"{os.cpu_count()} CPUs, load average at the end "
                 f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "versions": harness.tool_versions(),
            "seed_s": round(bench.seed_s, 2),
            "source": bench.source,
            "duration_s": round(time.monotonic() - started, 1),
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": [r.to_json() for r in rows],
        "chart_rows": [r.to_json() for r in chart_rows],
        "ratios": rat,
        "targets": tgt,
        "notes": notes,
        "runs": [r.to_json() for r in bench.records],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.run``."""
    args = parse_args(argv)
    console = Console(record=True, highlight=False)
    if not console.is_terminal:
        console = Console(record=True, highlight=False, width=170)
    if find_binary() is None:
        console.print("docker-registry is not installed: run scripts/setup.sh "
                      "(apt-get install docker-registry)")
        return 1
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="manyfest-bench-"))
    bench = Bench(args, workdir, console)
    if not args.live_src:
        bench.source = harness.snapshot_source(workdir / "src")
        dirty = " + uncommitted changes" if bench.source.get("src_changes") else ""
        console.print(f"measuring src/ as of now (commit {bench.source.get('commit')}{dirty}), "
                      f"copied to {bench.source['source']}", markup=False, highlight=False)
    if "docker" in args.peers and (why := harness.docker_missing()):
        bench.skipped["docker"] = why
    if "buildah" in args.peers and (why := harness.buildah_missing()):
        bench.skipped["buildah"] = why
    for peer, why in bench.skipped.items():
        console.print(f"skipping {peer}: {why}")
    try:
        bench.registry.start()
        console.print(f"docker-registry on {bench.registry.host}; work directory {workdir}")
        need = max([args.lists, args.big_lists, *args.chart_ns])
        bench.seed(need)
        plan_runs(args, bench)
    except KeyboardInterrupt:
        console.print("interrupted: reporting what was measured")
    finally:
        bench.registry.stop()
    doc = report(bench, args, started)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = json.dumps(doc, indent=2) + "\n"
    (args.out / f"results-{stamp}.json").write_text(data)
    (args.out / "latest.json").write_text(data)
    (args.out / "latest.txt").write_text(console.export_text())
    console.print(f"results: {args.out / f'results-{stamp}.json'} (and latest.json, "
                  "latest.txt)", markup=False, highlight=False)
    if args.keep_workdir:
        console.print(f"work directory kept: {workdir} (registry: {bench.registry.workdir})",
                      markup=False, highlight=False)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(bench.registry.workdir, ignore_errors=True)
    bad = sum(1 for r in bench.records if r.exit_code != 0 or r.verified != r.lists)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
