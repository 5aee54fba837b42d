"""The local manifest-list store, in docker's own layout and JSON.

Layout (docker/cli ``cli/manifest/store/store.go``)::

    $DOCKER_CONFIG/manifests/<filesafe(list ref)>/<filesafe(image ref)>

``filesafe`` replaces ``:`` with ``-`` and ``/`` with ``_`` (docker's names, kept for registry
references). An OCI layout reference (``oci:PATH[:TAG]``, which docker cannot name) has
``%``, ``_`` and ``-`` escaped first (:func:`manyfest.reference.store_name`), so two layouts
never share a list or an entry (``oci:/a_b:t`` and ``oci:/a/b:t``). Each entry file is Go's
``json.Marshal`` of docker's ``types.ImageManifest``: ``Ref`` (string), ``Descriptor`` (OCI
descriptor with ``platform``), ``Raw`` (base64 of the manifest's exact bytes) and
``SchemaV2Manifest`` or ``OCIManifest`` (the manifest, compacted as Go does). So docker and
manyfest each read, annotate and push what the other wrote.

An index source's entries (``create`` flattens them) are named ``<name>[:<tag>]@<child
digest>`` (a reference docker's ``ParseNamed`` accepts, so docker reads, inspects and pushes
them); an attestation entry keeps its ``unknown/unknown`` platform and its descriptor
annotations (``vnd.docker.reference.type``, ``vnd.docker.reference.digest``). Such an entry
also keeps the source index's exact descriptor bytes in one more field, ``SourceDescriptor``
(docker's JSON decoder ignores fields it does not know, and drops it when docker rewrites the
entry), so ``push`` writes the list ``publish`` writes for the same sources, byte for byte.

Writes are atomic (a temporary file in the store root, then ``os.replace``) and locked (one
``filelock`` lock file, ``.manyfest.lock``, in the store root). Nothing but entry files ever
goes inside a list directory: docker reads every file there.

List-level settings docker's layout has no place for (``create --media-type``,
``--annotation``, ``--artifact-type``, ``--subject``, ``--labels-to-annotations``) are kept
beside it, one small JSON file per list::

    $DOCKER_CONFIG/manifests/.manyfest/<filesafe(list ref)>.json

It records which list directory it belongs to (the directory's inode and the entry file
names when it was written): a list docker removed and created anew does not pick up the
settings of the old one (they are ignored, and replaced or removed by manyfest's next
``create``); ``rm`` and ``push --purge`` remove it with the list.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec

from manyfest import digest as digests
from manyfest import jsonfmt, mediatypes
from manyfest.auth.config import config_dir
from manyfest.content import Manifest
from manyfest.errors import NoSuchManifestError, StoreError
from manyfest.files import atomic_write
from manyfest.models import Descriptor
from manyfest.platform import Platform
from manyfest.reference import Reference, store_name


class _StorePlatform(msgspec.Struct, omit_defaults=True):
    architecture: str = ""
    os: str = ""
    os_version: str = msgspec.field(name="os.version", default="")
    os_features: list[str] = msgspec.field(name="os.features", default_factory=list)
    variant: str = ""


class _StoreDescriptor(msgspec.Struct, omit_defaults=True):
    mediaType: str = ""  # noqa: N815 - OCI descriptor keys
    digest: str = ""
    size: int = 0
    urls: list[str] = msgspec.field(default_factory=list)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    platform: _StorePlatform | None = None


_EMPTY = msgspec.Raw()


class _StoreFile(msgspec.Struct, omit_defaults=True):
    Ref: str
    Descriptor: _StoreDescriptor
    Raw: bytes = b""
    SchemaV2Manifest: msgspec.Raw = _EMPTY
    OCIManifest: msgspec.Raw = _EMPTY
    SourceDescriptor: msgspec.Raw = _EMPTY


_DECODER = msgspec.json.Decoder(_StoreFile)
_ENCODER = msgspec.json.Encoder()

SETTINGS_DIR = ".manyfest"
"""Directory of the list settings files, in the store root (never a list directory)."""


class ListSettings(msgspec.Struct, kw_only=True, omit_defaults=True):
    """List-level settings of a local list that docker's store cannot hold.

    Attributes:
        media_type: ``auto``, ``oci`` or ``docker`` ('' = auto).
        annotations: index annotations.
        artifact_type: the index's ``artifactType``.
        subject: the index's subject, pinned by digest (``registry/repository@digest``).
        labels_to_annotations: copy the children's common ``org.opencontainers.image.*``
            config labels into the index annotations at push.
        directory_inode: the list directory these settings were written for.
        entries: the entry file names then (a list created anew by docker has other ones).
    """

    media_type: str = ""
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    artifact_type: str = ""
    subject: str = ""
    labels_to_annotations: bool = False
    directory_inode: int = 0
    entries: list[str] = msgspec.field(default_factory=list)

    def is_empty(self) -> bool:
        """True when no setting is given (nothing to keep)."""
        return (
            self.media_type in ("", "auto") and not self.annotations
            and not self.artifact_type and not self.subject and not self.labels_to_annotations
        )


_SETTINGS = msgspec.json.Decoder(ListSettings)


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One entry of a local list: the image's reference, manifest bytes and platform.

    Attributes:
        ref: the image reference the entry was created from (docker's ``Ref``).
        manifest: the manifest's exact bytes, media type and digest.
        platform: the platform written into the list (``None`` if unknown).
        annotations: descriptor annotations kept in the entry.
        file_name: the entry's file name in the list directory (docker's sort key).
        descriptor: for an entry flattened from a source index, that index's exact
            descriptor bytes, so ``push`` writes the entry as ``publish`` does (same list
            digest); kept only while it still says what the entry says (see
            :func:`descriptor_agrees`).
    """

    ref: Reference
    manifest: Manifest
    platform: Platform | None
    annotations: tuple[tuple[str, str], ...] = ()
    file_name: str = ""
    descriptor: bytes | None = None

    def with_platform(self, platform: Platform) -> StoredImage:
        """A copy with another platform."""
        return replace(self, platform=platform)

    def exact_descriptor(self) -> bytes | None:
        """:attr:`descriptor` when it agrees with the entry's fields, else ``None``."""
        if self.descriptor is None or not descriptor_agrees(self.descriptor, self):
            return None
        return self.descriptor


