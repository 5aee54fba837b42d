"""manyfest.files.atomic_write: whole files or none, the mode asked for, no temporary left."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyfest import interrupts
from manyfest.files import atomic_write


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory of this test's own (conftest puts a home directory in ``tmp_path``)."""
    own = tmp_path / "files"
    own.mkdir()
    return own


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_and_replaces(workdir: Path) -> None:
    target = workdir / "report.jsonl"
    target.write_bytes(b"old\n")
    atomic_write(target, b'{"a": 1}\n')
    assert target.read_bytes() == b'{"a": 1}\n'
    assert [p.name for p in workdir.iterdir()] == ["report.jsonl"]


def test_streams_chunks(workdir: Path) -> None:
    target = workdir / "big"
    atomic_write(target, (bytes([i]) * 65536 for i in range(40)))
    data = target.read_bytes()
    assert len(data) == 40 * 65536
    assert data[65536 * 7] == 7


def test_mode_given_and_default_umask(workdir: Path) -> None:
    secret = workdir / "config.json"
    atomic_write(secret, b"{}", mode=0o600, sync_dir=True)
    assert _mode(secret) == 0o600
    plain = workdir / "plain"
    atomic_write(plain, b"x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert _mode(plain) == 0o666 & ~mask


def test_failure_leaves_target_and_no_temporary(workdir: Path) -> None:
    target = workdir / "index.json"
    target.write_bytes(b"kept")

    def chunks() -> Iterator[bytes]:
        yield b"half"
        raise RuntimeError("cut short")

    with pytest.raises(RuntimeError, match="cut short"):
        atomic_write(target, chunks())
    assert target.read_bytes() == b"kept"
    assert [p.name for p in workdir.iterdir()] == ["index.json"]


def test_temporary_is_marked_while_writing(workdir: Path) -> None:
    target = workdir / "f"
    seen: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        seen.append(sorted(interrupts._temporaries))
        yield b"x"

    atomic_write(target, chunks())
    [marked] = seen
    assert len(marked) == 1
    assert Path(marked[0]).parent == workdir
    assert Path(marked[0]).name.startswith(".manyfest-")
    assert marked[0].endswith(".tmp")
    assert not interrupts._temporaries


def test_missing_directory_raises_oserror(workdir: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(workdir / "nope" / "f", b"x")


def test_longest_name_the_file_system_allows(workdir: Path) -> None:
    """The temporary file's name must not be longer than the target's (a store entry named
    by a long repository and a digest)."""
    limit = os.pathconf(workdir, "PC_NAME_MAX")
    target = workdir / ("n" * limit)
    atomic_write(target, b"x")
    assert target.read_bytes() == b"x"


def test_an_existing_file_keeps_its_mode_unless_one_is_given(workdir: Path) -> None:
    target = workdir / "report.jsonl"
    target.write_bytes(b"old")
    target.chmod(0o444)
    atomic_write(target, b"new")
    assert (target.read_bytes(), _mode(target)) == (b"new", 0o444)
    atomic_write(target, b"newer", mode=0o600)
    assert (target.read_bytes(), _mode(target)) == (b"newer", 0o600)
