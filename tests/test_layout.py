"""OCI image layouts (``oci:PATH[:TAG]``) as sources and targets.

Layouts written by skopeo are read by manyfest (``inspect``, ``publish`` to a registry, the
digests unchanged); layouts manyfest writes are read by skopeo (``skopeo inspect``,
``skopeo copy``); layout to layout runs with no registry at all; two processes writing one
index.json keep each other's entries; a cut-off blob write leaves nothing under the blob's
digest name. Images are of real shape (tests/imagewriter.py: 12 layers, 6-10 KiB configs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from manyfest import reference
from manyfest.errors import DigestMismatchError, InvalidReferenceError, LayoutError
from manyfest.registry.layout import REF_NAME, LayoutClient
from tests.helpers import PLATFORMS, REPO_ROOT, head_digest, manyfest, seed_built
from tests.imagewriter import DEFAULT_SHAPE, Image, Shape, build_image
from tests.registry_server import RegistryServer

skopeo = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(skopeo is None, reason="skopeo is not installed here")


# ----------------------------------------------------------------------------- helpers


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    assert skopeo is not None
    proc = subprocess.run([skopeo, *args], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, f"skopeo {args}: {proc.stderr}"
    return proc


def _auth_file() -> None:
    # skopeo wants an auth file where DOCKER_CONFIG points
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    if not config.exists():
        config.write_text('{"auths": {}}')


def _index(layout: Path) -> list[dict[str, object]]:
    doc = json.loads((layout / "index.json").read_bytes())
    entries: list[dict[str, object]] = doc["manifests"]
    return entries


def _tags(layout: Path) -> dict[str, str]:
    """``{ref.name: digest}`` of a layout's index.json."""
    out: dict[str, str] = {}
    for e in _index(layout):
        annotations = e.get("annotations") or {}
        assert isinstance(annotations, dict)
        out[str(annotations.get(REF_NAME, ""))] = str(e["digest"])
    return out


def _blob(layout: Path, digest: str) -> bytes:
    alg, _, hexpart = digest.partition(":")
    return (layout / "blobs" / alg / hexpart).read_bytes()


def _check_blobs(layout: Path) -> int:
    """Every file under blobs/<alg>/ hashes to its name; how many there are."""
    n = 0
    for alg_dir in (layout / "blobs").iterdir():
        if not alg_dir.is_dir():
            continue
        for f in alg_dir.iterdir():
            assert hashlib.new(alg_dir.name, f.read_bytes()).hexdigest() == f.name, f
            n += 1
    return n


