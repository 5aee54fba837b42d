"""Pieces of the benchmark (``python -m benchmarks.run``): seeding, peers, measuring, checks.

* :func:`seed`: N tags x 4 platforms, one repository per platform (``bench/app-amd64``,
  ``bench/app-arm`` (linux/arm/v7), ``bench/app-arm64`` (linux/arm64/v8), ``bench/app-win``
  (windows/amd64 with os.version)), images of real shape (:data:`SHAPE`: 6-10 KiB configs,
  12 layers of which 9 are the platform's shared base), pushed with
  :func:`tests.imagewriter.push_built`; it also returns the blobs of each tag, from
  which the request counts are computed (:meth:`Seeded.floor_requests`);
  :func:`seed_storage` writes the same images into a registry's storage before it starts
  (:mod:`tests.registry_storage`, no HTTP: minutes for what takes an hour to push);
* :class:`Job`: what one timed run publishes (a fresh target repository, the source tags);
* the peers: :func:`run_manyfest`, :func:`run_limit`, :func:`run_docker`,
  :func:`run_buildah`, each one child process measured by :func:`measure` (wall time from
  spawn to reaping, and the child's own rusage from ``os.wait4``: user + system CPU and peak
  RSS, which for a shell loop covers every command it ran);
* :func:`verify`: every published tag is a list of the 4 expected child digests (read
  straight from the registry, outside the timed part).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from benchmarks import plans
from manyfest import reference
from manyfest.errors import ManyfestError
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.imagewriter import Image, Shape, build_images, distinct_blobs, push_built
from tests.measure import Measured, measure
from tests.registry_server import RegistryServer
from tests.registry_storage import StorageWriter

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS: dict[str, Platform] = {
    "amd64": Platform("linux", "amd64"),
    "arm": Platform("linux", "arm", "v7"),
    "arm64": Platform("linux", "arm64", "v8"),
    "win": Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",)),
}
RUN_TIMEOUT_S = 600.0
"""A timed run still going after this long is killed (and reported as failed)."""
SOURCE_PATH: list[Path] = []
"""Directories put first on the peers' PYTHONPATH (``run.py`` puts its snapshot of
``src/`` here, so every run of one benchmark measures the same manyfest)."""


def tag_of(i: int) -> str:
    """The i-th seeded tag."""
    return f"1.{i // 100}.{i % 100}"


def source_repo(suffix: str) -> str:
    """The repository of one platform's images."""
    return f"bench/app-{suffix}"


SHAPE = Shape()
"""The seeded images' shape: real-size configs (6-10 KiB) and 12 layers, the lower 9 shared by
every image of a platform (its base), the top 3 unique per tag."""
CHILD_REQUESTS = 3
"""Requests per child of a cold list besides its blobs' mounts: GET manifest, GET config,
PUT the manifest by digest into the target repository."""


@dataclass(slots=True)
class Seeded:
    """What :func:`seed` pushed, per tag.

    Attributes:
        children: the list's expected child digests, in platform order.
        blobs: every blob digest (configs and layers) of the tag's 4 images.
    """

    children: dict[str, list[str]] = field(default_factory=dict)
    blobs: dict[str, frozenset[str]] = field(default_factory=dict)

    def update(self, other: Seeded) -> None:
        """Add ``other``'s tags."""
        self.children.update(other.children)
        self.blobs.update(other.blobs)

    def __len__(self) -> int:
        return len(self.children)

    def distinct_blobs(self, tags: Sequence[str]) -> int:
        """Blobs a new target repository needs for the lists of ``tags``, each counted once
        (the tags' images share their base layers)."""
        return len(frozenset().union(*(self.blobs[t] for t in tags)))

    def floor_requests(self, tags: Sequence[str]) -> int:
        """The fewest requests that publish the lists of ``tags`` into a new repository, as
        the limit client sends them: per list 3 per child (GET manifest, GET config, PUT by
        digest) and 1 list PUT, plus one mount per distinct blob; no HEAD, no ping."""
        per_list = CHILD_REQUESTS * len(PLATFORMS) + 1
        return per_list * len(tags) + self.distinct_blobs(tags)

    def cold_budget(self, tags: Sequence[str]) -> float:
        """Requests per cold list manyfest may send (the run's ping aside): the floor per
        list plus the HEAD of the target tag (what tells ``unchanged``)."""
        return self.floor_requests(tags) / len(tags) + 1


def _build(tags: Sequence[str]) -> dict[str, Image]:
    """The seeded images of ``tags`` (4 per tag, platform order): ``{repository:tag: Image}``."""
    return build_images(
        (
            (f"{source_repo(suffix)}:{tag}", platform, f"bench {tag}")
            for tag in tags
            for suffix, platform in PLATFORMS.items()
        ),
        shape=SHAPE,
    )


