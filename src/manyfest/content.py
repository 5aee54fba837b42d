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


def list_media_type(entries: list[Entry], annotations: dict[str, str] | None = None) -> str:
    """docker's rule: an OCI index when the first entry is an OCI manifest, else a Docker list.

    Index annotations only exist in the OCI index, so a list carrying them is an OCI index
    (manifest-tool refuses annotations on a Docker list; we pick the type that has them).
    """
    if annotations or (entries and entries[0].media_type == mediatypes.OCI_MANIFEST):
        return mediatypes.OCI_INDEX
    return mediatypes.DOCKER_LIST


def encode_list(
    entries: list[Entry],
    *,
    annotations: dict[str, str] | None = None,
    style: JsonStyle = "docker",
    media_type: str | None = None,
) -> Manifest:
    """Build a list's bytes, once.

    Args:
        entries: the entries, in the order they go into the list.
        annotations: index-level annotations (makes the list an OCI index).
        style: ``docker`` (3-space indent, no trailing newline: ``docker manifest push``'s
            ``json.MarshalIndent(list, "", "   ")``), ``manifest-tool`` (2-space) or
            ``compact``.
        media_type: force the list media type; default: :func:`list_media_type`.

    Returns:
        The list as a :class:`Manifest` whose digest is over exactly these bytes.
    """
    mt = media_type or list_media_type(entries, annotations)
    # What manyfest encodes is HTML-escaped as Go's json.Marshal(Indent) writes it; a source
    # index's exact descriptors are not (their bytes are kept, only re-indented).
    doc = ListDoc(
        schema_version=2,
        media_type=mt,
        manifests=[msgspec.Raw(e.encode()) for e in entries],
        annotations=msgspec.Raw(_escaped(annotations)) if annotations else None,
    )
    raw = msgspec.json.format(_ENCODER.encode(doc), indent=_INDENT[style])
    return Manifest(raw, mt, digests.sha256(raw))


_INDENT: dict[JsonStyle, int] = {"docker": 3, "manifest-tool": 2, "compact": -1}
"""msgspec.json.format indents: -1 strips the whitespace exact descriptors may carry."""


def _escaped(value: object) -> bytes:
    return jsonfmt.escape_html(_ENCODER.encode(value))
