"""Atomic file writes: a reader (or a crash, or a signal) never sees a half-written file.

One way of writing a file whole, used by the local store, the credentials writer and the
publish report: the bytes go to a temporary file in the target's directory (or another
directory of the same file system), are flushed and fsync'd, get their mode, and the file
is renamed over the target (``os.replace``, atomic on POSIX). The temporary file is marked
with :func:`manyfest.interrupts.temporary`, so an exit at once (a second signal) removes it
too; on any error it is removed and the error re-raised.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from manyfest import interrupts


@functools.cache
def _umask() -> int:
    """The process umask, read once (Linux: from /proc, which changes nothing; else by
    setting and restoring it, before any thread of ours writes files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(
    path: Path,
    data: bytes | Iterable[bytes],
    *,
    mode: int | None = None,
    temp_dir: Path | None = None,
    sync_dir: bool = False,
) -> None:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: the file to write (replaced when it exists; its directory must exist).
        data: the whole content, or chunks of it written in turn (so a large document can
            be streamed, never held whole).
        mode: the file's permission bits (e.g. ``0o600`` for credentials); ``None``: those
            of the regular file already at ``path`` (a read-only report stays read-only),
            else what ``open()`` would give a new file (0o666 less the umask).
        temp_dir: where the temporary file is made (default: ``path``'s directory); it
            must be on the same file system as ``path``.
        sync_dir: also fsync the directory after the rename, so the rename itself survives
            a power cut (credentials); failures of that step are ignored.

    Raises:
        OSError: the temporary file could not be made, written or renamed (``path`` is
            then untouched and the temporary file removed).
    """
    directory = temp_dir if temp_dir is not None else path.parent
    if mode is None:
        with contextlib.suppress(OSError):
            status = path.stat()
            if stat.S_ISREG(status.st_mode):
                mode = stat.S_IMODE(status.st_mode)
    # A short fixed prefix: a name as long as the file system allows must still fit.
    fd, tmp = tempfile.mkstemp(prefix=".manyfest-", suffix=".tmp", dir=directory)
    with interrupts.temporary(tmp):
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    fh.write(data)
                else:
                    for chunk in data:
                        fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    if sync_dir:
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
