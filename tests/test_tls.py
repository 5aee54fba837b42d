"""TLS and --insecure against real docker-registry processes on loopback.

* a plain-HTTP registry with ``--insecure`` (the implicit loopback rule off): every request
  after the failed TLS ping is plain HTTP, token requests included; without ``--insecure`` a
  one-line "does not speak TLS" error;
* a TLS registry with a self-signed certificate (trustme): ``--insecure`` never downgrades;
  without it, verification fails unless the CA is in certs.d; the loopback rule skips
  verification and stays on HTTPS;
* a TLS registry requiring client certificates (``http.tls.clientcas``): ``client.cert`` +
  ``client.key`` from certs.d.

Every test turns the loopback rule off (``MANYFEST_LOOPBACK_INSECURE=0``) unless it tests it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

from manyfest import reference
from manyfest.api import Session
from manyfest.errors import CertificateError, TransportError
from manyfest.ops.plan import load
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import (
    PLATFORMS,
    REFERRERS_PROBE,
    manyfest,
    platform_suffix,
    seed,
    walkthrough_blobs,
)
from tests.registry_server import RegistryServer, free_port
from tests.token_issuer import TokenIssuer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

INSECURE = Settings(insecure=True)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A server CA + certificate for 127.0.0.1/localhost, and a CA for client certificates."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(d / "server.key"))
    for i, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(d / "server.pem"), append=i > 0)
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(str(d / "other-ca.pem"))
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(d / "client-ca.pem"))
    client = client_ca.issue_cert("manyfest-test-client")
    client.private_key_pem.write_to_path(str(d / "client.key"))
    client.cert_chain_pems[0].write_to_path(str(d / "client.cert"))
    return {"dir": d, "ca": ca}


@pytest.fixture(scope="module")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
) -> Iterator[RegistryServer]:
    """A registry serving HTTPS with a certificate from an untrusted (test) CA."""
    d: Path = pki["dir"]
    server = RegistryServer(
        workdir=tmp_path_factory.mktemp("tls-registry"), tls=(d / "server.pem", d / "server.key")
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_registry(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
) -> Iterator[RegistryServer]:
    """A TLS registry that requires a client certificate issued by the client CA."""
    d: Path = pki["dir"]
    server = RegistryServer(
        workdir=tmp_path_factory.mktemp("mtls-registry"),
        tls=(d / "server.pem", d / "server.key"),
        client_cas=(d / "client-ca.pem",),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def no_loopback_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback registries are secure like any other (for this process and the CLI)."""
    monkeypatch.setenv("MANYFEST_LOOPBACK_INSECURE", "0")


Exchange = tuple[str, str, dict[str, str]]


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Every HTTP exchange the transport attempts in this process: (method, URL, params)."""
    seen: list[Exchange] = []
    original = Transport._exchange

    async def recording(
        self: Transport, state: Any, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Any:
        seen.append((method, url, dict(kwargs.get("params") or {})))
        return await original(self, state, method, url, *args, **kwargs)

    monkeypatch.setattr(Transport, "_exchange", recording)
    return seen


def certs_dir(registry: str) -> Path:
    """This test's certs.d directory for ``registry`` (created)."""
    path = Path(os.environ["MANYFEST_CERTS_DIR"]) / registry
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_sources(host: str, ns: str, settings: Settings) -> dict[str, str]:
    """The four walkthrough images ``<ns>/app-<suffix>:1`` → {full reference: digest}."""
    names = [(f"{ns}/app-{platform_suffix(p)}:1", p, ns) for p in PLATFORMS]
    digests = seed(host, names, settings=settings)
    return {f"{host}/{name}": digest for name, digest in digests.items()}


def one_line(stderr: str) -> str:
    """The single line of an error's stderr (fails if there is more than one)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def create_and_push(target: str, sources: dict[str, str], *flags: str) -> str:
    """``manyfest create`` + ``push`` through the CLI; checks the output, returns the digest."""
    created = manyfest("create", *flags, target, *sources)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created manifest list {target}\n"
    pushed = manyfest("push", *flags, target)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.splitlines()
    name = target.rsplit(":", 1)[0]
    expected = {f"Pushed ref {name}@{d} with digest: {d}" for d in sources.values()}
    assert set(lines[:-1]) == expected
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", lines[-1])
    return lines[-1]


_SERVED = re.compile(
    r'msg="response completed.*? http\.request\.method=(\w+) .*?'
    r'http\.request\.uri=(?:"([^"]*)"|(\S+)) .*?http\.response\.status=(\d+)'
)
"""A request line of the registry's log (logrus quotes a value only when it must)."""


