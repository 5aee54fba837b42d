"""LayoutClient: the registry calls manyfest makes, answered from an OCI image layout.

An OCI image layout (image-spec ``image-layout.md``) is a directory holding

* ``oci-layout``: a JSON object ``{"imageLayoutVersion": "1.0.0"}``;
* ``index.json``: an image index whose entries are the layout's named manifests, each named
  by its ``org.opencontainers.image.ref.name`` annotation (the tag of ``oci:PATH:TAG``);
* ``blobs/<alg>/<encoded>``: every blob and manifest, named by its digest.

That is what buildx ``--output type=oci,tar=false``, ``skopeo copy ... oci:DIR[:REF]`` and
``oras copy --to-oci-layout`` write. :class:`LayoutClient` has the methods of
:class:`~manyfest.registry.RegistryClient` that take references (``head_manifest``,
``get_manifest``, ``put_manifest``, ``delete_manifest``, ``get_blob``, ``blob_exists``,
``mount_blob``, ``copy_blob``, ``upload_blob``) for references naming a layout
(:attr:`manyfest.reference.Reference.layout`); :class:`~manyfest.registry.routing.RoutingClient`
sends each call to it or to the registry by the reference.

Reads: every manifest and blob read is hashed and checked against the digest naming it.
Writes: a blob goes to a temporary file in the layout's ``blobs`` directory, is fsync'd and
then renamed to ``blobs/<alg>/<encoded>`` (a cut-off write never leaves a partial blob under
its digest's name); ``index.json`` is rewritten whole (:func:`manyfest.files.atomic_write`)
under a lock held across read-modify-write, so concurrent writers (tasks of one run, or two
processes) keep each other's entries. The lock is the file ``.manyfest-lock`` inside the
layout directory (image-spec lists the files a layout holds and readers ignore others;
skopeo, oras and buildx do), so nothing is written beside the layout: its parent may be
read-only or another file system's (a mount point). A tag moved replaces its entry (one
entry per ref.name).

A layout written to that does not exist yet (a missing or empty directory) is created with
``imageLayoutVersion`` 1.0.0 in place: the directory made if missing (an existing one, such
as a mount point, is used as it is), then, under the lock, ``blobs/``, an empty
``index.json`` and last ``oci-layout``, each file written to a temporary file in the
directory and renamed. Until ``oci-layout`` is there, the directory reads as a new layout
(no manifests), so no reader sees half a layout as a damaged one, and a creation cut off
half-way is finished by the next writer.

Between two layouts a blob is hard-linked when both are on one file system (blobs are
immutable and every writer, manyfest included, renames new files in rather than rewriting
one), else copied; either way its bytes are hashed first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from manyfest import digest as digests
from manyfest import interrupts, mediatypes
from manyfest.content import Manifest
from manyfest.errors import (
    DigestMismatchError,
    LayoutError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from manyfest.files import atomic_write
from manyfest.reference import Reference
from manyfest.registry.client import ManifestHead

LAYOUT_FILE = "oci-layout"
"""The file naming a directory as a layout, holding its ``imageLayoutVersion``."""
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
LAYOUT_VERSION = "1.0.0"
"""The only ``imageLayoutVersion`` image-spec defines (and the one written)."""
REF_NAME = "org.opencontainers.image.ref.name"
"""The index.json entry annotation naming a tag (image-spec ``annotations.md``)."""
LOCK_FILE = ".manyfest-lock"
"""The index.json lock, inside the layout directory (other tools ignore the file)."""
TEMP_PREFIX = ".manyfest-"
"""How manyfest's own files in a layout start (the lock, temporary files)."""
LOCK_TIMEOUT = 300.0
"""Seconds to wait for another writer's index.json lock before failing."""
CHUNK = 1 << 20
"""Bytes read or written at a time when streaming a blob."""
MANIFEST_LIMIT = 4 * 1024 * 1024
"""Largest manifest read from a layout, in bytes (as from a registry)."""
_HASHES = ("sha256", "sha384", "sha512")
_JSON = msgspec.json.Decoder(dict[str, Any])


