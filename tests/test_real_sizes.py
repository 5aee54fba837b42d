"""Images of real sizes on the real registry: the cases that tiny test images hid.

Every body used to be read with one ``StreamReader.read(n)``, which returns what is buffered:
ordinary 8 KiB configs failed as "corrupt" (2 runs in 3). These tests keep the failing cases:
8 KiB and 200 KiB configs, copies after a refused mount with blobs of 16 KiB to 3 MiB,
manifests over the 4 MiB limit, and an image made by buildah.

Expectations are computed independently of manyfest: list bytes as ``docker manifest push``
writes them (``json.dumps(indent=3)`` in docker's key order), blobs read back with urllib.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from manyfest import mediatypes
from manyfest.platform import Platform
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed_built
from tests.imagewriter import KIB, MIB, Image, Shape, build_image, distinct_blobs
from tests.quirk_proxy import QuirkProxy, mount_answers_202, oversized_manifest
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

ACCEPT = ", ".join([mediatypes.DOCKER_MANIFEST, mediatypes.DOCKER_LIST,
                    mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX])


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


# ---------------------------------------------------------------- independent checks


def http(method: str, url: str, accept: str = ACCEPT) -> tuple[int, dict[str, str], bytes]:
    """One plain-HTTP request with urllib (status, headers, body; 404 returned, not raised)."""
    req = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def blob_sha256(url: str) -> tuple[str, int]:
    """GET a blob chunk by chunk; its sha256 digest and size."""
    h = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=120) as resp:
        while chunk := resp.read(1 << 16):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def docker_list(entries: list[tuple[str, int, str, Platform]]) -> bytes:
    """The list bytes ``docker manifest push`` writes for ``(media type, size, digest,
    platform)`` entries: 3-space JSON, docker's key order, empty platform fields omitted; an
    OCI index when the first entry is an OCI manifest."""
    manifests = []
    for media_type, size, digest, p in entries:
        plat: dict[str, object] = {"architecture": p.architecture, "os": p.os}
        if p.os_version:
            plat["os.version"] = p.os_version
        if p.os_features:
            plat["os.features"] = list(p.os_features)
        if p.variant:
            plat["variant"] = p.variant
        manifests.append({"mediaType": media_type, "size": size, "digest": digest,
                          "platform": plat})
    list_type = (mediatypes.OCI_INDEX if entries[0][0] == mediatypes.OCI_MANIFEST
                 else mediatypes.DOCKER_LIST)
    doc = {"schemaVersion": 2, "mediaType": list_type, "manifests": manifests}
    return json.dumps(doc, indent=3).encode()


def entry(image: Image, platform: Platform) -> tuple[str, int, str, Platform]:
    """A list entry for a built image."""
    m = image.manifest
    return (m.media_type, m.size, m.digest, platform)


def check_published(host: str, repository: str, tag: str, expected: bytes,
                    children: list[Image]) -> None:
    """The tag holds exactly ``expected``; every child and every blob of it is in the
    repository (manifest bytes equal, blob digests and sizes right)."""
    status, headers, raw = http("GET", f"http://{host}/v2/{repository}/manifests/{tag}")
    assert status == 200
    assert raw == expected
    assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(expected).hexdigest()
    for child in children:
        status, _, body = http(
            "GET", f"http://{host}/v2/{repository}/manifests/{child.manifest.digest}")
        assert status == 200
        assert body == child.manifest.raw
        for dgst, size in child.blob_sizes.items():
            status, head, _ = http("HEAD", f"http://{host}/v2/{repository}/blobs/{dgst}")
            assert status == 200, dgst
            assert int(head["Content-Length"]) == size
            assert head["Docker-Content-Digest"] == dgst


def plan(path: Path, target: str, sources: list[str]) -> Path:
    """A one-list manifest-tool plan."""
    path.write_text(f"image: {target}\nmanifests:\n"
                    + "".join(f"  - image: {s}\n" for s in sources))
    return path


# ---------------------------------------------------------------- the images themselves


def test_images_have_real_shape() -> None:
    """Configs of 6-10 KiB with one history entry per layer and diff_ids of the real tars;
    12 distinct layers; a base shared by a platform's seeds; the same bytes when rebuilt."""
    amd64, arm64 = PLATFORMS[0], PLATFORMS[2]
    images = [build_image(amd64, f"shape-{i}") for i in range(20)]
    sizes = [len(image.config) for image in images]
    assert min(sizes) >= 6 * KIB
    assert max(sizes) <= 11 * KIB
    assert len(set(sizes)) > 10  # varies with the seed
    for image in images[:3]:
        doc = json.loads(image.config)
        assert (doc["architecture"], doc["os"]) == ("amd64", "linux")
        assert len(doc["config"]["Env"]) >= 12
        assert len(doc["config"]["Labels"]) >= 24
        labels = doc["config"]["Labels"]
        assert sum(k.startswith("org.opencontainers.image.") for k in labels) >= 10
        for key in ("Entrypoint", "Cmd", "WorkingDir"):
            assert doc["config"][key]
        for key in ("created", "author"):
            assert doc[key]
        layered = [h for h in doc["history"] if not h.get("empty_layer")]
        assert len(layered) == 12 < len(doc["history"])
        layers = [data for _, data in image.blobs[1:]]
        assert len(set(layers)) == 12
        assert doc["rootfs"]["diff_ids"] == [
            "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() for data in layers]
        for data in layers:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                assert any(m.isfile() and m.size for m in tar.getmembers())
    a, b = images[0], images[1]
    assert a.blobs[1:10] == b.blobs[1:10]  # the base: 9 layers shared by the platform's tags
    assert not set(a.blobs[10:]) & set(b.blobs[10:])  # the image's own layers
    assert not set(a.blob_digests) & set(build_image(arm64, "shape-0").blob_digests)
    assert build_image(amd64, "shape-0").manifest.raw == a.manifest.raw
    big = build_image(arm64, "shape-big", shape=Shape(layers=40, shared_layers=30,
                                                       config_bytes=200 * KIB,
                                                       big_layers=(2 * MIB,)))
    assert 200 * KIB <= len(big.config) < 201 * KIB
    assert len(big.manifest.blobs()) == 1 + 40 + 1
    [streamed] = big.streamed
    blob = b"".join(streamed.chunks())
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == streamed.digest
    assert len(blob) == streamed.size > 2 * MIB
    assert json.loads(big.config)["rootfs"]["diff_ids"][-1] == (
        "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()) == streamed.diff_id


# ---------------------------------------------------------------- configs of real sizes


@pytest.mark.parametrize("attempt", range(4))
def test_publish_with_ordinary_8_kib_configs(registry: RegistryServer, ns: str,
                                             tmp_path: Path, attempt: int) -> None:
    """Failed 2 runs in 3 when bodies were read with one ``read(n)``: run it 4 times."""
    host = registry.host
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, f"{ns}-{attempt}") for p in PLATFORMS]
    built = seed_built(host, names, shape=Shape(config_bytes=8 * KIB))
    for image in built.values():
        assert 8 * KIB <= len(image.config) < 16 * KIB
        assert len(image.manifest.blobs()) == 1 + 12  # config + layers
    proc = manyfest("publish", "--json", str(plan(
        tmp_path / "plan.yaml", f"{host}/{ns}/app:1", [f"{host}/{n}" for n, _, _ in names])))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created", result
    expected = docker_list([entry(built[n], p) for n, p, _ in names])
    assert result["digest"] == "sha256:" + hashlib.sha256(expected).hexdigest()
    check_published(host, f"{ns}/app", "1", expected, list(built.values()))


