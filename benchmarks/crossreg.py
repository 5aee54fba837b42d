"""The cross-registry benchmark row: ``python -m benchmarks.crossreg``.

A 200-list publish whose sources are on another registry: the build registry holds N tags x
4 platforms (:func:`benchmarks.harness.seed`: real-shape images, 12 layers of which 9 are the
platform's base, 6-10 KiB configs); each list ``i`` of 4 images goes to the release
registry, into one of ``--repos`` repositories (``out/r<k>-<peer>/app<i mod repos>``), so
the base layers cross once and are mounted into the other repositories. Each registry sits
behind its own relay adding ``--rtt-ms`` (:mod:`benchmarks.relay`).

Peers, side by side in one run, each one child process, each into fresh repositories:

* **manyfest**: ``python -m manyfest publish --json PLAN.yaml`` with an empty cache;
* **limit**: the client doing the least work (``python -m benchmarks.crossreg --limit JOB``,
  :class:`CrossLimit`): plain aiohttp, 64 requests in flight per registry, no ping, no HEAD,
  no retries. Per child: GET the manifest and the config from the build registry (the
  config's bytes kept for its upload), PUT the manifest by digest into the release registry;
  per list one PUT. Each blob once per release registry: the first repository that needs it
  gets it by GET (build) + POST + PUT (release), every other repository mounts it from that
  one (one POST). So its requests are: at the build registry ``2 x children + layers``, at
  the release registry ``2 x blobs + mounts + children + lists``.

Requests are counted by each registry (``response completed`` log lines); wall time is the
client process's, spawn to exit. Every published tag is read back from the release
registry (outside the timed part): a list of the 4 expected child digests. Nothing asserts
a timing; numbers from a shared machine are noisy (compare the ratios of one run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import harness
from benchmarks.relay import RelayProcess
from manyfest.content import Entry, encode_list
from manyfest.platform import Platform
from tests.measure import Measured, measure
from tests.registry_server import RegistryServer

ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


# ---------------------------------------------------------------------------- limit client


class CrossLimit:
    """The fewest requests for lists whose sources are on another registry.

    Args:
        session: one aiohttp session for both registries.
        source: the build registry ``host:port`` (plain HTTP, anonymous).
        target: the release registry ``host:port``.
        concurrency: requests in flight per registry.
    """

    def __init__(self, session: aiohttp.ClientSession, source: str, target: str,
                 concurrency: int) -> None:
        self.session = session
        self.source, self.target = source, target
        self.sems = {source: asyncio.Semaphore(concurrency),
                     target: asyncio.Semaphore(concurrency)}
        self.requests = {source: 0, target: 0}
        self.crossed: dict[str, asyncio.Task[str]] = {}
        self.present: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.children: dict[tuple[str, str], asyncio.Task[Entry]] = {}

    async def call(self, registry: str, method: str, path: str, *, ok: tuple[int, ...] = (200,),
                   headers: dict[str, str] | None = None, data: bytes | None = None,
                   params: dict[str, str] | None = None) -> tuple[Any, bytes]:
        """One request (``path`` may be an absolute URL); (headers, body)."""
        url = path if path.startswith("http") else f"http://{registry}{path}"
        async with self.sems[registry]:
            self.requests[registry] += 1
            async with self.session.request(method, url, headers=headers, data=data,
                                            params=params) as resp:
                body = await resp.read()
                if resp.status not in ok:
                    raise RuntimeError(f"{method} {url}: {resp.status} {body[:200]!r}")
                return resp.headers, body

    async def ensure(self, repo: str, blob: str, src_repo: str, data: bytes | None) -> None:
        """The blob present in ``repo`` of the release registry, once per (repo, blob)."""
        key = (repo, blob)
        if key not in self.present:
            self.present[key] = asyncio.ensure_future(self._ensure(repo, blob, src_repo, data))
        await asyncio.shield(self.present[key])

    async def _ensure(self, repo: str, blob: str, src_repo: str, data: bytes | None) -> None:
        if blob not in self.crossed:
            self.crossed[blob] = asyncio.ensure_future(self._copy(repo, blob, src_repo, data))
        home = await asyncio.shield(self.crossed[blob])
        if home != repo:
            await self.call(self.target, "POST", f"/v2/{repo}/blobs/uploads/",
                            params={"mount": blob, "from": home}, ok=(201,))

    async def _copy(self, repo: str, blob: str, src_repo: str, data: bytes | None) -> str:
        if data is None:
            _, data = await self.call(self.source, "GET", f"/v2/{src_repo}/blobs/{blob}")
        headers, _ = await self.call(self.target, "POST", f"/v2/{repo}/blobs/uploads/",
                                     ok=(202,))
        location = headers["Location"]
        if location.startswith("/"):
            location = f"http://{self.target}{location}"
        sep = "&" if "?" in location else "?"
        await self.call(self.target, "PUT", f"{location}{sep}digest={blob}", data=data,
                        headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        return repo

    async def child(self, repo: str, source: str) -> Entry:
        """One source copied into ``repo``: its blobs, then its manifest by digest."""
        key = (repo, source)
        if key not in self.children:
            self.children[key] = asyncio.ensure_future(self._child(repo, source))
        return await asyncio.shield(self.children[key])

    async def _child(self, repo: str, source: str) -> Entry:
        src_repo, _, tag = source.rpartition(":")
        headers, raw = await self.call(self.source, "GET", f"/v2/{src_repo}/manifests/{tag}",
                                       headers={"Accept": ACCEPT})
        doc = json.loads(raw)
        media_type = doc.get("mediaType") or headers.get("Content-Type", "")
        digest = headers["Docker-Content-Digest"]
        config_digest = doc["config"]["digest"]
        _, config = await self.call(self.source, "GET", f"/v2/{src_repo}/blobs/{config_digest}")
        cfg = json.loads(config)
        platform = Platform(cfg.get("os", ""), cfg.get("architecture", ""),
                            cfg.get("variant", ""), cfg.get("os.version", ""),
                            tuple(cfg.get("os.features") or ()))
        await asyncio.gather(self.ensure(repo, config_digest, src_repo, config), *(
            self.ensure(repo, layer["digest"], src_repo, None) for layer in doc["layers"]))
        await self.call(self.target, "PUT", f"/v2/{repo}/manifests/{digest}", data=raw,
                        headers={"Content-Type": media_type}, ok=(201,))
        return Entry(media_type, len(raw), digest, platform)

    async def publish(self, item: dict[str, Any]) -> str:
        """One list: its children, then the list PUT at its tag; returns its digest."""
        repo = item["repository"]
        entries = await asyncio.gather(*(self.child(repo, s) for s in item["sources"]))
        manifest = encode_list(list(entries))
        await self.call(self.target, "PUT", f"/v2/{repo}/manifests/{item['tag']}",
                        data=manifest.raw, headers={"Content-Type": manifest.media_type},
                        ok=(201,))
        return manifest.digest


async def run_limit(job: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """Publish every list of ``job`` at once; the summary."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        client = CrossLimit(session, job["source"], job["target"], concurrency)
        outcomes = await asyncio.gather(*(client.publish(i) for i in job["lists"]),
                                        return_exceptions=True)
    errors = [f"{i['repository']}:{i['tag']}: {o}" for i, o in zip(job["lists"], outcomes,
                                                                    strict=True)
              if isinstance(o, BaseException)]
    return {"failed": len(errors), "errors": errors[:5], "requests": client.requests,
            "crossed": len(client.crossed), "present": len(client.present)}