def _record(out: Seeded, tags: Sequence[str], images: dict[str, Image],
            digests: dict[str, str]) -> None:
    for tag in tags:
        names = [f"{source_repo(s)}:{tag}" for s in PLATFORMS]
        out.children[tag] = [digests[name] for name in names]
        out.blobs[tag] = frozenset(distinct_blobs(images[name] for name in names))


async def _seed(host: str, start: int, stop: int) -> Seeded:
    tags = [tag_of(i) for i in range(start, stop)]
    images = _build(tags)
    digests = await push_built(host, images, check_blobs=False)
    out = Seeded()
    _record(out, tags, images, digests)
    return out


def seed(host: str, start: int, stop: int) -> Seeded:
    """Push tags ``tag_of(start)`` .. ``tag_of(stop - 1)`` for the 4 platforms (:data:`SHAPE`).

    Returns each tag's expected child digests (platform order) and blob digests.
    """
    return anyio.run(_seed, host, start, stop)


SEED_CHUNK = 64
"""Tags :func:`seed_storage` builds and writes at a time (their images are then dropped)."""


def seed_storage(server: RegistryServer, start: int, stop: int) -> Seeded:
    """Write what :func:`seed` would push (the same images, byte for byte: the same
    manifests, configs and layers at the same tags) straight into the storage of ``server``
    before it starts (:mod:`tests.registry_storage`), without HTTP: 10,000 tags (40,000
    images, 2.5 GB, ~480,000 files) in under 4 minutes on 2 cores, most of it building the
    images, where pushing them takes about 50 minutes.

    The images are built and written :data:`SEED_CHUNK` tags at a time, so memory does not
    grow with the tags' bytes (only with the returned digests, ~10 KB per tag).

    Returns the same :class:`Seeded` as :func:`seed` for these tags.

    Raises:
        RuntimeError: ``server`` is running (its storage must not change under it).
        OSError: the storage cannot be written.
    """
    if server.process is not None and server.process.poll() is None:
        raise RuntimeError(f"the registry on {server.host} is running: seed its storage "
                           "before starting it")
    writer = StorageWriter(server.storage_dir)
    out = Seeded()
    canonical: dict[str, str] = {}
    for first in range(start, stop, SEED_CHUNK):
        tags = [tag_of(i) for i in range(first, min(stop, first + SEED_CHUNK))]
        images = _build(tags)
        digests = {name: writer.write(name, image) for name, image in images.items()}
        _record(out, tags, images, digests)
        for tag in tags:  # one str per distinct digest: the base layers' are in every tag
            out.blobs[tag] = frozenset(canonical.setdefault(d, d) for d in out.blobs[tag])
    return out


@dataclass(frozen=True, slots=True)
class Job:
    """What one timed run publishes.

    Attributes:
        host: the registry as the client names it (the relay's ``127.0.0.1:<port>``).
        repository: the fresh target repository (a new namespace per run).
        tags: the source tags; list ``i`` is ``repository:tags[i]`` from the 4 images
            tagged ``tags[i]``.
    """

    host: str
    repository: str
    tags: tuple[str, ...]

    def target(self, tag: str) -> str:
        """The list reference for ``tag``."""
        return f"{self.host}/{self.repository}:{tag}"

    def sources(self, tag: str) -> list[str]:
        """The 4 source references for ``tag``, in platform order."""
        return [f"{self.host}/{source_repo(s)}:{tag}" for s in PLATFORMS]


