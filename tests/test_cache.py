"""The on-disk cache of immutable facts: verified on read, best effort on write.

A cache entry whose bytes no longer hash to its digest is dropped and the manifest fetched
again; concurrent runs sharing one cache both succeed; a full disk never fails a publish.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from manyfest import digest as digests
from tests.helpers import PLATFORMS, REPO_ROOT, manyfest, platform_suffix, seed
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


def _plan(host: str, ns: str, path: Path, target: str = "app:1") -> Path:
    lines = [f"image: {host}/{ns}/{target}", "manifests:"]
    lines += [f"  - image: {host}/{ns}/app-{platform_suffix(p)}:1" for p in PLATFORMS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "manifests").rglob("*") if p.is_file())


def test_corrupt_entry_is_dropped_and_fetched_again(registry: RegistryServer, ns: str,
                                                    tmp_path: Path) -> None:
    images = seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    cache = tmp_path / "cache"
    env = {"MANYFEST_CACHE_DIR": str(cache)}
    first = manyfest("publish", "--json", str(_plan(registry.host, ns, tmp_path / "a.yaml")),
                     env=env)
    assert first.returncode == 0, first.stderr
    digest = json.loads(first.stdout)["results"][0]["digest"]
    # Rewrite every cached manifest with other bytes under the same name (still a valid
    # record): a reader that trusted the file name would publish the wrong children.
    corrupted = 0
    for path in _cache_files(cache):
        record = msgspec.msgpack.decode(path.read_bytes())
        record[1] = record[1].replace(b'"schemaVersion"', b'"schemaVersion" ')
        path.write_bytes(msgspec.msgpack.encode(record))
        corrupted += 1
    assert corrupted >= len(PLATFORMS)
    proxy = QuirkProxy(registry.host).start()
    try:
        again = manyfest("publish", "--json",
                         str(_plan(proxy.host, ns, tmp_path / "b.yaml", "app:2")), env=env)
        assert again.returncode == 0, again.stderr
        # every source manifest was fetched again (the cache was not trusted); a trusted
        # entry would have cost a HEAD of the tag only
        for name in images:
            repo = name.split(":")[0]
            assert proxy.count("GET", f"/v2/{repo}/manifests/") == 1, (name, proxy.seen)
    finally:
        proxy.stop()
    result = json.loads(again.stdout)["results"][0]
    assert result["status"] == "created"
    assert result["digest"] == digest  # same children: the same list bytes
    # the cache files hash to their names again (rewritten from the registry's bytes)
    for path in _cache_files(cache):
        record = msgspec.msgpack.decode(path.read_bytes())
        assert digests.sha256(record[1]) == f"sha256:{path.name}"


def test_concurrent_runs_share_one_cache(registry: RegistryServer, ns: str,
                                         tmp_path: Path) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    cache = tmp_path / "cache"
    env = {"MANYFEST_CACHE_DIR": str(cache), "COLUMNS": "200"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "manyfest", "publish", "--json",
             str(_plan(registry.host, ns, tmp_path / f"p{i}.yaml", f"app:c{i}"))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env={**os.environ, **env},
        )
        for i in range(4)
    ]
    digests_seen = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        digests_seen.add(json.loads(out)["results"][0]["digest"])
    assert len(digests_seen) == 1  # same sources, same list bytes
    for path in _cache_files(cache):
        record = msgspec.msgpack.decode(path.read_bytes())
        assert digests.sha256(record[1]) == f"sha256:{path.name}"
    assert not list(cache.rglob("*.tmp"))  # no temporary file left behind


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system refuses; returns the errno."""
    try:
        with path.open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError as exc:
        return exc.errno or 0


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled up: every write there fails with ENOSPC."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up here: {done.stderr.strip()}")
    try:
        assert _fill(mount / "filler") == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_never_fails_a_publish(registry: RegistryServer, ns: str, tmp_path: Path,
                                         full_disk: Path) -> None:
    seed(registry.host, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS])
    env = {"MANYFEST_CACHE_DIR": str(full_disk / "cache")}
    proc = manyfest("publish", "--json", str(_plan(registry.host, ns, tmp_path / "p.yaml")),
                    env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "created"
    assert "Traceback" not in proc.stderr
    again = manyfest("publish", "--json", str(_plan(registry.host, ns, tmp_path / "p.yaml")),
                     env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"][0]["status"] == "unchanged"
