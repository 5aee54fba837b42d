"""Shared fixtures: a real Distribution registry on loopback, isolated HOME/DOCKER_CONFIG."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry_server import RegistryServer, find_binary


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP docker-registry on a free 127.0.0.1 port for the whole session (with
    pytest-xdist: one per worker, in the worker's own temporary directory)."""
    if find_binary() is None:
        pytest.fail("docker-registry is not installed: run `apt-get install -y docker-registry`")
    server = RegistryServer(workdir=tmp_path_factory.mktemp("registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def second_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Another plain-HTTP docker-registry (its own storage and free 127.0.0.1 port, one per
    worker), for runs between two registries: copies, cross-registry sources, mirrors.
    Tests keep to their own namespace (``ns``) in it, as in :func:`registry`."""
    server = RegistryServer(workdir=tmp_path_factory.mktemp("second-registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test has its own HOME, DOCKER_CONFIG, XDG directories and (empty) certs.d; no
    proxies, no credentials from the environment."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("MANYFEST_CERTS_DIR", str(tmp_path / "certs.d"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # podman's auth.json is read from $XDG_RUNTIME_DIR/containers (a credential source).
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    for name in (
        "REGISTRY_AUTH_FILE", "DOCKER_AUTH_CONFIG", "MANYFEST_LOOPBACK_INSECURE",
        "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy",
        "ALL_PROXY", "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


_counter = itertools.count()
_WORKER = re.sub(r"[^a-z0-9]+", "", os.environ.get("PYTEST_XDIST_WORKER", "").lower())
"""The pytest-xdist worker (``gw0``...; '' without xdist): names made from ``ns`` (buildah
lists, repositories of a shared registry) never collide between workers."""


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A repository namespace unique to this test and worker (``t<n>[gw<k>]-<test name>``)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t{next(_counter)}{_WORKER}-{name}"


