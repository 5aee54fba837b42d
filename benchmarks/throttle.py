"""The throttling benchmark: ``python -m benchmarks.throttle [--quick]``.

manyfest publishes through a rate-limiting proxy (``python -m tests.ratelimit``, its
own process) in front of the real registry, one scenario after another, each into fresh
repositories:

* ``bucket 150/s``: 200 lists, a token bucket of 150 requests/s (burst 150);
* ``bucket 20/s``: 30 lists, 20 requests/s (burst 20);
* ``body-hint 50/s``: 50 lists, 50 requests/s, the wait written only in the 429's JSON body
  (GitHub's ``retry-after: 12.5ms``);
* ``storm``: 10 lists, count-based: every 4th request 429 (Retry-After an HTTP date), every
  5th that is not a 4th 503 (no Retry-After).

``--quick``: 50, 15, 15 and 10 lists. It prints a table and the targets (informational
PASS/FAIL, never an assertion) and writes ``benchmarks/results/throttle-latest.json``.
See benchmarks/README.md ("Throttling").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import harness
from tests.ratelimit import RateLimitProcess
from tests.registry_server import RegistryServer, find_binary

RESULTS = Path(__file__).resolve().parent / "results"
THROTTLED_MAX = 0.05
"""Target: throttle answers / all requests the proxy saw."""
WALL_OVER_IDEAL_MAX = 1.15
"""Target: wall time / (requests answered by the registry / allowed rate)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One throttled run: ``lists`` lists through ``mode`` at ``rate`` requests/s."""

    name: str
    mode: str
    lists: int
    rate: float = 0.0
    burst: float | None = None

    @property
    def paced(self) -> bool:
        """True when the registry allows a rate (token bucket), so an ideal time exists."""
        return self.rate > 0


def scenarios(quick: bool) -> list[Scenario]:
    """The scenarios of a run (see the module docstring)."""
    return [
        Scenario("bucket 150/s", "bucket", 50 if quick else 200, 150.0),
        Scenario("bucket 20/s", "bucket", 15 if quick else 30, 20.0),
        Scenario("body-hint 50/s", "body-hint", 15 if quick else 50, 50.0),
        Scenario("storm", "storm", 10),
    ]


@dataclass(slots=True)
class Row:
    """What one scenario measured."""

    scenario: str
    mode: str
    lists: int
    rate: float
    landed: int = 0
    exit_code: int = 0
    requests: int = 0
    """Every request the proxy saw."""
    answered: int = 0
    """Requests answered by the registry (forwarded by the proxy)."""
    throttled: int = 0
    """Throttle answers the proxy sent (429s)."""
    unavailable: int = 0
    """503s without Retry-After the proxy sent (storm)."""
    registry_log: int = 0
    """``response completed`` lines the registry logged during the run (cross-check)."""
    wall_s: float = 0.0
    client: dict[str, Any] = field(default_factory=dict)
    """The report's summary (requests, retries, throttled... as manyfest counted them)."""
    errors: list[str] = field(default_factory=list)

    @property
    def throttled_pct(self) -> float:
        """Throttle answers / all requests, in percent."""
        return 100.0 * self.throttled / self.requests if self.requests else 0.0

    @property
    def ideal_s(self) -> float | None:
        """Requests answered by the registry / allowed rate (None without a rate)."""
        return self.answered / self.rate if self.rate else None

    @property
    def over_ideal(self) -> float | None:
        """wall / ideal."""
        ideal = self.ideal_s
        return self.wall_s / ideal if ideal else None

    def to_json(self) -> dict[str, Any]:
        """The row with its derived columns."""
        doc = asdict(self)
        doc.update(throttled_pct=round(self.throttled_pct, 2), ideal_s=self.ideal_s,
                   over_ideal=self.over_ideal)
        return doc


