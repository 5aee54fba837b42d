"""msgspec Structs for registry content and for the lists manyfest builds.

Decoding structs (``Descriptor``, ``ImageManifestDoc``, ``IndexDoc``, ``ImageConfig``) are
tolerant: unknown fields are ignored, as OCI asks (image-spec ``considerations.md``). They are
only ever *read*; fetched manifests are never re-encoded (see :mod:`manyfest.content`).

Encoding structs (``ListDoc``, ``ListEntry``, ``ListPlatform``) define the exact key order of
the lists manyfest writes, which is docker's (``manifestlist.ManifestList`` in
``github.com/distribution/distribution``: ``schemaVersion``, ``mediaType``, ``manifests``; each
entry ``mediaType``, ``size``, ``digest``, then ``platform`` with ``architecture``, ``os``,
``os.version``, ``os.features``, ``variant``, empty ones omitted), with the OCI 1.1 index
fields in the image-spec's order (``image-index.md``: ``schemaVersion``, ``mediaType``,
``artifactType``, ``manifests``, ``subject``, ``annotations``), omitted when not set.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, Struct, UnsetType, field


class PlatformDoc(Struct, kw_only=True, omit_defaults=True):
    """A platform object as found in a descriptor or a config (image-spec ``platform``)."""

    architecture: str = ""
    os: str = ""
    os_version: str = field(name="os.version", default="")
    os_features: list[str] = field(name="os.features", default_factory=list)
    variant: str = ""
    features: list[str] = field(default_factory=list)


class Descriptor(Struct, kw_only=True, omit_defaults=True):
    """An OCI content descriptor (image-spec ``descriptor.md``), as read from a manifest."""

    media_type: str = field(name="mediaType", default="")
    digest: str
    size: int
    urls: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    platform: PlatformDoc | None = None
    artifact_type: str = field(name="artifactType", default="")


class ImageManifestDoc(Struct, kw_only=True):
    """An image manifest (OCI ``image-manifest.md`` / Docker schema2), read only."""

    schema_version: int = field(name="schemaVersion", default=2)
    media_type: str = field(name="mediaType", default="")
    config: Descriptor
    layers: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None


class IndexDoc(Struct, kw_only=True):
    """An image index / manifest list (OCI ``image-index.md``), read only."""

    schema_version: int = field(name="schemaVersion", default=2)
    media_type: str = field(name="mediaType", default="")
    artifact_type: str = field(name="artifactType", default="")
    manifests: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] = field(default_factory=dict)


class MediaTypeProbe(Struct):
    """Just the ``mediaType`` and ``manifests``/``config`` presence of a manifest body."""

    media_type: str = field(name="mediaType", default="")
    manifests: msgspec.Raw | UnsetType = UNSET
    config: msgspec.Raw | UnsetType = UNSET
    schema_version: int = field(name="schemaVersion", default=0)


class ConfigSection(Struct, kw_only=True):
    """The ``config`` object of an image config blob: only its ``Labels`` (null allowed)."""

    labels: dict[str, object] | None = field(name="Labels", default=None)


class ImageConfig(Struct, kw_only=True):
    """The platform fields and labels of an image config blob (image-spec ``config.md``)."""

    architecture: str = ""
    os: str = ""
    os_version: str = field(name="os.version", default="")
    os_features: list[str] = field(name="os.features", default_factory=list)
    variant: str = ""
    config: msgspec.Raw = msgspec.Raw()
    """The ``config`` object's bytes (empty when absent), decoded only for its labels
    (:class:`ConfigSection`)."""


class SubjectDescriptor(Struct, kw_only=True):
    """The ``subject`` descriptor of an index manyfest writes: ``mediaType``, ``digest``,
    ``size`` (image-spec ``descriptor.md`` order)."""

    media_type: str = field(name="mediaType")
    digest: str
    size: int


class ListPlatform(Struct, kw_only=True, omit_defaults=True):
    """The platform of a list entry, in docker's key order; empty optional keys omitted."""

    architecture: str
    os: str
    os_version: str = field(name="os.version", default="")
    os_features: list[str] = field(name="os.features", default_factory=list)
    variant: str = ""


class ListEntry(Struct, kw_only=True, omit_defaults=True):
    """A list entry in docker's key order: ``mediaType``, ``size``, ``digest``, ``platform``."""

    media_type: str = field(name="mediaType")
    size: int
    digest: str
    annotations: dict[str, str] = field(default_factory=dict)
    platform: ListPlatform | None = None


class ListDoc(Struct, kw_only=True, omit_defaults=True):
    """A manifest list / image index as manyfest writes it (docker's key order).

    Entries are pre-encoded (:class:`ListEntry`, or a source index's exact descriptor), and
    so are the subject and the annotations (HTML-escaped as Go writes them; ``None``:
    omitted). ``artifactType`` ('' omitted) and ``subject`` only go in OCI indexes.
    """

    schema_version: int = field(name="schemaVersion")
    media_type: str = field(name="mediaType")
    artifact_type: str = field(name="artifactType", default="")
    manifests: list[msgspec.Raw]
    subject: msgspec.Raw | None = None
    annotations: msgspec.Raw | None = None
