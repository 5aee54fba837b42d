"""Authentication against real docker-registry processes on loopback.

* htpasswd (Basic): credentials from ``$DOCKER_CONFIG/config.json`` ``auths``; wrong or no
  credentials give one line naming the registry and telling to log in;
* token auth (``auth: token``) with a token server of our own (tests/token_issuer.py):
  tokens cached per scope set, reads ask for ``pull`` only, mounts ask for ``pull,push`` on
  the target and ``pull`` on the source, a token refreshed when it expires or is refused;
* credential helpers (``credHelpers``, ``credsStore``) run from PATH;
* credential sources in their documented order (``$DOCKER_AUTH_CONFIG``,
  ``$REGISTRY_AUTH_FILE``, docker's config.json, podman's auth.json), auth.json namespace
  keys, malformed sources.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from manyfest import reference
from manyfest.auth.tokens import scope
from manyfest.errors import AuthenticationError
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed, walkthrough_blobs
from tests.registry_server import RegistryServer
from tests.token_issuer import TokenIssuer, TokenRequest

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

USER, PASSWORD = "user", "pass"
REFRESH_TOKEN = "refresh-token-of-user"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP registry with htpasswd (bcrypt) basic auth: user/pass."""
    workdir = tmp_path_factory.mktemp("basic-registry")
    line = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert line.startswith(f"{USER}:$2y$")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(line + "\n")
    server = RegistryServer(workdir=workdir / "registry", htpasswd=htpasswd)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    """The token server: user/pass (Basic) or the refresh token; RS256 JWTs."""
    with TokenIssuer(
        tmp_path_factory.mktemp("issuer"),
        users={USER: PASSWORD},
        refresh_tokens={REFRESH_TOKEN: USER},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, issuer: TokenIssuer
) -> Iterator[RegistryServer]:
    """A plain-HTTP registry with ``auth: token`` trusting the issuer's signing certificate."""
    server = RegistryServer(
        workdir=tmp_path_factory.mktemp("token-registry"), token=issuer.registry_config()
    )
    server.start()
    yield server
    server.stop()


def write_config(doc: dict[str, Any]) -> Path:
    """Write ``$DOCKER_CONFIG/config.json`` (this test's own, see conftest)."""
    path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    path.write_text(json.dumps(doc))
    return path


def login(host: str, user: str = USER, password: str = PASSWORD) -> Path:
    """config.json with ``auths[host].auth`` = base64(user:password), as docker login writes."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return write_config({"auths": {host: {"auth": auth}}})


def seed_sources(host: str, ns: str) -> dict[str, str]:
    """The four walkthrough images ``<ns>/app-<suffix>:1`` → {full reference: digest}."""
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS]
    digests = seed(host, names)
    return {f"{host}/{name}": digest for name, digest in digests.items()}


def seed_one(host: str, ns: str) -> tuple[str, str]:
    """One image ``<ns>/app-amd64:1`` → (full reference, digest)."""
    platform = PLATFORMS[0]
    [(name, digest)] = seed(
        host, [(f"{ns}/app-{platform_suffix(platform)}:1", platform, ns)]
    ).items()
    return f"{host}/{name}", digest


def one_line(stderr: str) -> str:
    """The single line of an error's stderr (fails if there is more than one)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def create_and_push(target: str, sources: dict[str, str]) -> str:
    """``manyfest create`` + ``push`` through the CLI; checks the output, returns the digest."""
    created = manyfest("create", target, *sources)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created manifest list {target}\n"
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.splitlines()
    name = target.rsplit(":", 1)[0]
    assert set(lines[:-1]) == {f"Pushed ref {name}@{d} with digest: {d}" for d in sources.values()}
    return lines[-1]


def inspect_digests(target: str) -> set[str]:
    """The children digests ``manyfest inspect`` shows for a remote list."""
    proc = manyfest("inspect", target)
    assert proc.returncode == 0, proc.stderr
    return {m["digest"] for m in json.loads(proc.stdout)["manifests"]}


def scope_sets(requests: list[TokenRequest]) -> list[frozenset[str]]:
    return [frozenset(r.scopes) for r in requests]


# ---------------------------------------------------------------- a) htpasswd basic auth


def test_basic_auth_push_and_inspect(basic_registry: RegistryServer, ns: str) -> None:
    host = basic_registry.host
    login(host)
    sources = seed_sources(host, ns)
    target = f"{host}/{ns}/app:1"
    digest = create_and_push(target, sources)
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())