# ---------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Row:
    """One measured run."""

    peer: str
    wall_s: float
    cpu_s: float
    source_requests: int
    target_requests: int
    ok: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Requests at both registries."""
        return self.source_requests + self.target_requests


def lists_of(n: int, repos: int, prefix: str) -> list[dict[str, Any]]:
    """The N lists: ``tag_of(i)`` of the 4 platforms into ``<prefix>/app<i mod repos>``."""
    return [{"repository": f"{prefix}/app{i % repos}", "tag": harness.tag_of(i),
             "sources": [f"{harness.source_repo(s)}:{harness.tag_of(i)}"
                         for s in harness.PLATFORMS]} for i in range(n)]


def _manyfest(lists: list[dict[str, Any]], source: str, target: str, workdir: Path) -> Measured:
    plan = workdir / "plan.yaml"
    docs = ["\n".join([f"image: {target}/{i['repository']}:{i['tag']}", "manifests:",
                       *(f"  - image: {source}/{s}" for s in i["sources"])]) for i in lists]
    plan.write_text("\n---\n".join(docs) + "\n")
    env = harness.base_env(workdir)
    cache = workdir / "cache"
    cache.mkdir()
    env["MANYFEST_CACHE_DIR"] = str(cache)
    m = measure([sys.executable, "-m", "manyfest", "publish", "--json", str(plan)], env=env,
                workdir=workdir / "manyfest")
    try:
        statuses: dict[str, int] = {}
        for r in json.loads(m.stdout)["results"]:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        m.extra = {"statuses": statuses}
    except (ValueError, KeyError, TypeError):
        m.extra = {"report_error": m.stdout[:300].decode(errors="replace")}
    return m


def _limit(lists: list[dict[str, Any]], source: str, target: str, workdir: Path,
           concurrency: int) -> Measured:
    job = workdir / "limit-job.json"
    job.write_text(json.dumps({"source": source, "target": target, "lists": lists}))
    m = measure([sys.executable, "-m", "benchmarks.crossreg", "--limit", str(job),
                 "--limit-concurrency", str(concurrency)], env=harness.base_env(workdir),
                workdir=workdir / "limit")
    try:
        m.extra = json.loads(m.stdout)
    except ValueError:
        m.extra = {}
    return m


def _verify(server: RegistryServer, lists: list[dict[str, Any]],
            expected: dict[str, list[str]]) -> list[str]:
    errors: list[str] = []
    by_repo: dict[str, list[str]] = {}
    for i in lists:
        by_repo.setdefault(i["repository"], []).append(i["tag"])
    for repo, tags in by_repo.items():
        found = harness.verify(server.host, repo, tags, expected)
        errors += found.errors
    return errors


def main(argv: list[str] | None = None) -> int:
    """Seed, run the peers side by side, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crossreg")
    parser.add_argument("--lists", type=int, default=200, help="lists to publish")
    parser.add_argument("--repos", type=int, default=4,
                        help="release repositories the lists are spread over")
    parser.add_argument("--rtt-ms", type=float, default=10.0,
                        help="round-trip time each relay adds (ms)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per peer (medians)")
    parser.add_argument("--limit-concurrency", type=int, default=64)
    parser.add_argument("--limit", type=Path, help=argparse.SUPPRESS)  # the limit client
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    if args.limit is not None:
        summary = asyncio.run(run_limit(json.loads(args.limit.read_text()),
                                        args.limit_concurrency))
        sys.stdout.write(json.dumps(summary) + "\n")
        return 3 if summary["failed"] else 0
    work = Path(tempfile.mkdtemp(prefix="manyfest-crossreg-"))
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="manyfest-xreg-", dir=shm)) if shm.is_dir() else work
    rows: list[Row] = []
    harness.snapshot_source(work / "src")  # the peers run this checkout's manyfest
    try:
        _run(args, base, work, rows)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return _report(rows, args)


