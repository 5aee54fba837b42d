"""Images with a big layer, generated and uploaded chunk by chunk with plain aiohttp.

The layer is never held whole: its bytes are a deterministic function of a seed, produced
1 MiB at a time (once to compute the digest, once more to upload them as the body of the
upload ``PUT``). Uploads follow the distribution-spec monolithic protocol: ``POST
/v2/<repository>/blobs/uploads/`` then ``PUT <Location>?digest=<digest>`` (end-4a/end-6).

(tests/imagewriter.py may grow a similar helper on another branch; this one is for the
tests and ``benchmarks/big_layer.py``, written against plain aiohttp so that the code under
test does not seed its own inputs.)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp

MIB = 1 << 20
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def layer_chunks(seed: str, size: int) -> Iterator[bytes]:
    """The bytes of a layer of ``size`` bytes, 1 MiB at a time, the same for the same seed."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(MIB, left)
        yield rng.randbytes(n)
        left -= n


def layer_digest(seed: str, size: int) -> str:
    """``sha256:<hex>`` of :func:`layer_chunks` (computed chunk by chunk)."""
    h = hashlib.sha256()
    for chunk in layer_chunks(seed, size):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True, slots=True)
class BigImage:
    """What :func:`push_big_image` pushed: the manifest digest and the big layer."""

    manifest_digest: str
    layer_digest: str
    layer_size: int


async def upload_blob(session: aiohttp.ClientSession, base: str, repository: str, digest: str,
                      body: bytes | AsyncIterator[bytes]) -> None:
    """Upload ``body`` (bytes, or chunks as they come) as blob ``digest``: POST, then PUT."""
    async with session.post(f"{base}/v2/{repository}/blobs/uploads/") as resp:
        assert resp.status == 202, f"POST upload: {resp.status} {await resp.text()}"
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    async with session.put(f"{location}{sep}digest={digest}", data=body,
                           headers={"Content-Type": "application/octet-stream"}) as resp:
        assert resp.status == 201, f"PUT upload: {resp.status} {await resp.text()}"


def _small_layer(seed: str, i: int) -> bytes:
    return random.Random(f"{seed}/small/{i}").randbytes(4096 + 97 * i)


def _config(seed: str, small: list[bytes], big_digest: str) -> bytes:
    """A config of realistic size (about 20 KiB: env, labels, one history entry per layer)."""
    history = [
        {"created": "2026-01-01T00:00:00Z",
         "created_by": f"/bin/sh -c #(nop) RUN step {i} of {seed} " + "x" * 200}
        for i in range(len(small) + 1)
    ]
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [f"VAR_{i}=value-{i}-{seed}" for i in range(40)],
            "Labels": {f"org.example.label{i}": f"{seed}-{i}" * 4 for i in range(40)},
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(b).hexdigest() for b in small]
            + [big_digest],
        },
        "history": history,
    }
    return json.dumps(doc, indent=2).encode()


async def push_big_image(host: str, repository: str, tag: str, seed: str, layer_size: int,
                         *, small_layers: int = 11) -> BigImage:
    """Push to ``host`` (plain HTTP) an image of ``small_layers`` 4-5 KiB layers plus one
    layer of ``layer_size`` bytes (streamed, never held whole) and a ~20 KiB config."""
    big = layer_digest(seed, layer_size)
    small = [_small_layer(seed, i) for i in range(small_layers)]
    config = _config(seed, small, big)

    async def stream() -> AsyncIterator[bytes]:
        for chunk in layer_chunks(seed, layer_size):
            yield chunk

    base = f"http://{host}"
    layers = [("sha256:" + hashlib.sha256(b).hexdigest(), len(b)) for b in small]
    layers.append((big, layer_size))
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await upload_blob(session, base, repository, big, stream())
        for data in small:
            dgst = "sha256:" + hashlib.sha256(data).hexdigest()
            await upload_blob(session, base, repository, dgst, data)
        await upload_blob(session, base, repository, config_digest, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
            "layers": [{"mediaType": DOCKER_LAYER, "size": size, "digest": d}
                       for d, size in layers],
        }, indent=3).encode()
        async with session.put(f"{base}/v2/{repository}/manifests/{tag}", data=manifest,
                               headers={"Content-Type": DOCKER_MANIFEST}) as resp:
            assert resp.status == 201, f"PUT manifest: {resp.status} {await resp.text()}"
    return BigImage("sha256:" + hashlib.sha256(manifest).hexdigest(), big, layer_size)


async def blob_status(host: str, repository: str, digest: str) -> tuple[int, str]:
    """HEAD a blob: (status, Docker-Content-Digest)."""
    async with aiohttp.ClientSession() as session, session.head(
        f"http://{host}/v2/{repository}/blobs/{digest}"
    ) as resp:
        return resp.status, resp.headers.get("Docker-Content-Digest", "")


async def blob_digest(host: str, repository: str, digest: str) -> tuple[str, int]:
    """GET a blob streaming and hash it: (``sha256:<hex>``, size)."""
    h = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
        f"http://{host}/v2/{repository}/blobs/{digest}"
    ) as resp:
        assert resp.status == 200, resp.status
        async for chunk in resp.content.iter_chunked(MIB):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size
