"""Synthetic single-platform images of real shape, pushed to a registry.

Used by the README demo, the tests and the benchmarks to seed a registry. An image is what a
Dockerfile build pushes:

* a config of real shape (``created``, ``author``, ``config`` with a dozen ``Env`` entries,
  ``Entrypoint``, ``Cmd``, ``WorkingDir``, ``ExposedPorts``, dozens of
  ``org.opencontainers.image.*`` and vendor ``Labels``; ``history`` with one entry per layer
  plus ``empty_layer`` entries carrying long ``created_by`` shell lines; ``rootfs.diff_ids``
  of the layers), whose ``architecture``/``os``/``variant``/``os.version``/``os.features``
  give the platform. Its size is controllable (:attr:`Shape.config_bytes`, reached with
  more history steps and labels, as long-lived images accumulate); by default 6-10 KiB,
  varying with the seed;
* 10-40 layers (default 12), each a real gzip'd tar with distinct content. The lower
  :attr:`Shape.shared_layers` (default 9: OS, runtime, dependencies) are the base image's:
  the same bytes for every image of one platform and base (as the tags of one image share
  them); the others (default 3: the application's own) are unique to the seed;
* optionally big layers (:attr:`Shape.big_layers`, sizes in bytes) generated
  deterministically chunk by chunk, never held whole: their digests are computed while
  generating, and they are uploaded streaming by :func:`upload_streamed` (plain aiohttp).

Everything is deterministic: the same (platform, seed, shape) always gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import random
import tarfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urljoin

import aiohttp
import anyio
import anyio.lowlevel

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport

KIB = 1024
MIB = 1024 * 1024
_CHUNK = 256 * KIB
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: base images are older than the seed's layers


@dataclass(frozen=True, slots=True)
class Shape:
    """The shape of a synthetic image.

    Attributes:
        layers: small layers (gzip'd tars of a few KiB each), 1 or more; real images have
            10-40.
        shared_layers: how many of the lowest layers are the base image's (same bytes for
            every image of the platform and ``base``); at most ``layers``.
        config_bytes: size of the config JSON to reach, in bytes (it ends within a few
            hundred bytes above); None: 6-10 KiB, depending on the seed.
        big_layers: sizes in bytes of extra layers on top, generated and uploaded chunk by
            chunk (the gzip'd blob is a few hundred bytes larger than the size given).
        base: names the base image; images of different bases share no layer.
    """

    layers: int = 12
    shared_layers: int = 9
    config_bytes: int | None = None
    big_layers: tuple[int, ...] = ()
    base: str = "debian-bookworm"

    def __post_init__(self) -> None:
        if self.layers < 1 or not 0 <= self.shared_layers <= self.layers:
            raise ValueError(f"bad shape: {self.layers} layers, {self.shared_layers} shared")


DEFAULT_SHAPE = Shape()


@dataclass(frozen=True, slots=True)
class StreamedLayer:
    """A big layer: a gzip'd tar of one file of ``content_bytes`` pseudo-random bytes.

    Attributes:
        key: what the content is generated from.
        content_bytes: size of the file inside the tar.
        size: size of the gzip'd blob, in bytes.
        digest: sha256 digest of the blob.
        diff_id: sha256 digest of the uncompressed tar.
    """

    key: str
    content_bytes: int
    size: int
    digest: str
    diff_id: str

    def chunks(self) -> Iterator[bytes]:
        """The blob's bytes, generated chunk by chunk (at most ~256 KiB each)."""
        return _gzip_chunks(_tar_chunks(self.key, self.content_bytes))

    @classmethod
    def generate(cls, key: str, content_bytes: int) -> StreamedLayer:
        """Generate the layer once to learn its size and digests (nothing is kept)."""
        blob_hash, tar_hash = hashlib.sha256(), hashlib.sha256()
        size = 0

        def hashed_tar() -> Iterator[bytes]:
            for chunk in _tar_chunks(key, content_bytes):
                tar_hash.update(chunk)
                yield chunk

        for chunk in _gzip_chunks(hashed_tar()):
            blob_hash.update(chunk)
            size += len(chunk)
        return cls(key, content_bytes, size, "sha256:" + blob_hash.hexdigest(),
                   "sha256:" + tar_hash.hexdigest())


@dataclass(frozen=True, slots=True)
class Image:
    """A built image.

    Attributes:
        manifest: its manifest (exact bytes).
        blobs: ``(digest, bytes)`` of the config first, then of each small layer, bottom up.
        streamed: the big layers (on top of the small ones), generated when uploaded.
    """

    manifest: Manifest
    blobs: tuple[tuple[str, bytes], ...]
    streamed: tuple[StreamedLayer, ...] = ()

    @property
    def config(self) -> bytes:
        """The config JSON bytes."""
        return self.blobs[0][1]

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Every blob the manifest references: config, then layers bottom up."""
        return (*(d for d, _ in self.blobs), *(s.digest for s in self.streamed))

    @property
    def blob_sizes(self) -> dict[str, int]:
        """``{digest: size in bytes}`` of every blob."""
        out = {d: len(data) for d, data in self.blobs}
        out.update({s.digest: s.size for s in self.streamed})
        return out


def distinct_blobs(images: Iterable[Image]) -> set[str]:
    """The digests of every blob of ``images``, each once (what one target repository needs)."""
    return {d for image in images for d in image.blob_digests}


# ------------------------------------------------------------------------- layers


def _platform_key(platform: Platform) -> str:
    return "-".join(p for p in (platform.os, platform.architecture, platform.variant,
                                platform.os_version) if p)


def _tar_gz(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A gzip'd tar of ``files`` (mtime 0); returns (blob, diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        dirs: set[str] = set()
        for name, data in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=6, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


@lru_cache(maxsize=4096)
def _layer(key: str) -> tuple[bytes, str]:
    """A small layer generated from ``key``: a few files of text, 3-12 KiB before gzip."""
    rng = random.Random(key)
    slug = hashlib.sha256(key.encode()).hexdigest()[:12]
    pkg = rng.choice(_PACKAGES)
    files = [(f"usr/share/doc/{pkg}/origin", f"{key}\n".encode())]
    for j in range(rng.randint(2, 5)):
        lines = [f"{pkg}/{slug}/file-{j}-{k} sha256:{rng.randbytes(32).hex()}"
                 for k in range(rng.randint(15, 50))]
        files.append((f"usr/lib/{pkg}/{slug}/manifest-{j}.txt", "\n".join(lines).encode()))
    return _tar_gz(files)


def _tar_chunks(key: str, content_bytes: int) -> Iterator[bytes]:
    """A tar of one file of ``content_bytes`` pseudo-random bytes, chunk by chunk."""
    rng = random.Random(key)
    info = tarfile.TarInfo(f"opt/data/{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin")
    info.size, info.mode, info.mtime = content_bytes, 0o644, 0
    yield info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    left = content_bytes
    while left:
        n = min(_CHUNK, left)
        yield rng.randbytes(n)
        left -= n
    yield b"\0" * ((-content_bytes) % 512 + 1024)  # pad the file; two end-of-archive blocks


def _gzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """gzip (RFC 1952; mtime 0) of a stream of chunks, chunk by chunk."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


@lru_cache(maxsize=256)
def _streamed(key: str, content_bytes: int) -> StreamedLayer:
    return StreamedLayer.generate(key, content_bytes)


# ------------------------------------------------------------------------- the config

_PACKAGES = ("ca-certificates", "curl", "libssl3", "tzdata", "netbase", "libffi8", "zlib1g",
             "libsqlite3-0", "libreadline8", "libbz2-1.0", "liblzma5", "libgdbm6", "libexpat1",
             "libuuid1", "libncursesw6", "libxml2", "libyaml-0-2", "git", "openssh-client",
             "gnupg", "dirmngr", "procps", "wget", "xz-utils", "unzip", "libpq5", "libjpeg62")
_VERBS = ("apt-get", "pip", "npm", "go", "make", "cargo")


def _long_run_line(rng: random.Random, what: str) -> str:
    """A ``RUN`` step as buildkit records it: a long ``set -eux`` shell line."""
    pkgs = " ".join(rng.sample(_PACKAGES, rng.randint(4, 9)))
    sha = rng.randbytes(32).hex()
    verb = rng.choice(_VERBS)
    return (
        f"RUN /bin/sh -c set -eux; savedAptMark=\"$(apt-mark showmanual)\"; apt-get update; "
        f"apt-get install -y --no-install-recommends {pkgs}; "
        f"wget -O {what}.tar.xz \"https://downloads.example.org/{what}/{what}-"
        f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}.tar.xz\"; "
        f"echo \"{sha} *{what}.tar.xz\" | sha256sum -c -; mkdir -p /usr/src/{what}; "
        f"tar --extract --directory /usr/src/{what} --strip-components=1 --file {what}.tar.xz; "
        f"rm {what}.tar.xz; cd /usr/src/{what}; {verb} install; apt-mark auto '.*' > /dev/null; "
        f"apt-mark manual $savedAptMark; apt-get purge -y --auto-remove "
        f"-o APT::AutoRemove::RecommendsImportant=false; rm -rf /var/lib/apt/lists/* "
        f"# buildkit"
    )