def run_scenario(registry: RegistryServer, scenario: Scenario, index: int, workdir: Path,
                 expected: dict[str, list[str]]) -> Row:
    """Publish ``scenario.lists`` lists through a fresh proxy into a fresh repository."""
    tags = tuple(harness.tag_of(i) for i in range(scenario.lists))
    repository = f"throttle/s{index}-{scenario.mode}/app"
    rundir = workdir / f"s{index}-{scenario.mode}"
    cache = rundir / "cache"
    cache.mkdir(parents=True)
    row = Row(scenario.name, scenario.mode, scenario.lists, scenario.rate)
    with RateLimitProcess(registry.host, scenario.mode, scenario.rate, scenario.burst) as proxy:
        window = harness.RegistryWindow(registry).open()
        measured = harness.run_manyfest(harness.Job(proxy.host, repository, tags), rundir,
                                        cache_dir=cache)
        stats = proxy.stats()
        row.registry_log = window.close().total
    row.exit_code, row.wall_s = measured.exit_code, measured.wall_s
    row.requests, row.answered = int(stats["requests"]), int(stats["answered"])
    row.throttled = int(stats["throttled"])
    row.unavailable = row.requests - row.answered - row.throttled
    try:
        row.client = json.loads(measured.stdout).get("summary", {})
    except ValueError:
        row.errors.append(f"no JSON report: {measured.stdout[:200]!r}")
    if measured.exit_code != 0:
        last = (measured.stderr_tail.strip().splitlines() or [""])[-1]
        row.errors.append(f"exit {measured.exit_code}: {last[-300:]}")
    found = harness.verify(registry.host, repository, tags, expected)
    row.landed = found.ok
    row.errors += found.errors[:3]
    return row


