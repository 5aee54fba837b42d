"""No traceback for any input: bad inputs through every command, each one line on stderr.

Exit codes (README): 0 success, 1 failure, 2 usage (bad flags, references, plans, config),
3 publish finished with failed lists. ``publish`` with failed lists prints, besides the
per-list line, its phases (``resolving N sources``, ``publishing N lists``), its summary
(``published N lists: ...``) and ``N of M lists failed``: those are not error lines; the
per-list error is exactly one line.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from manyfest import mediatypes
from manyfest.reference import filesafe, parse
from tests.bigblob import upload_blob
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed, seed_walkthrough
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

_SUMMARY = re.compile(r"^(published \d+ lists?: |\d+ of \d+ lists? (would )?failed; |"
                      r"resolving \d+ sources?$|publishing \d+ lists?$)")


def _error_lines(stderr: str) -> list[str]:
    """stderr without the summary lines and the ``warning: ...`` lines (not errors)."""
    return [line for line in stderr.splitlines()
            if not _SUMMARY.match(line) and not line.startswith("warning: ")]


def check(proc: object, code: int, *needles: str) -> str:
    """One error line, no traceback, exit ``code``, each needle in the line; returns it."""
    assert hasattr(proc, "stderr")
    stderr: str = proc.stderr  # type: ignore[attr-defined]
    returncode: int = proc.returncode  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    lines = _error_lines(stderr)
    assert len(lines) == 1, stderr
    assert returncode == code, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- references

BAD_REFS = ["UPPER/Case:1", "a/b:", "a/b@sha256:123", "", "a//b", "-x", "a/b:" + "t" * 200,
            "a/b:caf\u00e9", "a b"]


_REF_COMMANDS = ["inspect", "create", "annotate", "push", "rm"]
# Every bad reference through inspect; through each other command a few (each case is a
# process start: the matrix is kept to what shows each command's parsing).
_REF_CASES = [("inspect", bad) for bad in BAD_REFS] + [
    (command, bad) for i, command in enumerate(_REF_COMMANDS[1:])
    for bad in (BAD_REFS[i], BAD_REFS[i + 4], "a b")
]


@pytest.mark.parametrize(("command", "bad"), _REF_CASES, ids=repr)
def test_invalid_references(command: str, bad: str) -> None:
    args = {
        "inspect": ["inspect", "--", bad],
        "create": ["create", "127.0.0.1:1/a/list:1", "--", bad],
        "annotate": ["annotate", "--", "127.0.0.1:1/a/list:1", bad],
        "push": ["push", "--", bad],
        "rm": ["rm", "--", bad],
    }[command]
    check(manyfest(*args), 2)


@pytest.mark.parametrize("bad", BAD_REFS, ids=repr)
def test_invalid_references_in_a_plan(tmp_path: Path, bad: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"image": bad, "manifests": [{"image": "127.0.0.1:1/a/b:1"}]}))
    check(manyfest("publish", str(plan)), 2, str(plan))
    plan.write_text(json.dumps({"image": "127.0.0.1:1/a/b:1", "manifests": [{"image": bad}]}))
    check(manyfest("publish", str(plan)), 2, str(plan))


def test_invalid_references_from_args() -> None:
    check(manyfest("publish", "--target", "a b:1", "--template", "127.0.0.1:1/a-ARCH:1",
                   "--platforms", "linux/amd64"), 2)
    check(manyfest("publish", "--target", "127.0.0.1:1/a:1", "--template", "a b ARCH",
                   "--platforms", "linux/amd64"), 2)


# ---------------------------------------------------------------- plan files

PLANS: dict[str, bytes] = {
    "empty": b"",
    "only-comments": b"# nothing\n",
    "garbage": b"}{][ :: - : -\n\t\x0b",
    "binary": bytes(range(256)) * 64,
    "not-utf8": "image: caf\u00e9\n".encode("latin-1"),
    "scalar": b"just a string\n",
    "list": b"- 1\n- 2\n",
    "image-list": b"image: [1, 2]\nmanifests: []\n",
    "manifests-int": b"image: 127.0.0.1:1/a/b:1\nmanifests: 5\n",
    "manifests-empty": b"image: 127.0.0.1:1/a/b:1\nmanifests: []\n",
    "manifest-scalar": b"image: 127.0.0.1:1/a/b:1\nmanifests: [x]\n",
    "tags-map": b"image: 127.0.0.1:1/a/b:1\ntags: {a: b}\nmanifests:\n"
                b"  - image: 127.0.0.1:1/a/c:1\n",
    "platform-str": b"image: 127.0.0.1:1/a/b:1\nmanifests:\n  - image: 127.0.0.1:1/a/c:1\n"
                    b"    platform: linux\n",
    "unknown-key": b"image: 127.0.0.1:1/a/b:1\nmanifest:\n  - image: 127.0.0.1:1/a/c:1\n",
    "unknown-platform-key": b"image: 127.0.0.1:1/a/b:1\nmanifests:\n  - image: "
                            b"127.0.0.1:1/a/c:1\n    platform: {arch: amd64}\n",
    "matrix-str": b"matrix: x\nimage: 127.0.0.1:1/a/b:{x}\nplatforms: [linux/amd64]\n"
                  b"template: 127.0.0.1:1/a/c:{x}\n",
    "matrix-nested": b"matrix: {v: [[1]]}\nimage: 127.0.0.1:1/a/b:{v}\nplatforms: [linux/amd64]\n"
                     b"template: 127.0.0.1:1/a/c:{v}\n",
    "bad-platform": b"matrix: {v: ['1']}\nimage: 127.0.0.1:1/a/b:{v}\nplatforms: [linux]\n"
                    b"template: 127.0.0.1:1/a/c:{v}\n",
    "anchors-bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c]\n"
                    b"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "python-tag": b"!!python/object/apply:os.system ['true']\n",
    "deep": b"[" * 5000 + b"]" * 5000,
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_bad_plan_files(tmp_path: Path, name: str) -> None:
    plan = tmp_path / f"{name}.yaml"
    plan.write_bytes(PLANS[name])
    check(manyfest("publish", str(plan)), 2, str(plan))


def test_huge_plan_file(tmp_path: Path) -> None:
    plan = tmp_path / "huge.yaml"
    with plan.open("wb") as fh:
        line = b"# " + b"x" * 1022 + b"\n"
        for _ in range(64 * 1024):  # 64 MiB
            fh.write(line)
    check(manyfest("publish", str(plan)), 2, f"plan {plan} is larger than 32 MiB")
    # An endless file is read up to the limit, not forever.
    check(manyfest("publish", "/dev/zero"), 2, "plan /dev/zero is larger than 32 MiB")


def test_missing_plan_and_directory_as_plan(tmp_path: Path) -> None:
    check(manyfest("publish", str(tmp_path / "nope.yaml")), 2, "nope.yaml")
    check(manyfest("publish", str(tmp_path)), 2, str(tmp_path))


def test_report_path_problems(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("image: 127.0.0.1:1/a/b:1\nmanifests:\n  - image: 127.0.0.1:1/a/c:1\n")
    check(manyfest("publish", "--report", str(tmp_path), str(plan)), 2, "--report")
    check(manyfest("publish", "--report", str(tmp_path / "no" / "r.jsonl"), str(plan)), 2,
          "--report")


# ---------------------------------------------------------------- configuration files

CONFIGS: dict[str, bytes] = {
    "garbage": b"}{][ :: - : -\n\t",
    "binary": bytes(range(256)) * 16,
    "not-utf8": "certs_dir: caf\u00e9\n".encode("latin-1"),
    "scalar": b"hello\n",
    "list": b"- concurrency\n",
    "concurrency-str": b"concurrency: lots\n",
    "concurrency-zero": b"concurrency: 0\n",
    "concurrency-float": b"concurrency: 1.5\n",
    "deadline-negative": b"error_retry_deadline: -1\n",
    "deadline-str": b"retry_deadline: soon\n",
    "deadline-nan": b"error_retry_deadline: .nan\n",  # compares false: retried forever
    "timeout-inf": b"read_timeout: .inf\n",
    "registries-list": b"registries: [a, b]\n",
    "registry-scalar": b"registries:\n  r.example.com: 5\n",
    "registry-insecure-str": b"registries:\n  r.example.com: {insecure: maybe}\n",
    "unknown-key": b"retry_attempts: 5\n",
    "multi-doc": b"concurrency: 1\n---\nconcurrency: 2\n",
    "certs-dir-int": b"certs_dir: [1]\n",
}
_COMMANDS = {
    "inspect": ["inspect", "127.0.0.1:1/a/b:1"],
    "create": ["create", "127.0.0.1:1/a/list:1", "127.0.0.1:1/a/b:1"],
    "push": ["push", "127.0.0.1:1/a/list:1"],
    "publish": ["publish", "--target", "127.0.0.1:1/a/list:1", "--template",
                "127.0.0.1:1/a/b-ARCH:1", "--platforms", "linux/amd64"],
}


# Each bad file through one command (in turn), two of them through every command.
_CONFIG_CASES = sorted(
    {(name, sorted(_COMMANDS)[i % len(_COMMANDS)]) for i, name in enumerate(sorted(CONFIGS))}
    | {(name, command) for name in ("garbage", "concurrency-str") for command in _COMMANDS}
)


@pytest.mark.parametrize(("name", "command"), _CONFIG_CASES)
def test_bad_config_files(tmp_path: Path, name: str, command: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(CONFIGS[name])
    proc = manyfest(*_COMMANDS[command], env={"MANYFEST_CONFIG": str(config)})
    check(proc, 2, str(config))


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_config_file_missing_or_a_directory(tmp_path: Path, command: str) -> None:
    proc = manyfest(*_COMMANDS[command], env={"MANYFEST_CONFIG": str(tmp_path / "nope")})
    check(proc, 2, "nope")
    proc = manyfest(*_COMMANDS[command], env={"MANYFEST_CONFIG": str(tmp_path)})
    check(proc, 2, str(tmp_path))


def test_endless_config_file() -> None:
    proc = manyfest("inspect", "127.0.0.1:1/a/b:1", env={"MANYFEST_CONFIG": "/dev/zero"})
    check(proc, 2, "/dev/zero: larger than 1 MiB")


def test_bad_environment_flag() -> None:
    proc = manyfest("inspect", "127.0.0.1:1/a/b:1", env={"MANYFEST_LOOPBACK_INSECURE": "maybe"})
    check(proc, 2, "MANYFEST_LOOPBACK_INSECURE")


# ---------------------------------------------------------------- local store

def test_garbage_in_the_local_store(isolated_env: Path) -> None:
    store = isolated_env / ".docker" / "manifests" / filesafe(parse("127.0.0.1:1/a/list:1"))
    store.mkdir(parents=True)
    entry = store / filesafe(parse("127.0.0.1:1/a/b:1"))
    entry.write_bytes(b"\x00\xffnot json")
    check(manyfest("inspect", "127.0.0.1:1/a/list:1"), 1, str(entry))
    check(manyfest("annotate", "--arch", "arm", "127.0.0.1:1/a/list:1", "127.0.0.1:1/a/b:1"), 1,
          str(entry))
    check(manyfest("push", "127.0.0.1:1/a/list:1"), 1, str(entry))
    entry.write_text('{"Ref": 5, "Descriptor": "x"}')
    check(manyfest("inspect", "127.0.0.1:1/a/list:1"), 1, str(entry))
    check(manyfest("push", "127.0.0.1:1/a/list:1"), 1, str(entry))


def test_docker_config_dir_is_a_file(registry: RegistryServer, ns: str, tmp_path: Path) -> None:
    [image] = seed_walkthrough(registry.host, ns)[:1]
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    env = {"DOCKER_CONFIG": str(not_dir)}
    list_ref = f"{registry.host}/{ns}/list:1"
    store = f"{not_dir}/manifests: Not a directory"
    check(manyfest("create", list_ref, image, env=env), 1, store)
    check(manyfest("annotate", "--arch", "arm", list_ref, image, env=env), 1, store)
    check(manyfest("rm", list_ref, env=env), 1, store)


# ---------------------------------------------------------------- registries answering garbage


@dataclass
class Garbage:
    """Answer manifest GETs/HEADs of repository ``repo`` with ``body``/``content_type``."""

    repo: str
    status: int
    body: bytes
    content_type: str

    def quirk(self) -> object:
        async def before(request: web.Request) -> web.StreamResponse | None:
            if f"/v2/{self.repo}/manifests/" in request.path and request.method in ("GET",
                                                                                     "HEAD"):
                # (aiohttp sends no body to a HEAD, but keeps its Content-Length.)
                return web.Response(status=self.status, body=self.body,
                                    headers={"Content-Type": self.content_type})
            return None
        return before


_SCHEMA1 = json.dumps({"schemaVersion": 1, "name": "x", "tag": "1", "architecture": "amd64",
                       "fsLayers": [], "history": [], "signatures": []}).encode()
GARBAGE: dict[str, tuple[int, bytes, str, int, tuple[str, ...]]] = {
    # name: (status, body, content type, exit code of inspect, needles)
    "not-json": (200, b"<html>hello</html>", mediatypes.DOCKER_MANIFEST, 1,
                 ("not valid JSON",)),
    "html-500": (500, b"<html><head><title>500 Internal Server Error</title></head><body>"
                      b"<h1>oops</h1></body></html>", "text/html", 1,
                 ("500", "500 Internal Server Error")),
    "schema1": (200, _SCHEMA1, "application/vnd.docker.distribution.manifest.v1+prettyjws", 1,
                ("a Docker schema 1 manifest", "skopeo copy --format v2s2")),
    "empty-200": (200, b"", mediatypes.DOCKER_MANIFEST, 1, ()),
    "wrong-content-type": (200, b'{"schemaVersion": 2, "mediaType": "text/plain"}',
                           "text/plain", 1, ()),
    "json-array": (200, b"[1, 2, 3]", mediatypes.DOCKER_MANIFEST, 1, ()),
    "wrong-types": (200, b'{"schemaVersion": "2", "mediaType": 5, "layers": {}}',
                    mediatypes.DOCKER_MANIFEST, 1, ()),
    "index-wrong-types": (200, b'{"schemaVersion": 2, "mediaType": "' +
                          mediatypes.OCI_INDEX.encode() + b'", "manifests": [{"digest": 1}]}',
                          mediatypes.OCI_INDEX, 1, ()),
    "huge": (200, b'{"schemaVersion": 2, "x": "' + b"x" * (6 * 1024 * 1024) + b'"}',
             mediatypes.DOCKER_MANIFEST, 1, ("4 MiB",)),
}


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host).start()
    yield p
    p.stop()


@pytest.fixture
def fast_config(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "fast.yaml"
    config.write_text("error_retry_deadline: 0.5\nretry_max_wait: 0.1\n")
    return {"MANYFEST_CONFIG": str(config)}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_registry_answers_garbage(proxy: QuirkProxy, ns: str, tmp_path: Path, name: str,
                                  fast_config: dict[str, str]) -> None:
    status, body, ctype, code, needles = GARBAGE[name]
    good = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:2]]
    seed(proxy.upstream, good)
    proxy.before.append(Garbage(f"{ns}/bad", status, body, ctype).quirk())  # type: ignore[arg-type]
    bad = f"{proxy.host}/{ns}/bad:1"
    amd64 = f"{proxy.host}/{ns}/app-amd64:1"
    check(manyfest("inspect", bad, env=fast_config), code, bad, *needles)
    check(manyfest("create", f"{proxy.host}/{ns}/list:1", amd64, bad, env=fast_config), code,
          bad, *needles)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {proxy.host}/{ns}/list:1\nmanifests:\n  - image: {amd64}\n"
                    f"  - image: {bad}\n")
    line = check(manyfest("publish", str(plan), env=fast_config), 3, bad, *needles)
    assert line.startswith(f"[1/1] failed {proxy.host}/{ns}/list:1: "), line
    # The target list is in the garbage repository: its HEAD answers garbage.
    target = tmp_path / "target.yaml"
    target.write_text(f"image: {bad}\nmanifests:\n  - image: {amd64}\n")
    check(manyfest("publish", str(target), env=fast_config), 3, bad)


def test_wrong_content_type_on_good_manifests(proxy: QuirkProxy, ns: str,
                                              tmp_path: Path) -> None:
    """Manifests served as text/plain: the body's mediaType decides; everything works."""
    images = seed(proxy.upstream, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns)
                                   for p in PLATFORMS[:2]])

    async def text_plain(request: web.Request, response: web.Response) -> web.Response:
        if "/manifests/" in request.path:
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
        return response

    proxy.after.append(text_plain)
    amd64 = f"{proxy.host}/{ns}/app-amd64:1"
    shown = manyfest("inspect", amd64)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["mediaType"] == mediatypes.DOCKER_MANIFEST
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {proxy.host}/{ns}/list:1\nmanifests:\n  - image: {amd64}\n"
                    f"  - image: {proxy.host}/{ns}/app-arm:1\n")
    published = manyfest("publish", "--json", str(plan))
    assert published.returncode == 0, published.stderr
    [result] = json.loads(published.stdout)["results"]
    assert result["status"] == "created"
    listed = manyfest("inspect", f"{proxy.host}/{ns}/list:1")
    assert listed.returncode == 0, listed.stderr
    assert [m["digest"] for m in json.loads(listed.stdout)["manifests"]] == [
        images[f"{ns}/app-amd64:1"], images[f"{ns}/app-arm:1"]]


