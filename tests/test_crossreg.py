"""Sources on other registries, end to end: real registries on loopback, one run each.

* a build registry (plain HTTP, anonymous, marked insecure in the config file, behind a quirk
  proxy that counts its requests) as the source, and a release registry with TLS (trustme CA
  in certs.d, verified: the loopback rule is off) and htpasswd (credentials in config.json
  for it alone) as the target: ``publish`` of lists in several repositories, one of them from
  an index source, each blob read once from the build registry (a config for its platform,
  its bytes then uploaded from memory), no blob HEAD (the upload's POST asks to mount from the
  target repository itself), the build registry's own ``concurrency`` from the config file
  honoured; children with the source's exact bytes and digests; ``push`` too;
* errors name the registry that failed and say what to do there;
* chunked uploads: a registry announcing ``OCI-Chunk-Min-Length`` gets a 120 MiB layer in
  ``PATCH`` es (a ``416`` once on the way, resumed), peak RSS bounded; a registry refusing a
  monolithic upload as too large (``413``) gets the blob again in chunks.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from aiohttp import web

from manyfest.registry.client import UPLOAD_CHUNK
from tests.bigblob import MIB, blob_digest, push_big_image
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed_built
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer
from tests.test_streaming_copy import RSS_LIMIT_MB, run_measured

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

USER, PASSWORD = "releaser", "s3cret-release"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A TLS + htpasswd registry (the release registry) and its CA certificate."""
    d = tmp_path_factory.mktemp("release")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(d / "server.key"))
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(d / "server.pem"), append=i > 0)
    line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True,
                          text=True, check=True).stdout.strip()
    (d / "htpasswd").write_text(line + "\n")
    server = RegistryServer(workdir=d / "registry", tls=(d / "server.pem", d / "server.key"),
                            htpasswd=d / "htpasswd")
    server.start()
    yield {"server": server, "ca": ca.cert_pem.bytes()}
    server.stop()


@pytest.fixture
def mirror(second_registry: RegistryServer) -> RegistryServer:
    """The second registry (:func:`tests.conftest.second_registry`), behind quirk proxies."""
    return second_registry


@pytest.fixture
def build(registry: RegistryServer) -> Iterator[QuirkProxy]:
    """The build registry as clients see it: the session registry behind a counting proxy."""
    p = QuirkProxy(registry.host, streaming=True).start()
    yield p
    p.stop()


def trust_release(release: dict[str, Any], *, credentials: bool = True) -> str:
    """certs.d/<host>/ca.crt for the release registry; config.json with its credentials
    (and nothing for any other registry). Returns its host."""
    host: str = release["server"].host
    certs = Path(os.environ["MANYFEST_CERTS_DIR"]) / host
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca.crt").write_bytes(release["ca"])
    if credentials:
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return host


def config_file(tmp_path: Path, registries: dict[str, dict[str, object]]) -> dict[str, str]:
    """A manyfest config file with ``registries:`` settings; the env that selects it (the
    loopback rule off: TLS is verified unless a registry is marked insecure)."""
    lines = ["registries:"]
    for name, keys in registries.items():
        lines.append(f"  '{name}':")
        lines += [f"    {k}: {str(v).lower() if isinstance(v, bool) else v}"
                  for k, v in keys.items()]
    path = tmp_path / "manyfest.yaml"
    path.write_text("\n".join(lines) + "\n")
    return {"MANYFEST_CONFIG": str(path), "MANYFEST_LOOPBACK_INSECURE": "0"}


def peak_tracker(proxy: QuirkProxy) -> list[int]:
    """Forward every request itself, recording [in flight now, peak] of the exchanges that
    hold a concurrency slot throughout (a streamed blob GET holds one only until its headers
    come: the transport's rule, so that a copy never holds two slots of one registry)."""
    state = [0, 0]

    async def quirk(request: web.Request) -> web.StreamResponse:
        if "/blobs/" in request.path:
            return await proxy.forward_stream(request)
        state[0] += 1
        state[1] = max(state[1], state[0])
        try:
            return await proxy.forward(request)
        finally:
            state[0] -= 1

    proxy.before.append(quirk)
    return state


def log_lines(server: RegistryServer, *fragments: str) -> int:
    """``response completed`` lines of the registry's log containing every fragment."""
    return sum(1 for line in server.log_path.read_text().splitlines()
               if "response completed" in line and all(f in line for f in fragments))