def _pull_detail(repository: str) -> str:
    """The detail Distribution adds to a 401: the access the request needed."""
    return (f'(detail: [{{"Type":"repository","Class":"","Name":"{repository}",'
            '"Action":"pull"}])')


@pytest.mark.parametrize("password", ["wrong", None], ids=["wrong-password", "no-credentials"])
def test_basic_auth_refused(
    basic_registry: RegistryServer, ns: str, password: str | None
) -> None:
    host = basic_registry.host
    config = login(host, password=password) if password else write_config({})
    ref = f"{host}/{ns}/app-amd64:1"
    proc = manyfest("inspect", ref)
    assert proc.returncode == 1
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    said = (
        f"get manifest {ref}: registry answered 401 (UNAUTHORIZED: authentication required "
        f"{_pull_detail(ns + '/app-amd64')}); "
    )
    if password:
        assert line == said + (
            f"the credentials for {host} in {config} were refused: log in again with "
            f"`manyfest login {host}`"
        )
    else:
        assert line == said + f"no credentials for {host} in {config}: log in with " + (
            f"`manyfest login {host}`"
        )
    created = manyfest("create", f"{host}/{ns}/app:1", ref)
    assert created.returncode == 1
    assert f"`manyfest login {host}`" in one_line(created.stderr)


# ---------------------------------------------------------------- b) token auth


def test_token_push_caches_tokens_per_scope_set(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str
) -> None:
    host = token_registry.host
    login(host)
    sources = seed_sources(host, ns)
    target = f"{host}/{ns}/app:1"
    app = f"{ns}/app"
    sources_repos = [reference.parse(r).repository for r in sources]

    mark = issuer.mark()
    created = manyfest("create", target, *sources)
    assert created.returncode == 0, created.stderr
    # create only reads: one pull token per source repository.
    assert sorted(scope_sets(issuer.since(mark)), key=sorted) == sorted(
        (frozenset({scope(repo, ["pull"])}) for repo in sources_repos), key=sorted
    )

    mark, served = issuer.mark(), token_registry.request_count()
    pushed = manyfest("push", target)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.splitlines()[-1]
    tokens = issuer.since(mark)
    # At least a mount per blob + 4 children + the list were answered (the registry does not
    # log its 401s, e.g. the ping's) with 9 tokens: tokens are not fetched per request.
    assert token_registry.request_count() - served >= walkthrough_blobs(ns) + 4 + 1
    expected = {frozenset({f"repository:{app}:pull,push"})} | {
        frozenset({f"repository:{app}:pull,push", f"repository:{repo}:pull"})
        for repo in sources_repos
    } | {
        # the referrers lookup reads each source repository's tag list (pull only)
        frozenset({f"repository:{repo}:pull"}) for repo in sources_repos
    }
    # One token per scope set, each fetched once: 9 tokens for the whole cross-repo push.
    assert sorted(scope_sets(tokens), key=sorted) == sorted(expected, key=sorted)
    assert {(t.status, t.user, t.method) for t in tokens} == {(200, USER, "GET")}

    # A pure read asks for pull only.
    mark = issuer.mark()
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())
    assert scope_sets(issuer.since(mark)) == [frozenset({f"repository:{app}:pull"})]


def test_token_publish(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str, tmp_path: Path
) -> None:
    host = token_registry.host
    login(host)
    sources = seed_sources(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:2\ntags: [latest]\nmanifests:\n"
        + "".join(f"  - image: {ref}\n" for ref in sources)
    )
    mark = issuer.mark()
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [result] = report["results"]
    assert result["status"] == "created", result
    assert result["tags"] == ["2", "latest"]
    # 4 source reads, the target's HEADs and PUTs, 4 mount sets: each scope set asked once.
    tokens = scope_sets(issuer.since(mark))
    app = f"repository:{ns}/app:pull,push"
    repos = [reference.parse(r).repository for r in sources]
    assert len(tokens) == len(set(tokens))
    assert set(tokens) == (
        {frozenset({scope(repo, ["pull"])}) for repo in repos}
        | {frozenset({app})}
        | {frozenset({app, scope(repo, ["pull"])}) for repo in repos}
    )
    for tag in ("2", "latest"):
        assert inspect_digests(f"{host}/{ns}/app:{tag}") == set(sources.values())
    again = manyfest("publish", "--json", str(plan))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"][0]["status"] == "unchanged"