def _run(args: argparse.Namespace, base: Path, work: Path, rows: list[Row]) -> None:
    with RegistryServer(workdir=base / "build") as build, \
            RegistryServer(workdir=base / "release") as release:
        started = time.monotonic()
        seeded = harness.seed(build.host, 0, args.lists)
        tags = [harness.tag_of(i) for i in range(args.lists)]
        blobs = seeded.distinct_blobs(tags)
        print(f"seeded {4 * args.lists} images ({blobs} distinct blobs) on the build "
              f"registry in {time.monotonic() - started:.1f} s; {args.lists} lists into "
              f"{args.repos} repositories of the release registry", flush=True)
        with RelayProcess(build.host, args.rtt_ms) as src, \
                RelayProcess(release.host, args.rtt_ms) as dst:
            k = 0
            for _ in range(args.repeat):
                for peer in ("limit", "manyfest"):
                    k += 1
                    lists = lists_of(args.lists, args.repos, f"out/r{k:02d}-{peer}")
                    rundir = work / f"r{k:02d}-{peer}"
                    rundir.mkdir(parents=True)
                    w_src = harness.RegistryWindow(build).open()
                    w_dst = harness.RegistryWindow(release).open()
                    if peer == "manyfest":
                        m = _manyfest(lists, src.host, dst.host, rundir)
                    else:
                        m = _limit(lists, src.host, dst.host, rundir, args.limit_concurrency)
                    s, d = w_src.close(), w_dst.close()
                    errors = _verify(release, lists, seeded.children) if m.exit_code == 0 \
                        else [m.stderr_tail.strip()[-300:]]
                    row = Row(peer, m.wall_s, m.cpu_s, s.total, d.total, not errors,
                              "; ".join(errors[:2]), {"source_kinds": s.kinds,
                                                       "target_kinds": d.kinds, **m.extra})
                    rows.append(row)
                    print(f"  {peer:8} {m.wall_s:7.2f} s  cpu {m.cpu_s:6.2f} s  build "
                          f"{s.total:6d}  release {d.total:6d} requests  "
                          f"{'ok' if row.ok else 'FAIL ' + row.detail}", flush=True)