def log_mark(server: RegistryServer) -> int:
    """Where the registry's log ends now (after its last request's line is written)."""
    server.request_count()
    return server.log_path.stat().st_size


def served_since(server: RegistryServer, mark: int) -> list[tuple[str, str, int]]:
    """(method, URI, status) of each request the registry answered after ``mark``."""
    server.request_count()
    text = server.log_path.read_bytes()[mark:].decode(errors="replace")
    return [(m[1], m[2] or m[3], int(m[4])) for m in _SERVED.finditer(text)]


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn)


async def check_list(
    target: str, digest: str, children: set[str], settings: Settings
) -> str | None:
    """Fetch the list at ``target``; check digest and children; return the scheme used."""
    ref = reference.parse(target)
    async with Transport(settings) as transport:
        listed = await RegistryClient(transport).get_manifest(ref)
        assert listed.digest == digest
        assert {m.digest for m in listed.index().manifests} == children
        return transport.scheme_of(ref.registry)


# ---------------------------------------------------------------- a) plain HTTP + --insecure


def test_insecure_plain_http_cli_create_push(
    registry: RegistryServer, ns: str, no_loopback_rule: None
) -> None:
    sources = seed_sources(registry.host, ns, INSECURE)
    target = f"{registry.host}/{ns}/app:1"
    mark = log_mark(registry)
    digest = create_and_push(target, sources, "--insecure")
    # The plain-HTTP registry answered every step of both commands (a step sent over TLS
    # would have failed the command): pings, manifest and config GETs, blob mounts, PUTs.
    served = served_since(registry, mark)
    assert all(status in (200, 201) for _, _, status in served), served
    assert [m for m, uri, _ in served if uri == "/v2/"] == ["GET", "GET"]
    mounts = [uri for method, uri, _ in served if method == "POST"]
    assert len(mounts) == walkthrough_blobs(ns)
    assert all(
        uri.startswith(f"/v2/{ns}/app/blobs/uploads/?") and "mount=sha256" in uri
        and f"from={ns}" in uri
        for uri in mounts
    ), mounts
    puts = sorted(uri for method, uri, _ in served if method == "PUT")
    assert puts == sorted(
        [f"/v2/{ns}/app/manifests/{d}" for d in sources.values()]
        + [f"/v2/{ns}/app/manifests/1"]
    )
    gets = {uri for method, uri, _ in served if method == "GET" and uri != "/v2/"}
    assert {f"/v2/{reference.parse(r).repository}/manifests/1" for r in sources} <= gets
    scheme = run(lambda: check_list(target, digest, set(sources.values()), INSECURE))
    assert scheme == "http"