def test_token_expiring_soon_is_refreshed(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    login(host)
    source = seed_one(host, ns)
    ref = reference.parse(source[0])
    monkeypatch.setattr(issuer, "expires_in", 2)
    pull = frozenset({scope(ref.repository, ["pull"])})

    async def body() -> list[int]:
        counts = []
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            mark = issuer.mark()
            for pause in (0.0, 0.3, 2.0, 0.0):
                await anyio.sleep(pause)
                head = await client.head_manifest(ref)
                assert head is not None
                assert head.digest == source[1]
                counts.append(len(issuer.since(mark)))
            assert set(scope_sets(issuer.since(mark))) == {pull}
        return counts

    started = time.monotonic()
    # A 2-second token serves the requests within its lifetime; after it, a new one.
    assert anyio.run(body) == [1, 1, 2, 2]
    assert time.monotonic() - started < 5


def test_token_refused_by_registry_is_fetched_again(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    login(host)
    sources = seed_sources(host, ns)
    # From now on the first token of each scope set is already expired for the registry
    # although it promises 300 s: the client caches it, gets a 401, fetches another.
    monkeypatch.setattr(issuer, "stale_first", True)
    refs = [reference.parse(r) for r in sources]

    async def body() -> int:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for ref in refs:
                manifest = await client.get_manifest(ref)
                assert manifest.digest == sources[str(ref)]
            return transport.total.requests

    mark, served = issuer.mark(), token_registry.request_count()
    sent = anyio.run(body)
    tokens = scope_sets(issuer.since(mark))
    assert sorted(tokens, key=sorted) == sorted(
        [frozenset({scope(r.repository, ["pull"])}) for r in refs] * 2, key=sorted
    )
    # The transport sent the ping, per source a GET refused (401, stale token), a token
    # request, another token request and the GET again; the registry logs only the
    # answered GETs (not its 401s).
    assert sent == 1 + 4 * len(refs)
    assert token_registry.request_count() - served == len(refs)


def test_token_with_identity_token(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str
) -> None:
    host = token_registry.host
    login(host)
    source, _ = seed_one(host, ns)
    write_config({"auths": {host: {"identitytoken": REFRESH_TOKEN}}})
    mark = issuer.mark()
    proc = manyfest("inspect", source)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schemaVersion"] == 2
    [request] = issuer.since(mark)
    assert (request.method, request.status, request.user) == ("POST", 200, USER)
    assert request.scopes == (scope(reference.parse(source).repository, ["pull"]),)


def _pull_detail(repository: str) -> str:
    """The detail Distribution adds to a 401: the access the request needed."""
    return (f'(detail: [{{"Type":"repository","Class":"","Name":"{repository}",'
            '"Action":"pull"}])')


@pytest.mark.parametrize("password", ["wrong", None], ids=["wrong-password", "no-credentials"])
def test_token_refused_by_token_server(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str, password: str | None
) -> None:
    host = token_registry.host
    config = login(host, password=password) if password else write_config({})
    mark = issuer.mark()
    proc = manyfest("inspect", f"{host}/{ns}/app-amd64:1")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    said = (
        f"get a token from 127.0.0.1:{issuer.port} for {host}: token server answered 401 "
        "(UNAUTHORIZED: bad credentials); "
    )
    if password:
        assert line == said + (
            f"the credentials for {host} in {config} were refused: log in again with "
            f"`manyfest login {host}`"
        )
    else:
        assert line == said + (
            f"no credentials for {host} in {config}: log in with `manyfest login {host}`"
        )
    assert [r.status for r in issuer.since(mark)] == [401]


def test_token_library_error_type(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str
) -> None:
    host = token_registry.host
    login(host, password="wrong")

    async def body() -> None:
        async with Transport(Settings()) as transport:
            await RegistryClient(transport).get_manifest(
                reference.parse(f"{host}/{ns}/app-amd64:1")
            )

    with pytest.raises(AuthenticationError) as info:
        anyio.run(body)
    assert info.value.status == 401
    assert info.value.url == issuer.realm


# ---------------------------------------------------------------- c) credential helpers


def install_helper(bin_dir: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write an executable ``docker-credential-<name>`` and put its directory on PATH.

    Each call appends ``<action> <server URL read on stdin>`` to ``<bin_dir>/<name>.log``.
    """
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        "read -r server\n"
        f'echo "$1 $server" >> "{log}"\n'
        f"{body}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def helper_answer(username: str, secret: str) -> str:
    """Shell that prints the helper protocol's answer for the server URL read on stdin."""
    doc = json.dumps({"ServerURL": "%s", "Username": username, "Secret": secret})
    return f"printf '{doc}' \"$server\""


ANSWER = helper_answer(USER, PASSWORD)
NOT_FOUND = "echo 'credentials not found in native keychain'\nexit 1"


@pytest.mark.parametrize("how", ["credHelpers", "credsStore"])
def test_credential_helper(
    basic_registry: RegistryServer, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    host = basic_registry.host
    log = install_helper(tmp_path / "bin", "fake", ANSWER, monkeypatch)
    if how == "credHelpers":
        write_config({"credHelpers": {host: "fake"}, "credsStore": "absent"})
    else:
        write_config({"credsStore": "fake"})
    sources = seed_sources(host, ns)  # seeding asks the helper too
    target = f"{host}/{ns}/app:1"
    digest = create_and_push(target, sources)
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())
    calls = log.read_text().splitlines()
    # One call per process (seed, create, push, inspect), always `get <host:port>`.
    assert calls == [f"get {host}"] * 4


def test_credential_helper_without_credentials(
    basic_registry: RegistryServer, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = basic_registry.host
    log = install_helper(tmp_path / "bin", "empty", NOT_FOUND, monkeypatch)
    config = write_config({"credHelpers": {host: "empty"}})
    ref = f"{host}/{ns}/app-amd64:1"
    proc = manyfest("inspect", ref)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"get manifest {ref}: registry answered 401 (UNAUTHORIZED: authentication required "
        f"{_pull_detail(ns + '/app-amd64')}); "
        f"no credentials for {host} in {config}: log in with `manyfest login {host}`"
    )
    assert log.read_text().splitlines() == [f"get {host}"]


def test_credential_helper_missing(
    basic_registry: RegistryServer, ns: str
) -> None:
    host = basic_registry.host
    config = write_config({"credHelpers": {host: "not-installed-here"}})
    proc = manyfest("inspect", f"{host}/{ns}/app-amd64:1")
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"credential helper docker-credential-not-installed-here named in {config} is not "
        f"installed; install docker-credential-not-installed-here or remove it from {config}"
    )


# ---------------------------------------------------------------- tokens without push access


def test_token_without_push_access(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    login(host)
    source, _ = seed_one(host, ns)
    monkeypatch.setitem(issuer.users, "reader", "reader-pass")
    monkeypatch.setattr(issuer, "read_only", {"reader"})
    login(host, "reader", "reader-pass")
    target = f"{host}/{ns}/app:1"
    created = manyfest("create", target, source)
    assert created.returncode == 0, created.stderr  # pulling is allowed
    proc = manyfest("push", target)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    # The first refused request is a mount (config or layer: they run concurrently).
    assert re.fullmatch(
        rf"mount {re.escape(source.rsplit(':', 1)[0])}@sha256:[0-9a-f]{{64}} into "
        rf"{re.escape(host)}/{ns}/app: registry answered 401 \(UNAUTHORIZED: authentication "
        r"required \(detail: \[\{.*\}\]\)\); user 'reader' was not granted all of the access "
        r"asked for "
        rf"\(repository:{ns}/app-amd64:pull, repository:{ns}/app:pull,push\): ask for it, or "
        rf"log in as another user with `manyfest login {re.escape(host)}`",
        line,
    ), line
    # Anonymous: pulling works, pushing asks to log in.
    monkeypatch.setattr(issuer, "anonymous_pull", True)
    config = write_config({})
    inspected = manyfest("inspect", source)
    assert inspected.returncode == 0, inspected.stderr
    anonymous = manyfest("push", target)
    assert anonymous.returncode == 1
    assert one_line(anonymous.stderr).endswith(
        f"; no credentials for {host} in {config}: log in with `manyfest login {host}`"
    )


def test_credential_helper_identity_token(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    login(host)
    source, _ = seed_one(host, ns)
    log = install_helper(
        tmp_path / "bin", "oauth", helper_answer("<token>", REFRESH_TOKEN), monkeypatch
    )
    write_config({"credHelpers": {host: "oauth"}})
    mark = issuer.mark()
    proc = manyfest("inspect", source)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schemaVersion"] == 2
    # The helper's "<token>" user means an identity token: an OAuth2 refresh-token grant.
    [request] = issuer.since(mark)
    assert (request.method, request.status, request.user) == ("POST", 200, USER)
    assert log.read_text().splitlines() == [f"get {host}"]


@pytest.mark.parametrize(
    "key", ["{host}", "https://{host}", "http://{host}/v2/", "{host}/v1/"],
    ids=["host", "https-url", "http-url-path", "path"],
)
def test_auths_keys_as_docker_writes_them(
    basic_registry: RegistryServer, ns: str, key: str
) -> None:
    host = basic_registry.host
    login(host)
    source, digest = seed_one(host, ns)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    write_config({"auths": {"other.example:5000": {"auth": "eDp5"},
                            key.format(host=host): {"auth": auth}}})

    async def body() -> str | None:
        async with Transport(Settings()) as transport:
            head = await RegistryClient(transport).head_manifest(reference.parse(source))
            return head.digest if head else None

    assert anyio.run(body) == digest


# ---------------------------------------------------------------- d) credential sources


def auths_doc(key: str, user: str = USER, password: str = PASSWORD) -> dict[str, Any]:
    """``{"auths": {key: {"auth": base64(user:password)}}}``."""
    return {"auths": {key: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}


SOURCE_ORDER = ["env", "auth-file", "docker", "podman-runtime", "podman-config"]
"""The sources, in the documented order."""


def put_source(kind: str, doc: dict[str, Any], tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> str:
    """Write ``doc`` as the source ``kind``; returns how messages name it."""
    if kind == "env":
        monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps(doc))
        return "$DOCKER_AUTH_CONFIG"
    if kind == "auth-file":
        path = tmp_path / "registry-auth.json"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    elif kind == "docker":
        return str(write_config(doc))
    else:
        base = os.environ["XDG_RUNTIME_DIR" if kind == "podman-runtime" else "XDG_CONFIG_HOME"]
        path = Path(base) / "containers" / "auth.json"
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture(scope="module")
def basic_image(basic_registry: RegistryServer) -> tuple[str, str]:
    """One image on the htpasswd registry: (reference, digest); pushed with credentials
    from DOCKER_AUTH_CONFIG set for the push only."""
    saved = os.environ.get("DOCKER_AUTH_CONFIG")
    os.environ["DOCKER_AUTH_CONFIG"] = json.dumps(auths_doc(basic_registry.host))
    try:
        return seed_one(basic_registry.host, "sources")
    finally:
        if saved is None:
            del os.environ["DOCKER_AUTH_CONFIG"]
        else:
            os.environ["DOCKER_AUTH_CONFIG"] = saved


@pytest.mark.parametrize(
    ("first", "second"), list(itertools.pairwise(SOURCE_ORDER)),
    ids=[f"{a}-before-{b}" for a, b in itertools.pairwise(SOURCE_ORDER)],
)
def test_source_order(
    basic_registry: RegistryServer, basic_image: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, first: str, second: str,
) -> None:
    host = basic_registry.host
    ref, digest = basic_image
    # The earlier source has the right credentials, the later one wrong ones: it wins.
    put_source(first, auths_doc(host), tmp_path, monkeypatch)
    put_source(second, auths_doc(host, password="wrong-password"), tmp_path, monkeypatch)
    proc = manyfest("inspect", "--raw", ref)
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(proc.stdout.encode()).hexdigest() == digest.split(":")[1]
    # The first source that has an entry wins even when its credentials are refused.
    origin = put_source(first, auths_doc(host, password="wrong-password"), tmp_path,
                        monkeypatch)
    put_source(second, auths_doc(host), tmp_path, monkeypatch)
    refused = manyfest("inspect", ref)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    if first == "env":
        assert line.endswith(
            f"; the credentials for {host} in $DOCKER_AUTH_CONFIG were refused: fix them "
            f"there, or unset DOCKER_AUTH_CONFIG and log in with `manyfest login {host}`"
        ), line
    else:
        assert line.endswith(
            f"; the credentials for {host} in {origin} were refused: log in again with "
            f"`manyfest login {host}`"
        ), line


def test_a_source_without_the_registry_is_passed(
    basic_registry: RegistryServer, basic_image: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = basic_registry.host
    ref, _ = basic_image
    for kind in SOURCE_ORDER[:-1]:
        put_source(kind, auths_doc("other.example:5000"), tmp_path, monkeypatch)
    put_source("podman-config", auths_doc(host), tmp_path, monkeypatch)
    proc = manyfest("inspect", ref)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("keys", "works"),
    [
        ({"{host}": "wrong", "{host}/sources": "good"}, True),
        ({"{host}": "wrong", "{host}/sources": "wrong", "{host}/sources/app-amd64": "good"},
         True),
        ({"{host}/sources/other": "good", "{host}": "wrong"}, False),
        ({"{host}/sources/app-amd64": "wrong", "{host}": "good"}, False),
        ({"https://{host}/elsewhere": "good"}, True),
    ],
    ids=["namespace-over-registry", "repository-over-namespace", "other-repository",
         "repository-wins-even-wrong", "scheme-means-host"],
)
def test_auth_file_namespace_keys(
    basic_registry: RegistryServer, basic_image: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, keys: dict[str, str], works: bool,
) -> None:
    """containers-auth.json(5): the most specific key matching the repository wins; a key
    with a scheme counts as its host."""
    host = basic_registry.host
    ref, _ = basic_image
    auths: dict[str, Any] = {}
    for key, which in keys.items():
        password = PASSWORD if which == "good" else "wrong-password"
        auths.update(auths_doc(key.format(host=host), password=password)["auths"])
    put_source("auth-file", {"auths": auths}, tmp_path, monkeypatch)
    proc = manyfest("inspect", ref)
    assert proc.returncode == (0 if works else 1), proc.stderr
    if not works:
        assert "were refused" in one_line(proc.stderr)


def test_docker_config_ignores_namespaces(
    basic_registry: RegistryServer, basic_image: tuple[str, str]
) -> None:
    """docker's config.json keys are hosts: a path after one is ignored (docker's rule)."""
    host = basic_registry.host
    ref, _ = basic_image
    write_config(auths_doc(f"{host}/some/other/namespace"))
    proc = manyfest("inspect", ref)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("kind", "text", "said"),
    [
        ("env", "{not json", "$DOCKER_AUTH_CONFIG is not a valid docker config document "
         "(JSON): "),
        ("env", '{"auths": {"HOST": {"auth": 7}}}', "$DOCKER_AUTH_CONFIG is not a valid "
         "docker config document (JSON): "),
        ("auth-file", '{"auths": 5}', "PATH is not a valid auth file (containers-auth.json(5)): "),
        ("podman-runtime", "[]", "PATH is not a valid auth file (containers-auth.json(5)): "),
    ],
    ids=["env-garbage", "env-auth-int", "auth-file-auths-int", "podman-list"],
)
def test_malformed_source(
    basic_registry: RegistryServer, basic_image: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, kind: str, text: str, said: str,
) -> None:
    host = basic_registry.host
    ref, _ = basic_image
    origin = put_source(kind, {}, tmp_path, monkeypatch)
    if kind == "env":
        monkeypatch.setenv("DOCKER_AUTH_CONFIG", text.replace("HOST", host))
        hint = "fix or unset DOCKER_AUTH_CONFIG"
    else:
        Path(origin).write_text(text)
        hint = f"fix or remove {origin}"
    proc = manyfest("inspect", ref)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith(said.replace("PATH", origin)), line
    assert line.endswith(f"; {hint}"), line


def test_sources_after_the_answer_are_not_read(
    basic_registry: RegistryServer, basic_image: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = basic_registry.host
    ref, _ = basic_image
    put_source("docker", auths_doc(host), tmp_path, monkeypatch)
    broken = put_source("podman-runtime", {}, tmp_path, monkeypatch)
    Path(broken).write_text("{{{ broken")
    assert manyfest("inspect", ref).returncode == 0
    # $DOCKER_AUTH_CONFIG gives its auths only: a helper named there is not run.
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps(
        {"credsStore": "manyfest-no-such-helper", **auths_doc(host)}))
    write_config({})
    proc = manyfest("inspect", ref)
    assert proc.returncode == 0, proc.stderr


def test_lookup_keys_and_repository_of_scopes() -> None:
    from manyfest.auth.config import containers_key, lookup_chain
    from manyfest.auth.flow import repository_of
    from manyfest.auth.sources import CredentialSources, podman_auth_files

    assert lookup_chain("quay.io", "ns/sub/app") == [
        "quay.io/ns/sub/app", "quay.io/ns/sub", "quay.io/ns", "quay.io"]
    assert lookup_chain("quay.io", "") == ["quay.io"]
    assert containers_key("https://index.docker.io/v1/") == "docker.io"
    assert containers_key("http://h:5000/v2/x") == "h:5000"
    assert containers_key("index.docker.io/library/alpine") == "docker.io/library/alpine"
    assert containers_key("h:5000/ns") == "h:5000/ns"
    # A mount's target (pushed to) decides; otherwise the first repository named.
    assert repository_of(frozenset({"repository:src/a:pull", "repository:dst/b:pull,push"})) \
        == "dst/b"
    assert repository_of(frozenset({"repository:b:pull", "repository:a:pull"})) == "a"
    assert repository_of(frozenset()) == ""
    # Without XDG_RUNTIME_DIR podman's first file is /run/containers/<uid>/auth.json.
    assert podman_auth_files({"XDG_CONFIG_HOME": "/c"}) == [
        Path(f"/run/containers/{os.getuid()}/auth.json"), Path("/c/containers/auth.json")]
    sources = CredentialSources({"REGISTRY_AUTH_FILE": "/x/auth.json", "DOCKER_CONFIG": "/d"})
    assert sources.login_target().path == Path("/x/auth.json")
    assert sources.login_target().key("docker.io") == "docker.io"
    plain = CredentialSources({"DOCKER_CONFIG": "/d"}).login_target()
    assert (plain.path, plain.key("docker.io"), plain.key("h:5000")) == (
        Path("/d/config.json"), "https://index.docker.io/v1/", "h:5000")


def test_namespaced_credentials_per_repository(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auth.json gives a pull-only user for the registry and a full user for the target
    repository: sources are read as the reader, the push (mounts included: their token
    names the target, pushed to) goes as the full user."""
    host = token_registry.host
    login(host)
    sources = seed_sources(host, ns)
    write_config({})
    monkeypatch.setitem(issuer.users, "reader", "reader-pass")
    monkeypatch.setattr(issuer, "read_only", {"reader"})
    auths = {**auths_doc(host, "reader", "reader-pass")["auths"],
             **auths_doc(f"{host}/{ns}/app")["auths"]}
    put_source("auth-file", {"auths": auths}, tmp_path, monkeypatch)
    target = f"{host}/{ns}/app:1"
    mark = issuer.mark()
    digest = create_and_push(target, sources)
    users: dict[frozenset[str], set[str]] = {}
    for request in issuer.since(mark):
        assert request.status == 200, request
        users.setdefault(frozenset(request.scopes), set()).add(request.user)
    repos = [reference.parse(r).repository for r in sources]
    app = f"repository:{ns}/app:pull,push"
    assert users == {
        **{frozenset({scope(repo, ["pull"])}): {"reader"} for repo in repos},
        frozenset({app}): {USER},
        **{frozenset({app, scope(repo, ["pull"])}): {USER} for repo in repos},
    }
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())


def test_auth_file_lookup_for_docker_hub() -> None:
    """containers-auth.json(5) names Docker Hub ``docker.io`` (``index.docker.io`` and
    docker's ``https://index.docker.io/v1/`` key count as it); docker's config.json uses
    ``https://index.docker.io/v1/`` only."""
    from manyfest.auth.config import AuthDocument, Credentials

    def doc(auths: dict[str, str], *, namespaced: bool = True) -> AuthDocument:
        body = {"auths": {k: {"auth": base64.b64encode(v.encode()).decode()}
                          for k, v in auths.items()}}
        return AuthDocument(json.dumps(body).encode(), "test", namespaced=namespaced)

    def found(document: AuthDocument, repository: str) -> Credentials:
        return anyio.run(document.lookup, "docker.io", repository)

    hub = doc({"docker.io": "hub:1", "docker.io/library": "lib:2",
               "index.docker.io/team/app": "app:3"})
    assert found(hub, "library/alpine") == Credentials("lib", "2")
    assert found(hub, "team/app") == Credentials("app", "3")
    assert found(hub, "team/other") == Credentials("hub", "1")
    assert found(doc({"https://index.docker.io/v1/": "old:4"}), "x/y") == Credentials("old", "4")
    docker_style = doc({"docker.io": "no:5", "https://index.docker.io/v1/": "yes:6"},
                       namespaced=False)
    assert found(docker_style, "library/alpine") == Credentials("yes", "6")
