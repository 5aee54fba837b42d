"""Authentication against real docker-registry processes on loopback.

* htpasswd (Basic): credentials from ``$DOCKER_CONFIG/config.json`` ``auths``; wrong or no
  credentials give one line naming the registry and telling to log in;
* token auth (``auth: token``) with a token server of our own (tests/token_issuer.py):
  tokens cached per scope set, reads ask for ``pull`` only, mounts ask for ``pull,push`` on
  the target and ``pull`` on the source, a token refreshed when it expires or is refused;
* credential helpers (``credHelpers``, ``credsStore``) run from PATH.
"""

from __future__ import annotations

import base64
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
            f"the credentials for {host} were refused: log in again with `docker login {host}`"
        )
    else:
        assert line == said + f"no credentials for {host} in {config}: log in with " + (
            f"`docker login {host}`"
        )
    created = manyfest("create", f"{host}/{ns}/app:1", ref)
    assert created.returncode == 1
    assert f"`docker login {host}`" in one_line(created.stderr)


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
    # log its 401s, e.g. the ping's) with 5 tokens: tokens are not fetched per request.
    assert token_registry.request_count() - served >= walkthrough_blobs(ns) + 4 + 1
    expected = {frozenset({f"repository:{app}:pull,push"})} | {
        frozenset({f"repository:{app}:pull,push", f"repository:{repo}:pull"})
        for repo in sources_repos
    }
    # One token per scope set, each fetched once: 5 tokens for the whole cross-repo push.
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
            f"the credentials for {host} were refused: log in again with `docker login {host}`"
        )
    else:
        assert line == said + (
            f"no credentials for {host} in {config}: log in with `docker login {host}`"
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
        f"no credentials for {host} in {config}: log in with `docker login {host}`"
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
        rf"log in as another user with `docker login {re.escape(host)}`",
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
        f"; no credentials for {host} in {config}: log in with `docker login {host}`"
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