def test_insecure_plain_http_every_request_is_http(
    registry: RegistryServer, ns: str, tmp_path: Path, no_loopback_rule: None,
    exchanges: list[Exchange],
) -> None:
    sources = seed_sources(registry.host, ns, INSECURE)
    host = registry.host
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"image: {host}/{ns}/app:1\ntags: [latest]\nmanifests:\n"
        + "".join(f"  - image: {ref}\n" for ref in sources)
    )
    exchanges.clear()
    before = registry.request_count()

    async def body() -> tuple[Any, str | None, int]:
        async with Session(Settings(insecure=True)) as session:
            report = await session.publish(load(plan))
            return report, session.transport.scheme_of(host), session.transport.total.requests

    report, scheme, sent = run(body)
    assert [r.status for r in report.results] == ["created"], report.results[0].error
    assert scheme == "http"
    # The only HTTPS attempt is the first ping (its TLS handshake fails); the plain-HTTP
    # registry served exactly the requests the transport counted (its log leaves out the
    # referrers API probe its router answers 404).
    assert exchanges[0][:2] == ("GET", f"https://{host}/v2/")
    rest = exchanges[1:]
    assert rest[0][:2] == ("GET", f"http://{host}/v2/")
    assert all(url.startswith(f"http://{host}/v2/") for _, url, _ in rest), rest
    assert sum("/referrers/" in url for _, url, _ in rest) == REFERRERS_PROBE
    assert registry.request_count() - before + REFERRERS_PROBE == sent == len(rest)
    methods = {method for method, _, _ in rest}
    assert methods == {"GET", "HEAD", "POST", "PUT"}
    mounts = [(url, params) for method, url, params in rest if method == "POST"]
    assert len(mounts) == walkthrough_blobs(ns)
    for url, params in mounts:
        assert url == f"http://{host}/v2/{ns}/app/blobs/uploads/"
        assert set(params) == {"mount", "from"}
        assert params["from"].startswith(f"{ns}/app-")
    puts = {url for method, url, _ in rest if method == "PUT"}
    assert f"http://{host}/v2/{ns}/app/manifests/1" in puts
    assert f"http://{host}/v2/{ns}/app/manifests/latest" in puts
    assert {f"http://{host}/v2/{ns}/app/manifests/{d}" for d in sources.values()} <= puts
    scheme2 = run(
        lambda: check_list(f"{host}/{ns}/app:latest", report.results[0].digest,
                           set(sources.values()), INSECURE)
    )
    assert scheme2 == "http"


def test_plain_http_without_insecure_fails_clearly(
    registry: RegistryServer, ns: str, no_loopback_rule: None
) -> None:
    sources = seed_sources(registry.host, ns, INSECURE)
    before = registry.request_count()
    proc = manyfest("inspect", next(iter(sources)))
    assert proc.returncode == 1
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    assert line == (
        f"{registry.host} does not speak TLS: the TLS handshake got a plain-HTTP answer "
        "(wrong version number); use --insecure to talk plain HTTP to it"
    )
    proc = manyfest("create", f"{registry.host}/{ns}/app:1", *sources)
    assert proc.returncode == 1
    assert "does not speak TLS" in one_line(proc.stderr)
    # Nothing reached the registry as HTTP; nothing was stored.
    assert registry.request_count() == before
    store = Path(os.environ["DOCKER_CONFIG"]) / "manifests"
    assert not store.exists() or not any(store.iterdir())


def test_loopback_rule_plain_http_without_flag(registry: RegistryServer, ns: str) -> None:
    sources = seed_sources(registry.host, ns, Settings())
    target = f"{registry.host}/{ns}/app:1"
    digest = create_and_push(target, sources)
    scheme = run(lambda: check_list(target, digest, set(sources.values()), Settings()))
    assert scheme == "http"


def test_insecure_plain_http_with_token_auth(
    tmp_path_factory: pytest.TempPathFactory, ns: str, no_loopback_rule: None
) -> None:
    issuer = TokenIssuer(tmp_path_factory.mktemp("issuer"), users={"user": "pass"})
    with issuer, RegistryServer(
        workdir=tmp_path_factory.mktemp("token-http-registry"), token=issuer.registry_config()
    ) as server:
        config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        config.write_text(
            json.dumps({"auths": {server.host: {"auth": base64.b64encode(b"user:pass").decode()}}})
        )
        sources = seed_sources(server.host, ns, INSECURE)
        mark = issuer.mark()
        target = f"{server.host}/{ns}/app:1"
        digest = create_and_push(target, sources, "--insecure")
        tokens = issuer.since(mark)
        assert tokens, "no token was asked for"
        assert {(t.scheme, t.status, t.user) for t in tokens} == {("http", 200, "user")}
        scheme = run(lambda: check_list(target, digest, set(sources.values()), INSECURE))
        assert scheme == "http"
        without = manyfest("inspect", next(iter(sources)))  # remote: not in the local store
        assert without.returncode == 1
        assert "does not speak TLS" in one_line(without.stderr)