def test_garbage_blob_config(proxy: QuirkProxy, ns: str, fast_config: dict[str, str]) -> None:
    """A config blob that is not JSON (served with its right digest: a bad image)."""
    garbage = b"\x00\x01 not a config"
    dgst = "sha256:" + hashlib.sha256(garbage).hexdigest()

    async def push_bad() -> None:
        base = f"http://{proxy.upstream}"
        async with aiohttp.ClientSession() as session:
            await upload_blob(session, base, f"{ns}/bad", dgst, garbage)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": mediatypes.DOCKER_MANIFEST,
                "config": {"mediaType": mediatypes.DOCKER_CONFIG, "size": len(garbage),
                           "digest": dgst},
                "layers": []}).encode()
            async with session.put(f"{base}/v2/{ns}/bad/manifests/1", data=manifest,
                                   headers={"Content-Type": mediatypes.DOCKER_MANIFEST}) as r:
                assert r.status == 201

    anyio.run(push_bad)
    bad = f"{proxy.host}/{ns}/bad:1"
    check(manyfest("create", f"{proxy.host}/{ns}/list:1", bad, env=fast_config), 1, bad, dgst)


# ---------------------------------------------------------------- list PUT refused

_LIST_REFUSALS = {
    "415": (415, b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid",'
                 b'"detail":"unsupported media type"}]}'),
    "400-list-not-supported": (400, b'{"errors":[{"code":"MANIFEST_INVALID","message":'
                                    b'"manifest invalid","detail":"Manifest.list is not '
                                    b'supported"}]}'),
}


