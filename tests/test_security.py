"""Security behaviours against real docker-registry processes on loopback.

* ``--insecure`` on a refused HTTPS connection: a plain-HTTP registry on ``<address>:80``
  (another loopback address than 127.0.0.1, port 80: these tests run as root) written
  without a port is reached in plain HTTP on port 80; without ``--insecure`` a one-line
  error advising it, and never that advice when the registry is insecure already;
* ``host`` and ``host:80`` are one registry: sources in either spelling, a tag written in
  both refused, credentials stored under one spelling used for the other;
* an unreadable certs.d directory or host folder is absent (the CLI run without the
  capabilities that let root read everything);
* Authorization never goes to another host (a blob GET redirected to a storage host), nor to
  a plain-HTTP token realm of a registry that is not insecure; tokens ask for the least
  scope; a token server granting one scope per token turns mounts into copies;
* no secret (password, identity token, registry token, issued bearer tokens, a pre-signed
  storage URL's signature) in any output: stdout, stderr, ``--json``, ``--report``,
  progress, ``-D`` logs and tracebacks, also when a token server's refusal echoes what it
  was sent, a realm carries user info, or a failing credential helper printed credentials.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from manyfest import reference
from manyfest.auth.tokens import scope
from manyfest.transport import Settings, Transport, errormap, tls
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed
from tests.quirk_proxy import QuirkProxy
from tests.registry_server import RegistryServer
from tests.storage_host import StorageHost, redirect_blob_gets
from tests.token_issuer import TokenIssuer, TokenRequest

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

USER = "user"
PASSWORD = "pw-5ecret-Kq8vZ2"
REFRESH_TOKEN = "idtoken-5ecret-Wm4xT9"
SIGNATURE = "sig-5ecret-Hb7nR3"
"""The pre-signed storage URL's signature (a credential for the storage host)."""
LOOPBACK_OFF = {"MANYFEST_LOOPBACK_INSECURE": "0"}


# ---------------------------------------------------------------- fixtures and helpers


def _port80_address(skip: set[str]) -> str:
    """A loopback address from 127.0.0.3 on whose port 80 nothing listens (binding 80 needs
    root; other engineers' tests may hold 127.0.0.3:80, so the next one is taken then).

    Each pytest-xdist worker looks in its own range of 40 addresses (gw0 from 127.0.0.3, gw1
    from 127.0.0.43...), so two workers never start a registry on the same address at once.
    """
    if os.geteuid() != 0:
        pytest.skip("a registry on port 80 needs root (these tests run as root)")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = 3 + 40 * (int(worker) % 6 if worker.isdigit() else 0)
    for last in range(first, first + 40):
        address = f"127.0.0.{last}"
        if address in skip:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, 80))
            except OSError:
                continue
        return address
    raise RuntimeError("no loopback address with a free port 80")


_taken: set[str] = set()


def _registry80(workdir: Path, **kw: Any) -> RegistryServer:
    address = _port80_address(_taken)
    _taken.add(address)
    return RegistryServer(workdir=workdir, address=address, port=80, **kw).start()


def _htpasswd(path: Path) -> Path:
    line = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    path.write_text(line + "\n")
    return path