def test_unreachable_registry_is_one_error_not_a_crash(no_loopback_rule: None) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there

    async def body() -> None:
        async with Transport(INSECURE) as transport:
            await RegistryClient(transport).get_manifest(reference.parse(f"{host}/a/b:1"))

    with pytest.raises(TransportError) as info:
        run(body)
    assert type(info.value) is TransportError
    # HTTPS refused, then plain HTTP (insecure) refused too: the last attempt is the error.
    assert str(info.value) == (
        f"GET http://{host}/v2/: cannot connect to {host}: Connection refused"
    )


def test_registry_gone_mid_run_is_one_error_after_retries(
    tmp_path: Path, ns: str, no_loopback_rule: None
) -> None:
    server = RegistryServer(workdir=tmp_path / "registry").start()
    ref = reference.parse(f"{server.host}/{ns}/app:1")

    transport = Transport(dataclasses.replace(INSECURE, error_retry_deadline=1.0))

    async def body() -> None:
        async with transport:
            client = RegistryClient(transport)
            try:
                assert await client.head_manifest(ref) is None  # pinged, over HTTP
                assert transport.scheme_of(server.host) == "http"
            finally:
                server.stop()
            await client.head_manifest(ref)

    with pytest.raises(TransportError) as info:
        run(body)
    # The retries' last error itself (not an internal wrapper), after every try within the
    # deadline for connection errors (the registry had answered: a restart is worth waiting).
    assert type(info.value) is TransportError
    assert str(info.value) == (
        f"HEAD http://{server.host}/v2/{ns}/app/manifests/1: cannot connect to {server.host}: "
        "Connection refused (still failing after 1 s of retries)"
    )
    assert transport.total.retries >= 1


# ---------------------------------------------------------------- b) TLS, self-signed


def test_tls_insecure_skips_verification_and_never_downgrades(
    tls_registry: RegistryServer, ns: str, no_loopback_rule: None, exchanges: list[Exchange]
) -> None:
    host = tls_registry.host
    sources = seed_sources(host, ns, INSECURE)
    target = f"{host}/{ns}/app:1"
    digest = create_and_push(target, sources, "--insecure")
    exchanges.clear()
    scheme = run(lambda: check_list(target, digest, set(sources.values()), INSECURE))
    assert scheme == "https"
    assert exchanges
    assert all(url.startswith(f"https://{host}/v2/") for _, url, _ in exchanges), exchanges
    inspected = manyfest("inspect", "--insecure", target)
    assert inspected.returncode == 0, inspected.stderr
    shown = json.loads(inspected.stdout)
    assert {m["digest"] for m in shown["manifests"]} == set(sources.values())


def test_tls_untrusted_certificate_fails_clearly(
    tls_registry: RegistryServer, ns: str, no_loopback_rule: None
) -> None:
    host = tls_registry.host
    sources = seed_sources(host, ns, INSECURE)
    before = tls_registry.request_count()
    proc = manyfest("inspect", next(iter(sources)))
    assert proc.returncode == 1
    assert proc.stdout == ""
    certs = certs_dir(host)
    assert one_line(proc.stderr) == (
        f"TLS certificate of {host} is not trusted: unable to get local issuer certificate; "
        f"put the CA certificate that signed it in {certs / 'ca.crt'} (docker's certs.d "
        "layout), or use --insecure to skip verification"
    )
    # No request was served (no HTTP fallback without --insecure).
    assert tls_registry.request_count() == before


def test_tls_with_ca_in_certs_d_verifies(
    tls_registry: RegistryServer, pki: dict[str, Any], ns: str, no_loopback_rule: None
) -> None:
    host = tls_registry.host
    sources = seed_sources(host, ns, INSECURE)
    certs = certs_dir(host)
    (certs / "ca.crt").write_bytes((pki["dir"] / "other-ca.pem").read_bytes())
    wrong = manyfest("inspect", next(iter(sources)))
    assert wrong.returncode == 1
    assert one_line(wrong.stderr).startswith(f"TLS certificate of {host} is not trusted: ")
    (certs / "ca.crt").write_bytes((pki["dir"] / "ca.pem").read_bytes())
    target = f"{host}/{ns}/app:1"
    digest = create_and_push(target, sources)  # no --insecure: verified with the CA
    secure = Settings()
    assert not secure.is_insecure(host)
    scheme = run(lambda: check_list(target, digest, set(sources.values()), secure))
    assert scheme == "https"