def base_env(workdir: Path) -> dict[str, str]:
    """The environment of every peer: no proxies, an empty docker config of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and not k.startswith("MANYFEST_")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    docker_config = workdir / "docker-config"
    docker_config.mkdir(parents=True, exist_ok=True)
    (docker_config / "config.json").write_text('{"auths": {}}\n')  # buildah wants one
    env["DOCKER_CONFIG"] = str(docker_config)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [*SOURCE_PATH, ROOT])
    return env


# ---------------------------------------------------------------------------- manyfest


def write_plan(job: Job, path: Path) -> None:
    """manifest-tool YAML, one list per document, 4 sources each, one tag."""
    plans.write_plan(
        path,
        (
            plans.plan_document(
                job.target(tag), zip(job.sources(tag), PLATFORMS.values(), strict=True)
            )
            for tag in job.tags
        ),
    )


def run_manyfest(
    job: Job, workdir: Path, *, cache_dir: Path, concurrency: int | None = None
) -> Measured:
    """``python -m manyfest publish --json PLAN.yaml`` with its own on-disk cache."""
    plan = workdir / "plan.yaml"
    if not plan.exists():
        write_plan(job, plan)
    env = base_env(workdir)
    env["MANYFEST_CACHE_DIR"] = str(cache_dir)
    cmd = [sys.executable, "-m", "manyfest", "publish", "--json", str(plan)]
    if concurrency is not None:
        cmd += ["--concurrency", str(concurrency)]
    name = "warm" if any(cache_dir.iterdir()) else "cold"
    result = measure(cmd, env=env, workdir=workdir / f"manyfest-{name}")
    try:
        report = json.loads(result.stdout)
        statuses: dict[str, int] = {}
        for item in report.get("results", []):
            statuses[item["status"]] = statuses.get(item["status"], 0) + 1
        result.extra = {"statuses": statuses,
                        "client_requests": report.get("summary", {}).get("requests")}
    except (ValueError, AttributeError, KeyError, TypeError):
        text = result.stdout[:300].decode(errors="replace")
        result.extra = {"statuses": {}, "report_error": text}
    return result


# ---------------------------------------------------------------------------- limit client


def run_limit(job: Job, workdir: Path, *, concurrency: int = 64) -> Measured:
    """``python -m benchmarks.limit_client JOB.json`` (see :mod:`benchmarks.limit_client`)."""
    job_file = workdir / "limit-job.json"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps({
        "registry": job.host,
        "lists": [
            {"repository": job.repository, "tag": tag,
             "sources": [s.split("/", 1)[1] for s in job.sources(tag)]}
            for tag in job.tags
        ],
    }))
    cmd = [sys.executable, "-m", "benchmarks.limit_client", str(job_file),
           "--concurrency", str(concurrency)]
    result = measure(cmd, env=base_env(workdir), workdir=workdir / "limit")
    try:
        summary = json.loads(result.stdout)
        result.extra = {"client_requests": summary.get("requests"),
                        "errors": summary.get("errors", [])}
    except ValueError:
        result.extra = {}
    return result


# ---------------------------------------------------------------------------- docker, buildah

_DOCKER_LOOP = """\
set -eu
while read -r -u 3 target s1 s2 s3 s4; do
  docker manifest create --insecure "$target" "$s1" "$s2" "$s3" "$s4" >/dev/null
  docker manifest push --insecure --purge "$target" >/dev/null
done 3< "$1"
"""

_BUILDAH_LOOP = """\
set -eu
st="$2"
b() { buildah --root "$st/root" --runroot "$st/runroot" --storage-driver vfs "$@"; }
i=0
while read -r -u 3 target s1 s2 s3 s4; do
  i=$((i + 1))
  b manifest create "benchlist$i" >/dev/null
  for s in "$s1" "$s2" "$s3" "$s4"; do
    b manifest add --tls-verify=false "benchlist$i" "docker://$s" >/dev/null
  done
  b manifest push --quiet --tls-verify=false --all "benchlist$i" "docker://$target" >/dev/null
  b manifest rm "benchlist$i" >/dev/null
done 3< "$1"
"""


def _lists_file(job: Job, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(
        " ".join([job.target(tag), *job.sources(tag)]) + "\n" for tag in job.tags
    ))
    return path


def run_docker(job: Job, workdir: Path) -> Measured:
    """A shell loop of ``docker manifest create --insecure`` + ``push --insecure --purge``."""
    lists = _lists_file(job, workdir / "lists.txt")
    cmd = ["bash", "-c", _DOCKER_LOOP, "docker-loop", str(lists)]
    return measure(cmd, env=base_env(workdir), workdir=workdir / "docker")


def buildah_missing() -> str | None:
    """Why buildah cannot run here, or None."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install buildah)"
    return None