def write_layout(root: Path, images: dict[str, Image]) -> None:
    """Write ``{tag: image}`` as an OCI layout by hand (what skopeo writes; no manyfest
    code), so layout-only tests need no registry to make their sources."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entries = []
    for tag, image in images.items():
        for digest, data in (*image.blobs, (image.manifest.digest, image.manifest.raw)):
            (root / "blobs" / "sha256" / digest.partition(":")[2]).write_bytes(data)
        entries.append({"mediaType": image.manifest.media_type, "digest": image.manifest.digest,
                        "size": image.manifest.size, "annotations": {REF_NAME: tag}})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))


def _report(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- references


def test_layout_references_parse_and_print(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    ref = reference.parse("oci:out:1.0")
    assert ref.layout == str(tmp_path / "out")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        f"oci:{tmp_path}/out", "", "1.0", None)
    assert str(ref) == f"oci:{tmp_path}/out:1.0"
    assert ref.name == f"oci:{tmp_path}/out"
    digest = "sha256:" + "a" * 64
    by_digest = reference.parse(f"oci:./out/@{digest}")
    assert (by_digest.layout, by_digest.tag, by_digest.digest) == (str(tmp_path / "out"),
                                                                   None, digest)
    assert str(by_digest) == f"oci:{tmp_path}/out@{digest}"
    assert by_digest == ref.with_digest(digest)
    assert ref.in_repository(by_digest)
    untagged = reference.parse("oci:/srv/x")
    assert (untagged.tag, str(untagged)) == ("", "oci:/srv/x")
    # image-spec's ref.name grammar: ':', '@', '/' and '+' may appear inside a name
    assert reference.parse("oci:/srv/x:v1/a+b:c").tag == "v1/a+b:c"
    for text in (f"oci:{tmp_path}/out:1.0", f"oci:/a@{digest}", "oci:/srv/x",
                 f"oci:/a:t@{digest}"):
        assert reference.parse(str(reference.parse(text))) == reference.parse(text)
    # registry references are unchanged; the Hub's `oci` repository is written in full
    assert str(reference.parse("docker.io/library/oci:1")) == "docker.io/library/oci:1"
    assert reference.parse("localhost:5000/a/b:1").layout == ""
    for bad in ("oci:", "oci::tag", "oci:/a:bad tag", "oci:/a:-x", "oci:/a\0b:1"):
        with pytest.raises(InvalidReferenceError):
            reference.parse(bad)


# ----------------------------------------------------------------------------- layout client


def test_refuses_what_is_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "README").write_text("not a layout")
    wrong = tmp_path / "v2"
    write_layout(wrong, {})
    (wrong / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    for path, said in ((tmp_path / "plain", "not an OCI image layout (no oci-layout file)"),
                       (wrong, "imageLayoutVersion '2.0.0' in oci-layout"),
                       (tmp_path / "missing", "no OCI image layout at")):
        proc = manyfest("inspect", f"oci:{path}:1")
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert said in lines[0], proc.stderr
        assert str(path) in lines[0], proc.stderr


def test_reads_are_verified(tmp_path: Path) -> None:
    image = build_image(PLATFORMS[0], "verified")
    root = tmp_path / "lay"
    write_layout(root, {"1": image})
    shown = manyfest("inspect", f"oci:{root}:1")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(image.manifest.raw)
    # a manifest blob holding other bytes than its name is refused, naming both digests
    path = root / "blobs" / "sha256" / image.manifest.digest.partition(":")[2]
    path.write_bytes(image.manifest.raw.replace(b"schemaVersion", b"schemaversion"))
    proc = manyfest("inspect", f"oci:{root}:1")
    assert proc.returncode == 1
    assert f"blob {image.manifest.digest} holds content with digest sha256:" in proc.stderr
    # a config that does not match its digest fails the source in publish
    path.write_bytes(image.manifest.raw)
    config_digest = image.blobs[0][0]
    (root / "blobs" / "sha256" / config_digest.partition(":")[2]).write_bytes(b"{}")
    proc = manyfest("publish", "--target", f"oci:{tmp_path}/out:1", "--template",
                    f"oci:{root}:1", "--platforms", "linux/amd64")
    assert proc.returncode == 3
    assert f"blob {config_digest} holds content with digest" in proc.stderr


def test_cut_off_blob_write_leaves_no_blob(tmp_path: Path) -> None:
    """A write that fails mid-way (a broken stream, other bytes) keeps nothing; the
    temporary file it wrote to is removed."""
    root = tmp_path / "lay"
    data = os.urandom(3 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    target = reference.parse(f"oci:{root}:1")
    blob = root / "blobs" / "sha256" / digest.partition(":")[2]

    async def broken() -> AsyncIterator[bytes]:
        yield data[: 1 << 20]
        raise OSError("connection reset")

    async def other_bytes() -> AsyncIterator[bytes]:
        yield data[:-1] + b"x"

    async def whole() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]

    async def run() -> None:
        client = LayoutClient()
        with pytest.raises(OSError, match="connection reset"):
            await client.write_blob(target, digest, broken())
        assert not blob.exists()
        with pytest.raises(DigestMismatchError, match="content has digest sha256:"):
            await client.write_blob(target, digest, other_bytes())
        assert not blob.exists()
        assert [p for p in (root / "blobs").rglob("*") if p.is_file()] == []
        assert await client.write_blob(target, digest, whole()) == len(data)
        assert blob.read_bytes() == data

    anyio.run(run)


_KILLED_WRITER = """
import sys, anyio
from manyfest import reference
from manyfest.registry.layout import LayoutClient

async def chunks():
    yield b"x" * (1 << 20)
    print("writing", flush=True)
    await anyio.sleep_forever()

