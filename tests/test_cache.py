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
from manyfest import reference
from manyfest.cache import FactCache
from manyfest.content import Manifest
from manyfest.platform import Platform
from tests.helpers import PLATFORMS, REPO_ROOT, manyfest, platform_suffix, seed
from tests.imagewriter import build_image
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer


def _plan(host: str, ns: str, path: Path, target: str = "app:1") -> Path:
    lines = [f"image: {host}/{ns}/{target}", "manifests:"]
    lines += [f"  - image: {host}/{ns}/app-{platform_suffix(p)}:1" for p in PLATFORMS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "manifests").rglob("*") if p.is_file())


@pytest.mark.slow  # end to end
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


@pytest.mark.slow  # end to end
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


@pytest.mark.slow  # end to end
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


# ------------------------------------------------------------------ FactCache itself (fast)


def _image() -> Manifest:
    return build_image(Platform("linux", "arm64", "v8"), "cache").manifest


def test_a_flushed_entry_is_read_back_by_another_cache(tmp_path: Path) -> None:
    manifest = _image()
    labels = {"org.opencontainers.image.version": "1.2.3"}
    writer = FactCache(tmp_path)
    writer.put_manifest(manifest, Platform("linux", "arm64", "v8"), labels)
    assert writer.flush() == 1
    assert writer.flush() == 0  # nothing pending any more
    reader = FactCache(tmp_path)
    found = reader.manifest(manifest.digest)
    assert found == manifest  # exact bytes, media type and digest
    assert reader.platform(manifest.digest) == Platform("linux", "arm64", "v8")
    assert reader.labels(manifest.digest) == labels
    [path] = [p for p in (tmp_path / "manifests").rglob("*") if p.is_file()]
    assert path == tmp_path / "manifests" / "sha256" / manifest.digest.removeprefix("sha256:")


def test_an_entry_whose_bytes_no_longer_match_is_a_miss(tmp_path: Path) -> None:
    manifest = _image()
    writer = FactCache(tmp_path)
    writer.put_manifest(manifest, Platform("linux", "arm64", "v8"))
    writer.flush()
    path = tmp_path / "manifests" / "sha256" / manifest.digest.removeprefix("sha256:")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"schemaVersion", b"schemaVersioN"))  # still msgpack
    assert FactCache(tmp_path).manifest(manifest.digest) is None
    path.write_bytes(b"\xc1 not msgpack")
    assert FactCache(tmp_path).manifest(manifest.digest) is None
    assert FactCache(tmp_path).platform(manifest.digest) is None


def test_the_platform_learnt_later_is_added_to_a_cached_manifest(tmp_path: Path) -> None:
    manifest = _image()
    cache = FactCache(tmp_path)
    cache.put_manifest(manifest)
    assert cache.platform(manifest.digest) is None
    cache.put_manifest(manifest, Platform("linux", "arm64", "v8"), {})
    cache.flush()
    again = FactCache(tmp_path)
    assert again.platform(manifest.digest) == Platform("linux", "arm64", "v8")
    assert again.labels(manifest.digest) == {}


def test_tag_hints_of_two_runs_are_merged(tmp_path: Path) -> None:
    one, two = FactCache(tmp_path), FactCache(tmp_path)
    ref = reference.parse("127.0.0.1:5000/app:1")
    digest_a, digest_b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    one.put_tag_hint(ref, digest_a)
    two.put_tag_hint(ref.with_tag("2"), digest_b)
    assert one.flush() == 1
    assert two.flush() == 1  # merged into what the first run wrote
    third = FactCache(tmp_path)
    assert third.tag_hint(ref) == digest_a
    assert third.tag_hint(ref.with_tag("2")) == digest_b
    assert third.tag_hint(ref.with_digest(digest_a)) is None  # hints are for tags only


def test_a_disabled_cache_neither_remembers_nor_writes(tmp_path: Path) -> None:
    manifest = _image()
    root = tmp_path / "facts"
    cache = FactCache(root, enabled=False)
    cache.put_manifest(manifest, Platform("linux", "arm64", "v8"))
    cache.put_tag_hint(reference.parse("127.0.0.1:5000/app:1"), manifest.digest)
    assert cache.manifest(manifest.digest) is None
    assert cache.tag_hint(reference.parse("127.0.0.1:5000/app:1")) is None
    assert cache.flush() == 0
    assert not root.exists()
