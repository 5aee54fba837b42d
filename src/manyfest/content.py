"""Manifests as exact bytes: ``Manifest`` pairs the bytes with media type and digest.

Bytes are sacred (OCI image-spec ``considerations.md``: implementations "MUST NOT modify or
alter the content in a way that would change the digest"). A fetched manifest keeps the body
it came with; its digest and size come from those bytes; it is decoded lazily and never
re-encoded. Only lists built by :func:`encode_list` are encoded, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec

from manyfest import digest as digests
from manyfest import jsonfmt, mediatypes
from manyfest.errors import InvalidManifestError, UnsupportedMediaTypeError
from manyfest.models import (
    Descriptor,
    ImageManifestDoc,
    IndexDoc,
    ListDoc,
    ListEntry,
    ListPlatform,
    MediaTypeProbe,
    SubjectDescriptor,
)
from manyfest.platform import Platform

_PROBE = msgspec.json.Decoder(MediaTypeProbe)
_IMAGE = msgspec.json.Decoder(ImageManifestDoc)
_INDEX = msgspec.json.Decoder(IndexDoc)
_ENCODER = msgspec.json.Encoder()

_Doc = TypeVar("_Doc", ImageManifestDoc, IndexDoc)

JsonStyle = Literal["docker", "manifest-tool", "compact"]
"""Layout of built lists: docker's 3-space indent, manifest-tool's 2-space, or compact."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as exact bytes.

    Attributes:
        raw: the exact body received from a registry, or the bytes manyfest encoded once.
        media_type: the body's ``mediaType`` field, else the Content-Type it was served with.
        digest: ``sha256:<hex>`` of ``raw``.
    """

    raw: bytes
    media_type: str
    digest: str

    @classmethod
    def from_bytes(cls, raw: bytes, content_type: str = "") -> Manifest:
        """Wrap ``raw``; the media type is the body's ``mediaType``, else ``content_type``.

        Raises:
            InvalidManifestError: the body is not a JSON object (or is nested too deeply to
                decode).
            UnsupportedMediaTypeError: neither the body nor the Content-Type names a media
                type manyfest can use (schema 1 included).
        """
        try:
            probe = _PROBE.decode(raw)
        except msgspec.DecodeError as exc:
            raise InvalidManifestError(f"manifest body is not valid JSON: {exc}") from exc
        except RecursionError:  # msgspec's own, on deep nesting: not a DecodeError
            raise InvalidManifestError("manifest body is nested too deeply to decode") from None
        media_type = probe.media_type or mediatypes.base(content_type)
        if media_type not in mediatypes.MANIFEST_TYPES:
            # An OCI body may omit mediaType: infer from its shape (image-spec allows it),
            # but never override a mediaType the body states.
            shaped = not probe.media_type and probe.schema_version == 2
            if shaped and probe.manifests is not msgspec.UNSET:
                media_type = mediatypes.OCI_INDEX
            elif shaped and probe.config is not msgspec.UNSET:
                media_type = mediatypes.OCI_MANIFEST
            else:
                raise UnsupportedMediaTypeError(
                    f"unsupported manifest media type {media_type or content_type!r}"
                )
        return cls(raw, media_type, digests.sha256(raw))

    @property
    def size(self) -> int:
        """Length of ``raw`` in bytes."""
        return len(self.raw)

    @property
    def is_index(self) -> bool:
        """True for a Docker manifest list or an OCI index."""
        return mediatypes.is_index(self.media_type)

    def image(self) -> ImageManifestDoc:
        """Decode as an image manifest (config + layers).

        Raises:
            InvalidManifestError: the body lacks a config descriptor or has a field of the
                wrong type (the message names it, e.g. ``at `$.config```).
        """
        return self._decode(_IMAGE, "image manifest")

    def index(self) -> IndexDoc:
        """Decode as an index / manifest list.

        Raises:
            InvalidManifestError: a field has the wrong type (``manifests`` not a list of
                descriptors, a descriptor without digest or size, ...).
        """
        return self._decode(_INDEX, "index")

    def blobs(self) -> list[Descriptor]:
        """The blobs an image manifest references: the config, then every layer.

        Raises:
            InvalidManifestError: as :meth:`image`.
        """
        doc = self.image()
        return [doc.config, *doc.layers]

    def _decode(self, decoder: msgspec.json.Decoder[_Doc], what: str) -> _Doc:
        try:
            return decoder.decode(self.raw)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise InvalidManifestError(
                f"manifest {self.digest} is not a valid {what}: {exc}"
            ) from exc
        except RecursionError:
            raise InvalidManifestError(
                f"manifest {self.digest} is not a valid {what}: nested too deeply to decode"
            ) from None


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a list being built: a child manifest's descriptor plus its platform.

    Attributes:
        media_type: the child's media type.
        size: the child's size in bytes.
        digest: the child's digest.
        platform: the platform written in the list.
        annotations: descriptor annotations (omitted when empty).
        descriptor: exact descriptor bytes from a source index; when set, the entry is
            written with exactly these fields and values (only re-indented).
    """

    media_type: str
    size: int
    digest: str
    platform: Platform | None
    annotations: tuple[tuple[str, str], ...] = ()
    descriptor: bytes | None = None

    def encode(self) -> bytes:
        """The entry as compact JSON in docker's key order, ``<``, ``>``, ``&``, U+2028 and
        U+2029 escaped as Go's ``json.Marshal`` writes them; or the exact descriptor."""
        if self.descriptor is not None:
            return self.descriptor
        p = self.platform
        return _escaped(
            ListEntry(
                media_type=self.media_type,
                size=self.size,
                digest=self.digest,
                annotations=dict(self.annotations),
                platform=None
                if p is None
                else ListPlatform(
                    architecture=p.architecture,
                    os=p.os,
                    os_version=p.os_version,
                    os_features=list(p.os_features),
                    variant=p.variant,
                ),
            )
        )