anyio.run(lambda: LayoutClient().write_blob(reference.parse(sys.argv[1]), sys.argv[2], chunks()))
"""


def test_killed_blob_write_leaves_no_blob_under_its_digest(tmp_path: Path) -> None:
    """SIGKILL while a blob is being written: the digest's name never holds a partial file
    (the bytes went to a temporary file in blobs/, renamed only once complete)."""
    root = tmp_path / "lay"
    data = b"x" * (2 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, f"oci:{root}:1", digest],
                          stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"  # the first MiB is in the file
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    final = root / "blobs" / "sha256" / digest.partition(":")[2]
    assert not final.exists()
    leftovers = [p for p in (root / "blobs").iterdir() if p.is_file()]
    assert [p.name.startswith(".manyfest-") and p.name.endswith(".tmp") for p in leftovers
            ] == [True]
    assert leftovers[0].stat().st_size == 1 << 20
    # the layout is still a layout, and the blob can be written afterwards

    async def again() -> int:
        async def chunks() -> AsyncIterator[bytes]:
            yield data
        return await LayoutClient().write_blob(reference.parse(f"oci:{root}:1"), digest,
                                               chunks())

    assert anyio.run(again) == len(data)
    assert final.read_bytes() == data
    assert _tags(root) == {}


def test_untagged_layout_names_its_only_manifest(tmp_path: Path) -> None:
    one = tmp_path / "one"
    write_layout(one, {"x": build_image(PLATFORMS[0], "only")})
    doc = json.loads((one / "index.json").read_text())
    del doc["manifests"][0]["annotations"]  # buildx without name=: no ref.name
    (one / "index.json").write_text(json.dumps(doc))
    proc = manyfest("inspect", f"oci:{one}")
    assert proc.returncode == 0, proc.stderr
    two = tmp_path / "two"
    write_layout(two, {"a": build_image(PLATFORMS[0], "a"), "b": build_image(PLATFORMS[0], "b")})
    proc = manyfest("inspect", f"oci:{two}")
    assert proc.returncode == 1
    assert f"oci:{two}: the layout holds 2 manifests; name one with oci:{two}:TAG (tags: a, b)" \
        in proc.stderr


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_layout_to_layout_with_no_registry(tmp_path: Path) -> None:
    """A plan whose sources and targets are layouts: published with no registry at all (none
    is started; the report counts no request and names no registry)."""
    src = tmp_path / "src"
    images = {f"{p.os}-{p.architecture}": build_image(p, "nonet", oci=True)
              for p in PLATFORMS[:3]}
    write_layout(src, images)
    plan = tmp_path / "plan.yaml"
    docs = []
    for i in range(6):
        docs.append(f"image: oci:{tmp_path}/out:v{i}\nmanifests:\n" + "".join(
            f"  - image: oci:{src}:{tag}\n" for tag in images))
    plan.write_text("---\n".join(docs))
    report = tmp_path / "report.jsonl"
    proc = manyfest("publish", "--json", "--report", str(report), str(plan),
                    env={"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert (summary["created"], summary["requests"], summary["registries"]) == (6, 0, {})
    out = tmp_path / "out"
    tags = _tags(out)
    lines = _report(report)
    assert sorted(tags) == [f"v{i}" for i in range(6)]
    assert {line["digest"] for line in lines} == set(tags.values())
    listed = json.loads(_blob(out, tags["v0"]))
    assert listed["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["digest"] for m in listed["manifests"]] == [
        i.manifest.digest for i in images.values()]
    for image in images.values():
        assert _blob(out, image.manifest.digest) == image.manifest.raw
        for digest, data in image.blobs:
            assert _blob(out, digest) == data
            # same file system: a hard link of the source's blob
            name = digest.partition(":")[2]
            assert (out / "blobs/sha256" / name).stat().st_ino == (
                src / "blobs/sha256" / name).stat().st_ino
    assert (out / "oci-layout").read_text() == '{"imageLayoutVersion":"1.0.0"}'
    assert _check_blobs(out) == len({d for i in images.values() for d, _ in i.blobs}) + 4
    # publishing again changes nothing
    again = manyfest("publish", "--json", str(plan))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["unchanged"] == 6


@pytest.mark.slow
def test_two_processes_writing_one_index_keep_every_entry(tmp_path: Path) -> None:
    """Two publish runs into one layout at once, 12 tags each (each run also writes its
    lists concurrently): index.json ends with all 24 entries, one per tag."""
    src = tmp_path / "src"
    images = {p.architecture: build_image(p, "two", oci=True) for p in PLATFORMS[:2]}
    write_layout(src, images)
    plans = []
    for run in ("a", "b"):
        plan = tmp_path / f"{run}.yaml"
        plan.write_text("---\n".join(
            f"image: oci:{tmp_path}/shared:{run}{i}\nmanifests:\n"
            + "".join(f"  - image: oci:{src}:{tag}\n" for tag in images)
            + (f"annotations:\n  n: '{run}{i}'\nmedia_type: oci\n")
            for i in range(12)))
        plans.append(plan)
    env = dict(os.environ, COLUMNS="200")
    procs = [subprocess.Popen([sys.executable, "-m", "manyfest", "publish", "-q", str(p)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for p in plans]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    tags = _tags(tmp_path / "shared")
    assert sorted(tags) == sorted(f"{r}{i}" for r in "ab" for i in range(12))
    assert len(_index(tmp_path / "shared")) == 24
    for tag, digest in tags.items():
        assert json.loads(_blob(tmp_path / "shared", digest))["annotations"] == {"n": tag}
    # a tag moved replaces its entry (one entry per ref.name)
    moved = tmp_path / "moved.yaml"
    moved.write_text(f"image: oci:{tmp_path}/shared:a0\nmanifests:\n  - image: oci:{src}:amd64\n")
    proc = manyfest("publish", str(moved))
    assert proc.returncode == 0, proc.stderr
    after = _tags(tmp_path / "shared")
    assert len(_index(tmp_path / "shared")) == 24
    assert after["a0"] != tags["a0"]
    assert {t: d for t, d in after.items() if t != "a0"} == {
        t: d for t, d in tags.items() if t != "a0"}


@pytest.mark.slow
@needs_skopeo
def test_skopeo_layout_read_and_published_to_the_registry(registry: RegistryServer, ns: str,
                                                          tmp_path: Path) -> None:
    """skopeo writes a layout from the registry; manyfest inspects it and publishes a list
    from it to the registry: every child keeps its digest and bytes."""
    _auth_file()
    host = registry.host
    shape = Shape(layers=14, config_bytes=40 * 1024)
    built = seed_built(host, [(f"{ns}/app:{p.architecture}", p, ns)
                              for p in (PLATFORMS[0], PLATFORMS[2])], shape=shape)
    layout = tmp_path / "by-skopeo"
    for name in built:
        tag = name.rsplit(":", 1)[1]
        _skopeo("copy", "--src-tls-verify=false", f"docker://{host}/{name}",
                f"oci:{layout}:{tag}")
    tags = _tags(layout)
    assert sorted(tags) == ["amd64", "arm64"]
    shown = manyfest("inspect", f"oci:{layout}:amd64")
    assert shown.returncode == 0, shown.stderr
    raw = _skopeo("inspect", "--raw", f"oci:{layout}:amd64").stdout
    assert json.loads(shown.stdout) == json.loads(raw)
    proc = manyfest("publish", "--json", "--target", f"{host}/{ns}/list:1", "--template",
                    f"oci:{layout}:ARCH", "--platforms", "linux/amd64,linux/arm64/v8")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["results"][0]
    assert result["status"] == "created"
    assert result["sources"] == {f"oci:{layout}:amd64": tags["amd64"],
                                 f"oci:{layout}:arm64": tags["arm64"]}
    assert head_digest(f"{host}/{ns}/list:1") == result["digest"]
    listed = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false",
                                f"docker://{host}/{ns}/list:1").stdout)
    assert [m["digest"] for m in listed["manifests"]] == [tags["amd64"], tags["arm64"]]
    for digest in tags.values():
        served = _skopeo("inspect", "--raw", "--tls-verify=false",
                         f"docker://{host}/{ns}/list@{digest}").stdout
        assert served.encode() == _blob(layout, digest)
    # every blob reached the registry: skopeo copies the list out again, digests kept
    _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{host}/{ns}/list:1", f"oci:{tmp_path}/back:1")
    assert _tags(tmp_path / "back") == {"1": result["digest"]}


@pytest.mark.slow
@needs_skopeo
def test_manyfest_layout_is_read_by_skopeo(registry: RegistryServer, ns: str,
                                           tmp_path: Path) -> None:
    """manyfest publishes a registry list into a new layout; skopeo inspects it and copies
    it back to the registry with the same digests."""
    _auth_file()
    host = registry.host
    built = seed_built(host, [(f"{ns}/app:{p.architecture}", p, ns) for p in PLATFORMS[:3]],
                       shape=DEFAULT_SHAPE)
    layout = tmp_path / "by-manyfest"
    proc = manyfest("publish", "--json", "--target", f"oci:{layout}:1.0", "--tags", "latest",
                    "--template", f"{host}/{ns}/app:ARCH",
                    "--platforms", "linux/amd64,linux/arm64/v8,linux/arm/v7")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["results"][0]
    assert _tags(layout) == {"1.0": result["digest"], "latest": result["digest"]}
    assert _check_blobs(layout) == len({d for i in built.values() for d in i.blob_digests}) + 4
    raw = _skopeo("inspect", "--raw", f"oci:{layout}:1.0").stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == result["digest"]
    listed = json.loads(raw)
    assert listed["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["digest"] for m in listed["manifests"]] == [
        built[f"{ns}/app:{arch}"].manifest.digest for arch in ("amd64", "arm64", "arm")]
    info = json.loads(_skopeo("inspect", "--override-arch", "arm64", "--override-variant", "v8",
                              f"oci:{layout}:1.0").stdout)
    arm64 = built[f"{ns}/app:arm64"]
    assert (info["Architecture"], info["Os"]) == ("arm64", "linux")
    assert info["Layers"] == list(arm64.blob_digests[1:])  # the child and its config read
    _skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
            f"oci:{layout}:1.0", f"docker://{host}/{ns}/from-layout:1")
    assert head_digest(f"{host}/{ns}/from-layout:1") == result["digest"]
    shown = manyfest("inspect", "--raw", f"oci:{layout}:latest")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode() == raw  # the exact bytes the layout holds


def test_layout_client_rejects_unknown_version_on_write(tmp_path: Path) -> None:
    root = tmp_path / "v9"
    write_layout(root, {})
    (root / "oci-layout").write_text('{"imageLayoutVersion": "9"}')

    async def run() -> None:
        with pytest.raises(LayoutError, match=r"imageLayoutVersion '9'"):
            await LayoutClient().upload_blob(reference.parse(f"oci:{root}:1"), b"{}")

    anyio.run(run)
    assert sorted(p.name for p in (root / "blobs" / "sha256").iterdir()) == []


# ----------------------------------------------------------------------------- in place


def _unshare() -> list[str] | None:
    """The command that runs a shell in a private mount namespace (root: ``unshare -m``;
    else a user namespace, ``unshare -rm``), or None where neither is allowed."""
    tool = shutil.which("unshare")
    if tool is None:
        return None
    cmd = [tool, "-m"] if os.geteuid() == 0 else [tool, "-r", "-m"]
    probe = subprocess.run([*cmd, "true"], capture_output=True, check=False, timeout=60)
    return cmd if probe.returncode == 0 else None


def _in_mount_namespace(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c script`` (positional ``args``) in a private mount namespace: mounts made
    there vanish with it and nothing else sees them."""
    cmd = _unshare()
    if cmd is None:
        pytest.skip("no mount namespace here (unshare -m refused): cannot bind-mount")
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(REPO_ROOT / "src"))
    return subprocess.run([*cmd, "sh", "-c", script, "sh", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


@pytest.mark.slow
@needs_skopeo
def test_existing_empty_directory_is_filled_in_place(registry: RegistryServer, ns: str,
                                                      tmp_path: Path) -> None:
    """An existing empty directory is the layout itself: filled in place (the same inode),
    nothing written beside it, as skopeo does; skopeo reads the result. Where the parent
    can be made read-only for this user, it is."""
    _auth_file()
    host = registry.host
    built = seed_built(host, [(f"{ns}/app:1", PLATFORMS[0], ns)], oci=True)
    image = built[f"{ns}/app:1"]
    parent = tmp_path / "parent"
    out, by_skopeo = parent / "out", parent / "by-skopeo"
    out.mkdir(parents=True)
    by_skopeo.mkdir()
    _skopeo("copy", "--src-tls-verify=false", f"docker://{host}/{ns}/app:1",
            f"oci:{by_skopeo}:1")
    inode = out.stat().st_ino
    before = sorted(os.listdir(parent))
    if os.geteuid() != 0:
        parent.chmod(0o555)  # root writes through the mode bits: the listing shows it
    try:
        proc = manyfest("copy", f"{host}/{ns}/app:1", f"oci:{out}")
    finally:
        parent.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"created oci:{out}:1@{image.manifest.digest} from "
                           f"{host}/{ns}/app:1\n{image.manifest.digest}\n")
    assert sorted(os.listdir(parent)) == before
    assert out.stat().st_ino == inode
    # what skopeo writes, and manyfest's lock (a file other tools ignore)
    assert sorted(os.listdir(out)) == sorted([*os.listdir(by_skopeo), ".manyfest-lock"])
    assert _tags(out) == {"1": image.manifest.digest}
    assert list(_tags(by_skopeo)) == ["1"]  # skopeo converts it to OCI: another digest
    assert _check_blobs(out) == len(image.blob_digests) + 1
    raw = _skopeo("inspect", "--raw", f"oci:{out}:1").stdout.encode()
    assert raw == image.manifest.raw
    # a second tag into the existing layout: used as it is
    again = manyfest("copy", f"{host}/{ns}/app:1", f"oci:{out}:2")
    assert again.returncode == 0, again.stderr
    assert _tags(out) == {"1": image.manifest.digest, "2": image.manifest.digest}
    assert sorted(os.listdir(parent)) == before


@pytest.mark.slow
@needs_skopeo
def test_mount_point_is_a_layout_target(registry: RegistryServer, ns: str,
                                        tmp_path: Path) -> None:
    """An empty directory that is a mount point (``docker run -v $PWD/out:/out``) is filled
    in place: the layout lands in the mounted directory; skopeo reads it. A read-only
    mount fails with one line naming the layout once, with advice for a read-only file
    system."""
    _auth_file()
    host = registry.host
    built = seed_built(host, [(f"{ns}/app:1", PLATFORMS[0], ns)], oci=True)
    image = built[f"{ns}/app:1"]
    work = tmp_path / "work"
    backing, mount = work / "backing", work / "mnt"
    backing.mkdir(parents=True)
    mount.mkdir()
    proc = _in_mount_namespace(
        'mount --bind "$1" "$2" && exec "$3" -m manyfest copy "$4" "oci:$2"',
        str(backing), str(mount), sys.executable, f"{host}/{ns}/app:1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"created oci:{mount}:1@{image.manifest.digest} from "
                           f"{host}/{ns}/app:1\n{image.manifest.digest}\n")
    assert sorted(os.listdir(work)) == ["backing", "mnt"]
    assert os.listdir(mount) == []  # the mount is gone with its namespace
    assert _tags(backing) == {"1": image.manifest.digest}
    assert _check_blobs(backing) == len(image.blob_digests) + 1
    assert _skopeo("inspect", "--raw", f"oci:{backing}:1").stdout.encode() == \
        image.manifest.raw
    ro = work / "ro"
    ro.mkdir()
    proc = _in_mount_namespace(
        'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && '
        'exec "$2" -m manyfest copy "$3" "oci:$1"',
        str(ro), sys.executable, f"{host}/{ns}/app:1")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        f"copy {host}/{ns}/app:1 to oci:{ro}:1 failed: oci:{ro}: cannot create the "
        f"layout: Read-only file system ({ro}/.manyfest-lock); the file system is mounted "
        "read-only: write the layout to a writable path\n")
    assert os.listdir(ro) == []