def _short_run_line(rng: random.Random, i: int) -> str:
    """A short ``RUN`` step."""
    pkg = rng.choice(_PACKAGES)
    return rng.choice((
        f"RUN /bin/sh -c groupadd --system --gid 10{i:02d} app && useradd --system --uid "
        f"10{i:02d} --gid app --home-dir /srv/app app # buildkit",
        f"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends {pkg} "
        f"&& rm -rf /var/lib/apt/lists/* # buildkit",
        f"RUN /bin/sh -c pip install --no-cache-dir 'component{i}=={rng.randint(1, 9)}."
        f"{rng.randint(0, 30)}' # buildkit",
        f"RUN /bin/sh -c mkdir -p /srv/app/var/{i} && chown -R app:app /srv/app # buildkit",
    ))


def _created(rng: random.Random, base: int, step: int) -> str:
    t = base + step * 37 + rng.randint(0, 30)
    return _iso(t)


def _iso(t: int) -> str:
    when = dt.datetime.fromtimestamp(t, tz=dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(t * 7919) % 1_000_000_000:09d}Z"


def _config(platform: Platform, seed: str, shape: Shape, diff_ids: list[str]) -> bytes:
    """A real-shape image config JSON (compact, as buildkit writes it)."""
    rng = random.Random(f"config {seed} {_platform_key(platform)}")
    target = shape.config_bytes
    if target is None:
        target = 6 * KIB + rng.randint(0, 4 * KIB)
    base_t = _EPOCH + rng.randint(0, 86400 * 30)
    own_t = base_t + 86400 * rng.randint(30, 300)
    version = f"{rng.randint(1, 5)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
    revision = hashlib.sha1(seed.encode()).hexdigest()
    labels: dict[str, str] = {
        "maintainer": "Platform Team <platform@example.com>",
        "org.opencontainers.image.authors": "Platform Team <platform@example.com>",
        "org.opencontainers.image.base.name": f"docker.io/library/{shape.base}:latest",
        "org.opencontainers.image.base.digest":
            "sha256:" + hashlib.sha256(shape.base.encode()).hexdigest(),
        "org.opencontainers.image.created": _iso(own_t),
        "org.opencontainers.image.description":
            f"Synthetic application image {seed} built on {shape.base} for {platform}",
        "org.opencontainers.image.documentation": "https://docs.example.com/app/",
        "org.opencontainers.image.licenses": "Apache-2.0 AND MIT AND BSD-3-Clause",
        "org.opencontainers.image.ref.name": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": "https://git.example.com/platform/app",
        "org.opencontainers.image.title": "app",
        "org.opencontainers.image.url": "https://example.com/app",
        "org.opencontainers.image.vendor": "Example Corp.",
        "org.opencontainers.image.version": version,
        "com.example.build.pipeline": f"https://ci.example.com/pipelines/{rng.randint(1, 10**6)}",
        "com.example.build.job": str(rng.randint(1, 10**8)),
        "com.example.build.runner": f"runner-{rng.randbytes(4).hex()}",
        "com.example.build.branch": "main",
        "com.example.build.date": _iso(own_t),
        "com.example.team": "platform",
        "com.example.cost-center": f"cc-{rng.randint(1000, 9999)}",
        "com.example.security.scan": "passed",
        "com.example.security.scanner": "scanner 2.41.0",
        "com.example.sbom": f"https://sbom.example.com/app/{revision}.spdx.json",
        "io.k8s.description": "Example application image for the platform",
        "io.k8s.display-name": "app",
        "io.openshift.tags": "app,platform,example",
        "io.artifacthub.package.readme-url": "https://example.com/app/README.md",
        "vendor": "Example Corp.",
        "version": version,
        "release": str(rng.randint(1, 40)),
        "summary": "Example application",
    }
    env = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        "LC_ALL=C.UTF-8",
        "TZ=Etc/UTC",
        f"GPG_KEY={rng.randbytes(20).hex().upper()}",
        f"PYTHON_VERSION=3.{rng.randint(9, 13)}.{rng.randint(0, 9)}",
        f"PYTHON_SHA256={rng.randbytes(32).hex()}",
        "PIP_NO_CACHE_DIR=1",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        "PYTHONUNBUFFERED=1",
        "APP_HOME=/srv/app",
        "APP_USER=app",
        f"APP_VERSION={version}",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ]
    history: list[dict[str, object]] = []
    step = 0

    def add(line: str, empty: bool, own: bool, comment: str = "") -> None:
        nonlocal step
        entry: dict[str, object] = {
            "created": _created(rng, own_t if own else base_t, step),
            "created_by": line,
        }
        if comment:
            entry["comment"] = comment
        if empty:
            entry["empty_layer"] = True
        history.append(entry)
        step += 1

    for i, diff_id in enumerate(diff_ids):
        own = i >= shape.shared_layers
        if i == 0:
            add(f"/bin/sh -c #(nop) ADD file:{diff_id[7:]} in / ", False, own)
            add("/bin/sh -c #(nop)  CMD [\"bash\"]", True, own)
            continue
        if i == shape.shared_layers:
            add(f"ARG TARGETPLATFORM={platform}", True, True, "buildkit.dockerfile.v0")
            add(f"ENV {env[4]}", True, True, "buildkit.dockerfile.v0")
        if rng.random() < 0.3:
            add(f"ENV {rng.choice(env)}", True, own, "buildkit.dockerfile.v0")
        if own and rng.random() < 0.4:
            add(f"COPY --chown=app:app ./src/part-{i} /srv/app/part-{i} # buildkit", False, own,
                "buildkit.dockerfile.v0")
        elif rng.random() < 0.15:
            add(_long_run_line(rng, f"component{i}"), False, own, "buildkit.dockerfile.v0")
        else:
            add(_short_run_line(rng, i), False, own, "buildkit.dockerfile.v0")
    tail = [
        ("WORKDIR /srv/app", True),
        ("EXPOSE map[8080/tcp:{} 9090/tcp:{}]", True),
        ("USER app", True),
        ("ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]", True),
        ("CMD [\"app\", \"serve\", \"--config\", \"/etc/app/config.yaml\"]", True),
    ]
    for line, empty in tail:
        add(line, empty, True, "buildkit.dockerfile.v0")
    doc: dict[str, object] = {"architecture": platform.architecture}
    if platform.variant:
        doc["variant"] = platform.variant
    doc["author"] = "Platform Team <platform@example.com>"
    doc["config"] = {
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}, "9090/tcp": {}},
        "Env": env,
        "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
        "Cmd": ["app", "serve", "--config", "/etc/app/config.yaml"],
        "WorkingDir": "/srv/app",
        "Labels": labels,
        "StopSignal": "SIGTERM",
    }
    doc["created"] = _iso(own_t + 3600)
    doc["history"] = history
    doc["os"] = platform.os
    if platform.os_version:
        doc["os.version"] = platform.os_version
    if platform.os_features:
        doc["os.features"] = list(platform.os_features)
    doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}

    def encode() -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    raw = encode()
    n = 0
    while len(raw) < target:
        # Long-lived images accumulate LABEL steps (one history entry and one label each)
        # and long RUN lines; ~450 bytes per round.
        missing = target - len(raw)
        for _ in range(max(1, missing // 450)):
            name = f"com.example.release.{n:04d}.notes"
            value = f"https://releases.example.com/app/{version}/notes/{n}#{rng.randbytes(8).hex()}"
            labels[name] = value
            entry = {"created": _created(rng, own_t, step + n), "created_by":
                     f"LABEL {name}={value}", "comment": "buildkit.dockerfile.v0",
                     "empty_layer": True}
            history.insert(len(history) - len(tail), entry)
            n += 1
        raw = encode()
    return raw


# ------------------------------------------------------------------------- images


def build_image(platform: Platform, seed: str, *, oci: bool = False,
                shape: Shape = DEFAULT_SHAPE) -> Image:
    """Build an image for ``platform``; its own layers and config depend on ``seed``.

    Args:
        platform: written into the config.
        seed: any text; different seeds give different top layers, configs and digests.
        oci: OCI media types instead of Docker schema2.
        shape: layers, sharing, config size, big layers (see :class:`Shape`).

    Returns the image; building it again with the same arguments gives the same bytes.
    """
    pkey = _platform_key(platform)
    small: list[tuple[str, bytes]] = []
    diff_ids: list[str] = []
    for i in range(shape.layers):
        key = (f"base {shape.base} {pkey} {i}" if i < shape.shared_layers
               else f"own {seed} {pkey} {i}")
        blob, diff_id = _layer(key)
        small.append(("sha256:" + hashlib.sha256(blob).hexdigest(), blob))
        diff_ids.append(diff_id)
    streamed = tuple(_streamed(f"big {seed} {pkey} {j}", n)
                     for j, n in enumerate(shape.big_layers))
    diff_ids += [s.diff_id for s in streamed]
    config = _config(platform, seed, shape, diff_ids)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    layer_type = mediatypes.OCI_LAYER if oci else mediatypes.DOCKER_LAYER
    layers = [{"mediaType": layer_type, "size": len(b), "digest": d} for d, b in small]
    layers += [{"mediaType": layer_type, "size": s.size, "digest": s.digest} for s in streamed]
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST if oci else mediatypes.DOCKER_MANIFEST,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG if oci else mediatypes.DOCKER_CONFIG,
            "size": len(config),
            "digest": config_digest,
        },
        "layers": layers,
    }
    raw = json.dumps(manifest_doc, indent=3).encode()
    return Image(Manifest.from_bytes(raw), ((config_digest, config), *small), streamed)