def _inspect(ref: str, env: dict[str, str]) -> dict[str, Any]:
    proc = manyfest("inspect", ref, env=env)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_publish_from_a_build_registry_to_a_tls_htpasswd_registry(
        registry: RegistryServer, build: QuirkProxy, release: dict[str, Any], ns: str,
        tmp_path: Path) -> None:
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:3]]
    images = seed_built(registry.host, names)
    sources = [f"{build.host}/{n}" for n, _, _ in names]
    layers = {d for image in images.values() for d, _ in image.blobs[1:]}
    configs = {image.blobs[0][0] for image in images.values()}
    assert all(image.manifest.image().config.digest in configs for image in images.values())
    host = trust_release(release)
    env = config_file(tmp_path, {build.host: {"insecure": True, "concurrency": 2}})
    # an index on the build registry (published there: mounts within one registry)
    index_plan = tmp_path / "index.yaml"
    index_plan.write_text(f"image: {build.host}/{ns}/multi:1\nmanifests:\n"
                          + "".join(f"  - image: {s}\n" for s in sources))
    made = manyfest("publish", str(index_plan), env=env)
    assert made.returncode == 0, made.stderr
    index_digest = made.stdout.split()[-1] if made.stdout.strip() else ""
    build.seen.clear()
    peak = peak_tracker(build)

    repos = [f"{ns}/app{i}" for i in range(3)]
    docs = [f"image: {host}/{repo}:1\ntags: [latest]\nmanifests:\n"
            + "".join(f"  - image: {s}\n" for s in sources) for repo in repos]
    docs.append(f"image: {host}/{ns}/from-index:1\nmanifests:\n"
                f"  - image: {build.host}/{ns}/multi:1\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text("---\n".join(docs))
    # A cache of its own: every source manifest and config is read again, a dozen reads at
    # once, so the build registry's limit of 2 is what holds them back.
    proc = manyfest("publish", "--json", str(plan),
                    env={**env, "XDG_CACHE_HOME": str(tmp_path / "cache2")})
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["status"] for r in results] == ["created"] * 4

    # Each blob read once from the build registry: a layer for its copy, a config for its
    # platform (the copy uploads those bytes).
    for digest in layers | configs:
        assert build.count("GET", f"/blobs/{digest}") == 1, digest
    assert build.count("POST") == 0  # nothing written to (or mounted on) the source
    assert 1 <= peak[1] <= 2  # the build registry's own limit from the config file
    # On the release registry: each blob uploaded once, mounted into the 3 other repositories.
    server: RegistryServer = release["server"]
    blobs = len(layers) + len(configs)
    assert log_lines(server, "method=PUT", f"/{ns}/", "digest=sha256") == blobs
    assert log_lines(server, "mount=sha256", f"/{ns}/", "status=201") == 3 * blobs
    assert log_lines(server, "mount=sha256", f"from={registry.host}") == 0
    # the first repository: the upload's POST asks to mount from itself (202: not there,
    # upload), no blob HEAD
    assert log_lines(server, "mount=sha256", f"/{ns}/", "status=202") == blobs
    assert log_lines(server, "method=HEAD", f"/{ns}/", "/blobs/") == 0

    # The children have the source's exact bytes; the list from the index has its entries.
    want = [image.manifest.digest for image in images.values()]
    for repo in repos:
        listed = _inspect(f"{host}/{repo}:1", env)
        assert [m["digest"] for m in listed["manifests"]] == want
    from_index = _inspect(f"{host}/{ns}/from-index:1", env)
    assert [m["digest"] for m in from_index["manifests"]] == want
    for image in images.values():
        raw = manyfest("inspect", "--raw", f"{host}/{repos[0]}@{image.manifest.digest}",
                       env=env)
        assert raw.returncode == 0, raw.stderr
        assert raw.stdout.encode() == image.manifest.raw
    if index_digest.startswith("sha256:"):
        assert from_index["manifests"] == _inspect(f"{build.host}/{ns}/multi:1",
                                                   env)["manifests"]


def test_push_takes_sources_on_another_registry(
        registry: RegistryServer, build: QuirkProxy, release: dict[str, Any], ns: str,
        tmp_path: Path) -> None:
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:2]]
    images = seed_built(registry.host, names)
    host = trust_release(release)
    env = config_file(tmp_path, {build.host: {"insecure": True}})
    target = f"{host}/{ns}/app:1"
    created = manyfest("create", target, *(f"{build.host}/{n}" for n, _, _ in names), env=env)
    assert created.returncode == 0, created.stderr
    pushed = manyfest("push", "--purge", target, env=env)  # inspect then reads the registry
    assert pushed.returncode == 0, pushed.stderr
    *lines, digest = pushed.stdout.splitlines()
    want = sorted(image.manifest.digest for image in images.values())
    assert sorted(lines) == [f"Pushed ref {host}/{ns}/app@{d} with digest: {d}" for d in want]
    assert digest.startswith("sha256:")
    assert sorted(m["digest"] for m in _inspect(target, env)["manifests"]) == want
    # annotate --remote names the entry by the reference it was copied from (another
    # registry, written out): looked up there, matched by digest.
    amd64 = images[names[0][0]].manifest.digest
    changed = manyfest("annotate", "--remote", target, f"{build.host}/{names[0][0]}",
                       "--os-version", "1.0", env=env)
    assert changed.returncode == 0, changed.stderr
    raw = manyfest("inspect", "--raw", target, env=env)
    assert raw.returncode == 0, raw.stderr
    [entry] = [m for m in json.loads(raw.stdout)["manifests"] if m["digest"] == amd64]
    assert entry["platform"].get("os.version") == "1.0", entry