def test_publish_with_200_kib_configs(registry: RegistryServer, ns: str,
                                      tmp_path: Path) -> None:
    host = registry.host
    names = [(f"{ns}/big-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:3]]
    built = seed_built(host, names, shape=Shape(layers=30, shared_layers=20,
                                                config_bytes=200 * KIB))
    for image in built.values():
        assert 200 * KIB <= len(image.config) < 201 * KIB
        doc = json.loads(image.config)
        assert len(doc["rootfs"]["diff_ids"]) == 30
        assert sum(1 for h in doc["history"] if not h.get("empty_layer")) == 30
    proc = manyfest("publish", "--json", str(plan(
        tmp_path / "plan.yaml", f"{host}/{ns}/big:1", [f"{host}/{n}" for n, _, _ in names])))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created", result
    expected = docker_list([entry(built[n], p) for n, p, _ in names])
    assert result["digest"] == "sha256:" + hashlib.sha256(expected).hexdigest()
    check_published(host, f"{ns}/big", "1", expected, list(built.values()))
    # and docker's two-step path reads the same configs
    created = manyfest("create", f"{host}/{ns}/big:two", *(f"{host}/{n}" for n, _, _ in names))
    assert created.returncode == 0, created.stderr
    pushed = manyfest("push", f"{host}/{ns}/big:two")
    assert pushed.returncode == 0, pushed.stderr
    status, _, raw = http("GET", f"http://{host}/v2/{ns}/big/manifests/two")
    assert status == 200
    assert pushed.stdout.splitlines()[-1] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert sorted(m["digest"] for m in json.loads(raw)["manifests"]) == sorted(
        image.manifest.digest for image in built.values())


# ---------------------------------------------------------------- copies after a refused mount


def test_copy_after_refused_mount_with_blobs_up_to_3_mib(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path
) -> None:
    host = registry.host
    platforms = [PLATFORMS[0], PLATFORMS[2]]
    shape = Shape(layers=10, shared_layers=6, big_layers=(16 * KIB, 300 * KIB, MIB, 3 * MIB))
    names = [(f"{ns}/src-{platform_suffix(p)}:1", p, ns) for p in platforms]
    built = seed_built(host, names, shape=shape)
    sizes = {d: s for image in built.values() for d, s in image.blob_sizes.items()}
    assert max(sizes.values()) > 3 * MIB
    assert sorted(sizes.values())[-8] < 32 * KIB  # small layers and configs too
    blobs = distinct_blobs(built.values())
    proxy.before.append(mount_answers_202(proxy))
    proc = manyfest("publish", "--json", str(plan(
        tmp_path / "plan.yaml", f"{proxy.host}/{ns}/app:1",
        [f"{proxy.host}/{n}" for n, _, _ in names])))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created", result
    assert proxy.count("POST", "mount=") == len(blobs)
    assert proxy.count("PUT", "digest=sha256:") == len(blobs)  # every blob copied, once
    expected = docker_list([entry(built[n], p) for n, p, _ in names])
    assert result["digest"] == "sha256:" + hashlib.sha256(expected).hexdigest()
    check_published(host, f"{ns}/app", "1", expected, list(built.values()))
    for dgst in sorted(blobs):  # the bytes themselves, read back from the target repository
        assert blob_sha256(f"http://{host}/v2/{ns}/app/blobs/{dgst}") == (dgst, sizes[dgst])


# ---------------------------------------------------------------- manifests over 4 MiB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_manifest_over_4_mib_fails_in_one_line(
    registry: RegistryServer, proxy: QuirkProxy, ns: str, tmp_path: Path, chunked: bool
) -> None:
    host = registry.host
    [(name, image)] = seed_built(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)]).items()
    proxy.before.append(oversized_manifest(f"/v2/{ns}/huge/manifests/1", 4 * MIB + 1,
                                           chunked=chunked))
    huge = f"{proxy.host}/{ns}/huge:1"
    proc = manyfest("publish", str(plan(tmp_path / "plan.yaml", f"{proxy.host}/{ns}/app:1",
                                        [f"{proxy.host}/{name}", huge])))
    assert proc.returncode == 3, proc.stderr  # README: publish finished with failed lists
    lines = [line for line in proc.stderr.splitlines() if "larger than the 4 MiB limit" in line]
    assert len(lines) == 1, proc.stderr
    assert huge in lines[0]
    assert proxy.count("PUT", f"/v2/{ns}/app/manifests/") == 0  # nothing was written
    shown = manyfest("inspect", huge)
    assert shown.returncode == 1
    [line] = shown.stderr.strip().splitlines()
    assert "larger than the 4 MiB limit" in line
    assert huge in line
    assert image.manifest.digest  # the other source was fine