# ------------------------------------------------------------------------- pushing


@dataclass(slots=True)
class BlobOnce:
    """Uploads of one seeding run, each ``(repository, digest)`` done once.

    Images of one platform share their base layers: the first image to need a blob in a
    repository uploads it, the others wait for that upload.
    """

    _done: dict[tuple[str, str], anyio.Event] = field(default_factory=dict)

    async def run(self, key: tuple[str, str], work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` for ``key`` unless another task did or is doing it (then wait)."""
        event = self._done.get(key)
        if event is not None:
            await event.wait()
            return
        event = self._done[key] = anyio.Event()
        try:
            await work()
        finally:
            event.set()


async def upload_streamed(session: aiohttp.ClientSession, ref: Reference,
                          layer: StreamedLayer, *, scheme: str = "http") -> None:
    """Upload a big layer into ``ref``'s repository, streaming (never held whole).

    Plain aiohttp, no auth (test registries): ``POST /v2/<repository>/blobs/uploads/``
    (distribution-spec end-4a, 202 + ``Location``), then ``PUT <Location>?digest=<digest>``
    with the generated chunks as body and its ``Content-Length`` (end-6).

    Raises:
        RuntimeError: the registry answered something else than 202, then 201.
    """
    base = f"{scheme}://{ref.registry}"
    async with session.post(f"{base}/v2/{ref.repository}/blobs/uploads/") as resp:
        body = await resp.read()
        location = resp.headers.get("Location", "")
        if resp.status != 202 or not location:
            raise RuntimeError(f"start upload to {ref.name}: {resp.status} {body[:200]!r}")
    url = urljoin(base + "/", location)
    url += ("&" if "?" in url else "?") + "digest=" + layer.digest

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in layer.chunks():
            yield chunk
            await anyio.lowlevel.checkpoint()

    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(layer.size)}
    async with session.put(url, data=chunks(), headers=headers) as resp:
        body = await resp.read()
        if resp.status != 201:
            raise RuntimeError(f"upload {layer.digest} to {ref.name}: {resp.status} "
                               f"{body[:200]!r}")


async def push_image(
    client: RegistryClient,
    ref: Reference,
    image: Image,
    *,
    check_blobs: bool = True,
    once: BlobOnce | None = None,
    session: aiohttp.ClientSession | None = None,
) -> str:
    """Upload the image's blobs (skipping present ones) and PUT its manifest at ``ref``.

    Args:
        client: the registry client (small blobs and the manifest go through it).
        ref: where to push (tag or digest).
        image: what to push.
        check_blobs: HEAD each blob first and skip the upload when present; False uploads
            every blob without asking (fewer requests when seeding an empty repository).
        once: shares uploads between the images of one run (see :class:`BlobOnce`).
        session: aiohttp session for the big layers (:func:`upload_streamed`, plain HTTP);
            one is opened for this call when needed and not given.

    Returns the manifest digest.
    """
    once = once or BlobOnce()

    async def small(dgst: str, data: bytes) -> None:
        if check_blobs and await client.blob_exists(ref, dgst):
            return
        await client.upload_blob(ref, data, dgst)

    async def big(layer: StreamedLayer, http: aiohttp.ClientSession) -> None:
        if check_blobs and await client.blob_exists(ref, layer.digest):
            return
        await upload_streamed(http, ref, layer)

    async def blobs(http: aiohttp.ClientSession | None) -> None:
        async with anyio.create_task_group() as tg:
            for dgst, data in image.blobs:
                tg.start_soon(once.run, (ref.name, dgst), lambda d=dgst, b=data: small(d, b))
            for layer in image.streamed:
                assert http is not None
                tg.start_soon(once.run, (ref.name, layer.digest),
                              lambda s=layer, h=http: big(s, h))

    if image.streamed and session is None:
        async with aiohttp.ClientSession(auto_decompress=False) as own:
            await blobs(own)
    else:
        await blobs(session)
    await client.put_manifest(ref, image.manifest)
    return image.manifest.digest


# ------------------------------------------------------------------------- attestations


@dataclass(frozen=True, slots=True)
class AttestedIndex:
    """A buildx-style one-platform index: the image, then its attestation manifest."""

    index: Manifest
    image: Image
    attestation: Image


def build_attestation(image: Image, seed: str) -> Image:
    """An in-toto attestation manifest for ``image``, as buildx attaches (provenance)."""
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": seed, "digest": {"sha256": image.manifest.digest[7:]}}],
            "predicate": {"builder": {"id": "manyfest-tests"}},
        },
        separators=(",", ":"),
    ).encode()
    config = b'{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers",' + (
        b'"diff_ids":["sha256:' + hashlib.sha256(statement).hexdigest().encode() + b'"]}}'
    )
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    layer_digest = "sha256:" + hashlib.sha256(statement).hexdigest()
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": config_digest,
                   "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.in-toto+json",
                "digest": layer_digest,
                "size": len(statement),
                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
            }
        ],
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return Image(Manifest.from_bytes(raw), ((config_digest, config), (layer_digest, statement)))


def build_attested_index(platform: Platform, seed: str, *,
                         shape: Shape = DEFAULT_SHAPE) -> AttestedIndex:
    """What buildx (provenance on) or docker's containerd store pushes for one platform."""
    image = build_image(platform, seed, oci=True, shape=shape)
    attestation = build_attestation(image, seed)
    plat: dict[str, object] = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        plat["variant"] = platform.variant
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [
            {
                "mediaType": image.manifest.media_type,
                "digest": image.manifest.digest,
                "size": image.manifest.size,
                "platform": plat,
            },
            {
                "mediaType": attestation.manifest.media_type,
                "digest": attestation.manifest.digest,
                "size": attestation.manifest.size,
                "annotations": {
                    "vnd.docker.reference.digest": image.manifest.digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            },
        ],
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return AttestedIndex(Manifest.from_bytes(raw), image, attestation)


async def push_attested_index(client: RegistryClient, ref: Reference, item: AttestedIndex) -> str:
    """Push both manifests by digest, then the index at ``ref``; returns the index digest."""
    for image in (item.image, item.attestation):
        await push_image(client, ref.with_digest(image.manifest.digest), image)
    await client.put_manifest(ref, item.index)
    return item.index.digest


# ------------------------------------------------------------------------- many images


def build_images(
    names: Iterable[tuple[str, Platform, str]], *, oci: bool = False,
    shape: Shape = DEFAULT_SHAPE,
) -> dict[str, Image]:
    """Build ``(repository:tag, platform, seed)`` images → ``{repository:tag: Image}``."""
    return {name: build_image(p, seed, oci=oci, shape=shape) for name, p, seed in names}


async def push_built(
    host: str,
    images: Mapping[str, Image],
    *,
    check_blobs: bool = True,
    settings: Settings | None = None,
    max_in_flight: int = 64,
) -> dict[str, str]:
    """Push built images concurrently, over one transport (and one aiohttp session for big
    layers); each blob is uploaded once per repository.

    Args:
        host: the registry (host:port).
        images: ``{repository:tag: Image}``.
        check_blobs: see :func:`push_image`.
        settings: transport settings (default: 32 requests in flight).
        max_in_flight: images being pushed at once.

    Returns:
        ``{repository:tag: manifest digest}``.
    """
    out: dict[str, str] = {}
    once = BlobOnce()
    need_session = any(image.streamed for image in images.values())
    async with Transport(settings or Settings(concurrency=32)) as transport:
        client = RegistryClient(transport)
        limiter = anyio.CapacityLimiter(max_in_flight)
        session = aiohttp.ClientSession(auto_decompress=False) if need_session else None
        try:
            async def one(name: str, image: Image) -> None:
                async with limiter:
                    ref = reference.parse(f"{host}/{name}")
                    out[name] = await push_image(client, ref, image, check_blobs=check_blobs,
                                                 once=once, session=session)

            async with anyio.create_task_group() as tg:
                for name, image in images.items():
                    tg.start_soon(one, name, image)
        finally:
            if session is not None:
                await session.close()
    return out


async def push_images(
    host: str,
    names: Iterable[tuple[str, Platform, str]],
    *,
    oci: bool = False,
    check_blobs: bool = True,
    settings: Settings | None = None,
    max_in_flight: int = 64,
    shape: Shape = DEFAULT_SHAPE,
) -> dict[str, str]:
    """Build and push synthetic images concurrently (see :func:`push_built`).

    Args:
        host: the registry (host:port).
        names: ``(repository:tag, platform, seed)`` for each image.
        oci: OCI media types instead of Docker schema2.
        check_blobs: see :func:`push_image`.
        settings: transport settings (default: 32 requests in flight).
        max_in_flight: images being pushed at once.
        shape: the images' shape (:class:`Shape`).

    Returns:
        ``{repository:tag: manifest digest}``.
    """
    images = build_images(names, oci=oci, shape=shape)
    return await push_built(host, images, check_blobs=check_blobs, settings=settings,
                            max_in_flight=max_in_flight)
