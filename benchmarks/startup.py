"""Start-up benchmark: what a command costs before and around its one request.

    .venv/bin/python -m benchmarks.startup [--runs 15]

Starts ``docker-registry`` on a free loopback port, seeds one image of the benchmark's shape
(:data:`benchmarks.harness.SHAPE`), then times whole processes, each row beside its Python
floor (and docker's command where docker has one), the commands interleaved run by run
(A, floor, docker, A, floor, docker, ...) so a drift of the shared machine's speed hits them
alike:

* ``manyfest --help``, ``--version`` and ``annotate`` refusing a bad variant (a local check)
  vs ``python -c 'import typer'`` (issue 8's target: ``--help`` within 1.5x);
* ``manyfest inspect --insecure`` of the loopback image vs ``python -m
  benchmarks.inspect_floor`` (``import aiohttp, typer`` plus that one GET: the target is
  1.3x) and ``docker manifest inspect --insecure``.

The ratio is the median of the per-round ratios (A's wall time over the floor's in the same
round). Prints a table and writes ``benchmarks/results/startup-latest.{json,txt}``. Nothing
here asserts: the figures are informational (the tests never time anything).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import harness
from tests.registry_server import RegistryServer, find_binary

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(slots=True)
class Row:
    """One measured row: median wall seconds of A, of its floor, of docker ('' if absent)."""

    name: str
    manyfest_s: float
    floor: str
    floor_s: float
    ratio: float
    target: str
    docker_s: float | None


def _wall(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one run of ``argv`` (its output discarded; a failure is fatal)."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode()}")
    return elapsed


def measure(name: str, command: list[str], floor_name: str, floor: list[str], target: str,
            docker: list[str] | None, env: dict[str, str], runs: int) -> Row:
    """Time ``command``, ``floor`` and ``docker`` interleaved, ``runs`` rounds after one
    warm-up round; the medians and the median per-round ratio."""
    mine: list[float] = []
    floors: list[float] = []
    theirs: list[float] = []
    for i in range(runs + 1):
        a = _wall(command, env)
        b = _wall(floor, env)
        c = _wall(docker, env) if docker else None
        if i == 0:
            continue  # warm-up: page cache, .pyc files
        mine.append(a)
        floors.append(b)
        if c is not None:
            theirs.append(c)
    ratio = statistics.median(x / y for x, y in zip(mine, floors, strict=True))
    return Row(name, statistics.median(mine), floor_name, statistics.median(floors), ratio,
               target, statistics.median(theirs) if theirs else None)


def _table(rows: list[Row]) -> str:
    head = f"{'command':<34} {'manyfest':>9} {'floor':<28} {'floor s':>8} {'ratio':>6} " \
           f"{'target':>7} {'docker':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        docker = f"{r.docker_s:8.3f}" if r.docker_s is not None else f"{'-':>8}"
        lines.append(f"{r.name:<34} {r.manyfest_s:9.3f} {r.floor:<28} {r.floor_s:8.3f} "
                     f"{r.ratio:5.2f}x {r.target:>7} {docker}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup")
    parser.add_argument("--runs", type=int, default=15, help="rounds per row (median)")
    args = parser.parse_args(argv)
    if find_binary() is None:
        raise SystemExit("docker-registry is not installed: run scripts/setup.sh")
    workdir = Path(tempfile.mkdtemp(prefix="manyfest-startup-"))
    server = RegistryServer(workdir=workdir / "registry")
    server.start()
    try:
        harness.seed(server.host, 0, 1)
        image = f"{server.host}/{harness.source_repo('amd64')}:{harness.tag_of(0)}"
        env = harness.base_env(workdir)
        root = Path(__file__).resolve().parents[1]
        # This tree's manyfest, whatever an installed copy (editable or not) points at.
        env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), env["PYTHONPATH"]])
        env["MANYFEST_CACHE_DIR"] = str(workdir / "cache")
        env["HOME"] = str(workdir / "home")
        # As installed: byte-code cached (a shell may set this to keep trees clean; every
        # run would then compile manyfest from source, which no installed copy does).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        py = sys.executable
        manyfest = [py, "-m", "manyfest"]
        script = shutil.which("manyfest", path=str(Path(py).parent))
        if script is not None:
            manyfest = [script]  # the console script, as a user runs it
        docker = shutil.which("docker")
        typer_floor = [py, "-c", "import typer"]
        rows = [
            measure("manyfest --help", [*manyfest, "--help"], "import typer", typer_floor,
                    "1.5x", [docker, "--help"] if docker else None, env, args.runs),
            measure("manyfest --version", [*manyfest, "--version"], "import typer",
                    typer_floor, "", [docker, "--version"] if docker else None, env,
                    args.runs),
            measure("manyfest annotate (bad variant)",
                    [*manyfest, "annotate", "example.com/l:1", "example.com/a:1", "--arch",
                     "arm", "--variant", "v99"],
                    "import typer", typer_floor, "", None, env, args.runs),
            measure("manyfest inspect (loopback)", [*manyfest, "inspect", "--insecure", image],
                    "import aiohttp, typer + GET",
                    [py, "-m", "benchmarks.inspect_floor", image], "1.3x",
                    [docker, "manifest", "inspect", "--insecure", image] if docker else None,
                    env, args.runs),
        ]
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = _table(rows)
    machine = f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
    print(machine)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup-latest.txt").write_text(f"{machine}\n{table}\n")
    (RESULTS / "startup-latest.json").write_text(json.dumps(
        {"machine": machine, "runs": args.runs, "rows": [asdict(r) for r in rows]}, indent=2)
        + "\n")


if __name__ == "__main__":
    main()