def test_errors_name_the_registry_that_failed(
        registry: RegistryServer, build: QuirkProxy, release: dict[str, Any], ns: str,
        tmp_path: Path) -> None:
    names = [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)]
    [image] = seed_built(registry.host, names).values()
    host = trust_release(release, credentials=False)
    env = config_file(tmp_path, {build.host: {"insecure": True}})
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n"
                    f"  - image: {build.host}/{names[0][0]}\n")
    # The release registry has no credentials: its 401 says to log in there.
    proc = manyfest("publish", str(plan), env=env)
    assert proc.returncode == 3, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "401" in ln]
    assert f"look up {host}/{ns}/app:1: registry answered 401" in line
    assert f"log in with `manyfest login {host}`" in line
    assert build.host not in line.partition(";")[2]

    # The build registry asks for credentials for one layer's GET: the copy's error leads
    # with the source registry and the advice is to log in to it.
    trust_release(release)
    layer = image.blobs[-1][0]

    async def refuse(request: web.Request) -> web.StreamResponse | None:
        if request.method == "GET" and request.path.endswith(f"/blobs/{layer}"):
            return web.Response(status=401, headers={
                "WWW-Authenticate": 'Basic realm="build"', "Content-Type": "application/json"},
                body=b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
        return None

    build.before.append(refuse)
    proc = manyfest("publish", str(plan), env=env)
    assert proc.returncode == 3, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "401" in ln]
    assert f"source registry {build.host}: get blob {build.host}/{ns}/app-amd64@{layer}: " \
        "registry answered 401" in line
    assert f"log in with `manyfest login {build.host}`" in line


# ---------------------------------------------------------------------- chunked uploads


def announce_chunks(proxy: QuirkProxy, minimum: int) -> None:
    """Upload POSTs answer with ``OCI-Chunk-Min-Length: minimum``."""

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "POST" and request.path.endswith("/blobs/uploads/"):
            answer = await proxy.forward(request)
            answer.headers["OCI-Chunk-Min-Length"] = str(minimum)
            return answer
        return None

    proxy.before.append(quirk)


def refuse_one_patch_out_of_order(proxy: QuirkProxy, which: int) -> list[int]:
    """The ``which``-th PATCH (0-based) answers 416 with the registry's true Range (as if a
    chunk had been sent out of order), its body read and dropped. Returns [PATCHes seen]."""
    seen = [0]

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method != "PATCH":
            return None
        n = seen[0]
        seen[0] += 1
        if n != which:
            return None
        await request.read()
        start = int(re.match(r"(\d+)-", request.headers["Content-Range"]).group(1))  # type: ignore[union-attr]
        return web.Response(status=416, headers={
            "Range": f"0-{start - 1}", "Location": str(request.url)})

    proxy.before.append(quirk)
    return seen


def body_limit(proxy: QuirkProxy, limit: int) -> None:
    """Request bodies over ``limit`` bytes answer 413 (as a front proxy's body limit)."""

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method in ("PUT", "PATCH") and "/blobs/uploads/" in request.path:
            length = request.content_length
            if length is not None and length > limit:
                await request.read()
                return web.Response(status=413, text="<html>413 Request Entity Too Large</html>")
        return None

    proxy.before.append(quirk)