def test_manifest_under_4_mib_is_read(registry: RegistryServer, proxy: QuirkProxy,
                                      ns: str) -> None:
    """The limit is not lower than 4 MiB: a 3.5-4 MiB manifest, sent chunked, is read whole."""
    proxy.before.append(oversized_manifest(f"/v2/{ns}/large/manifests/1", 3 * MIB + MIB // 2,
                                           chunked=True))
    shown = manyfest("inspect", f"{proxy.host}/{ns}/large:1")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["schemaVersion"] == 2
    assert len(doc["layers"]) >= 18000  # ~190 bytes each: all of the 3.5+ MiB was read


# ---------------------------------------------------------------- an image made by buildah

BUILDAH = shutil.which("buildah")


@pytest.fixture
def buildah_cmd(tmp_path: Path) -> Iterator[list[str]]:
    """buildah with storage of its own (vfs), removed afterwards."""
    if BUILDAH is None:
        print("skipping: buildah is not installed on this machine (CI installs it)")
        pytest.skip("buildah is not installed on this machine (CI installs it)")
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    if not config.exists():  # buildah insists on an auth file where DOCKER_CONFIG points
        config.write_text('{"auths": {}}')
    storage = tmp_path / "buildah"
    yield [BUILDAH, "--root", str(storage / "root"), "--runroot", str(storage / "runroot"),
           "--storage-driver", "vfs"]
    subprocess.run([BUILDAH, "--root", str(storage / "root"), "--runroot",
                    str(storage / "runroot"), "--storage-driver", "vfs", "rm", "--all"],
                   capture_output=True, check=False, timeout=120)
    shutil.rmtree(storage, ignore_errors=True)