def targets(rows: list[Row]) -> list[dict[str, str]]:
    """The targets, informational: every list lands; the report's ``throttled`` equals the
    proxy's count; throttled <= 5 % of requests and wall <= 1.15x ideal (token-bucket
    scenarios)."""
    out = []
    for row in rows:
        landed = row.landed == row.lists and row.exit_code == 0
        out.append({"target": f"{row.scenario}: every list lands",
                    "measured": f"{row.landed}/{row.lists}, exit {row.exit_code}",
                    "result": "PASS" if landed else "FAIL"})
        counted = row.client.get("throttled")
        out.append({"target": f"{row.scenario}: the report counts the proxy's throttles",
                    "measured": f"report {'-' if counted is None else counted}, "
                    f"proxy {row.throttled}",
                    "result": "PASS" if counted == row.throttled else "FAIL"})
        if row.mode == "storm":
            continue
        out.append({"target": f"{row.scenario}: throttled <= {THROTTLED_MAX:.0%} of requests",
                    "measured": f"{row.throttled_pct:.1f} %",
                    "result": "PASS" if row.throttled_pct <= 100 * THROTTLED_MAX else "FAIL"})
        # Lists that failed stopped early: their requests are missing from "ideal", so
        # the ratio only counts when every list landed.
        ratio = row.over_ideal
        measured = "-" if ratio is None else f"{ratio:.2f}x"
        if not landed:
            measured += f" ({row.lists - row.landed} lists did not land)"
        out.append({"target": f"{row.scenario}: wall <= {WALL_OVER_IDEAL_MAX}x ideal",
                    "measured": measured,
                    "result": "PASS" if landed and ratio is not None
                    and ratio <= WALL_OVER_IDEAL_MAX else "FAIL"})
    return out


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> Table:
    """The results table."""
    t = Table(title="Throttled registry: manyfest publish through tests/ratelimit.py",
              title_justify="left")
    heads = ("scenario", "lists", "landed", "answered", "throttled", "throttled %", "wall s",
             "ideal s", "wall / ideal", "client retries", "client throttled")
    for head in heads:
        t.add_column(head, justify="left" if head == "scenario" else "right")
    for r in rows:
        t.add_row(r.scenario, str(r.lists), str(r.landed), str(r.answered), str(r.throttled),
                  f"{r.throttled_pct:.1f}", f"{r.wall_s:.2f}", _fmt(r.ideal_s),
                  _fmt(r.over_ideal), str(r.client.get("retries", "-")),
                  str(r.client.get("throttled", "-")))
    return t


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.throttle",
                                description="manyfest publish against rate-limited registries.")
    p.add_argument("--quick", action="store_true",
                   help="fewer lists per scenario (50, 15, 15, 10 instead of 200, 30, 50, 10)")
    p.add_argument("--only", default="",
                   help="comma-separated scenarios to run (bucket, body-hint, storm, or a "
                   "full name such as 'bucket 20/s'); default all")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--live-src", action="store_true",
                   help="run src/ as it is at each moment, not a snapshot taken at the start")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep the registry storage, plans and logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.throttle``; exit 1 when a list did not land."""
    args = parse_args(argv)
    console = Console(record=True, highlight=False)
    if not console.is_terminal:
        console = Console(record=True, highlight=False, width=170)
    if find_binary() is None:
        console.print("docker-registry is not installed: run scripts/setup.sh")
        return 1
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="manyfest-throttle-"))
    source: dict[str, str] = {}
    if not args.live_src:
        source = harness.snapshot_source(workdir / "src")
        console.print(f"measuring src/ as of now (commit {source.get('commit')}), copied to "
                      f"{source['source']}", markup=False, highlight=False)
    shm = Path("/dev/shm")
    storage = (Path(tempfile.mkdtemp(prefix="manyfest-throttle-reg-", dir=shm))
               if shm.is_dir() and os.access(shm, os.W_OK) else workdir / "registry")
    registry = RegistryServer(workdir=storage)
    plan = scenarios(args.quick)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        plan = [s for s in plan if s.name.split()[0] in wanted or s.name in wanted]
    rows: list[Row] = []
    try:
        registry.start()
        need = max(s.lists for s in plan)
        seeded_at = time.monotonic()
        expected = harness.seed(registry.host, 0, need).children
        console.print(f"docker-registry on {registry.host}; seeded {need * 4} images in "
                      f"{time.monotonic() - seeded_at:.1f} s")
        for i, scenario in enumerate(plan):
            row = run_scenario(registry, scenario, i, workdir, expected)
            rows.append(row)
            console.print(f"{scenario.name}: {row.landed}/{row.lists} landed, "
                          f"{row.throttled}/{row.requests} throttled, {row.wall_s:.1f} s"
                          + (f"; {row.errors[0]}" if row.errors else ""),
                          markup=False, highlight=False)
    except KeyboardInterrupt:
        console.print("interrupted: reporting what was measured")
    finally:
        registry.stop()
    console.print(table(rows))
    tgt = targets(rows)
    t = Table(title="Targets (informational; not assertions)", title_justify="left")
    for head in ("target", "measured", "result"):
        t.add_column(head)
    for r in tgt:
        color = {"PASS": "green", "FAIL": "red"}[r["result"]]
        t.add_row(r["target"], r["measured"], f"[{color}]{r['result']}[/{color}]")
    console.print(t)
    doc = {
        "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
                 "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                 "versions": harness.tool_versions(), "source": source,
                 "duration_s": round(time.monotonic() - started, 1)},
        "options": {"quick": args.quick},
        "scenarios": [asdict(s) for s in plan],
        "rows": [r.to_json() for r in rows],
        "targets": tgt,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throttle-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {args.out / 'throttle-latest.json'}", markup=False,
                  highlight=False)
    if args.keep_workdir:
        console.print(f"work directory kept: {workdir} (registry: {registry.workdir})",
                      markup=False, highlight=False)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(registry.workdir, ignore_errors=True)
    return 1 if any(r.landed != r.lists for r in rows) or len(rows) < len(plan) else 0


if __name__ == "__main__":
    sys.exit(main())