# ----------------------------------------------------------------------------- no repository


@pytest.mark.slow
def test_a_layout_image_is_not_mirrored_to_a_registry(registry: RegistryServer, ns: str,
                                                       tmp_path: Path) -> None:
    """``--mirror`` with a layout as ``image:`` (or ``--target``): a usage error before any
    request (a layout has no repository path: it once went to ``REGISTRY/:TAG``, requests
    to ``/v2//...``), dry run or not, with ``targets:`` or without; the registry client
    itself refuses a reference with no repository before sending anything."""
    host = registry.host
    seed_built(host, [(f"{ns}/app:1", PLATFORMS[0], ns)])
    out = tmp_path / "out"
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"image: oci:{out}:1\nmanifests:\n  - image: {host}/{ns}/app:1\n")
    fanned = tmp_path / "fanned.yaml"
    fanned.write_text(f"image: {host}/{ns}/first:1\nmanifests:\n"
                      f"  - image: {host}/{ns}/app:1\n---\n"
                      f"image: oci:{out}:1\ntargets: [{host}/{ns}/list:1]\nmanifests:\n"
                      f"  - image: {host}/{ns}/app:1\n")
    before = registry.request_count()
    for args, document in (((str(plain),), 1), (("--dry-run", str(plain)), 1),
                           ((str(fanned),), 2),
                           (("--target", f"oci:{out}:1", "--template", f"{host}/{ns}/app:1",
                             "--platforms", "linux/amd64"), 1)):
        proc = manyfest("publish", "--mirror", "127.0.0.1:1", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            f"--mirror: oci:{out}:1 (document {document}) is an OCI layout: a layout has no "
            "repository "
            "path to mirror to a registry; write a registry image: (the layout can be one "
            "of its targets:), or leave out --mirror\n"), proc.stderr
        assert proc.stdout == ""
    assert not out.exists()
    assert registry.request_count() == before

    async def head() -> None:
        from manyfest.registry.routing import RoutingClient
        from manyfest.transport import Settings, Transport
        async with Transport(Settings()) as transport:
            client = RoutingClient(transport)
            for ref in (reference.Reference(host, "", "1", None),
                        reference.Reference(host, "", None, "sha256:" + "a" * 64)):
                with pytest.raises(InvalidReferenceError) as info:
                    await client.head_manifest(ref)
                assert info.value.one_line() == (
                    f"invalid reference format: {str(ref)!r}: names no repository: a "
                    "registry request needs registry/repository; use the form "
                    "[registry[:port]/]repository[:tag][@sha256:<64 hex>]")
                with pytest.raises(InvalidReferenceError):
                    await client.copy_blob(reference.parse(f"{host}/{ns}/app:1"), ref,
                                           "sha256:" + "b" * 64)

    anyio.run(head)
    assert registry.request_count() == before