def _run(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout.strip()


def test_buildah_image_as_publish_source(registry: RegistryServer, ns: str, tmp_path: Path,
                                         buildah_cmd: list[str]) -> None:
    host = registry.host
    files = tmp_path / "files"
    image = "localhost/manyfest-real-sizes:1"
    base = "scratch"
    for layer in range(3):  # three commits: three layers
        part = files / f"part{layer}"
        (part / "etc" / "app").mkdir(parents=True)
        (part / "etc" / "app" / f"conf-{layer}.yaml").write_text(f"layer: {layer}\n" * 50)
        (part / "srv").mkdir()
        (part / "srv" / f"data-{layer}.bin").write_bytes(
            hashlib.sha256(f"{ns} {layer}".encode()).digest() * (2048 * (layer + 1)))
        ctr = _run(*buildah_cmd, "from", base).splitlines()[-1]
        _run(*buildah_cmd, "copy", ctr, str(part), "/")
        _run(*buildah_cmd, "config", "--label", f"org.opencontainers.image.version=1.{layer}",
             "--env", f"LAYER={layer}", "--cmd", "/srv/app", ctr)
        _run(*buildah_cmd, "commit", "--quiet", ctr, image)
        _run(*buildah_cmd, "rm", ctr)
        base = image
    _run(*buildah_cmd, "push", "--tls-verify=false", image, f"docker://{host}/{ns}/built:1")

    status, headers, raw = http("GET", f"http://{host}/v2/{ns}/built/manifests/1")
    assert status == 200
    doc = json.loads(raw)
    media_type = headers["Content-Type"]
    assert len(doc["layers"]) == 3
    _, _, config = http("GET", f"http://{host}/v2/{ns}/built/blobs/{doc['config']['digest']}")
    cfg = json.loads(config)
    built_platform = Platform(cfg["os"], cfg["architecture"], cfg.get("variant", ""))
    other = next(p for p in PLATFORMS if p.architecture != built_platform.architecture)
    [(other_name, other_image)] = seed_built(
        host, [(f"{ns}/app-{platform_suffix(other)}:1", other, ns)]).items()

    proc = manyfest("publish", "--json", str(plan(
        tmp_path / "plan.yaml", f"{host}/{ns}/app:1",
        [f"{host}/{ns}/built:1", f"{host}/{other_name}"])))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created", result
    expected = docker_list([
        (media_type, len(raw), "sha256:" + hashlib.sha256(raw).hexdigest(), built_platform),
        entry(other_image, other),
    ])
    assert result["digest"] == "sha256:" + hashlib.sha256(expected).hexdigest()
    check_published(host, f"{ns}/app", "1", expected, [other_image])
    status, _, child = http("GET", f"http://{host}/v2/{ns}/app/manifests/"
                                   f"sha256:{hashlib.sha256(raw).hexdigest()}")
    assert status == 200
    assert child == raw
    for blob in [doc["config"], *doc["layers"]]:
        assert blob_sha256(f"http://{host}/v2/{ns}/app/blobs/{blob['digest']}") == (
            blob["digest"], blob["size"])
