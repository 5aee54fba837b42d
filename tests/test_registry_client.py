""":meth:`RegistryClient.repository_exists <manyfest.registry.RegistryClient.repository_exists>`:
the one tag-list GET a bulk publish asks of a target repository it writes several tags into,
against the real registry (what Distribution answers for a repository that does not exist,
and for one with tags) and at unit level with aioresponses (a 404 that is not
``NAME_UNKNOWN``, an error answer)."""

from __future__ import annotations

import anyio
import pytest
from aioresponses import aioresponses

from manyfest import reference
from manyfest.errors import RegistryError
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, seed
from tests.registry_server import RegistryServer


def _exists(host: str, repository: str, *, push: bool = False) -> bool:
    async def run() -> bool:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).repository_exists(
                reference.parse(f"{host}/{repository}"), push=push)

    return anyio.run(run)


def test_distribution_says_which_repositories_exist(registry: RegistryServer, ns: str) -> None:
    seed(registry.host, [(f"{ns}/app:1", PLATFORMS[0], ns)])
    before = registry.request_count()
    assert _exists(registry.host, f"{ns}/app") is True
    assert _exists(registry.host, f"{ns}/app", push=True) is True
    assert _exists(registry.host, f"{ns}/never-pushed") is False
    # one GET each (and a ping per transport): 404 NAME_UNKNOWN for the unknown repository
    assert registry.request_count() - before == 3 * 2


HOST = "127.0.0.1:1"
BASE = f"https://{HOST}"


def _mocked(status: int, payload: object) -> bool:
    with aioresponses() as mocked:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.get(f"{BASE}/v2/app/tags/list?n=1", status=status, payload=payload)
        return _exists(HOST, "app")


def test_only_name_unknown_says_a_repository_does_not_exist() -> None:
    assert _mocked(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not "
                                     "known to registry"}]}) is False
    assert _mocked(200, {"name": "app", "tags": None}) is True  # a registry's empty answer
    # a 404 naming something else (a proxy's page, another code): not proof of absence
    assert _mocked(404, {"errors": [{"code": "NOT_FOUND", "message": "no route"}]}) is True


def test_an_error_answer_is_raised() -> None:
    with pytest.raises(RegistryError, match=r"list tags of 127\.0\.0\.1:1/app") as info:
        _mocked(403, {"errors": [{"code": "DENIED", "message": "tag listing is off"}]})
    assert info.value.status == 403
