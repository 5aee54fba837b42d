"""The handed failing cases of issue 2, each kept as a test of its whole kind."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import anyio
import pytest
from aioresponses import aioresponses
from yarl import URL

from manyfest import digest as digests
from manyfest import mediatypes, reference
from manyfest.content import Entry, Manifest, encode_list
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, docker, docker_cli, manyfest, seed, seed_walkthrough
from tests.imagewriter import build_image, push_image
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

ACCEPT_TYPES = {
    mediatypes.DOCKER_MANIFEST,
    mediatypes.DOCKER_LIST,
    mediatypes.OCI_MANIFEST,
    mediatypes.OCI_INDEX,
}


def _store_dir(name: str) -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "manifests" / name


# 1. `alpine:3` is Docker Hub's library repository everywhere -------------------------------


def test_alpine_list_name_in_create_store_and_rm(registry: RegistryServer, ns: str) -> None:
    [amd64, *_] = seed_walkthrough(registry.host, ns)
    created = manyfest("create", "alpine:3", amd64)
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created manifest list docker.io/library/alpine:3\n"
    list_dir = _store_dir("docker.io_library_alpine-3")
    assert [p.name for p in list_dir.iterdir()] == [
        f"127.0.0.1-{registry.port}_{ns}_app-amd64-1"
    ]
    # every spelling of the same name is the same list
    for spelling in ("alpine:3", "library/alpine:3", "docker.io/library/alpine:3",
                     "index.docker.io/library/alpine:3"):
        again = manyfest("create", spelling, amd64)
        assert again.returncode == 1
        assert "refusing to amend" in again.stderr
    if docker_cli():
        # docker finds the list under the same name in the same store (-v: docker's plain
        # inspect of a local list refuses sources on another registry than the list)
        theirs = docker("manifest", "inspect", "-v", "alpine:3")
        assert theirs.returncode == 0, theirs.stderr
        assert theirs.stdout == manyfest("inspect", "-v", "alpine:3").stdout
    removed = manyfest("rm", "docker.io/library/alpine:3")
    assert removed.returncode == 0, removed.stderr
    assert not list_dir.exists()
    assert manyfest("rm", "alpine:3").stderr.startswith(
        "No such manifest: docker.io/library/alpine:3;"
    )


def test_alpine_source_goes_to_docker_hub_library(isolated_env: Path) -> None:
    """A source `alpine:3` is fetched from registry-1.docker.io/v2/library/alpine with the
    credentials docker keeps under https://index.docker.io/v1/ (mocked: no internet)."""
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {
        "auth": base64.b64encode(b"hubuser:hubpass").decode()}}}))
    image = build_image(Platform("linux", "amd64"), "alpine")
    config_digest, config_bytes = image.blobs[0]
    hub = "https://registry-1.docker.io"

    async def run() -> None:
        with aioresponses() as mocked:
            mocked.get(f"{hub}/v2/", status=401, headers={
                "WWW-Authenticate":
                    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'})
            mocked.get(re.compile(r"https://auth\.docker\.io/token\?.*"),
                       payload={"token": "hub-token", "expires_in": 300})
            mocked.get(f"{hub}/v2/library/alpine/manifests/3", body=image.manifest.raw,
                       headers={"Content-Type": mediatypes.DOCKER_MANIFEST,
                                "Docker-Content-Digest": image.manifest.digest})
            mocked.get(f"{hub}/v2/library/alpine/blobs/{config_digest}", body=config_bytes)
            from manyfest.engine import Engine

            async with Transport(Settings()) as transport:
                engine = Engine(RegistryClient(transport))
                source = await engine.resolve(reference.parse("alpine:3"))
            assert source.manifest.digest == image.manifest.digest
            assert source.platform == Platform("linux", "amd64")
            token_calls = [
                (k, v) for k, v in mocked.requests.items() if "auth.docker.io" in str(k[1])
            ]
            assert len(token_calls) == 1
            (_method, url), calls = token_calls[0]
            assert url.query.getall("scope") == ["repository:library/alpine:pull"]
            assert url.query["service"] == "registry.docker.io"
            headers = calls[0].kwargs["headers"]
            assert headers["Authorization"] == "Basic " + base64.b64encode(
                b"hubuser:hubpass").decode()
            manifest_calls = mocked.requests[("GET", URL(
                f"{hub}/v2/library/alpine/manifests/3"))]
            assert manifest_calls[0].kwargs["headers"]["Authorization"] == "Bearer hub-token"

    anyio.run(run)


# 4. inspect of a tag holding an OCI index; Accept names all four types ----------------------


def test_inspect_oci_index_tag(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    digests_by_name = seed(host, [(f"{ns}/src-{p.architecture}:1", p, ns) for p in PLATFORMS[:3]],
                           oci=True)
    plan_entries = [f"{host}/{ns}/src-{p.architecture}:1" for p in PLATFORMS[:3]]
    created = manyfest("create", f"{host}/{ns}/oci:1", *plan_entries)
    assert created.returncode == 0, created.stderr
    pushed = manyfest("push", f"{host}/{ns}/oci:1")
    assert pushed.returncode == 0, pushed.stderr
    manyfest("rm", f"{host}/{ns}/oci:1", check=True)
    shown = manyfest("inspect", f"{host}/{ns}/oci:1")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["mediaType"] == mediatypes.OCI_INDEX
    assert {m["digest"] for m in doc["manifests"]} == set(digests_by_name.values())
    assert digests.sha256(shown.stdout.rstrip("\n").encode()) == pushed.stdout.splitlines()[-1]


def test_every_manifest_request_sends_full_accept() -> None:
    index = encode_list([Entry(mediatypes.OCI_MANIFEST, 10, "sha256:" + "a" * 64,
                               Platform("linux", "amd64"))])
    base = "https://r.example/v2/a/b/manifests/1"

    async def run() -> None:
        with aioresponses() as mocked:
            mocked.get("https://r.example/v2/", status=200)
            mocked.head(base, status=200, headers={"Docker-Content-Digest": index.digest,
                                                   "Content-Type": mediatypes.OCI_INDEX,
                                                   "Content-Length": str(index.size)})
            mocked.get(base, status=200, body=index.raw,
                       headers={"Content-Type": mediatypes.OCI_INDEX})
            async with Transport(Settings()) as transport:
                client = RegistryClient(transport)
                ref = reference.parse("r.example/a/b:1")
                head = await client.head_manifest(ref)
                got = await client.get_manifest(ref)
            assert head is not None
            assert head.digest == got.digest == index.digest
            assert got.raw == index.raw
            for method in ("HEAD", "GET"):
                [call] = mocked.requests[(method, URL(base))]
                accept = {a.strip() for a in call.kwargs["headers"]["Accept"].split(",")}
                assert accept == ACCEPT_TYPES

    anyio.run(run)


# 5. a manifest PUT sends Content-Type equal to the body's mediaType ------------------------


@pytest.mark.parametrize("media_type", sorted(ACCEPT_TYPES))
def test_put_content_type_is_media_type(registry: RegistryServer, ns: str, media_type: str) -> None:
    oci = media_type.startswith("application/vnd.oci")
    image = build_image(Platform("linux", "amd64"), ns + media_type, oci=oci)
    if mediatypes.is_index(media_type):
        body = encode_list([Entry(image.manifest.media_type, image.manifest.size,
                                  image.manifest.digest, Platform("linux", "amd64"))],
                           media_type=media_type)
    else:
        body = image.manifest
    assert body.media_type == media_type

    async def run() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            repo = reference.parse(f"{registry.host}/{ns}/ct:1")
            await push_image(client, repo.with_tag("child"), image)
            await client.put_manifest(repo, body)
            head = await client.head_manifest(repo)
            got = await client.get_manifest(repo)
        assert head is not None
        assert head.media_type == media_type
        assert (got.media_type, got.raw, got.digest) == (media_type, body.raw, body.digest)

    anyio.run(run)

    async def unit() -> None:
        with aioresponses() as mocked:
            mocked.get("https://r.example/v2/", status=200)
            url = "https://r.example/v2/a/b/manifests/1"
            mocked.put(url, status=201, headers={"Docker-Content-Digest": body.digest})
            async with Transport(Settings()) as transport:
                ref = reference.parse("r.example/a/b:1")
                await RegistryClient(transport).put_manifest(ref, body)
            [call] = mocked.requests[("PUT", URL(url))]
            assert call.kwargs["headers"]["Content-Type"] == media_type
            assert call.kwargs["data"] == body.raw

    anyio.run(unit)


# 6. a child with unusual whitespace keeps its digest and size in the target repository ----


def test_unusual_whitespace_child_keeps_digest(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    image = build_image(Platform("linux", "arm64", "v8"), ns)
    doc = json.loads(image.manifest.raw)
    # tabs, CRLF, spaces before colons, keys out of the usual order, a trailing newline
    raw = (
        "{\r\n\t\"layers\" :\t[ " + json.dumps(doc["layers"][0], indent=None) + " ] ,\r\n"
        "  \"config\":" + json.dumps(doc["config"], separators=(" ,", " : ")) + ",\n"
        "\t\t\"mediaType\": \"" + doc["mediaType"] + "\",  \"schemaVersion\":2 }\n\n"
    ).encode()
    odd = Manifest.from_bytes(raw)
    assert odd.digest != image.manifest.digest

    async def put_source() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            src = reference.parse(f"{host}/{ns}/odd:1")
            await push_image(client, src.with_tag("plain"), image)
            await client.put_manifest(src, odd)

    anyio.run(put_source)
    [amd64, *_] = seed_walkthrough(host, ns)
    target = f"{host}/{ns}/app:odd"
    manyfest("create", target, f"{host}/{ns}/odd:1", amd64, check=True)
    pushed = manyfest("push", target, check=True)
    assert f"Pushed ref {host}/{ns}/app@{odd.digest} with digest: {odd.digest}" in pushed.stdout

    async def check() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            ref = reference.parse(target)
            child = await client.get_manifest(ref.with_digest(odd.digest))
            listed = (await client.get_manifest(ref)).index()
        assert child.raw == raw
        entry = next(m for m in listed.manifests if m.digest == odd.digest)
        assert entry.size == len(raw)

    anyio.run(check)


# 7. annotate checks os/arch pairs and variants ---------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--arch", "arm64", "--variant", "v7"], "linux/arm64/v7"),
        (["--arch", "amd64", "--variant", "v8"], "linux/amd64/v8"),
        (["--arch", "armv8"], "linux/armv8"),
    ],
)
def test_annotate_refuses_bad_pairs(registry: RegistryServer, ns: str, flags: list[str],
                                    named: str) -> None:
    host = registry.host
    amd64, arm, *_ = seed_walkthrough(host, ns)
    target = f"{host}/{ns}/app:ann"
    manyfest("create", target, amd64, arm, check=True)
    entry = _store_dir(f"127.0.0.1-{registry.port}_{ns}_app-ann") / (
        f"127.0.0.1-{registry.port}_{ns}_app-arm-1")
    before = entry.read_bytes()
    refused = manyfest("annotate", *flags, target, arm)
    assert refused.returncode == 2
    assert named in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert entry.read_bytes() == before


def test_annotate_accepts_arm_v7(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    amd64, arm, *_ = seed_walkthrough(host, ns)
    target = f"{host}/{ns}/app:ann"
    manyfest("create", target, amd64, arm, check=True)
    manyfest("annotate", "--arch", "arm", "--variant", "v6", target, arm, check=True)
    accepted = manyfest("annotate", "--arch", "arm", "--variant", "v7", target, arm)
    assert (accepted.returncode, accepted.stderr) == (0, "")
    shown = json.loads(manyfest("inspect", "-v", target, arm).stdout)
    assert shown["Descriptor"]["platform"] == {"architecture": "arm", "os": "linux",
                                               "variant": "v7"}


# 8. create --amend re-resolves a tag that now points at a new image -----------------------


def test_amend_takes_the_new_image(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    host = registry.host
    amd64, arm, *_ = seed_walkthrough(host, ns, seed_text="old")
    target = f"{host}/{ns}/app:amend"
    manyfest("create", target, amd64, arm, check=True)
    if docker_cli():
        docker_config = tmp_path / "dc"
        docker_config.mkdir()
        env_before = os.environ["DOCKER_CONFIG"]
        os.environ["DOCKER_CONFIG"] = str(docker_config)
        docker("manifest", "create", "--insecure", target, amd64, arm, check=True)
        os.environ["DOCKER_CONFIG"] = env_before
    old = json.loads(manyfest("inspect", target).stdout)["manifests"][0]["digest"]
    new = seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], "new")])[f"{ns}/app-amd64:1"]
    assert new != old
    amended = manyfest("create", "--amend", target, amd64)
    assert amended.returncode == 0, amended.stderr
    listed = json.loads(manyfest("inspect", target).stdout)
    assert next(m["digest"] for m in listed["manifests"]) == new
    assert len(listed["manifests"]) == 2
    if docker_cli():
        # docker keeps the stale digest (docker/cli#954): the documented difference
        os.environ["DOCKER_CONFIG"] = str(docker_config)
        try:
            docker("manifest", "create", "--insecure", "--amend", target, amd64, check=True)
            theirs = json.loads(docker("manifest", "inspect", target, check=True).stdout)
        finally:
            os.environ["DOCKER_CONFIG"] = env_before
        assert theirs["manifests"][0]["digest"] == old