def test_a_big_layer_goes_in_chunks_to_a_registry_that_announces_them(
        registry: RegistryServer, mirror: RegistryServer, ns: str, tmp_path: Path) -> None:
    size = 120 * MIB
    image = anyio.run(lambda: push_big_image(registry.host, f"{ns}/big", "1", ns, size))
    target = QuirkProxy(mirror.host, streaming=True).start()
    try:
        announce_chunks(target, 1 * MIB)
        patches = refuse_one_patch_out_of_order(target, 2)
        plan = tmp_path / "plan.yaml"
        plan.write_text(f"image: {target.host}/{ns}/app:1\n"
                        f"manifests:\n  - image: {registry.host}/{ns}/big:1\n")
        code, stdout, stderr, rss_kib = run_measured("publish", "--json", str(plan),
                                                     cwd=tmp_path)
        assert code == 0, stderr
        [result] = json.loads(stdout)["results"]
        assert result["status"] == "created"
        chunks = math.ceil(size / UPLOAD_CHUNK)
        assert patches[0] == chunks + 1  # one chunk sent twice (the 416)
        hex_digest = image.layer_digest.partition(":")[2]
        [done] = [k for k in target.seen if k.startswith("PUT ") and hex_digest in k]
        assert target.seen[done] == 1
        # the small blobs (under one chunk) go monolithic; nothing crossed twice: each
        # upload's POST asks to mount from the target repository itself, none from another
        blobs = 11 + 1 + 1  # push_big_image: 11 small layers, the big one, the config
        assert target.count("POST", "mount=") == blobs
        assert target.count("POST", f"from={ns}/app") == blobs
    finally:
        target.stop()
    dgst, got = anyio.run(lambda: blob_digest(mirror.host, f"{ns}/app", image.layer_digest))
    assert (dgst, got) == (image.layer_digest, size)
    print(f"manyfest peak RSS copying a 120 MiB layer in chunks: {rss_kib / 1024:.0f} MB")
    assert rss_kib / 1024 < RSS_LIMIT_MB


def test_a_413_to_a_monolithic_upload_sends_the_blob_again_in_chunks(
        registry: RegistryServer, mirror: RegistryServer, ns: str, tmp_path: Path) -> None:
    size = 20 * MIB
    image = anyio.run(lambda: push_big_image(registry.host, f"{ns}/big", "1", ns, size))
    source = QuirkProxy(registry.host, streaming=True).start()
    target = QuirkProxy(mirror.host, streaming=True).start()
    try:
        body_limit(target, 10 * MIB)
        plan = tmp_path / "plan.yaml"
        plan.write_text(f"image: {target.host}/{ns}/app:1\n"
                        f"manifests:\n  - image: {source.host}/{ns}/big:1\n")
        proc = manyfest("publish", "--json", str(plan))
        assert proc.returncode == 0, proc.stderr
        [result] = json.loads(proc.stdout)["results"]
        assert result["status"] == "created"
        hex_digest = image.layer_digest.partition(":")[2]
        puts = [k for k in target.seen if k.startswith("PUT ") and hex_digest in k]
        assert len(puts) == 2  # the refused monolithic PUT, then the empty closing PUT
        assert target.count("PATCH", "/blobs/uploads/") == math.ceil(size / UPLOAD_CHUNK)
        # read twice from the source: the refused attempt and the chunked one
        assert source.count("GET", f"/blobs/{image.layer_digest}") == 2
    finally:
        source.stop()
        target.stop()
    dgst, got = anyio.run(lambda: blob_digest(mirror.host, f"{ns}/app", image.layer_digest))
    assert (dgst, got) == (image.layer_digest, size)


def refuse_mount_parameters(proxy: QuirkProxy) -> None:
    """An upload POST carrying ``mount=`` answers 400 (a registry that will not take the
    parameters, where the spec says 202); a plain POST goes through."""

    async def quirk(request: web.Request) -> web.StreamResponse | None:
        if request.method == "POST" and "mount" in request.query:
            return web.json_response(status=400, data={"errors": [
                {"code": "UNSUPPORTED", "message": "mount is not supported"}]})
        return None

    proxy.before.append(quirk)


def test_a_registry_refusing_the_mount_probe_is_asked_with_a_head(
        registry: RegistryServer, mirror: RegistryServer, ns: str, tmp_path: Path) -> None:
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:2]]
    images = seed_built(registry.host, names)
    blobs = {d for image in images.values() for d, _ in image.blobs}
    target = QuirkProxy(mirror.host, streaming=True).start()
    try:
        refuse_mount_parameters(target)
        sources = "".join(f"  - image: {registry.host}/{n}\n" for n, _, _ in names)
        for tag in ("1", "2"):
            plan = tmp_path / f"plan{tag}.yaml"
            plan.write_text(f"image: {target.host}/{ns}/app:{tag}\nmanifests:\n{sources}")
            target.seen.clear()
            proc = manyfest("publish", "--json", str(plan))
            assert proc.returncode == 0, proc.stderr
            [result] = json.loads(proc.stdout)["results"]
            assert result["status"] == "created"
            # once refused, every blob is looked up with a HEAD, then a plain POST if missing
            assert target.count("POST", "mount=") >= 1
            for digest in blobs:
                assert target.count("HEAD", f"/{ns}/app/blobs/{digest}") == 1, digest
            uploads = sum(n for k, n in target.seen.items()
                          if k.startswith("PUT ") and "digest=sha256" in k)
            # the first run uploads every blob; the second finds them all (nothing sent)
            assert uploads == (len(blobs) if tag == "1" else 0)
    finally:
        target.stop()
    for digest in blobs:
        got = anyio.run(blob_digest, mirror.host, f"{ns}/app", digest)
        assert got[0] == digest
