"""tests/registry_storage.py: images written straight into a registry's filesystem storage are
what a push by tag leaves there, file for file, and a registry started on them serves them.

The benchmarks seed with it (``benchmarks.harness.seed_storage``: 40,000 images in minutes,
not the hour a push takes); these tests build images the way the harness does (4 platforms,
real shape) and compare against the real ``docker-registry``.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import anyio
import pytest

from manyfest import mediatypes
from manyfest.platform import Platform
from tests.imagewriter import Image, Shape, build_image, build_images, push_built
from tests.registry_server import RegistryServer
from tests.registry_storage import V2, StorageWriter, write_built

PLATFORMS = {
    "amd64": Platform("linux", "amd64"),
    "arm": Platform("linux", "arm", "v7"),
    "arm64": Platform("linux", "arm64", "v8"),
    "win": Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",)),
}
SHAPE = Shape()
ACCEPT = ", ".join((mediatypes.DOCKER_MANIFEST, mediatypes.OCI_MANIFEST,
                    mediatypes.DOCKER_LIST, mediatypes.OCI_INDEX))
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def bench_images(tags: range) -> dict[str, Image]:
    """Images named and seeded like the benchmark's: ``bench/app-<platform>:1.0.<i>``."""
    return build_images(
        ((f"bench/app-{suffix}:1.0.{i}", platform, f"bench 1.0.{i}")
         for i in tags for suffix, platform in PLATFORMS.items()),
        shape=SHAPE,
    )


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every directory and file under ``root``: relative path -> (kind, mode, file bytes)."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for directory, _dirs, files in os.walk(root):
        rel = os.path.relpath(directory, root)
        out[rel] = ("dir", os.stat(directory).st_mode, b"")
        for name in files:
            path = os.path.join(directory, name)
            out[os.path.join(rel, name)] = ("file", os.stat(path).st_mode,
                                            Path(path).read_bytes())
    return out


def get(url: str, accept: str = "") -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: (status, headers, body); an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with _HTTP.open(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_written_storage_is_the_tree_a_push_by_tag_leaves(tmp_path: Path) -> None:
    images = bench_images(range(2))
    pushed = RegistryServer(workdir=tmp_path / "pushed")
    with pushed:
        pushed_digests = anyio.run(partial(push_built, pushed.host, images, check_blobs=False))
    written = RegistryServer(workdir=tmp_path / "written")
    written_digests = write_built(written.storage_dir, images)

    assert written_digests == pushed_digests
    assert written_digests == {n: "sha256:" + hashlib.sha256(i.manifest.raw).hexdigest()
                               for n, i in images.items()}
    want, got = tree(pushed.storage_dir), tree(written.storage_dir)
    assert sorted(got) == sorted(want)
    assert [p for p in want if want[p] != got[p]] == []
    # 8 images: 8 manifests + 8 configs + 4 x 9 base layers + 8 x 3 own layers.
    blobs = [p for p in got if p.endswith("/data")]
    assert len(blobs) == 8 + 8 + 36 + 24
    amd64 = V2 / "repositories" / "bench" / "app-amd64"
    digest = written_digests["bench/app-amd64:1.0.1"]
    assert got[str(amd64 / "_manifests" / "tags" / "1.0.1" / "current" / "link")][2] == (
        digest.encode())
    layers = [p for p in got if p.startswith(str(amd64 / "_layers")) and p.endswith("/link")]
    assert len(layers) == 9 + 2 * 4  # base layers, then per tag its config and 3 own layers


def test_a_registry_started_on_written_storage_serves_every_manifest_and_blob(
    tmp_path: Path,
) -> None:
    images = bench_images(range(3))
    images["other/oci:big"] = build_image(PLATFORMS["arm64"], "big one", oci=True,
                                          shape=Shape(layers=2, shared_layers=1,
                                                      big_layers=(300_000,)))
    server = RegistryServer(workdir=tmp_path / "registry")
    writer = StorageWriter(server.storage_dir)
    digests = {name: writer.write(name, image) for name, image in images.items()}
    # Blobs of one platform's base are written once, their links once per repository.
    # The OCI image's lower layer is the arm64 base's lowest: stored once already.
    assert writer.blobs_written == (12 + 12 + 4 * 9 + 12 * 3) + (1 + 1 + 1 + 1)
    with server:
        base = f"http://{server.host}/v2"
        for name, image in images.items():
            repository, tag = name.rsplit(":", 1)
            status, headers, body = get(f"{base}/{repository}/manifests/{tag}", ACCEPT)
            assert status == 200, (name, body[:200])
            assert headers["Docker-Content-Digest"] == digests[name]
            assert body == image.manifest.raw
            assert headers["Content-Type"] == image.manifest.media_type
            sizes = image.blob_sizes
            assert len(sizes) == len(image.blob_digests)
            for digest, size in sizes.items():
                status, headers, body = get(f"{base}/{repository}/blobs/{digest}")
                assert status == 200, (name, digest)
                assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
                assert len(body) == size
        status, _, body = get(f"{base}/bench/app-win/tags/list")
        assert status == 200
        assert sorted(json.loads(body)["tags"]) == ["1.0.0", "1.0.1", "1.0.2"]
        # A blob is served only through its repository's link: the arm64 image's own layer
        # is stored, but not linked from the amd64 repository.
        arm64_own = images["bench/app-arm64:1.0.0"].blob_digests[-1]
        status, _, _ = get(f"{base}/bench/app-amd64/blobs/{arm64_own}")
        assert status == 404
        status, _, _ = get(f"{base}/bench/app-amd64/manifests/9.9.9", ACCEPT)
        assert status == 404


@pytest.mark.parametrize("name", ["bench/app", "bench/app@sha256:" + "0" * 64, ":tag",
                                  "bench/app:a/b"])
def test_the_writer_takes_only_repository_colon_tag(tmp_path: Path, name: str) -> None:
    image = build_image(PLATFORMS["amd64"], "x", shape=Shape(layers=1, shared_layers=0))
    with pytest.raises(ValueError, match="not repository:tag"):
        StorageWriter(tmp_path).write(name, image)
    assert not (tmp_path / V2 / "repositories").exists()