def test_create_writes_nothing_when_a_source_is_missing(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    [amd64, *_] = seed_walkthrough(host, ns)
    target = f"{host}/{ns}/app:partial"
    failed = manyfest("create", target, amd64, f"{host}/{ns}/nothere:1")
    assert failed.returncode == 1
    assert f"no such manifest: {host}/{ns}/nothere:1" in failed.stderr
    assert not _store_dir(f"127.0.0.1-{registry.port}_{ns}_app-partial").exists()
    assert not any(p.name.endswith(".tmp")
                   for p in (Path(os.environ["DOCKER_CONFIG"]) / "manifests").glob("*")
                   if p.is_file() and not p.name.endswith("-lock"))


def image_ref_free(stderr: str) -> bool:
    """One line only."""
    return len(stderr.strip().splitlines()) == 1


def test_invalid_reference_fails_before_any_request(registry: RegistryServer) -> None:
    before = registry.request_count()
    bad = manyfest("create", f"{registry.host}/Bad/Name:1", f"{registry.host}/x:1")
    assert bad.returncode == 2
    assert "invalid reference format" in bad.stderr
    assert registry.request_count() == before


def test_image_writer_round_trip(registry: RegistryServer, ns: str) -> None:
    image = build_image(Platform("linux", "amd64"), ns)

    async def run() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            ref = reference.parse(f"{registry.host}/{ns}/w:1")
            await push_image(client, ref, image)
            got = await client.get_manifest(ref)
            assert got.raw == image.manifest.raw
            for dgst, data in image.blobs:
                assert await client.get_blob(ref, dgst) == data

    anyio.run(run)