# ----------------------------------------------------------------------------- by digest


@pytest.mark.slow
@needs_skopeo
def test_copy_by_digest_into_a_layout_adds_an_untagged_entry(registry: RegistryServer, ns: str,
                                                             tmp_path: Path) -> None:
    """``copy REG/REPO@DIGEST oci:DIR``: index.json gets an entry with no ref.name (what
    skopeo writes for ``oci:DIR``), so the index is reachable and read back by digest and
    as the layout's only manifest; copying it again is ``unchanged`` (one entry); the
    children stay out of index.json."""
    _auth_file()
    host = registry.host
    seed_built(host, [(f"{ns}/app:{p.architecture}", p, ns) for p in (PLATFORMS[0],
                                                                       PLATFORMS[2])],
               oci=True)
    made = manyfest("publish", "--json", "--target", f"{host}/{ns}/multi:1", "--template",
                    f"{host}/{ns}/app:ARCH", "--platforms", "linux/amd64,linux/arm64/v8",
                    "--media-type", "oci")
    assert made.returncode == 0, made.stderr
    digest = json.loads(made.stdout)["results"][0]["digest"]
    raw = _skopeo("inspect", "--raw", "--tls-verify=false",
                  f"docker://{host}/{ns}/multi:1").stdout.encode()
    out, by_skopeo = tmp_path / "out", tmp_path / "by-skopeo"
    proc = manyfest("copy", f"{host}/{ns}/multi@{digest}", f"oci:{out}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"created oci:{out}@{digest} from {host}/{ns}/multi@{digest}\n" \
        f"{digest}\n"
    _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{host}/{ns}/multi@{digest}", f"oci:{by_skopeo}")
    entry = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
             "size": len(raw)}
    assert _index(out) == _index(by_skopeo) == [entry]
    # read back: by digest, as the only manifest; skopeo reads it too
    for ref in (f"oci:{out}@{digest}", f"oci:{out}"):
        shown = manyfest("inspect", "--raw", ref)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.encode() == raw
    assert _skopeo("inspect", "--raw", f"oci:{out}").stdout.encode() == raw
    # again: unchanged, still one entry; with a tag: a tagged entry beside it (as skopeo)
    again = manyfest("copy", f"{host}/{ns}/multi@{digest}", f"oci:{out}")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"unchanged oci:{out}@{digest}"), again.stdout
    assert _index(out) == [entry]
    tagged = manyfest("copy", f"{host}/{ns}/multi:1", f"oci:{out}")
    assert tagged.returncode == 0, tagged.stderr
    _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{host}/{ns}/multi:1", f"oci:{by_skopeo}:1")
    # the untagged entry is now named (skopeo does the same)
    assert _index(out) == _index(by_skopeo) == [{**entry, "annotations": {REF_NAME: "1"}}]
    # by digest once more: an untagged entry beside the tagged one
    proc = manyfest("copy", f"{host}/{ns}/multi@{digest}", f"oci:{out}")
    assert proc.returncode == 0, proc.stderr
    _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{host}/{ns}/multi@{digest}", f"oci:{by_skopeo}")
    assert _index(out) == _index(by_skopeo) == [{**entry, "annotations": {REF_NAME: "1"}},
                                                entry]