def _median(rows: list[Row], peer: str) -> Row | None:
    ok = [r for r in rows if r.peer == peer and r.ok]
    if not ok:
        return None
    return Row(peer, statistics.median(r.wall_s for r in ok),
               statistics.median(r.cpu_s for r in ok),
               int(statistics.median(r.source_requests for r in ok)),
               int(statistics.median(r.target_requests for r in ok)), True,
               extra=ok[0].extra)


def _report(rows: list[Row], args: argparse.Namespace) -> int:
    limit = _median(rows, "limit")
    print()
    print(f"cross-registry publish: {args.lists} lists x 4 images from a build registry into "
          f"{args.repos} repositories of a release registry, rtt {args.rtt_ms:g} ms each, "
          f"medians of {args.repeat} runs")
    print(f"{'peer':10} {'wall s':>8} {'wall x limit':>13} {'build req':>10} "
          f"{'release req':>12} {'requests':>9} {'req x limit':>12} {'cpu s':>7}")
    for peer in ("limit", "manyfest"):
        got = _median(rows, peer)
        if got is None:
            print(f"{peer:10} failed")
            continue
        wl = f"{got.wall_s / limit.wall_s:.3f}" if limit else "-"
        rq = f"{got.requests / limit.requests:.3f}" if limit else "-"
        print(f"{peer:10} {got.wall_s:8.2f} {wl:>13} {got.source_requests:10d} "
              f"{got.target_requests:12d} {got.requests:9d} {rq:>12} {got.cpu_s:7.2f}")
    for peer in ("limit", "manyfest"):
        got = _median(rows, peer)
        if got is not None:
            kinds = {k: v for k, v in got.extra.items() if k.endswith("_kinds")}
            print(f"  {peer}: {json.dumps(kinds, sort_keys=True)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"requests": r.requests}
                                         for r in rows], indent=1, default=str))
    failed = [r for r in rows if not r.ok]
    for r in failed:
        print(f"FAIL {r.peer}: {r.detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