def docker_missing() -> str | None:
    """Why the docker CLI cannot run here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    return None


def run_buildah(job: Job, workdir: Path) -> Measured:
    """A shell loop of buildah manifest create, add x4, push --all, rm (own storage, vfs)."""
    lists = _lists_file(job, workdir / "lists.txt")
    storage = workdir / "buildah-storage"
    storage.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", "-c", _BUILDAH_LOOP, "buildah-loop", str(lists), str(storage)]
    try:
        return measure(cmd, env=base_env(workdir), workdir=workdir / "buildah")
    finally:
        # vfs layers are plain directories; buildah may leave read-only bits behind.
        shutil.rmtree(storage, ignore_errors=True)


# ---------------------------------------------------------------------------- the registry

_METHOD = re.compile(rb"http\.request\.method=(\w+)")
_URI = re.compile(rb'http\.request\.uri="?([^" ]+)')
_STATUS = re.compile(rb"http\.response\.status=(\d+)")


def request_kind(method: str, uri: str) -> str:
    """A short name for a registry request (``GET manifest``, ``POST mount``, ``ping``...)."""
    path = uri.split("?", 1)[0]
    if path in ("/v2/", "/v2"):
        return "ping"
    if "/manifests/" in path:
        return f"{method} manifest"
    if "/blobs/uploads" in path:
        if method == "POST":
            return "POST mount" if "mount=" in uri else "POST upload"
        return f"{method} upload"
    if "/blobs/" in path:
        return f"{method} blob"
    return f"{method} other"


@dataclass(slots=True)
class RegistryWindow:
    """The registry's requests and CPU time between :meth:`open` and :meth:`close`.

    ``total`` is :meth:`RegistryServer.request_count`'s delta (``response completed`` lines,
    read until they stop changing); ``kinds`` breaks the same lines down by request kind
    and ``statuses`` by HTTP status.
    """

    server: RegistryServer
    start_count: int = 0
    start_offset: int = 0
    start_cpu: float = 0.0
    total: int = 0
    cpu_s: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def open(self) -> RegistryWindow:
        """Mark the start (after the log has settled)."""
        self.start_count = self.server.request_count()
        self.start_offset = self.server.log_path.stat().st_size
        self.start_cpu = process_cpu_s(self.server)
        return self

    def close(self) -> RegistryWindow:
        """Count what happened since :meth:`open`."""
        self.total = self.server.request_count() - self.start_count
        self.cpu_s = process_cpu_s(self.server) - self.start_cpu
        with self.server.log_path.open("rb") as fh:
            fh.seek(self.start_offset)
            data = fh.read()
        for line in data.splitlines():
            if b"response completed" not in line:
                continue
            method, uri, status = _METHOD.search(line), _URI.search(line), _STATUS.search(line)
            kind = request_kind(
                method.group(1).decode() if method else "?",
                uri.group(1).decode(errors="replace") if uri else "",
            )
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            code = status.group(1).decode() if status else "?"
            self.statuses[code] = self.statuses.get(code, 0) + 1
        return self


def process_cpu_s(server: RegistryServer) -> float:
    """The registry process's user + system CPU so far (0 when unknown)."""
    if server.process is None:
        return 0.0
    try:
        fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- checks


@dataclass(slots=True)
class Verified:
    """What :func:`verify` found."""

    ok: int = 0
    errors: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)


async def _verify(
    host: str, repository: str, tags: Sequence[str], expected: dict[str, list[str]]
) -> Verified:
    found = Verified()
    async with Transport(Settings(concurrency=32)) as transport:
        client = RegistryClient(transport)
        limiter = anyio.CapacityLimiter(32)

        async def one(tag: str) -> None:
            ref = reference.parse(f"{host}/{repository}:{tag}")
            async with limiter:
                try:
                    manifest = await client.get_manifest(ref)
                except ManyfestError as exc:
                    found.errors.append(f"{tag}: {exc.one_line()}")
                    return
            if not manifest.is_index:
                found.errors.append(f"{tag}: {manifest.media_type} is not a list")
                return
            children = [d.digest for d in manifest.index().manifests]
            if children != expected[tag]:
                found.errors.append(f"{tag}: children {children} != {expected[tag]}")
                return
            found.ok += 1
            found.digests[tag] = manifest.digest

        async with anyio.create_task_group() as tg:
            for tag in tags:
                tg.start_soon(one, tag)
    return found


def verify(
    host: str, repository: str, tags: Sequence[str], expected: dict[str, list[str]]
) -> Verified:
    """Read every ``repository:tag`` from the registry itself; check it is a list of the
    expected children, in platform order."""
    return anyio.run(_verify, host, repository, tags, expected)


def snapshot_source(dest: Path) -> dict[str, str]:
    """Copy ``src/manyfest`` to ``dest/manyfest`` and use it for the peers.

    Other people may edit ``src/`` while a benchmark runs; the snapshot keeps every run of
    this benchmark on the same code. Returns the git commit and whether ``src/`` differed
    from it.
    """
    shutil.copytree(ROOT / "src" / "manyfest", dest / "manyfest",
                    ignore=shutil.ignore_patterns("__pycache__"))
    SOURCE_PATH[:] = [dest]
    info = {"source": str(dest)}
    for key, cmd in {
        "commit": ["git", "rev-parse", "--short", "HEAD"],
        "src_changes": ["git", "status", "--porcelain", "--", "src"],
    }.items():
        try:
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20,
                                 check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = "?"
        info[key] = out.replace("\n", "; ") if key == "src_changes" else out
    return info


def tool_versions() -> dict[str, str]:
    """Versions of the registry, docker CLI and buildah, for the results file."""
    versions: dict[str, str] = {"python": sys.version.split()[0]}
    for name, cmd in {
        "docker-registry": ["docker-registry", "--version"],
        "docker": ["docker", "--version"],
        "buildah": ["buildah", "--version"],
    }.items():
        if shutil.which(cmd[0]) is None:
            continue
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
            versions[name] = (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            versions[name] = "?"
    return versions
