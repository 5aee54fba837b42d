"""Signatures, attestations and SBOMs attached to images as the tools that write them do.

* cosign's tag schema: ``sha256-<hex>.sig`` holds an OCI image manifest with one layer per
  signature, each layer a simple-signing payload
  (``application/vnd.dev.cosign.simplesigning.v1+json``: ``critical.identity.docker-reference``,
  ``critical.image.docker-manifest-digest``, ``critical.type``) whose descriptor carries the
  base64 signature in the ``dev.cosignproject.cosign/signature`` annotation (and, keyless,
  the certificate and the Rekor bundle); the config is an OCI config listing the payloads'
  digests as ``rootfs.diff_ids``. ``.att`` holds DSSE envelopes
  (``application/vnd.dsse.envelope.v1+json``, annotation ``predicateType``), ``.sbom`` the
  SBOM document itself;
* OCI 1.1 referrers: an image manifest with ``artifactType``, the empty config
  (``application/vnd.oci.empty.v1+json``, ``{}``), the payload as its layer and ``subject``
  naming the manifest it describes; listed by the registry's referrers API, or by the client
  in the ``sha256-<hex>`` fallback tag's index (read, append, write: what a client must do on
  a registry without the API).

Sizes are real: signature bundles of a few KiB, SBOMs of 40-80 KiB, provenance of ~20 KiB.
Everything is deterministic from the seed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from dataclasses import dataclass

from manyfest import mediatypes
from manyfest.content import Manifest
from manyfest.errors import NotFoundError
from manyfest.reference import Reference
from manyfest.registry import RegistryClient

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
DSSE = "application/vnd.dsse.envelope.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"{}").hexdigest()


@dataclass(frozen=True, slots=True)
class Artifact:
    """A manifest to attach and its blobs (config first)."""

    manifest: Manifest
    blobs: tuple[tuple[str, bytes], ...]

    @property
    def digest(self) -> str:
        """The manifest's digest."""
        return self.manifest.digest


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _go_json(doc: object) -> bytes:
    """Compact JSON, as Go's encoding/json writes it (what cosign and oras push)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _pem(rng: random.Random) -> str:
    body = _b64(rng, 700)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _cosign_config(payloads: list[bytes]) -> bytes:
    return _go_json({
        "architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": [_sha(p) for p in payloads]},
        "config": {},
    })


def _image_manifest(config: bytes, config_type: str, layers: list[dict[str, object]],
                    blobs: list[tuple[str, bytes]], **extra: object) -> Artifact:
    doc: dict[str, object] = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST}
    if "artifactType" in extra:
        doc["artifactType"] = extra.pop("artifactType")
    doc["config"] = {"mediaType": config_type, "size": len(config), "digest": _sha(config)}
    doc["layers"] = layers
    doc.update(extra)
    raw = _go_json(doc)
    return Artifact(Manifest.from_bytes(raw), ((_sha(config), config), *blobs))


def cosign_signature(name: str, subject: str, seed: str, signatures: int = 1) -> Artifact:
    """The manifest cosign writes at ``sha256-<hex>.sig`` for ``subject`` (a manifest
    digest of the repository ``name``): one simple-signing layer per signature, keyless
    (certificate and Rekor bundle annotations)."""
    rng = random.Random(f"sig {seed} {subject}")
    payloads: list[bytes] = []
    layers: list[dict[str, object]] = []
    for i in range(signatures):
        payload = _go_json({
            "critical": {"identity": {"docker-reference": name},
                         "image": {"docker-manifest-digest": subject},
                         "type": "cosign container image signature"},
            "optional": {"seed": seed, "n": i},
        })
        payloads.append(payload)
        bundle = _go_json({"SignedEntryTimestamp": _b64(rng, 70), "Payload": {
            "body": _b64(rng, 2400), "integratedTime": 1_735_689_600 + i,
            "logIndex": rng.randrange(10**8), "logID": rng.randbytes(32).hex()}})
        layers.append({
            "mediaType": SIMPLESIGNING, "size": len(payload), "digest": _sha(payload),
            "annotations": {
                BUNDLE_ANNOTATION: bundle.decode(),
                CERTIFICATE_ANNOTATION: _pem(rng),
                SIGNATURE_ANNOTATION: _b64(rng, 71),
            },
        })
    config = _cosign_config(payloads)
    return _image_manifest(config, mediatypes.OCI_CONFIG, layers,
                           [(_sha(p), p) for p in payloads])


def _provenance(subject: str, seed: str) -> bytes:
    rng = random.Random(f"prov {seed}")
    materials = [{"uri": f"pkg:deb/debian/lib{rng.randrange(10**6)}@1.{i}",
                  "digest": {"sha256": rng.randbytes(32).hex()}} for i in range(120)]
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "image", "digest": {"sha256": subject.split(":", 1)[1]}}],
        "predicate": {"builder": {"id": "https://example.test/builder"},
                      "buildType": "https://example.test/build", "materials": materials},
    }
    return _go_json(statement)


def cosign_attestation(subject: str, seed: str) -> Artifact:
    """The manifest cosign writes at ``sha256-<hex>.att``: a DSSE envelope of an in-toto
    SLSA provenance statement (~20 KiB) as its layer."""
    rng = random.Random(f"att {seed}")
    envelope = _go_json({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(_provenance(subject, seed)).decode(),
        "signatures": [{"keyid": "", "sig": _b64(rng, 71)}],
    })
    layers: list[dict[str, object]] = [{
        "mediaType": DSSE, "size": len(envelope), "digest": _sha(envelope),
        "annotations": {"predicateType": "https://slsa.dev/provenance/v0.2"},
    }]
    config = _cosign_config([envelope])
    return _image_manifest(config, mediatypes.OCI_CONFIG, layers, [(_sha(envelope), envelope)])


def sbom_document(seed: str, packages: int = 220) -> bytes:
    """An SPDX 2.3 JSON SBOM of ``packages`` packages (~50 KiB for the default)."""
    rng = random.Random(f"sbom {seed}")
    pkgs = [{
        "SPDXID": f"SPDXRef-Package-{i}", "name": f"lib{rng.randrange(10**6)}",
        "versionInfo": f"{rng.randrange(10)}.{rng.randrange(40)}.{rng.randrange(9)}",
        "downloadLocation": "NOASSERTION", "licenseConcluded": "NOASSERTION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": rng.randbytes(32).hex()}],
    } for i in range(packages)]
    return _go_json({"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0",
                     "SPDXID": "SPDXRef-DOCUMENT", "name": f"sbom-{seed}",
                     "documentNamespace": f"https://example.test/spdx/{seed}",
                     "packages": pkgs})


def oci_referrer(subject: Manifest, artifact_type: str, payload_type: str, payload: bytes,
                 created: str = "2025-01-01T00:00:00Z") -> Artifact:
    """An OCI 1.1 referrer of ``subject`` (as ``oras attach`` writes one): ``artifactType``,
    the empty config, ``payload`` as its one layer, ``subject`` and a created annotation."""
    layers: list[dict[str, object]] = [{
        "mediaType": payload_type, "size": len(payload), "digest": _sha(payload),
        "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"},
    }]
    return _image_manifest(
        b"{}", EMPTY, layers, [(_sha(payload), payload)], artifactType=artifact_type,
        subject={"mediaType": subject.media_type, "digest": subject.digest,
                 "size": subject.size},
        annotations={"org.opencontainers.image.created": created},
    )


def oci_signature(subject: Manifest, seed: str) -> Artifact:
    """A signature referrer of ``subject`` (a small signature envelope as its layer), for
    referrers of referrers (a signature of an SBOM)."""
    rng = random.Random(f"osig {seed}")
    envelope = _go_json({"payload": _b64(rng, 600), "signatures": [{"sig": _b64(rng, 71)}]})
    return oci_referrer(subject, "application/vnd.example.signature.v1+json",
                        "application/vnd.example.signature.v1+json", envelope)


# ------------------------------------------------------------------------ pushing


async def push_artifact(client: RegistryClient, repo: Reference, artifact: Artifact,
                        tag: str = "") -> str:
    """Upload the artifact's blobs (present ones skipped) and PUT its manifest, by digest or
    at ``tag``; returns its digest."""
    for digest, data in artifact.blobs:
        if not await client.blob_exists(repo, digest):
            await client.upload_blob(repo, data, digest)
    where = repo.with_tag(tag) if tag else repo.with_digest(artifact.digest)
    await client.put_manifest(where, artifact.manifest)
    return artifact.digest


async def attach_cosign(client: RegistryClient, repo: Reference, subject: str,
                        artifact: Artifact, suffix: str) -> str:
    """Attach as cosign does: the manifest at ``sha256-<hex><suffix>``."""
    return await push_artifact(client, repo, artifact, subject.replace(":", "-") + suffix)


def fallback_descriptor(artifact: Artifact) -> dict[str, object]:
    """The descriptor a client lists in a fallback index for ``artifact``."""
    doc = json.loads(artifact.manifest.raw)
    entry: dict[str, object] = {"mediaType": artifact.manifest.media_type,
                                "digest": artifact.digest, "size": artifact.manifest.size}
    entry["artifactType"] = doc.get("artifactType") or doc["config"]["mediaType"]
    if doc.get("annotations"):
        entry["annotations"] = doc["annotations"]
    return entry


async def attach_fallback(client: RegistryClient, repo: Reference, artifact: Artifact) -> str:
    """Attach an OCI 1.1 referrer on a registry without the referrers API: PUT it by digest,
    then read the ``sha256-<hex>`` tag of its subject (none: an empty index), append its
    descriptor and PUT the index back."""
    digest = await push_artifact(client, repo, artifact)
    subject = json.loads(artifact.manifest.raw)["subject"]["digest"]
    tag = repo.with_tag(subject.replace(":", "-"))
    try:
        manifests = json.loads((await client.get_manifest(tag)).raw)["manifests"]
    except NotFoundError:
        manifests = []
    manifests.append(fallback_descriptor(artifact))
    index = _go_json({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
                      "manifests": manifests})
    await client.put_manifest(tag, Manifest.from_bytes(index))
    return digest


async def fallback_index(client: RegistryClient, repo: Reference, subject: str
                         ) -> list[dict[str, object]]:
    """The descriptors the fallback tag of ``subject`` lists ([] when there is none)."""
    try:
        got = await client.get_manifest(repo.with_tag(subject.replace(":", "-")))
    except NotFoundError:
        return []
    listed: list[dict[str, object]] = json.loads(got.raw)["manifests"]
    return listed
