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
  progress, ``-D`` logs and tracebacks.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from benchmarks.registry_server import RegistryServer
from manyfest import reference
from manyfest.auth.tokens import scope
from tests.helpers import PLATFORMS, manyfest, platform_suffix, seed
from tests.quirk_proxy import QuirkProxy, StorageHost, redirect_blob_gets
from tests.token_issuer import TokenIssuer, TokenRequest

USER = "user"
PASSWORD = "pw-5ecret-Kq8vZ2"
REFRESH_TOKEN = "idtoken-5ecret-Wm4xT9"
SIGNATURE = "sig-5ecret-Hb7nR3"
"""The pre-signed storage URL's signature (a credential for the storage host)."""
LOOPBACK_OFF = {"MANYFEST_LOOPBACK_INSECURE": "0"}


# ---------------------------------------------------------------- fixtures and helpers


def _port80_address(skip: set[str]) -> str:
    """A loopback address from 127.0.0.3 on whose port 80 nothing listens (binding 80 needs
    root; other engineers' tests may hold 127.0.0.3:80, so the next one is taken then)."""
    if os.geteuid() != 0:
        pytest.skip("a registry on port 80 needs root (these tests run as root)")
    for last in range(3, 60):
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
        f"no credentials for {address} in {config}: log in with `docker login {address}`"
    )