_SOURCE_DESCRIPTOR = msgspec.json.Decoder(Descriptor)


def descriptor_agrees(raw: bytes, image: StoredImage) -> bool:
    """True when the descriptor ``raw`` names the entry's manifest (digest, size, media
    type) with the entry's platform and annotations: an entry annotated since (by manyfest
    or docker) no longer agrees, and is then written from its fields."""
    try:
        desc = _SOURCE_DESCRIPTOR.decode(raw)
    except msgspec.DecodeError:
        return False
    m = image.manifest
    p = desc.platform
    platform = (
        None if p is None
        else Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))
    )
    return (
        (desc.digest, desc.size, desc.media_type) == (m.digest, m.size, m.media_type)
        and platform == image.platform
        and tuple(sorted(desc.annotations.items())) == image.annotations
    )


class ManifestStore:
    """docker's ``~/.docker/manifests`` store.

    Args:
        root: the store directory (default ``$DOCKER_CONFIG/manifests``).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or (config_dir() / "manifests")

    def list_dir(self, list_ref: Reference) -> Path:
        """The directory of a list."""
        return self.root / store_name(list_ref)

    def exists(self, list_ref: Reference) -> bool:
        """True when the list directory exists (even empty, as docker treats it)."""
        return self.list_dir(list_ref).is_dir()

    @contextlib.contextmanager
    def locked(self, list_ref: Reference) -> Iterator[None]:
        """Hold the store's lock while changing ``list_ref``.

        One lock file for the whole store (``.manyfest.lock`` in the store root, never in a
        list directory): store changes are small local writes, and a file per list would pile
        up beside docker's directories.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        import filelock  # here: 55 ms to import, and only the writers lock

        with filelock.FileLock(str(self.root / ".manyfest.lock")):
            yield

    def get_list(self, list_ref: Reference) -> list[StoredImage]:
        """Every entry of a list, sorted by file name (docker's order).

        Raises:
            NoSuchManifestError: no such list (docker: ``No such manifest: <ref>``).
            StoreError: an entry file is unreadable or corrupt.
        """
        directory = self.list_dir(list_ref)
        if not directory.is_dir():
            raise NoSuchManifestError(f"No such manifest: {list_ref}")
        return [self._read(path) for path in sorted(directory.iterdir()) if path.is_file()]

    def get(self, list_ref: Reference, image_ref: Reference) -> StoredImage:
        """One entry of a list.

        Raises:
            NoSuchManifestError: the list or the entry does not exist.
        """
        path = self.list_dir(list_ref) / store_name(image_ref)
        if not path.is_file():
            if not self.list_dir(list_ref).is_dir():
                raise NoSuchManifestError(f"No such manifest: {list_ref}")
            flattened = self._flattened(list_ref, image_ref)
            if flattened:
                listed = ", ".join(
                    f"{e.ref} ({e.platform if e.platform is not None else 'no platform'})"
                    for e in flattened
                )
                images = [e for e in flattened
                          if e.platform is None or not e.platform.is_unknown] or flattened
                raise NoSuchManifestError(
                    f"{image_ref} is an index source of {list_ref}, stored as its entries: "
                    f"{listed}",
                    hint=f"name one entry, e.g. `{images[0].ref}`",
                )
            raise NoSuchManifestError(
                f"manifest for image {image_ref} does not exist in {list_ref}",
                hint=f"add it with `manyfest create --amend {list_ref} {image_ref}`",
            )
        return self._read(path)

    def _flattened(self, list_ref: Reference, image_ref: Reference) -> list[StoredImage]:
        """The entries ``create`` stored for the index source ``image_ref`` (named
        ``<name>:<tag>@<child digest>``), in file-name order; [] for a reference by digest."""
        if image_ref.digest:
            return []
        prefix = store_name(image_ref) + "@"
        directory = self.list_dir(list_ref)
        return [self._read(path) for path in sorted(directory.iterdir())
                if path.is_file() and path.name.startswith(prefix)]

    def _read(self, path: Path) -> StoredImage:
        try:
            doc = _DECODER.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise StoreError(f"cannot read local manifest {path}: {exc}") from exc
        from manyfest import reference

        ref = reference.parse(doc.Ref)
        raw = doc.Raw
        if not raw:
            body = bytes(doc.SchemaV2Manifest) or bytes(doc.OCIManifest)
            if not body:
                raise StoreError(f"local manifest {path} has neither Raw nor a manifest")
            raw = body
        desc = doc.Descriptor
        manifest = Manifest.from_bytes(raw, desc.mediaType)
        if desc.digest and desc.digest != manifest.digest:
            digests.verify(raw, desc.digest, f"local manifest {path}")
        platform = None
        if desc.platform is not None:
            p = desc.platform
            platform = Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))
        image = StoredImage(
            ref, manifest, platform, tuple(sorted(desc.annotations.items())), path.name
        )
        source = bytes(doc.SourceDescriptor)
        return replace(image, descriptor=source) if source else image

    def encode(self, image: StoredImage) -> bytes:
        """An entry file's bytes, as docker's ``json.Marshal(types.ImageManifest)`` writes it."""
        m = image.manifest
        platform = None
        if image.platform is not None:
            p = image.platform
            platform = _StorePlatform(
                p.architecture, p.os, p.os_version, list(p.os_features), p.variant
            )
        body = msgspec.Raw(jsonfmt.compact(m.raw))
        doc = _StoreFile(
            Ref=str(image.ref),
            Descriptor=_StoreDescriptor(
                mediaType=m.media_type,
                digest=m.digest,
                size=m.size,
                annotations=dict(image.annotations),
                platform=platform,
            ),
            Raw=m.raw,
            SchemaV2Manifest=body if m.media_type == mediatypes.DOCKER_MANIFEST else _EMPTY,
            OCIManifest=body if m.media_type == mediatypes.OCI_MANIFEST else _EMPTY,
            SourceDescriptor=msgspec.Raw(exact) if (exact := image.exact_descriptor())
            else _EMPTY,
        )
        return jsonfmt.compact(_ENCODER.encode(doc))

    def save(self, list_ref: Reference, images: list[StoredImage]) -> None:
        """Write entries of a list atomically, one file each (call under :meth:`locked`).

        Every file is first written in full to a temporary file in the store root, then
        renamed into the list directory, so a reader never sees a half-written entry.
        """
        directory = self.list_dir(list_ref)
        directory.mkdir(parents=True, exist_ok=True)
        for image in images:
            atomic_write(directory / store_name(image.ref), self.encode(image), mode=0o644,
                         temp_dir=self.root)

    def remove_entries(self, list_ref: Reference, file_names: list[str]) -> None:
        """Delete entries of a list by file name (call under :meth:`locked`); one that is
        already gone is skipped. Each unlink is atomic: a reader sees an entry or none."""
        directory = self.list_dir(list_ref)
        for name in file_names:
            if not name or "/" in name or name.startswith("."):
                raise StoreError(f"refusing to remove {name!r} from {directory}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
    def settings_path(self, list_ref: Reference) -> Path:
        """The settings file of a list (in :data:`SETTINGS_DIR`, outside list directories)."""
        return self.root / SETTINGS_DIR / f"{store_name(list_ref)}.json"

    def get_settings(self, list_ref: Reference) -> ListSettings:
        """The list's settings; empty ones when there are none, or when the file belongs to
        another list directory of that name (docker removed the list and created it anew).

        Raises:
            StoreError: the settings file is unreadable or corrupt.
        """
        path = self.settings_path(list_ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return ListSettings()
        except OSError as exc:
            raise StoreError(f"cannot read local list settings {path}: {exc.strerror}") from exc
        try:
            settings = _SETTINGS.decode(data)
        except msgspec.DecodeError as exc:
            raise StoreError(
                f"local list settings {path} are corrupt: {exc}",
                hint=f"remove the file, or `manyfest rm {list_ref}` and create the list again",
            ) from exc
        directory = self.list_dir(list_ref)
        try:
            inode = directory.stat().st_ino
            names = {p.name for p in directory.iterdir()}
        except OSError:
            return ListSettings()
        if inode != settings.directory_inode or not set(settings.entries) <= names:
            return ListSettings()
        return settings

    def save_settings(self, list_ref: Reference, settings: ListSettings) -> None:
        """Write (or, when empty, remove) a list's settings atomically; call under
        :meth:`locked`, after the entries are saved (the file records the directory)."""
        path = self.settings_path(list_ref)
        if settings.is_empty():
            path.unlink(missing_ok=True)
            return
        directory = self.list_dir(list_ref)
        settings = replace_settings(
            settings,
            directory_inode=directory.stat().st_ino,
            entries=sorted(p.name for p in directory.iterdir()),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, msgspec.json.encode(settings), mode=0o644, temp_dir=self.root)

    def remove(self, list_ref: Reference) -> None:
        """Delete a list directory and its settings file.

        Raises:
            NoSuchManifestError: the list does not exist.
        """
        directory = self.list_dir(list_ref)
        self.settings_path(list_ref).unlink(missing_ok=True)
        if not directory.is_dir():
            raise NoSuchManifestError(f"No such manifest: {list_ref}")
        # Rename first so a concurrent reader never sees a half-deleted list.
        fd_dir = tempfile.mkdtemp(prefix=".manyfest-rm-", dir=self.root)
        target = Path(fd_dir) / "list"
        os.replace(directory, target)
        shutil.rmtree(fd_dir)


def replace_settings(settings: ListSettings, **changes: object) -> ListSettings:
    """A copy of ``settings`` with ``changes`` (field name → value)."""
    return msgspec.structs.replace(settings, **changes)


def merge_settings(stored: ListSettings, given: ListSettings | None) -> ListSettings:
    """``given`` over ``stored``: each setting given wins; annotations are merged key by key
    (a given key wins); ``labels_to_annotations`` is on when either says so."""
    if given is None:
        return stored
    return replace_settings(
        stored,
        media_type=given.media_type or stored.media_type,
        annotations={**stored.annotations, **given.annotations},
        artifact_type=given.artifact_type or stored.artifact_type,
        subject=given.subject or stored.subject,
        labels_to_annotations=given.labels_to_annotations or stored.labels_to_annotations,
    )
