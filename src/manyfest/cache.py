"""On-disk cache of immutable facts, content-addressed, safe for parallel processes.

Layout under the cache directory (``$MANYFEST_CACHE_DIR``, else platformdirs'
``user_cache_dir("manyfest")``, e.g. ``~/.cache/manyfest``)::

    manifests/<algorithm>/<hex>     exact manifest bytes, media type, and the platform and
                                    ``org.opencontainers.image.*`` labels read from the
                                    image's config (verified against the name on read)
    tags/<sha256 of registry/repo>  {tag: digest} the repository's tags pointed at when last seen

A manifest and its config never change for a digest, so any process may write them at any
time: every write goes to a temporary file in the same directory, then ``os.replace``; a
reader sees a whole file or none. Writes are collected in memory during a run and written by
:meth:`FactCache.flush` (the session runs it in a worker thread at the end), so the event
loop never blocks on the file system for them. ``tags`` entries are only hints (whether a
HEAD is likely to be enough): a stale or lost hint (two processes merging the same file)
costs one extra request, never a wrong result.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from pathlib import Path

import anyio
import msgspec
import platformdirs

from manyfest import digest as digests
from manyfest import interrupts
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
    platform: _PlatformRecord | None = None
    # The config's org.opencontainers.image.* labels; None: not recorded (a record written
    # before labels were kept), {} none. A trailing optional field: old records still decode.
    labels: dict[str, str] | None = None


_MANIFEST = msgspec.msgpack.Decoder(_ManifestRecord)
_HINTS = msgspec.json.Decoder(dict[str, str])
_unique = itertools.count()


def default_dir() -> Path:
    """``$MANYFEST_CACHE_DIR``, else the platform's user cache directory for manyfest."""
    env = os.environ.get("MANYFEST_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("manyfest"))


class FactCache:
    """Immutable registry facts on disk.

    Args:
        root: the cache directory (default :func:`default_dir`). An unreadable or corrupt
            file is a miss, never an error.
        enabled: False makes every lookup a miss and every store a no-op.
    """

    def __init__(self, root: Path | None = None, *, enabled: bool = True) -> None:
        self.root = str(root or default_dir())
        self.enabled = enabled
        self._manifests: dict[str, _ManifestRecord] = {}
        self._pending: set[str] = set()
        self._hints: dict[str, dict[str, str]] = {}
        self._changed_hints: set[str] = set()

    # ------------------------------------------------------------------ files

    def _manifest_path(self, digest: str) -> str | None:
        if not digests.is_valid(digest):
            return None
        algorithm, _, encoded = digest.partition(":")
        return os.path.join(self.root, "manifests", algorithm, encoded)

    def _hints_path(self, repository: str) -> str:
        key = hashlib.sha256(repository.encode()).hexdigest()
        return os.path.join(self.root, "tags", key)

    @staticmethod
    def _read(path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            return None

    @staticmethod
    def _write(path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically; a failure only means a cache miss later."""
        tmp = f"{path}.{os.getpid()}.{next(_unique)}.tmp"
        with interrupts.temporary(tmp):
            try:
                try:
                    fh = open(tmp, "xb")  # noqa: SIM115 - closed below; retried after mkdir
                except FileNotFoundError:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    fh = open(tmp, "xb")  # noqa: SIM115
                with fh:
                    fh.write(data)
                os.replace(tmp, path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def flush(self) -> int:
        """Write every pending entry (each atomically); returns how many files were written."""
        written = 0
        pending, self._pending = self._pending, set()
        for digest in pending:
            path = self._manifest_path(digest)
            record = self._manifests.get(digest)
            if path is not None and record is not None:
                self._write(path, msgspec.msgpack.encode(record))
                written += 1
        changed, self._changed_hints = self._changed_hints, set()
        for repository in changed:
            path = self._hints_path(repository)
            merged = self._load_hints(path)
            merged.update(self._hints[repository])
            self._write(path, msgspec.json.encode(merged))
            written += 1
        return written

    def take_pending(self) -> list[tuple[str, _ManifestRecord]]:
        """The manifest records still to be written, taken as they are now (no longer
        pending: :meth:`write_records` writes them). Call it in the thread that adds and
        forgets records (the event loop's): a record forgotten after this is still
        written, one changed after it is pending again."""
        pending, self._pending = self._pending, set()
        taken = []
        for digest in pending:
            record = self._manifests.get(digest)
            if record is not None and self._manifest_path(digest) is not None:
                taken.append((digest, record))
        return taken

    def write_records(self, records: list[tuple[str, _ManifestRecord]]) -> int:
        """Write records :meth:`take_pending` took, each atomically; touches no state, so
        it is safe in a worker thread while the event loop works. Returns the files
        written."""
        for digest, record in records:
            path = self._manifest_path(digest)
            if path is not None:
                self._write(path, msgspec.msgpack.encode(record))
        return len(records)

    def let_go(self, records: list[tuple[str, _ManifestRecord]]) -> None:
        """Let written records go from memory (read back from disk when asked for again),
        but not one added or changed since it was taken."""
        for digest, record in records:
            if digest not in self._pending and self._manifests.get(digest) is record:
                self._manifests.pop(digest, None)

    async def spill(self, *, let_go: bool = True) -> int:
        """Write every pending manifest record now (as :meth:`flush`), the files in a worker
        thread while the event loop goes on (:meth:`take_pending` in the loop,
        :meth:`write_records` in the thread); ``let_go``: then let the records written go
        from memory (:meth:`let_go`), so a run of 10,000 lists holds the facts of the lists
        in flight, not of every list. Returns the files written."""
        if not self.enabled:
            return 0
        records = self.take_pending()
        if not records:
            return 0
        written = await anyio.to_thread.run_sync(self.write_records, records)
        if let_go:
            self.let_go(records)
        return written

    def forget(self, digest: str) -> None:
        """Let a manifest's record go from memory unless it is still to be written (a run
        releasing a source it will not need again; it is read from disk if needed)."""
        if digest not in self._pending:
            self._manifests.pop(digest, None)

    # ------------------------------------------------------------------ manifests

    def _record(self, digest: str) -> _ManifestRecord | None:
        record = self._manifests.get(digest)
        if record is not None:
            return record
        path = self._manifest_path(digest)
        data = self._read(path) if path is not None else None
        if data is None:
            return None
        try:
            record = _MANIFEST.decode(data)
        except msgspec.DecodeError:
            return None
        if digests.compute(record.raw, digest.partition(":")[0]) != digest:
            return None
        self._manifests[digest] = record
        return record

    def manifest(self, digest: str) -> Manifest | None:
        """The manifest with ``digest``, if cached and its bytes still hash to it."""
        if not self.enabled:
            return None
        record = self._record(digest)
        return None if record is None else Manifest(record.raw, record.media_type, digest)

    def platform(self, digest: str) -> Platform | None:
        """The platform of the image manifest ``digest`` (from its config), if cached."""
        if not self.enabled:
            return None
        record = self._record(digest)
        if record is None or record.platform is None:
            return None
        r = record.platform
        return Platform(r.os, r.architecture, r.variant, r.os_version, tuple(r.os_features))

    def labels(self, digest: str) -> dict[str, str] | None:
        """The ``org.opencontainers.image.*`` labels of the image manifest ``digest``'s config,
        if cached (``{}``: it has none; ``None``: not known)."""
        if not self.enabled:
            return None
        record = self._record(digest)
        return None if record is None or record.labels is None else dict(record.labels)

    def put_manifest(
        self,
        manifest: Manifest,
        platform: Platform | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Remember a manifest's exact bytes and media type (and an image's platform and its
        config's ``org.opencontainers.image.*`` labels)."""
        if not self.enabled:
            return
        old = self._record(manifest.digest)
        if old is not None:
            if platform is None or old.platform is not None:
                platform = None
            if labels is None or old.labels is not None:
                labels = None
            if platform is None and labels is None:
                return
        p = platform
        record = _ManifestRecord(
            manifest.media_type,
            manifest.raw,
            None
            if p is None
            else _PlatformRecord(p.os, p.architecture, p.variant, p.os_version,
                                 list(p.os_features)),
            labels,
        )
        if old is not None:
            record.platform = record.platform or old.platform
            record.labels = record.labels if record.labels is not None else old.labels
        self._manifests[manifest.digest] = record
        self._pending.add(manifest.digest)

    # ------------------------------------------------------------------ tag hints

    def _load_hints(self, path: str) -> dict[str, str]:
        data = self._read(path)
        if data is None:
            return {}
        try:
            return _HINTS.decode(data)
        except msgspec.DecodeError:
            return {}

    def _repository_hints(self, ref: Reference) -> dict[str, str]:
        hints = self._hints.get(ref.name)
        if hints is None:
            hints = self._hints[ref.name] = self._load_hints(self._hints_path(ref.name))
        return hints

    def tag_hint(self, ref: Reference) -> str | None:
        """The digest ``ref`` (a tag) pointed at when last resolved, or None."""
        if not self.enabled or ref.tag is None:
            return None
        hint = self._repository_hints(ref).get(ref.tag)
        return hint if hint is not None and digests.is_valid(hint) else None

    def put_tag_hint(self, ref: Reference, digest: str) -> None:
        """Remember what ``ref`` pointed at (a hint for the next run)."""
        if not self.enabled or ref.tag is None:
            return
        hints = self._repository_hints(ref)
        if hints.get(ref.tag) != digest:
            hints[ref.tag] = digest
            self._changed_hints.add(ref.name)