def _refuse_lists(status: int, body: bytes) -> object:
    async def before(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and "/manifests/" in request.path and \
                request.headers.get("Content-Type", "") in (mediatypes.DOCKER_LIST,
                                                             mediatypes.OCI_INDEX):
            await request.read()
            return web.Response(status=status, body=body,
                                headers={"Content-Type": "application/json"})
        return None
    return before


@pytest.mark.parametrize("name", sorted(_LIST_REFUSALS))
def test_list_put_refused_for_its_media_type(proxy: QuirkProxy, ns: str, tmp_path: Path,
                                             name: str) -> None:
    status, body = _LIST_REFUSALS[name]
    seed(proxy.upstream, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:2]])
    proxy.before.append(_refuse_lists(status, body))  # type: ignore[arg-type]
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {proxy.host}/{ns}/list:1\nmanifests:\n"
                    f"  - image: {proxy.host}/{ns}/app-amd64:1\n"
                    f"  - image: {proxy.host}/{ns}/app-arm:1\n")
    detail = json.loads(body)["errors"][0]["detail"]
    line = check(manyfest("publish", str(plan)), 3, f"{proxy.host}/{ns}/list:1",
                 mediatypes.DOCKER_LIST, str(status), detail, "--media-type oci")
    assert "retry later" not in line
    forced = manyfest("publish", "--media-type", "oci", str(plan))
    line = check(forced, 3, f"{proxy.host}/{ns}/list:1", mediatypes.OCI_INDEX, str(status),
                 detail, "--media-type docker")
    assert "retry later" not in line
    # an OCI index of Docker children: written (here refused), and warned about
    assert f"warning: {proxy.host}/{ns}/list:1 is an OCI index with 2 Docker children" in (
        forced.stderr
    )
    # docker's workflow: the advice names push's --media-type too.
    list_ref = f"{proxy.host}/{ns}/list:2"
    created = manyfest("create", list_ref, f"{proxy.host}/{ns}/app-amd64:1",
                       f"{proxy.host}/{ns}/app-arm:1")
    assert created.returncode == 0, created.stderr
    line = check(manyfest("push", list_ref), 1, list_ref, mediatypes.DOCKER_LIST, str(status),
                 detail, "(--media-type oci on manyfest push or publish)")
    assert "retry later" not in line