def test_tls_bad_ca_file_is_one_error(
    tls_registry: RegistryServer, ns: str, no_loopback_rule: None
) -> None:
    certs = certs_dir(tls_registry.host)
    (certs / "ca.crt").write_text("not a certificate\n")
    proc = manyfest("inspect", f"{tls_registry.host}/{ns}/app-amd64:1")
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith(f"cannot load {certs / 'ca.crt'}: ")
    assert f"fix or remove {certs / 'ca.crt'}" in line


def test_tls_loopback_rule_skips_verification_and_stays_https(
    tls_registry: RegistryServer, ns: str, exchanges: list[Exchange]
) -> None:
    host = tls_registry.host
    assert Settings().is_insecure(host)  # the loopback rule is on by default
    sources = seed_sources(host, ns, Settings())
    target = f"{host}/{ns}/app:1"
    digest = create_and_push(target, sources)
    exchanges.clear()
    scheme = run(lambda: check_list(target, digest, set(sources.values()), Settings()))
    assert scheme == "https"
    assert all(url.startswith("https://") for _, url, _ in exchanges), exchanges


# ---------------------------------------------------------------- c) client certificates


def test_client_certificate_from_certs_d(
    mtls_registry: RegistryServer, pki: dict[str, Any], ns: str, no_loopback_rule: None
) -> None:
    host = mtls_registry.host
    certs = certs_dir(host)
    (certs / "ca.crt").write_bytes((pki["dir"] / "ca.pem").read_bytes())
    (certs / "client.cert").write_bytes((pki["dir"] / "client.cert").read_bytes())
    (certs / "client.key").write_bytes((pki["dir"] / "client.key").read_bytes())
    sources = seed_sources(host, ns, Settings())
    target = f"{host}/{ns}/app:1"
    digest = create_and_push(target, sources)
    scheme = run(lambda: check_list(target, digest, set(sources.values()), Settings()))
    assert scheme == "https"
    # With --insecure and no CA, the client certificate is still sent (and HTTPS kept).
    (certs / "ca.crt").unlink()
    proc = manyfest("inspect", "--insecure", target)
    assert proc.returncode == 0, proc.stderr
    assert {m["digest"] for m in json.loads(proc.stdout)["manifests"]} == set(sources.values())


@pytest.mark.parametrize("insecure", [False, True], ids=["verify", "insecure"])
def test_missing_client_certificate_fails_clearly(
    mtls_registry: RegistryServer, pki: dict[str, Any], ns: str, no_loopback_rule: None,
    insecure: bool,
) -> None:
    host = mtls_registry.host
    certs = certs_dir(host)
    (certs / "ca.crt").write_bytes((pki["dir"] / "ca.pem").read_bytes())
    before = mtls_registry.request_count()
    flags = ["--insecure"] if insecure else []
    proc = manyfest("inspect", *flags, f"{host}/{ns}/app-amd64:1")
    assert proc.returncode == 1
    # With --insecure the plain-HTTP fallback must not hide the TLS failure behind Go's
    # "400 Client sent an HTTP request to an HTTPS server".
    assert one_line(proc.stderr) == (
        f"{host} refused the TLS handshake (sslv3 alert bad certificate): it requires a "
        f"client certificate it trusts; put the client certificate and its key in "
        f"{certs / 'client.cert'} and {certs / 'client.key'} (docker's certs.d layout)"
    )
    assert mtls_registry.request_count() == before


def test_client_certificate_without_key(
    mtls_registry: RegistryServer, pki: dict[str, Any], ns: str, no_loopback_rule: None
) -> None:
    certs = certs_dir(mtls_registry.host)
    (certs / "client.cert").write_bytes((pki["dir"] / "client.cert").read_bytes())

    async def body() -> None:
        async with Transport(Settings()) as transport:
            await RegistryClient(transport).get_manifest(
                reference.parse(f"{mtls_registry.host}/{ns}/app:1")
            )

    with pytest.raises(CertificateError) as info:
        run(body)
    assert info.value.one_line() == (
        f"missing key client.key for client certificate {certs / 'client.cert'}; "
        f"put the client key beside it as {certs / 'client.key'}"
    )