# ----------------------------------------------------------------------------- local store


@pytest.mark.slow
def test_layout_lists_never_share_a_store_entry(registry: RegistryServer, ns: str,
                                                tmp_path: Path) -> None:
    """docker's file-safe names (``/`` → ``_``, ``:`` → ``-``) made ``oci:/a/qa_col:t`` and
    ``oci:/a/qa/col:t`` (and ``oci:/a/x-y:t``, ``oci:/a/x:y-t``) one stored list; layout
    names now escape ``_``, ``-`` and ``%`` first, each list is its own and pushes only its
    images; registry lists keep docker's names."""
    from manyfest.cli.completion import local_lists

    host = registry.host
    built = seed_built(host, [(f"{ns}/app:{p.architecture}", p, ns) for p in (PLATFORMS[0],
                                                                       PLATFORMS[2])],
                       oci=True)
    amd64, arm64 = (built[f"{ns}/app:{a}"].manifest.digest for a in ("amd64", "arm64"))
    t = tmp_path
    pairs = ((f"oci:{t}/qa_col:t", f"oci:{t}/qa/col:t"), (f"oci:{t}/x-y:t", f"oci:{t}/x:y-t"))
    for first, second in pairs:
        for list_ref, arch in ((first, "amd64"), (second, "arm64")):
            proc = manyfest("create", list_ref, f"{host}/{ns}/app:{arch}")
            assert proc.returncode == 0, proc.stderr
    registry_list = f"{host}/{ns}/a_b:1"
    assert manyfest("create", registry_list, f"{host}/{ns}/app:amd64").returncode == 0
    store = Path(os.environ["DOCKER_CONFIG"]) / "manifests"
    base = str(t).replace("%", "%25").replace("_", "%5F").replace("-", "%2D").replace("/", "_")
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == sorted([
        f"oci-{base}_qa%5Fcol-t", f"oci-{base}_qa_col-t", f"oci-{base}_x%2Dy-t",
        f"oci-{base}_x-y%2Dt", f"{host.replace(':', '-')}_{ns}_a_b-1"])
    # completion reads each layout list's name back exactly
    assert sorted(name for name, _ in local_lists() if name.startswith("oci:")) == sorted(
        ref for pair in pairs for ref in pair)
    for first, second in pairs:
        for list_ref, child in ((first, amd64), (second, arm64)):
            proc = manyfest("push", list_ref)
            assert proc.returncode == 0, proc.stderr
            parsed = reference.parse(list_ref)
            root = Path(parsed.layout)
            listed = json.loads(_blob(root, _tags(root)[str(parsed.tag)]))
            assert [m["digest"] for m in listed["manifests"]] == [child]