# ---------------------------------------------------------------- DOCKER_CONFIG config.json

DOCKER_CONFIGS: dict[str, bytes] = {
    "garbage": b"{{{ not json",
    "binary": bytes(range(256)),
    "list": b"[1, 2]",
    "auths-int": b'{"auths": 5}',
    "auth-not-base64": b'{"auths": {"HOST": {"auth": "%%%not base64"}}}',
    "auth-no-colon": b'{"auths": {"HOST": {"auth": "bm9jb2xvbg=="}}}',
    "helper-missing": b'{"credHelpers": {"HOST": "manyfest-no-such-helper"}}',
    "store-int": b'{"credsStore": 7}',
}


def _challenge_everything() -> object:
    """Every request answers 401 with a Basic challenge: credentials are looked up."""
    async def before(request: web.Request) -> web.StreamResponse | None:
        await request.read()
        return web.Response(status=401, body=b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                            headers={"WWW-Authenticate": 'Basic realm="test"',
                                     "Content-Type": "application/json"})
    return before


@pytest.mark.parametrize("name", sorted(DOCKER_CONFIGS))
def test_bad_docker_config_json(proxy: QuirkProxy, isolated_env: Path, tmp_path: Path,
                                name: str) -> None:
    config = isolated_env / ".docker" / "config.json"
    config.write_bytes(DOCKER_CONFIGS[name].replace(b"HOST", proxy.host.encode()))
    proxy.before.append(_challenge_everything())  # type: ignore[arg-type]
    ref = f"{proxy.host}/a/b:1"
    needle = "manyfest-no-such-helper" if name == "helper-missing" else str(config)
    check(manyfest("inspect", ref), 1, needle)
    check(manyfest("create", f"{proxy.host}/a/list:1", ref), 1, needle)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {proxy.host}/a/list:1\nmanifests:\n  - image: {ref}\n")
    check(manyfest("publish", str(plan)), 3, needle)


