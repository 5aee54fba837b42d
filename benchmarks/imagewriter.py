"""Synthetic single-platform images: real gzip tar layers, real configs, pushed to a registry.

Used by the README demo, the tests and the benchmarks to seed a registry. Each image has one
layer (a gzip'd tar holding one small file whose content names the image) and a config whose
``architecture``/``os``/``variant``/``os.version``/``os.features`` give the platform, so
``docker manifest create`` and manyfest both read a real platform from it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

import anyio

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport


@dataclass(frozen=True, slots=True)
class Image:
    """A built image: its manifest and blobs (config first, then the layer)."""

    manifest: Manifest
    blobs: tuple[tuple[str, bytes], ...]


def build_image(platform: Platform, seed: str, *, oci: bool = False) -> Image:
    """Build an image for ``platform`` whose layer content depends on ``seed``.

    Args:
        platform: written into the config.
        seed: any text; different seeds give different layers, configs and digests.
        oci: OCI media types instead of Docker schema2.
    """
    payload = f"manyfest synthetic image {seed} {platform}\n".encode()
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc/manyfest-image")
        info.size = len(payload)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = tar_buf.getvalue()
    gz_buf = io.BytesIO()
    with gzip.GzipFile(fileobj=gz_buf, mode="wb", mtime=0) as gz:
        gz.write(tar_bytes)
    layer = gz_buf.getvalue()
    config_doc: dict[str, object] = {
        "architecture": platform.architecture,
        "os": platform.os,
    }
    if platform.variant:
        config_doc["variant"] = platform.variant
    if platform.os_version:
        config_doc["os.version"] = platform.os_version
    if platform.os_features:
        config_doc["os.features"] = list(platform.os_features)
    config_doc["config"] = {"Cmd": ["/bin/sh"]}
    config_doc["rootfs"] = {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()],
    }
    config = json.dumps(config_doc, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest_type = mediatypes.OCI_MANIFEST if oci else mediatypes.DOCKER_MANIFEST
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG if oci else mediatypes.DOCKER_CONFIG,
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [
            {
                "mediaType": mediatypes.OCI_LAYER if oci else mediatypes.DOCKER_LAYER,
                "size": len(layer),
                "digest": layer_digest,
            }
        ],
    }
    raw = json.dumps(manifest_doc, indent=3).encode()
    return Image(
        Manifest.from_bytes(raw), ((config_digest, config), (layer_digest, layer))
    )


async def push_image(
    client: RegistryClient, ref: Reference, image: Image, *, check_blobs: bool = True
) -> str:
    """Upload the image's blobs (skipping present ones) and PUT its manifest at ``ref``.

    Args:
        client: the registry client.
        ref: where to push (tag or digest).
        image: what to push.
        check_blobs: HEAD each blob first and skip the upload when present; False uploads
            every blob without asking (fewer requests when seeding an empty repository).

    Returns the manifest digest.
    """
    async with anyio.create_task_group() as tg:
        for dgst, data in image.blobs:
            if check_blobs:
                tg.start_soon(_ensure_blob, client, ref, dgst, data)
            else:
                tg.start_soon(client.upload_blob, ref, data, dgst)
    await client.put_manifest(ref, image.manifest)
    return image.manifest.digest


async def _ensure_blob(client: RegistryClient, ref: Reference, dgst: str, data: bytes) -> None:
    if not await client.blob_exists(ref, dgst):
        await client.upload_blob(ref, data, dgst)


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


def build_attested_index(platform: Platform, seed: str) -> AttestedIndex:
    """What buildx (provenance on) or docker's containerd store pushes for one platform."""
    image = build_image(platform, seed, oci=True)
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


async def push_images(
    host: str,
    names: Iterable[tuple[str, Platform, str]],
    *,
    oci: bool = False,
    check_blobs: bool = True,
    settings: Settings | None = None,
    max_in_flight: int = 64,
) -> dict[str, str]:
    """Build and push synthetic images concurrently, over one transport.

    Args:
        host: the registry (host:port).
        names: ``(repository:tag, platform, seed)`` for each image.
        oci: OCI media types instead of Docker schema2.
        check_blobs: see :func:`push_image`.
        settings: transport settings (default: 32 requests in flight).
        max_in_flight: images being pushed at once.

    Returns:
        ``{repository:tag: manifest digest}``.
    """
    out: dict[str, str] = {}
    async with Transport(settings or Settings(concurrency=32)) as transport:
        client = RegistryClient(transport)
        limiter = anyio.CapacityLimiter(max_in_flight)

        async def one(name: str, platform: Platform, seed: str) -> None:
            async with limiter:
                image = build_image(platform, seed, oci=oci)
                ref = reference.parse(f"{host}/{name}")
                out[name] = await push_image(client, ref, image, check_blobs=check_blobs)

        async with anyio.create_task_group() as tg:
            for name, platform, seed in names:
                tg.start_soon(one, name, platform, seed)
    return out