# ----------------------------------------------------------------------------- consistency


def test_layout_copy_refusals_and_messages_match_registries_and_inspect(tmp_path: Path) -> None:
    """A copy whose DST is the source layout itself is refused as for a registry (exit 2,
    nothing written); a missing source layout is named with inspect's words."""
    src = tmp_path / "a"
    image = build_image(PLATFORMS[0], "itself", oci=True)
    write_layout(src, {"1": image})
    index = (src / "index.json").read_bytes()
    for dst in (f"oci:{src}", f"oci:{src}:1"):
        proc = manyfest("copy", f"oci:{src}:1", dst)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (f"DST: {dst} is the source itself; give another repository "
                               "or tag to copy to\n")
        assert proc.stdout == ""
    assert (src / "index.json").read_bytes() == index
    assert sorted(os.listdir(src)) == ["blobs", "index.json", "oci-layout"]
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"copy: oci:{src}:1\nto: oci:{src}\n")
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.endswith(f"to: oci:{src} is the source itself; give another "
                                "repository or tag to copy to\n"), proc.stderr
    missing = tmp_path / "none"
    said = f"oci:{missing}:x: no OCI image layout at {missing}; check the path (oci:PATH[:TAG])"
    shown = manyfest("inspect", f"oci:{missing}:x")
    assert (shown.returncode, shown.stderr) == (1, said + "\n")
    copied = manyfest("copy", f"oci:{missing}:x", f"oci:{tmp_path}/b")
    assert copied.returncode == 1, copied.stderr
    assert copied.stderr == f"copy oci:{missing}:x to oci:{tmp_path}/b:x failed: {said}\n"
    assert not (tmp_path / "b").exists()