def test_docker_config_json_is_a_directory(proxy: QuirkProxy, isolated_env: Path) -> None:
    config = isolated_env / ".docker" / "config.json"
    config.mkdir()
    proxy.before.append(_challenge_everything())  # type: ignore[arg-type]
    check(manyfest("inspect", f"{proxy.host}/a/b:1"), 1, str(config))


def test_push_target_answers_an_html_500(proxy: QuirkProxy, ns: str,
                                         fast_config: dict[str, str]) -> None:
    seed(proxy.upstream, [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:2]])
    list_ref = f"{proxy.host}/{ns}/list:1"
    created = manyfest("create", list_ref, f"{proxy.host}/{ns}/app-amd64:1",
                       f"{proxy.host}/{ns}/app-arm:1")
    assert created.returncode == 0, created.stderr

    async def html_500(request: web.Request) -> web.StreamResponse | None:
        if request.method == "PUT" and request.path == f"/v2/{ns}/list/manifests/1":
            await request.read()
            return web.Response(status=500, content_type="text/html",
                                body=b"<html><title>Bad Gateway Thing</title><p>x</p></html>")
        return None

    proxy.before.append(html_500)
    check(manyfest("push", list_ref, env=fast_config), 1, list_ref, "500",
          "Bad Gateway Thing", "still failing after 0.5 s of retries")


def test_the_last_net_words() -> None:
    from manyfest.cli.main import unexpected

    assert unexpected(NotADirectoryError(20, "Not a directory", "/x/manifests")) == \
        "/x/manifests: Not a directory; check the path and its permissions"
    assert unexpected(ExceptionGroup("g", [KeyError("k")])) == (
        "internal error: KeyError: 'k'; this is a manyfest bug: please report it with the "
        "output of the same command run with -D")


@pytest.fixture
def not_http() -> Iterator[str]:
    """A loopback server that answers ``GET /v2/`` in HTTP and anything else as SSH would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            data = conn.recv(65536)  # a TLS ClientHello, or the start of a request
            if data.startswith(b"GET /v2/ "):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                             b"\r\n{}")
            else:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
    server.close()
    thread.join(10)
    assert not thread.is_alive()


def test_an_answer_that_is_not_http(not_http: str) -> None:
    ref = f"{not_http}/a/b:1"
    check(manyfest("inspect", ref), 1,
          f"GET http://{not_http}/v2/a/b/manifests/1: the answer is not valid HTTP (",
          "SSH-2.0-OpenSSH_9.2", "check the registry's address and port")
