"""Media types of manifests, lists/indexes and configs (OCI image-spec, Docker schema2)."""

from __future__ import annotations

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES

REFERENCE_TYPE = "vnd.docker.reference.type"
"""Descriptor annotation buildx writes on an attestation manifest's index entry."""
REFERENCE_DIGEST = "vnd.docker.reference.digest"
"""Descriptor annotation naming the image an attestation manifest describes."""
ATTESTATION = "attestation-manifest"
"""The value of :data:`REFERENCE_TYPE` on an attestation manifest."""

ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
"""The Accept header of every manifest GET/HEAD: all four manifest and index types."""


def is_index(media_type: str) -> bool:
    """True for the Docker manifest list and the OCI image index."""
    return media_type in INDEX_TYPES


def is_image(media_type: str) -> bool:
    """True for the Docker schema2 and OCI image manifests."""
    return media_type in IMAGE_TYPES


def base(content_type: str) -> str:
    """A Content-Type without parameters, lower-cased (``a/b; charset=x`` → ``a/b``)."""
    return content_type.split(";", 1)[0].strip().lower()