def _hasher(digest: str) -> Any:
    algorithm = digest.partition(":")[0]
    if algorithm not in _HASHES:
        raise UnsupportedMediaTypeError(f"digest {digest}: unsupported algorithm {algorithm!r}",
                                        hint="use sha256, sha384 or sha512 digests")
    return hashlib.new(algorithm)


class _Layout:
    """One layout directory: its paths and the synchronous file operations (run in threads)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.lock_path = self.root / LOCK_FILE
        self.valid = False
        """Seen to be a valid layout in this run (checked once)."""

    def blob_path(self, digest: str) -> Path:
        """``blobs/<alg>/<encoded>`` for ``digest``.

        Raises:
            LayoutError: ``digest`` is not in the OCI digest grammar (it could name a path
                outside ``blobs``).
        """
        if not digests.is_valid(digest):
            raise LayoutError(f"oci:{self.root}: {digest!r} is not a valid digest")
        algorithm, _, encoded = digest.partition(":")
        return self.root / BLOBS_DIR / algorithm / encoded

    # ---------------------------------------------------------------- checks

    def state(self) -> str:
        """``layout`` (a valid layout), ``new`` (missing, an empty directory, or one that
        :meth:`create` is filling or was cut off filling: a write creates it).

        Raises:
            LayoutError: the path is a file, a directory that is not a layout (no
                ``oci-layout``), or its ``oci-layout`` names another version.
        """
        if self.valid:
            return "layout"
        where = f"oci:{self.root}"
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return "new"
        except NotADirectoryError:
            raise LayoutError(f"{where}: not a directory, so not an OCI image layout") from None
        except OSError as exc:
            raise LayoutError(f"{where}: cannot read the layout: {exc.strerror}") from None
        if not entries:
            return "new"
        try:
            raw = (self.root / LAYOUT_FILE).read_bytes()
        except FileNotFoundError:
            if self._being_made(entries):
                return "new"
            raise LayoutError(
                f"{where}: not an OCI image layout (no {LAYOUT_FILE} file)",
                hint="name a directory written as an OCI layout (skopeo copy ... oci:DIR, "
                "buildx --output type=oci,tar=false), or a new or empty one to write to",
            ) from None
        except OSError as exc:
            raise LayoutError(f"{where}: cannot read {LAYOUT_FILE}: {exc.strerror}") from None
        try:
            version = _JSON.decode(raw).get("imageLayoutVersion")
        except msgspec.DecodeError:
            raise LayoutError(f"{where}: {LAYOUT_FILE} is not a JSON object") from None
        if version != LAYOUT_VERSION:
            raise LayoutError(
                f"{where}: imageLayoutVersion {version!r} in {LAYOUT_FILE}, manyfest reads "
                f"{LAYOUT_VERSION}",
                hint="convert the layout with a tool that writes image-spec 1.x layouts",
            )
        self.valid = True
        return "layout"

    def _being_made(self, entries: list[str]) -> bool:
        """True when a directory with no ``oci-layout`` holds only what :meth:`create`
        writes before it: manyfest's lock and temporary files, an empty ``blobs/`` and an
        ``index.json`` with no manifests (nothing another tool wrote is taken for it)."""
        for name in entries:
            if name.startswith(TEMP_PREFIX):
                continue
            path = self.root / name
            try:
                if name == BLOBS_DIR:
                    if not path.is_dir() or os.listdir(path):
                        return False
                elif name == INDEX_FILE:
                    doc = _JSON.decode(path.read_bytes())
                    if doc.get("manifests") != []:
                        return False
                else:
                    return False
            except (OSError, msgspec.DecodeError):
                return False
        return True

    def create(self) -> None:
        """Make the layout where it is new (missing, or an empty directory); a valid layout
        is left as it is.

        The directory is made if missing (parents too) and otherwise used in place (a
        mount point, a directory another user made); under the lock, ``blobs/``, an empty
        ``index.json`` and last ``oci-layout`` are written, each through a temporary file
        in the directory renamed into place. When another writer got there first, its
        layout is used. Nothing is written outside the directory.

        Raises:
            LayoutError: the path is not a layout, or cannot be written (the advice fits
                the error: a read-only file system, no permission, no space...).
        """
        if self.state() == "layout":
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self.locked():
                if self.state() == "layout":
                    return
                (self.root / BLOBS_DIR).mkdir(exist_ok=True)
                index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
                         "manifests": []}
                atomic_write(self.root / INDEX_FILE, msgspec.json.encode(index))
                atomic_write(self.root / LAYOUT_FILE,
                             msgspec.json.encode({"imageLayoutVersion": LAYOUT_VERSION}),
                             sync_dir=True)
        except OSError as exc:
            raise write_error(self.root, "cannot create the layout", exc) from None
        if self.state() != "layout":  # pragma: no cover - a directory filled meanwhile
            raise LayoutError(f"oci:{self.root}: not an OCI image layout after creating it")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the layout's index.json lock (:data:`LOCK_FILE` in the layout) for the block.

        Raises:
            LayoutError: another writer held it past :data:`LOCK_TIMEOUT`.
        """
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT, thread_local=False)
        try:
            with lock:
                yield
        except Timeout:
            raise LayoutError(
                f"oci:{self.root}: another writer held {self.lock_path} for "
                f"{LOCK_TIMEOUT:.0f} s", hint="wait for the other process, or remove a stale "
                "lock file if none is running",
            ) from None

    # ---------------------------------------------------------------- index.json

    def entries(self) -> list[dict[str, Any]]:
        """The ``manifests`` of index.json, each checked to be a descriptor.

        Raises:
            LayoutError: index.json is missing or not an image index.
        """
        return _entries(self.root, self._read_index())

    def _read_index(self) -> dict[str, Any]:
        where = f"oci:{self.root}"
        try:
            raw = (self.root / INDEX_FILE).read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{where}: not an OCI image layout (no {INDEX_FILE})") from None
        except OSError as exc:
            raise LayoutError(f"{where}: cannot read {INDEX_FILE}: {exc.strerror}") from None
        try:
            return _JSON.decode(raw)
        except msgspec.DecodeError:
            raise LayoutError(f"{where}: {INDEX_FILE} is not a JSON object") from None

    def update_index(self, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
                     ) -> None:
        """Read index.json, replace its ``manifests`` by ``change(manifests)`` and write it
        back atomically, all under the lock (no other writer's entry is lost)."""
        with self.locked():
            doc = self._read_index()
            doc["manifests"] = change(_entries(self.root, doc))
            atomic_write(self.root / INDEX_FILE, msgspec.json.encode(doc), sync_dir=True)

    # ---------------------------------------------------------------- blobs

    def read_verified(self, digest: str, limit: int | None = None) -> bytes | None:
        """The bytes of blob ``digest`` (``None`` when absent), checked against it.

        Raises:
            DigestMismatchError: the file holds other bytes.
            LayoutError: larger than ``limit``, or unreadable.
        """
        path = self.blob_path(digest)
        try:
            with open(path, "rb") as fh:
                data = fh.read() if limit is None else fh.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LayoutError(f"oci:{self.root}: cannot read blob {digest}: {exc.strerror}"
                              ) from None
        if limit is not None and len(data) > limit:
            raise LayoutError(f"oci:{self.root}: manifest {digest} is larger than "
                              f"{limit} bytes")
        h = _hasher(digest)
        h.update(data)
        actual = f"{digest.partition(':')[0]}:{h.hexdigest()}"
        if actual != digest:
            raise DigestMismatchError(
                f"oci:{self.root}: blob {digest} holds content with digest {actual}",
                hint="the layout is corrupt: write the image into it again",
            )
        return data

    def verify_file(self, digest: str) -> int:
        """Hash blob ``digest``'s file; its size.

        Raises:
            NotFoundError: no such blob.
            DigestMismatchError: the file holds other bytes.
        """
        h = _hasher(digest)
        size = 0
        try:
            with open(self.blob_path(digest), "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            raise _missing_blob(self.root, digest) from None
        actual = f"{digest.partition(':')[0]}:{h.hexdigest()}"
        if actual != digest:
            raise DigestMismatchError(
                f"oci:{self.root}: blob {digest} holds content with digest {actual}",
                hint="the layout is corrupt: write the image into it again",
            )
        return size

    def new_temp(self) -> tuple[int, str]:
        """A temporary file in the layout's ``blobs`` directory: (fd, path)."""
        blobs = self.root / BLOBS_DIR
        blobs.mkdir(exist_ok=True)
        return tempfile.mkstemp(prefix=".manyfest-", suffix=".tmp", dir=blobs)

    def commit(self, tmp: str, digest: str) -> None:
        """Rename the finished temporary file ``tmp`` to ``blobs/<alg>/<encoded>``."""
        final = self.blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)

    def write_bytes(self, data: bytes, digest: str) -> None:
        """Write blob ``digest`` (already hashed by the caller) unless present."""
        if self.blob_path(digest).exists():
            return
        fd, tmp = self.new_temp()
        with interrupts.temporary(tmp):
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                self.commit(tmp, digest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def link_from(self, other: _Layout, digest: str) -> int:
        """Make blob ``digest`` of ``other`` present here: hashed, then hard-linked (same file
        system) or copied through a temporary file; its size."""
        final = self.blob_path(digest)
        if final.exists():
            return final.stat().st_size
        size = other.verify_file(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(other.blob_path(digest), final)
            return size
        except FileExistsError:
            return size
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP,
                                 errno.EACCES):
                raise
        fd, tmp = self.new_temp()
        with interrupts.temporary(tmp):
            try:
                h = _hasher(digest)
                with os.fdopen(fd, "wb") as out, open(other.blob_path(digest), "rb") as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                actual = f"{digest.partition(':')[0]}:{h.hexdigest()}"
                if actual != digest:
                    raise DigestMismatchError(
                        f"oci:{other.root}: blob {digest} changed while copied ({actual})")
                self.commit(tmp, digest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return size


def _entries(root: Path, doc: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = doc.get("manifests", [])
    bad = LayoutError(f"oci:{root}: {INDEX_FILE} is not an image index (manifests must be "
                      "descriptors with mediaType, digest and size)")
    if not isinstance(manifests, list):
        raise bad
    for m in manifests:
        if not (isinstance(m, dict) and isinstance(m.get("digest"), str)
                and isinstance(m.get("mediaType"), str) and isinstance(m.get("size"), int)):
            raise bad
    return manifests


def _ref_name(entry: dict[str, Any]) -> str:
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME, "") if isinstance(annotations, dict) else ""
    return name if isinstance(name, str) else ""


def _pick(ref: Reference, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The index.json entry ``ref``'s tag names (the last, should several carry it); with
    tag ``''`` the only entry; ``None`` when there is none.

    Raises:
        LayoutError: ``ref`` has no tag and the layout holds several manifests.
    """
    if ref.tag:
        named = [e for e in entries if _ref_name(e) == ref.tag]
        return named[-1] if named else None
    if len(entries) <= 1:
        return entries[0] if entries else None
    names = sorted({n for e in entries if (n := _ref_name(e))})
    raise LayoutError(
        f"{ref}: the layout holds {len(entries)} manifests; name one with "
        f"{ref.name}:TAG" + (f" (tags: {', '.join(names)})" if names else ""),
        hint="add the tag (an org.opencontainers.image.ref.name) or @DIGEST",
    )


_ADVICE = {
    errno.EROFS: "the file system is mounted read-only: write the layout to a writable path",
    errno.EACCES: "you may not write there: check the directory's owner and permissions, "
    "or write the layout elsewhere",
    errno.EPERM: "the file system refused the change: check the directory's owner and "
    "attributes, or write the layout elsewhere",
    errno.ENOSPC: "the file system is full: free space, or write the layout elsewhere",
    errno.EDQUOT: "your disk quota is used up: free space, or write the layout elsewhere",
    errno.EBUSY: "the path is in use (a mount point cannot be renamed or replaced): "
    "write to a directory inside it",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.ENAMETOOLONG: "the path is too long: use a shorter one",
}


def write_error(root: Path | str, what: str, exc: OSError) -> LayoutError:
    """A :class:`LayoutError` for a failed write to the layout at ``root``: one line,
    ``oci:ROOT: WHAT: STRERROR (PATH)``, with advice that fits ``exc.errno`` (a read-only
    file system, no permission, no space, a busy mount point...)."""
    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or str(exc)
    hint = _ADVICE.get(exc.errno or 0, "check the path and that you can write to it")
    return LayoutError(f"oci:{root}: {what}: {reason}{where}", hint=hint)


def no_layout_message(ref: Reference) -> str:
    """``<ref>: no OCI image layout at <path>`` when ``ref``'s layout does not exist yet
    (missing, or an empty directory), else '' (one message for it, whichever command
    reads it)."""
    try:
        new = _Layout(ref.layout).state() == "new"
    except LayoutError:
        return ""
    return f"{ref}: no OCI image layout at {ref.layout}" if new else ""


def layout_not_found(message: str, path: str, hint: str) -> NotFoundError:
    """A :class:`NotFoundError` for a layout: ``message`` as it is (no registry answered)."""
    err = NotFoundError(message, status=404, method="GET", url=path, hint=hint)
    err.message = message
    err.args = (message,)
    return err


def _missing_blob(root: Path, digest: str) -> NotFoundError:
    return layout_not_found(f"blob {digest} not in oci:{root}", str(root / BLOBS_DIR),
                            "write the image into the layout again, or check the layout's "
                            "path")


def _not_found(ref: Reference) -> NotFoundError:
    return layout_not_found(f"manifest for {ref} not found", ref.layout,
                            "check the layout's path and tag (the "
                            "org.opencontainers.image.ref.name of an index.json entry)")


class LayoutClient:
    """Registry calls answered from OCI image layouts (references with a ``layout``).

    File work runs in worker threads; writes to one layout's index.json are serialised
    within the run (an anyio lock per layout) and across processes (a file lock).
    """

    def __init__(self) -> None:
        self._layouts: dict[str, _Layout] = {}
        self._locks: dict[str, anyio.Lock] = {}

    def _layout(self, ref: Reference) -> _Layout:
        path = ref.layout
        if not path:
            raise ValueError(f"{ref} does not name an OCI layout")
        layout = self._layouts.get(path)
        if layout is None:
            layout = self._layouts[path] = _Layout(path)
        return layout

    def _lock(self, ref: Reference) -> anyio.Lock:
        lock = self._locks.get(ref.layout)
        if lock is None:
            lock = self._locks[ref.layout] = anyio.Lock()
        return lock

    def _entry(self, ref: Reference, layout: _Layout) -> dict[str, Any] | None:
        """The index.json entry ``ref``'s tag names (:func:`_pick`)."""
        return _pick(ref, layout.entries())

    # ---------------------------------------------------------------- manifests

    async def head_manifest(self, ref: Reference, *, push: bool = False) -> ManifestHead | None:
        """The digest, size and media type ``ref`` names; ``None`` when absent (also a
        layout not created yet). By digest with tag ``''``: present only with an untagged
        index.json entry of that digest (what :meth:`put_manifest` writes for it).

        Raises:
            LayoutError: the path is not a layout, or ``ref`` has no tag and the layout
                holds several manifests.
            DigestMismatchError: a manifest named by digest holds other bytes.
        """
        return await anyio.to_thread.run_sync(self._head, ref)

    def _head(self, ref: Reference) -> ManifestHead | None:
        layout = self._layout(ref)
        if layout.state() == "new":
            return None
        if ref.digest:
            if ref.tag == "" and not any(e["digest"] == ref.digest and not _ref_name(e)
                                         for e in layout.entries()):
                return None  # untagged: present once index.json has the entry
            data = layout.read_verified(ref.digest, MANIFEST_LIMIT)
            if data is None:
                return None
            m = _decode(ref, data, "")
            return ManifestHead(m.digest if ref.digest.startswith("sha256:") else ref.digest,
                                m.size, m.media_type)
        entry = self._entry(ref, layout)
        if entry is None:
            return None
        return ManifestHead(entry["digest"], entry["size"], mediatypes.base(entry["mediaType"]))

    async def get_manifest(self, ref: Reference) -> Manifest:
        """The exact bytes of the manifest ``ref`` names, checked against its digest.

        Raises:
            NotFoundError: no such tag, or its blob is missing.
            LayoutError: the path is not a layout.
            DigestMismatchError: the blob holds other bytes than its digest names.
            UnsupportedMediaTypeError: not an image manifest or index manyfest uses.
        """
        return await anyio.to_thread.run_sync(self._get, ref)

    def _get(self, ref: Reference) -> Manifest:
        layout = self._layout(ref)
        if layout.state() == "new":
            raise LayoutError(no_layout_message(ref), hint="check the path (oci:PATH[:TAG])")
        media_type = ""
        digest = ref.digest
        if not digest:
            entry = self._entry(ref, layout)
            if entry is None:
                raise _not_found(ref)
            digest, media_type = entry["digest"], entry["mediaType"]
        data = layout.read_verified(digest, MANIFEST_LIMIT)
        if data is None:
            raise _not_found(ref)
        return _decode(ref, data, media_type)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *, built: bool = False) -> str:
        """Write ``manifest.raw`` as a blob; by tag, also point the tag's index.json entry
        at it (the entry replaced, and an untagged entry of that digest with it); with
        tag ``''`` (``oci:PATH``, or ``oci:PATH@DIGEST``
        with tag ``''``: a copy by digest) an entry with no ref.name, added unless one of
        that digest is there (as skopeo does); by digest alone (tag ``None``: a child) only
        the blob. Returns the digest. ``built`` is not used (a layout takes any media
        type).

        Raises:
            LayoutError: the layout cannot be created or written.
        """
        async with self._lock(ref):
            return await anyio.to_thread.run_sync(self._put, ref, manifest)

    def _put(self, ref: Reference, manifest: Manifest) -> str:
        layout = self._layout(ref)
        layout.create()
        if ref.digest and ref.digest != manifest.digest:
            raise DigestMismatchError(
                f"push manifest {ref}: its bytes have digest {manifest.digest}")
        try:
            layout.write_bytes(manifest.raw, manifest.digest)
        except OSError as exc:
            raise write_error(layout.root, f"cannot write manifest {manifest.digest}", exc
                              ) from None
        if ref.digest and ref.tag is None:
            return manifest.digest
        descriptor: dict[str, Any] = {"mediaType": manifest.media_type,
                                      "digest": manifest.digest, "size": manifest.size}
        tag = ref.tag or ""
        if tag:
            descriptor["annotations"] = {REF_NAME: tag}

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if tag:  # an untagged entry of the same digest is now named (as skopeo does)
                kept = [e for e in entries if _ref_name(e) != tag and (
                    _ref_name(e) or e["digest"] != manifest.digest)]
            else:
                kept = [e for e in entries if _ref_name(e) or e["digest"] != manifest.digest]
            return [*kept, descriptor]

        try:
            layout.update_index(change)
        except OSError as exc:
            raise write_error(layout.root, f"cannot write {INDEX_FILE}", exc) from None
        return manifest.digest

    async def delete_manifest(self, ref: Reference) -> bool:
        """Remove ``ref``'s index.json entries (by tag: that tag's; by digest: every entry
        of that digest); blobs stay. True when an entry was removed."""
        async with self._lock(ref):
            return await anyio.to_thread.run_sync(self._delete, ref)

    def _delete(self, ref: Reference) -> bool:
        layout = self._layout(ref)
        if layout.state() == "new":
            return False
        removed: list[int] = []

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if ref.digest:
                kept = [e for e in entries if e["digest"] != ref.digest]
            else:
                entry = _pick(ref, entries)
                kept = [e for e in entries if e is not entry and not (
                    ref.tag and _ref_name(e) == ref.tag)]
            removed.append(len(entries) - len(kept))
            return kept

        layout.update_index(change)
        return removed[0] > 0

    async def list_tags(self, ref: Reference) -> list[str]:
        """Every ref.name of the layout's index.json, in index order, once each."""
        def names() -> list[str]:
            layout = self._layout(ref)
            if layout.state() == "new":
                return []
            return list(dict.fromkeys(n for e in layout.entries() if (n := _ref_name(e))))
        return await anyio.to_thread.run_sync(names)

    # ---------------------------------------------------------------- blobs

    async def get_blob(self, ref: Reference, digest: str) -> bytes:
        """A blob's bytes (a config), checked against ``digest``.

        Raises:
            NotFoundError: the layout lacks the blob.
            DigestMismatchError: the file holds other bytes.
        """
        def read() -> bytes:
            layout = self._layout(ref)
            if layout.state() == "new":
                raise LayoutError(f"{ref}: no OCI image layout at {ref.layout}")
            data = layout.read_verified(digest)
            if data is None:
                raise _missing_blob(layout.root, digest)
            return data
        return await anyio.to_thread.run_sync(read)

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        """True when ``blobs/<alg>/<encoded>`` exists (a missing layout has none)."""
        return await anyio.to_thread.run_sync(
            lambda: self._layout(ref).blob_path(digest).is_file())

    async def mount_blob(self, target: Reference, digest: str, source: Reference) -> bool:
        """Between layouts: the blob made present in ``target`` (hard link or copy, hashed
        first); True when it is. False when ``source`` lacks it."""
        if not source.layout:
            return False
        try:
            await self.copy_blob(source, target, digest)
        except NotFoundError:
            return False
        return True

    async def copy_blob(self, source: Reference, target: Reference, digest: str,
                        size: int | None = None) -> int:
        """Layout to layout: hash the blob in ``source``, then hard-link it into ``target``
        (or copy it, on another file system); its size.

        Raises:
            NotFoundError: ``source`` lacks the blob.
            DigestMismatchError: its file holds other bytes.
            LayoutError: ``target`` cannot be created or written.
        """
        def copy() -> int:
            into = self._layout(target)
            into.create()
            try:
                return into.link_from(self._layout(source), digest)
            except OSError as exc:
                raise write_error(into.root, f"cannot write blob {digest}", exc) from None
        return await anyio.to_thread.run_sync(copy)

    async def upload_blob(self, target: Reference, data: bytes, digest: str | None = None) -> str:
        """Write ``data`` as a blob of ``target``'s layout; its digest.

        Raises:
            DigestMismatchError: ``digest`` given and not that of ``data``.
        """
        dgst = digest or digests.sha256(data)
        digests.verify(data, dgst, f"upload to {target.name}")

        def write() -> None:
            layout = self._layout(target)
            layout.create()
            try:
                layout.write_bytes(data, dgst)
            except OSError as exc:
                raise write_error(layout.root, f"cannot write blob {dgst}", exc) from None
        await anyio.to_thread.run_sync(write)
        return dgst

    async def write_blob(self, target: Reference, digest: str,
                         chunks: AsyncIterable[bytes]) -> int:
        """Stream ``chunks`` into blob ``digest`` of ``target``'s layout (a temporary file,
        hashed as written, fsync'd, renamed once the digest matches); its size. A blob
        already present is not rewritten (the chunks are not read).

        Raises:
            DigestMismatchError: the chunks hash to another digest (nothing is kept).
        """
        layout = self._layout(target)
        await anyio.to_thread.run_sync(layout.create)
        final = layout.blob_path(digest)
        if await anyio.to_thread.run_sync(final.is_file):
            return final.stat().st_size
        h = _hasher(digest)
        try:
            fd, tmp = await anyio.to_thread.run_sync(layout.new_temp)
        except OSError as exc:
            raise write_error(layout.root, f"cannot write blob {digest}", exc) from None
        size = 0
        with interrupts.temporary(tmp):
            try:
                with os.fdopen(fd, "wb") as fh:
                    async for chunk in chunks:
                        h.update(chunk)
                        size += len(chunk)
                        fh.write(chunk)  # to the page cache: short, so in the loop
                    fh.flush()
                    await anyio.to_thread.run_sync(os.fsync, fh.fileno())
                actual = f"{digest.partition(':')[0]}:{h.hexdigest()}"
                if actual != digest:
                    raise DigestMismatchError(
                        f"copy blob {digest} to {target.name}: content has digest {actual}")
                try:
                    await anyio.to_thread.run_sync(layout.commit, tmp, digest)
                except OSError as exc:
                    raise write_error(layout.root, f"cannot write blob {digest}", exc
                                      ) from None
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return size

    async def read_blob(self, source: Reference, digest: str) -> AsyncIterator[bytes]:
        """Blob ``digest`` of ``source``'s layout in chunks, hashed as read; each chunk is
        passed on once the next is read, the last once the digest matched (so an upload fed
        from it never completes with other bytes).

        Raises:
            NotFoundError: the layout lacks the blob.
            DigestMismatchError: the file holds other bytes.
        """
        layout = self._layout(source)
        path = layout.blob_path(digest)
        try:
            fh = await anyio.to_thread.run_sync(open, path, "rb")
        except FileNotFoundError:
            raise _missing_blob(layout.root, digest) from None
        h = _hasher(digest)
        try:
            held = b""
            while chunk := await anyio.to_thread.run_sync(fh.read, CHUNK):
                h.update(chunk)
                if held:
                    yield held
                held = chunk
            actual = f"{digest.partition(':')[0]}:{h.hexdigest()}"
            if actual != digest:
                raise DigestMismatchError(
                    f"{source.name}: blob {digest} holds content with digest {actual}",
                    hint="the layout is corrupt: write the image into it again")
            if held:
                yield held
        finally:
            fh.close()

    async def blob_size(self, source: Reference, digest: str) -> int:
        """The size of blob ``digest`` in ``source``'s layout.

        Raises:
            NotFoundError: the layout lacks the blob.
        """
        layout = self._layout(source)
        try:
            return (await anyio.to_thread.run_sync(layout.blob_path(digest).stat)).st_size
        except FileNotFoundError:
            raise _missing_blob(layout.root, digest) from None


def _decode(ref: Reference, data: bytes, media_type: str) -> Manifest:
    """The manifest in ``data``, its shape checked; errors name the reference."""
    try:
        manifest = Manifest.from_bytes(data, media_type)
        if manifest.is_index:
            manifest.index()
        else:
            manifest.blobs()
    except UnsupportedMediaTypeError as exc:
        raise type(exc)(f"{ref}: {exc.message}", hint=exc.hint) from exc
    return manifest