@pytest.fixture(scope="module")
def plain80(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP registry on ``<loopback address>:80`` (nothing on its port 443)."""
    server = _registry80(tmp_path_factory.mktemp("plain80"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def basic80(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP htpasswd registry (user/PASSWORD) on ``<loopback address>:80``."""
    workdir = tmp_path_factory.mktemp("basic80")
    server = _registry80(workdir / "registry", htpasswd=_htpasswd(workdir / "htpasswd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    """The token server: user/PASSWORD (Basic) or REFRESH_TOKEN; records issued tokens."""
    with TokenIssuer(
        tmp_path_factory.mktemp("issuer"),
        users={USER: PASSWORD, "reader": PASSWORD + "-reader"},
        refresh_tokens={REFRESH_TOKEN: USER},
        read_only={"reader"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, issuer: TokenIssuer
) -> Iterator[RegistryServer]:
    """A plain-HTTP registry (127.0.0.1) with ``auth: token`` trusting the issuer."""
    server = RegistryServer(
        workdir=tmp_path_factory.mktemp("token-registry"), token=issuer.registry_config()
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def storage() -> Iterator[StorageHost]:
    """A storage host on 127.0.0.2 that blob GETs are redirected to."""
    host = StorageHost(address="127.0.0.2").start()
    yield host
    host.stop()


def write_config(doc: dict[str, Any]) -> Path:
    """Write this test's ``$DOCKER_CONFIG/config.json``."""
    path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    path.write_text(json.dumps(doc))
    return path


def basic_auth(user: str = USER, password: str = PASSWORD) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def login(host: str, user: str = USER, password: str = PASSWORD) -> Path:
    """config.json with ``auths[host].auth``, as ``docker login host`` writes it."""
    return write_config({"auths": {host: {"auth": basic_auth(user, password)}}})


def one_line(stderr: str) -> str:
    """The single line of an error's stderr (fails if there is more than one)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def seed_sources(host: str, ns: str, count: int = 2) -> dict[str, str]:
    """``count`` walkthrough images ``<host>/<ns>/app-<suffix>:1`` → {reference: digest}."""
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS[:count]]
    return {f"{host}/{name}": digest for name, digest in seed(host, names).items()}


def respell(ref: str, registry: str) -> str:
    """``ref`` with its registry written as ``registry``."""
    return registry + "/" + ref.split("/", 1)[1]


def create_push(target: str, sources: list[str], *flags: str,
                env: dict[str, str] | None = None) -> str:
    """``manyfest create`` + ``push``; checks the outputs, returns the list's digest."""
    created = manyfest("create", *flags, target, *sources, env=env)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created manifest list {target}\n"
    pushed = manyfest("push", *flags, target, env=env)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.splitlines()[-1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), pushed.stdout
    return digest


def children(ref: str, *flags: str, env: dict[str, str] | None = None) -> set[str]:
    """The children digests ``manyfest inspect`` shows for a remote list."""
    proc = manyfest("inspect", *flags, ref, env=env)
    assert proc.returncode == 0, proc.stderr
    return {m["digest"] for m in json.loads(proc.stdout)["manifests"]}


def scope_sets(requests: list[TokenRequest]) -> list[frozenset[str]]:
    return [frozenset(r.scopes) for r in requests]


# ---------------------------------------------------------------- 1) --insecure on port 80


def test_insecure_refused_https_falls_back_to_http_port_80(
    plain80: RegistryServer, ns: str
) -> None:
    address = plain80.address
    sources = seed_sources(plain80.host, ns)
    written = [respell(ref, address) for ref in sources]  # `<address>/...`: no port
    served = plain80.request_count()
    target = f"{address}/{ns}/app:v0"
    # HTTPS to <address>:443 is refused: plain HTTP on port 80, as after a failed handshake.
    digest = create_push(target, written, "--insecure", env=LOOPBACK_OFF)
    assert plain80.request_count() > served
    assert children(f"{address}/{ns}/app@{digest}", "--insecure", env=LOOPBACK_OFF) == set(
        sources.values()
    )
    # The loopback rule (on by default) makes it insecure without the flag.
    assert children(target) == set(sources.values())


def test_refused_https_without_insecure_advises_it(plain80: RegistryServer, ns: str) -> None:
    address = plain80.address
    sources = seed_sources(plain80.host, ns, count=1)
    [source] = sources
    proc = manyfest("create", f"{address}/{ns}/app:v0", respell(source, address),
                    env=LOOPBACK_OFF)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert one_line(proc.stderr) == (
        f"GET https://{address}/v2/: cannot connect to {address}:443: Connection refused; "
        f"check that the registry is running and listens on {address}; a plain-HTTP "
        "registry on port 80 needs --insecure"
    )
    # Written with :80, the TLS handshake gets a plain-HTTP answer.
    proc = manyfest("inspect", source, env=LOOPBACK_OFF)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"{plain80.host} does not speak TLS: the TLS handshake got a plain-HTTP answer "
        "(wrong version number); use --insecure to talk plain HTTP to it"
    )


@pytest.mark.parametrize("how", ["flag", "config", "config-other-spelling", "loopback-rule"])
@pytest.mark.parametrize("spelling", ["host", "host:80"])
def test_no_insecure_advice_when_insecure(
    plain80: RegistryServer, ns: str, tmp_path: Path, how: str, spelling: str
) -> None:
    """Nothing listens on the address (443 nor 80): every error path, no --insecure."""
    address = _port80_address(_taken | {plain80.address})
    registry = address if spelling == "host" else f"{address}:80"
    config = tmp_path / "manyfest.yaml"
    marked = {"config": registry,
              "config-other-spelling": address if spelling == "host:80" else f"{address}:80"}
    config.write_text(
        f"registries:\n  '{marked[how]}':\n    insecure: true\n" if how in marked else "{}\n"
    )
    env = {"MANYFEST_CONFIG": str(config)}
    if how != "loopback-rule":
        env.update(LOOPBACK_OFF)
    flags = ["--insecure"] if how == "flag" else []
    for args in (["inspect", *flags, f"{registry}/{ns}/app:1"],
                 ["create", *flags, f"{registry}/{ns}/app:1", f"{registry}/{ns}/app-amd64:1"]):
        proc = manyfest(*args, env=env)
        assert proc.returncode == 1, proc.stderr
        line = one_line(proc.stderr)
        # Plain HTTP was tried (port 80), after HTTPS: the error is the last word.
        assert line == (
            f"GET http://{registry}/v2/: cannot connect to {address}:80: Connection refused; "
            f"check that the registry is running and listens on {registry}"
        ), line
        assert "--insecure" not in line


def _tls_causes() -> dict[str, BaseException]:
    """One cause per wording of :func:`manyfest.transport.tls.tls_error`."""
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    causes: dict[str, BaseException] = {"untrusted": untrusted}
    for name, reason in (("plain-http", "WRONG_VERSION_NUMBER"),
                         ("client-certificate", "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
                         ("other", "NO_SHARED_CIPHER")):
        error = ssl.SSLError(1, reason.lower())
        error.reason = reason
        causes[name] = error
    causes["closed"] = aiohttp.ServerDisconnectedError()
    return causes


@pytest.mark.parametrize("cause", sorted(_tls_causes()))
def test_tls_hints_never_advise_insecure_when_insecure(cause: str) -> None:
    """Every wording of a failed handshake and of a refused connection: ``--insecure`` is
    advised to a registry that is not insecure only (where it helps: not for a client
    certificate), never to one that is."""
    certs = Path("/etc/docker/certs.d/reg.example")
    secure = tls.tls_error("reg.example", _tls_causes()[cause], certs, insecure=False)
    insecure = tls.tls_error("reg.example", _tls_causes()[cause], certs, insecure=True)
    assert secure.message == insecure.message
    assert ("--insecure" in secure.one_line()) == (cause != "client-certificate")
    assert "--insecure" not in insecure.one_line()
    key = types.SimpleNamespace(host="reg.example", port=443, ssl=True)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    for url in ("https://reg.example/v2/", "http://reg.example/v2/",
                "https://reg.example:5000/v2/"):
        error = errormap.connection_error("GET", url, refused, insecure=True, read_timeout=60)
        assert "--insecure" not in error.one_line()
    advised = errormap.connection_error("GET", "https://reg.example/v2/", refused,
                                        insecure=False, read_timeout=60)
    assert advised.one_line().endswith("; a plain-HTTP registry on port 80 needs --insecure")


# ---------------------------------------------------------------- 1) host and host:80


def test_host_and_host80_are_one_registry(basic80: RegistryServer, ns: str,
                                          tmp_path: Path) -> None:
    address, with_port = basic80.address, basic80.host
    assert with_port == f"{address}:80"
    login(address)  # credentials stored under `host`: used for `host:80` (seeding too)
    sources = seed_sources(with_port, ns)
    digests = set(sources.values())
    short = [respell(ref, address) for ref in sources]

    # A list on host:80 from sources written `host`, pushed with the `host` credentials.
    digest = create_push(f"{with_port}/{ns}/list:1", short)
    assert children(f"{address}/{ns}/list@{digest}") == digests

    # The reverse, with the credentials stored under `host:80` only.
    login(with_port)
    same = create_push(f"{address}/{ns}/list:2", list(sources))
    assert same == digest  # one list, whatever the spelling
    assert children(f"{with_port}/{ns}/list:2") == digests

    # publish: a plan on `host` with sources on `host:80`.
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {address}/{ns}/pub:1\nmanifests:\n"
                    + "".join(f"  - image: {ref}\n" for ref in sources))
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created", result
    assert children(f"{address}/{ns}/pub@{result['digest']}") == digests

    # A plan writing one tag in both spellings is refused before any request.
    served = basic80.request_count()
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        f"image: {address}/{ns}/dup:1\nmanifests:\n  - image: {short[0]}\n---\n"
        f"image: {with_port}/{ns}/dup:1\nmanifests:\n  - image: {short[1]}\n"
    )
    proc = manyfest("publish", str(twice))
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert f"{with_port}/{ns}/dup:1 is also the target of" in line, line
    assert line.endswith("each tag can be written by one list only"), line
    assert basic80.request_count() == served


def test_credentials_for_other_spelling_only_when_the_same_registry(
    basic80: RegistryServer, ns: str
) -> None:
    """Credentials stored under ``host:81`` are not those of ``host:80`` nor ``host``."""
    address = basic80.address
    login(basic80.host)
    [source] = seed_sources(basic80.host, ns, count=1)
    config = login(f"{address}:81")
    proc = manyfest("inspect", respell(source, address))
    assert proc.returncode == 1
    assert one_line(proc.stderr).endswith(
        f"no credentials for {address} in {config}: log in with `manyfest login {address}`"
    )


# ---------------------------------------------------------------- 2) unreadable certs.d


def manyfest_unprivileged(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that permission
    bits apply to it (``setpriv`` drops them from the bounding set: the exec'd interpreter
    never has them)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is not installed")
    return subprocess.run(
        [setpriv, "--bounding-set=-dac_override,-dac_read_search",
         sys.executable, "-m", "manyfest", *args],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **env},
        timeout=120, check=False,
    )


@pytest.mark.parametrize("locked", ["certs.d", "host-folder", "host-folder-listable-only"])
def test_unreadable_certs_d_is_absent(
    registry: RegistryServer, ns: str, tmp_path: Path, locked: str
) -> None:
    """The python interpreter lives under /root (0700): a process of another uid could not
    even start it, so the CLI runs as root without the two DAC capabilities instead."""
    [source] = seed_sources(registry.host, ns, count=1)
    certs = tmp_path / "certs.d"
    folder = certs / registry.host
    folder.mkdir(parents=True)
    env = {"MANYFEST_CERTS_DIR": str(certs), **LOOPBACK_OFF}
    expected = manyfest_unprivileged("inspect", "--insecure", source, env=env)
    assert expected.returncode == 0, expected.stderr
    assert json.loads(expected.stdout)["schemaVersion"] == 2
    (folder / "ca.crt").write_text("not a certificate\n")  # an error, were it read
    # Readable, the folder is read: its bad CA is one error (so the test can fail).
    proc = manyfest_unprivileged("inspect", "--insecure", source, env=env)
    assert proc.returncode == 1
    assert one_line(proc.stderr).startswith(f"cannot load {folder / 'ca.crt'}: "), proc.stderr

    (certs if locked == "certs.d" else folder).chmod(0o444 if "listable" in locked else 0)
    try:
        for flags in ([], ["-D"]):
            proc = manyfest_unprivileged(*flags, "inspect", "--insecure", source, env=env)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout == expected.stdout
            assert "Traceback" not in proc.stderr
            if flags:
                assert f"ignoring {folder}: Permission denied" in proc.stderr
            else:
                assert proc.stderr == ""
    finally:
        (certs if locked == "certs.d" else folder).chmod(0o755)


# ---------------------------------------------------------------- 3) where credentials go


@pytest.fixture
def redirecting(storage: StorageHost) -> Iterator[Any]:
    """``start(upstream)``: a quirk proxy whose blob GETs are redirected to ``storage``."""
    proxies: list[QuirkProxy] = []

    def start(upstream: str) -> QuirkProxy:
        proxy = QuirkProxy(upstream=upstream)
        proxy.before.append(redirect_blob_gets(proxy, storage, SIGNATURE))
        proxies.append(proxy.start())
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def assert_no_credentials_sent(storage: StorageHost, digests: set[str]) -> None:
    """The storage host got one signed GET per digest, none with credentials."""
    assert {r.path_qs for r in storage.requests} == {
        f"/blobs/{d}?signature={SIGNATURE}" for d in digests
    }
    for request in storage.requests:
        assert request.method == "GET"
        names = {name.lower() for name in request.headers}
        assert not names & {"authorization", "proxy-authorization", "cookie"}, request


def config_digests(refs: list[str]) -> set[str]:
    """The config digests of images (read by ``manyfest inspect``)."""
    out = set()
    for ref in refs:
        proc = manyfest("inspect", ref)
        assert proc.returncode == 0, proc.stderr
        out.add(json.loads(proc.stdout)["config"]["digest"])
    return out


@pytest.mark.parametrize("auth", ["token", "htpasswd"])
def test_redirected_blob_get_reaches_storage_without_authorization(
    request: pytest.FixtureRequest, redirecting: Any, storage: StorageHost, ns: str,
    auth: str,
) -> None:
    registry: RegistryServer = request.getfixturevalue(
        "token_registry" if auth == "token" else "basic80"
    )
    proxy: QuirkProxy = redirecting(registry.host)
    write_config({"auths": {name: {"auth": basic_auth()} for name in (registry.host,
                                                                       proxy.host)}})
    sources = seed_sources(registry.host, ns)
    via = [respell(ref, proxy.host) for ref in sources]
    configs = config_digests(list(sources))
    issuer: TokenIssuer | None = request.getfixturevalue("issuer") if auth == "token" else None
    mark = issuer.mark() if issuer else 0
    # create reads each image's config (its platform): a blob GET, redirected.
    digest = create_push(f"{proxy.host}/{ns}/app:1", via)
    if issuer is not None:  # the least scope: pull on each source, never `*`
        asked = issuer.since(mark)
        repos = [reference.parse(ref).repository for ref in sources]
        assert {frozenset({scope(repo, ["pull"])}) for repo in repos} <= set(scope_sets(asked))
        assert not any("*" in s for r in asked for s in r.scopes)
    assert proxy.count("GET", "/blobs/sha256:") >= len(configs)
    assert_no_credentials_sent(storage, configs)
    assert children(f"{registry.host}/{ns}/app@{digest}") == set(sources.values())


def tls_token_registry(workdir: Path, issuer: TokenIssuer) -> tuple[RegistryServer, Path]:
    """A TLS registry with token auth (realm: the issuer's plain-HTTP URL) and its CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    workdir.mkdir(parents=True, exist_ok=True)
    cert.private_key_pem.write_to_path(str(workdir / "server.key"))
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(workdir / "server.pem"), append=i > 0)
    ca.cert_pem.write_to_path(str(workdir / "ca.crt"))
    server = RegistryServer(workdir=workdir / "registry",
                            tls=(workdir / "server.pem", workdir / "server.key"),
                            token=issuer.registry_config())
    return server.start(), workdir / "ca.crt"


@pytest.mark.parametrize("creds", ["password", "identity-token"])
def test_plain_http_token_realm_of_a_secure_registry_is_refused(
    issuer: TokenIssuer, ns: str, tmp_path: Path, creds: str
) -> None:
    server, ca = tls_token_registry(tmp_path / "tls", issuer)
    try:
        host = server.host
        certs = Path(os.environ["MANYFEST_CERTS_DIR"]) / host
        certs.mkdir(parents=True)
        (certs / "ca.crt").write_bytes(ca.read_bytes())
        login(host)
        [source] = seed_sources(host, ns, count=1)  # the loopback rule: realm insecure
        if creds == "identity-token":
            write_config({"auths": {host: {"identitytoken": REFRESH_TOKEN}}})
        mark = issuer.mark()
        realm = f"127.0.0.1:{issuer.port}"
        proc = manyfest("inspect", source, env=LOOPBACK_OFF)
        assert proc.returncode == 1
        assert one_line(proc.stderr) == (
            f"get a token from {realm} for {host}: the token realm http://{realm}/token is "
            "plain HTTP; credentials are not sent in clear text; mark "
            f"{realm} insecure in the configuration file if that is intended"
        )
        assert issuer.since(mark) == []  # nothing was sent to it
        # Insecure by the configuration file (as the hint says), by --insecure, or by the
        # loopback rule: the realm gets the credentials.
        config = tmp_path / "manyfest.yaml"
        config.write_text(f"registries:\n  '{realm}':\n    insecure: true\n")
        for flags, env in (([], {**LOOPBACK_OFF, "MANYFEST_CONFIG": str(config)}),
                           (["--insecure"], LOOPBACK_OFF), ([], {})):
            mark = issuer.mark()
            proc = manyfest("inspect", *flags, source, env=env)
            assert proc.returncode == 0, proc.stderr
            [asked] = issuer.since(mark)
            assert (asked.user, asked.status) == (USER, 200)
            assert asked.method == ("POST" if creds == "identity-token" else "GET")
            assert asked.scopes == (scope(reference.parse(source).repository, ["pull"]),)
    finally:
        server.stop()


def test_one_scope_token_server_mounts_become_copies(
    token_registry: RegistryServer, issuer: TokenIssuer, redirecting: Any,
    storage: StorageHost, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy: QuirkProxy = redirecting(token_registry.host)
    write_config({"auths": {name: {"auth": basic_auth()}
                            for name in (token_registry.host, proxy.host)}})
    sources = seed_sources(token_registry.host, ns)
    blobs: set[str] = set()
    for ref in sources:
        shown = manyfest("inspect", ref)
        assert shown.returncode == 0, shown.stderr
        manifest = json.loads(shown.stdout)
        blobs |= {manifest["config"]["digest"]} | {layer["digest"] for layer in
                                                  manifest["layers"]}
    monkeypatch.setattr(issuer, "one_scope", True)
    plan = tmp_path / "plan.yaml"
    target = f"{proxy.host}/{ns}/app:1"
    plan.write_text(f"image: {target}\nmanifests:\n"
                    + "".join(f"  - image: {respell(ref, proxy.host)}\n" for ref in sources))
    mark = issuer.mark()
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["status"] == "created", result
    assert children(f"{token_registry.host}/{ns}/app@{result['digest']}") == set(
        sources.values()
    )
    # Every blob: a mount refused (its token covered one of its two scopes), then a copy:
    # streamed from the source (redirected to storage, no credentials there) into an upload.
    assert proxy.count("POST", "mount=") >= len(blobs)
    assert proxy.count("PUT", "digest=sha256:") == len(blobs)
    assert_no_credentials_sent(storage, blobs)
    asked = issuer.since(mark)
    assert {r.status for r in asked} == {200}
    target_scope = f"repository:{ns}/app:pull,push"
    repos = [reference.parse(ref).repository for ref in sources]
    # The least scope: pull for reads (sources, the target's current tag), pull,push on
    # the target, pull on a mount's source.
    assert set(scope_sets(asked)) == (
        {frozenset({scope(repo, ["pull"])}) for repo in [*repos, f"{ns}/app"]}
        | {frozenset({target_scope})}
        | {frozenset({target_scope, scope(repo, ["pull"])}) for repo in repos}
    )
    assert not any("*" in s for r in asked for s in r.scopes)


def test_token_realm_with_user_info(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str
) -> None:
    """A realm written ``http://user:secret@host/token``: its user info is neither sent nor
    shown (the client authenticates with its own credentials), and nothing crashes."""
    proxy = QuirkProxy(upstream=token_registry.host)
    secret = "realm-5ecret-Pq2"

    async def realm_with_user_info(request: Any, response: Any) -> Any:
        challenge = response.headers.get("WWW-Authenticate")
        if challenge:
            response.headers["WWW-Authenticate"] = challenge.replace(
                "realm=\"http://", f"realm=\"http://someone:{secret}@", 1)
        return response

    proxy.after.append(realm_with_user_info)
    proxy.start()
    try:
        write_config({"auths": {name: {"auth": basic_auth()}
                                for name in (token_registry.host, proxy.host)}})
        [source] = seed_sources(token_registry.host, ns, count=1)
        mark = issuer.mark()
        proc = manyfest("-D", "inspect", respell(source, proxy.host))
        assert proc.returncode == 0, proc.stderr
        assert secret not in proc.stderr + proc.stdout
        [asked] = issuer.since(mark)
        assert (asked.user, asked.status) == (USER, 200)  # our credentials, not the realm's
        write_config({})  # anonymous: the realm's user info is not sent either
        mark = issuer.mark()
        proc = manyfest("-D", "inspect", respell(source, proxy.host))
        assert proc.returncode == 1
        assert secret not in proc.stderr + proc.stdout
        assert [(r.user, r.status) for r in issuer.since(mark)] == [("", 401)]
    finally:
        proxy.stop()


@pytest.mark.parametrize("says", ["credentials", "error"])
def test_failing_credential_helper_never_shows_a_secret(
    basic80: RegistryServer, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    says: str,
) -> None:
    """A helper that fails (exit 1) after printing credentials, or an error of its own: the
    one line quotes the error, never the secret."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = json.dumps({"ServerURL": basic80.host, "Username": USER, "Secret": PASSWORD})
    said = answer if says == "credentials" else "keychain is locked\nsecond line"
    helper = bin_dir / "docker-credential-leaky"
    helper.write_text(f"#!/bin/sh\ncat > /dev/null\nprintf '%s\\n' '{said}'\nexit 1\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    write_config({"credHelpers": {basic80.host: "leaky"}})
    for flags in ([], ["-D"]):
        proc = manyfest(*flags, "inspect", f"{basic80.host}/{ns}/app-amd64:1")
        assert proc.returncode == 1
        assert PASSWORD not in proc.stderr + proc.stdout
        if not flags:
            assert one_line(proc.stderr) == (
                f"credential helper docker-credential-leaky failed for {basic80.host}: "
                + ("it printed credentials but exited with status 1" if says == "credentials"
                   else "keychain is locked")
                + "; check $DOCKER_CONFIG/config.json and its credential helpers"
            )


@pytest.mark.parametrize(
    ("registry", "scheme", "url", "sent"),
    [
        ("reg.example", "https", "https://reg.example/v2/a/blobs/uploads/1", True),
        ("reg.example", "https", "https://REG.example:443/v2/a/blobs/uploads/1", True),
        ("reg.example", "https", "http://reg.example/v2/a/blobs/uploads/1", False),
        ("reg.example", "https", "https://reg.example:80/v2/a/blobs/uploads/1", False),
        ("reg.example", "https", "https://storage.example/blob?signature=x", False),
        ("reg.example", "https", "https://someone@reg.example/v2/", False),
        ("plain.example", "http", "http://plain.example:80/v2/a/blobs/uploads/1", True),
        ("plain.example:80", "http", "http://plain.example/v2/a/blobs/uploads/1", True),
        ("plain.example", "https", "http://plain.example/v2/a/blobs/uploads/1", False),
        ("plain.example", "http", "http://127.0.0.2/blobs/sha256:0", False),
    ],
)
def test_credentials_go_to_the_registry_address_only(
    registry: str, scheme: str, url: str, sent: bool
) -> None:
    """Credentials go to the address the registry is reached on: its host and port (a
    ``Location`` without ``:80`` for a registry written ``host:80`` is the same address), in
    HTTPS, or in plain HTTP for an insecure one (``plain.example``, under either spelling)."""
    transport = Transport(Settings(loopback_insecure=False,
                                   insecure_registries=frozenset({"plain.example"})))
    state = transport._state(registry)
    state.scheme = scheme
    assert transport._may_send_credentials(state, url) is sent


# ---------------------------------------------------------------- 4) no secret in any output


@pytest.mark.parametrize("runs", ["succeeding", "failing"])
def test_no_secret_in_any_output(
    token_registry: RegistryServer, basic80: RegistryServer, issuer: TokenIssuer,
    redirecting: Any, storage: StorageHost, ns: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, runs: str,
) -> None:
    """Secrets planted: passwords (right and wrong), identity tokens (right and wrong), a
    registry token, the storage signature; and every token the issuer hands out. Outputs:
    stdout, stderr (progress, ``-D`` logs, tracebacks) and ``--report`` files."""
    proxy: QuirkProxy = redirecting(token_registry.host)
    reader_password = PASSWORD + "-reader"
    wrong_password, wrong_refresh = "pw-wrong-5ecret-Zt6", "idtoken-wrong-5ecret-Yq1"
    monkeypatch.setattr(issuer, "echo_refused", True)  # refusals repeat what they got
    th, bh = token_registry.host, basic80.host
    logins = {name: {"auth": basic_auth()} for name in (th, proxy.host, bh)}
    write_config({"auths": logins})
    sources = seed_sources(th, ns)
    basic_sources = seed_sources(bh, ns)
    via = [respell(ref, proxy.host) for ref in sources]
    [first] = list(sources)[:1]
    now = int(time.time())
    registry_token = issuer.sign(
        USER,
        [{"type": "repository", "name": reference.parse(first).repository, "actions": ["pull"]}],
        exp=now + 300, iat=now,
    )
    issued_before = len(issuer.issued)
    outputs: list[tuple[str, str]] = []

    def run(label: str, *args: str, ok: bool = True, config: dict[str, Any] | None = None,
            report: Path | None = None) -> None:
        write_config(config if config is not None else {"auths": logins})
        proc = manyfest(*args)
        assert (proc.returncode == 0) == ok, (label, proc.returncode, proc.stderr)
        outputs.extend([(f"{label} stdout", proc.stdout), (f"{label} stderr", proc.stderr)])
        if report is not None:
            outputs.append((f"{label} report", report.read_text()))

    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {proxy.host}/{ns}/pub:1\ntags: [latest]\nmanifests:\n"
                    + "".join(f"  - image: {ref}\n" for ref in via))
    report = tmp_path / "report.jsonl"
    if runs == "succeeding":
        # Token auth through blob redirects (Basic to the token server), htpasswd, tokens.
        target = f"{proxy.host}/{ns}/app:1"
        run("create", "-D", "create", target, *via)
        run("push", "-D", "push", target)
        run("publish", "-D", "publish", "--json", "--report", str(report), str(plan),
            report=report)
        run("publish again", "publish", "--report", str(report), str(plan), report=report)
        run("identity token", "-D", "inspect", first,
            config={"auths": {th: {"identitytoken": REFRESH_TOKEN}}})
        run("registry token", "-D", "inspect", first,
            config={"auths": {th: {"registrytoken": registry_token}}})
        run("basic create", "-D", "create", f"{bh}/{ns}/app:1", *basic_sources)
        run("basic push", "-D", "push", f"{bh}/{ns}/app:1")
        sentinels = [
            "Authorization: Bearer [redacted]", "Authorization: Basic [redacted]",
            f"POST http://127.0.0.1:{issuer.port}/token -> 200",
            # the token request's query: service and scope shown, nothing secret in it
            f"GET http://127.0.0.1:{issuer.port}/token?service=",
            f"GET http://{proxy.host}/v2/{ns}/app-amd64/blobs/sha256:",
            f"(redirected to http://{storage.host}/blobs/sha256:",
            f"PUT http://{bh}/v2/{ns}/app/manifests/1 -> 201",
        ]
    else:
        wrong = {"auths": {name: {"auth": basic_auth(password=wrong_password)}
                           for name in (th, bh)}}
        basic_source = next(iter(basic_sources))
        for flags in ([], ["-D"]):
            run(f"wrong password {flags}", *flags, "inspect", first, ok=False, config=wrong)
            run(f"basic wrong password {flags}", *flags, "inspect", basic_source, ok=False,
                config=wrong)
            run(f"wrong identity token {flags}", *flags, "inspect", first, ok=False,
                config={"auths": {th: {"identitytoken": wrong_refresh}}})
        reader = {"auths": {name: {"auth": basic_auth("reader", reader_password)}
                            for name in (th, proxy.host)}}
        run("reader create", "-D", "create", f"{proxy.host}/{ns}/ro:1", *via, config=reader)
        run("reader push", "-D", "push", f"{proxy.host}/{ns}/ro:1", ok=False, config=reader)
        run("reader publish", "-D", "publish", "--json", "--report", str(report), str(plan),
            ok=False, config=reader, report=report)
        run("reader publish quiet", "publish", "--json", str(plan), ok=False, config=reader)
        sentinels = [
            "Traceback (most recent call last)", "Authorization: Bearer [redacted]",
            # The token server's refusals echoed the credentials; the messages show none.
            "token server answered 401 (UNAUTHORIZED: bad credentials: Basic [redacted])",
            "token server answered 401 (UNAUTHORIZED: bad credentials: [redacted])",
            "user 'reader' was not granted all of the access asked for",
        ]
    issued = issuer.issued[issued_before:]
    assert issued, "no token was issued: the runs did not authenticate"
    secrets = {
        "password": PASSWORD, "reader password": reader_password,
        "wrong password": wrong_password, "identity token": REFRESH_TOKEN,
        "wrong identity token": wrong_refresh, "storage signature": SIGNATURE,
        "registry token": registry_token,
        "registry token signature": registry_token.rsplit(".", 1)[1],
    }
    for who, password in ((USER, PASSWORD), ("reader", reader_password),
                          (USER, wrong_password)):
        secrets[f"basic auth of {who}:{password}"] = basic_auth(who, password)
    for i, token in enumerate(issued):
        secrets[f"issued token {i}"] = token
        secrets[f"issued token {i} signature"] = token.rsplit(".", 1)[1]
    everything = "\n".join(text for _, text in outputs)
    for sentinel in sentinels:  # the outputs are those meant: logs, tracebacks, reports
        assert sentinel in everything, sentinel
    for label, text in outputs:
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in the {label}"