def list_media_type(entries: list[Entry]) -> str:
    """docker's rule: an OCI index when the first entry is an OCI manifest, else a Docker list.

    Only the first entry decides (``manifestlist.FromDescriptors``): index annotations,
    ``artifactType`` or ``subject`` never switch the type; a Docker list cannot hold them
    and :func:`encode_list` refuses them there.
    """
    if entries and entries[0].media_type == mediatypes.OCI_MANIFEST:
        return mediatypes.OCI_INDEX
    return mediatypes.DOCKER_LIST


def mixed_children(media_type: str, entries: list[Entry]) -> list[Entry]:
    """The entries whose family differs from the list's: OCI children of a Docker list, or
    Docker children of an OCI index (some registries refuse such mixed lists)."""
    family = "application/vnd.oci." if media_type == mediatypes.OCI_INDEX else (
        "application/vnd.docker."
    )
    return [e for e in entries if not e.media_type.startswith(family)]


def oci_only_fields(
    annotations: dict[str, str] | None, artifact_type: str, subject: SubjectDescriptor | None
) -> list[str]:
    """The OCI-index-only fields given (``annotations``, ``artifactType``, ``subject``), in
    that order; a Docker manifest list has none of them."""
    given = [("annotations", bool(annotations)), ("artifactType", bool(artifact_type)),
             ("subject", subject is not None)]
    return [name for name, present in given if present]


def encode_list(
    entries: list[Entry],
    *,
    annotations: dict[str, str] | None = None,
    style: JsonStyle = "docker",
    media_type: str | None = None,
    artifact_type: str = "",
    subject: SubjectDescriptor | None = None,
) -> Manifest:
    """Build a list's bytes, once.

    Top-level keys in image-spec ``image-index.md`` order: ``schemaVersion``, ``mediaType``,
    ``artifactType``, ``manifests``, ``subject``, ``annotations``; the last three keys (and
    ``artifactType``) only when given, so a list without them is byte for byte docker's.

    Args:
        entries: the entries, in the order they go into the list.
        annotations: index-level annotations (OCI index only).
        style: ``docker`` (3-space indent, no trailing newline: ``docker manifest push``'s
            ``json.MarshalIndent(list, "", "   ")``), ``manifest-tool`` (2-space) or
            ``compact``.
        media_type: force the list media type; default: :func:`list_media_type`.
        artifact_type: the index's ``artifactType`` (OCI index only; '' omitted).
        subject: the index's ``subject`` descriptor (OCI index only).

    Returns:
        The list as a :class:`Manifest` whose digest is over exactly these bytes.

    Raises:
        ValueError: annotations, ``artifactType`` or ``subject`` for a Docker manifest list
            (callers refuse it first with a message naming the list).
    """
    mt = media_type or list_media_type(entries)
    if mt != mediatypes.OCI_INDEX:
        fields = oci_only_fields(annotations, artifact_type, subject)
        if fields:
            raise ValueError(f"a Docker manifest list has no {', '.join(fields)}")
    # What manyfest encodes is HTML-escaped as Go's json.Marshal(Indent) writes it; a source
    # index's exact descriptors are not (their bytes are kept, only re-indented).
    doc = ListDoc(
        schema_version=2,
        media_type=mt,
        artifact_type=artifact_type,
        manifests=[msgspec.Raw(e.encode()) for e in entries],
        subject=msgspec.Raw(_escaped(subject)) if subject is not None else None,
        annotations=msgspec.Raw(_escaped(annotations)) if annotations else None,
    )
    raw = msgspec.json.format(_ENCODER.encode(doc), indent=_INDENT[style])
    return Manifest(raw, mt, digests.sha256(raw))


_INDENT: dict[JsonStyle, int] = {"docker": 3, "manifest-tool": 2, "compact": -1}
"""msgspec.json.format indents: -1 strips the whitespace exact descriptors may carry."""


def _escaped(value: object) -> bytes:
    return jsonfmt.escape_html(_ENCODER.encode(value))
