"""On-disk cache of immutable facts, content-addressed, safe for parallel processes.

Layout under the cache directory (``$MANYFEST_CACHE_DIR``, else platformdirs'
``user_cache_dir("manyfest")``, e.g. ``~/.cache/manyfest``)::

    manifests/<algorithm>/<hex>     exact manifest bytes (verified against the name on read)
    platforms/<algorithm>/<hex>     platform read from the config blob with that digest
    tags/<sha256 of reference>      the digest a tag reference pointed at when last seen

Manifests and platforms never change for a digest, so any process may write them at any
time: every write goes to a temporary file in the same directory, then ``os.replace``; a
reader sees a whole file or none. Writes are collected in memory during a run and written by
:meth:`FactCache.flush` (the session runs it in a worker thread at the end), so the event
loop never blocks on the file system for them. ``tags`` entries are only hints (whether a
HEAD is likely to be enough); a stale hint costs one extra request, never a wrong result.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import msgspec
import platformdirs

from manyfest import digest as digests
from manyfest.content import Manifest
from manyfest.platform import Platform
from manyfest.reference import Reference


class _PlatformRecord(msgspec.Struct, array_like=True):
    os: str
    architecture: str
    variant: str
    os_version: str
    os_features: list[str]


class _ManifestRecord(msgspec.Struct, array_like=True):
    media_type: str
    raw: bytes


_PLATFORM = msgspec.json.Decoder(_PlatformRecord)
_MANIFEST = msgspec.msgpack.Decoder(_ManifestRecord)


def default_dir() -> Path:
    """``$MANYFEST_CACHE_DIR``, else the platform's user cache directory for manyfest."""
    env = os.environ.get("MANYFEST_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("manyfest"))


class FactCache:
    """Immutable registry facts on disk.

    Args:
        root: the cache directory (default :func:`default_dir`); ``None`` entries are never
            fatal: an unreadable or corrupt file is a miss.
        enabled: False makes every lookup a miss and every store a no-op.
    """

    def __init__(self, root: Path | None = None, *, enabled: bool = True) -> None:
        self.root = root or default_dir()
        self.enabled = enabled
        self._pending: dict[Path, bytes] = {}
        self._hints: dict[str, str | None] = {}

    def flush(self) -> int:
        """Write every pending entry (atomically, each); returns how many were written."""
        pending, self._pending = self._pending, {}
        made: set[Path] = set()
        for path, data in pending.items():
            if path.parent not in made:
                with contextlib.suppress(OSError):
                    path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            self._write(path, data)
        return len(pending)

    def _path(self, kind: str, digest: str) -> Path | None:
        algorithm, _, encoded = digest.partition(":")
        if not digests.is_valid(digest):
            return None
        return Path(os.path.join(self.root, kind, algorithm, encoded))

    def _write(self, path: Path, data: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass  # a cache that cannot be written is a cache that misses

    def _read(self, path: Path | None) -> bytes | None:
        if path is None:
            return None
        if path in self._pending:
            return self._pending[path]
        try:
            return path.read_bytes()
        except OSError:
            return None

    def manifest(self, digest: str) -> Manifest | None:
        """The manifest with ``digest``, if cached and its bytes still hash to it."""
        if not self.enabled:
            return None
        data = self._read(self._path("manifests", digest))
        if data is None:
            return None
        try:
            record = _MANIFEST.decode(data)
        except msgspec.DecodeError:
            return None
        if digests.compute(record.raw, digest.partition(":")[0]) != digest:
            return None
        return Manifest(record.raw, record.media_type, digest)

    def put_manifest(self, manifest: Manifest) -> None:
        """Remember a manifest's exact bytes and media type under its digest."""
        if not self.enabled:
            return
        path = self._path("manifests", manifest.digest)
        if path is not None and path not in self._pending and not path.exists():
            record = _ManifestRecord(manifest.media_type, manifest.raw)
            self._pending[path] = msgspec.msgpack.encode(record)

    def platform(self, config_digest: str) -> Platform | None:
        """The platform read from the config blob ``config_digest``, if cached."""
        if not self.enabled:
            return None
        data = self._read(self._path("platforms", config_digest))
        if data is None:
            return None
        try:
            r = _PLATFORM.decode(data)
        except msgspec.DecodeError:
            return None
        return Platform(r.os, r.architecture, r.variant, r.os_version, tuple(r.os_features))

    def put_platform(self, config_digest: str, platform: Platform) -> None:
        """Remember the platform of a config blob."""
        if not self.enabled:
            return
        path = self._path("platforms", config_digest)
        if path is not None and path not in self._pending and not path.exists():
            p = platform
            record = _PlatformRecord(p.os, p.architecture, p.variant, p.os_version,
                                     list(p.os_features))
            self._pending[path] = msgspec.json.encode(record)

    def _tag_path(self, ref: Reference) -> Path:
        key = hashlib.sha256(str(ref).encode()).hexdigest()
        return Path(os.path.join(self.root, "tags", key[:2], key))

    def tag_hint(self, ref: Reference) -> str | None:
        """The digest ``ref`` (a tag) pointed at when last resolved, or None."""
        if not self.enabled:
            return None
        key = str(ref)
        if key in self._hints:
            return self._hints[key]
        data = self._read(self._tag_path(ref))
        text = data.decode(errors="replace").strip() if data is not None else ""
        hint = text if digests.is_valid(text) else None
        self._hints[key] = hint
        return hint

    def put_tag_hint(self, ref: Reference, digest: str) -> None:
        """Remember what ``ref`` pointed at (a hint for the next run)."""
        if self.enabled and self.tag_hint(ref) != digest:
            self._hints[str(ref)] = digest
            self._pending[self._tag_path(ref)] = digest.encode()
