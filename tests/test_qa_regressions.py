"""Faults found by trying manyfest as a new user would, each kept as a test of its kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.registry_server import RegistryServer
from tests.helpers import PLATFORMS, manyfest, seed


def test_cached_digest_still_must_exist_in_the_repository(registry: RegistryServer, ns: str,
                                                          tmp_path: Path) -> None:
    """The cache knows bytes by digest, not where they are: a digest source the repository
    lacks is `no such manifest`, whatever the cache holds (create, publish, --dry-run)."""
    host = registry.host
    digest = seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])[f"{ns}/app-amd64:1"]
    # warm the cache with the digest
    assert manyfest("inspect", f"{host}/{ns}/app-amd64@{digest}").returncode == 0
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n  - image: {host}/{ns}/app-amd64:1\n")
    assert manyfest("publish", str(plan)).returncode == 0  # cache holds the manifest now
    ghost = f"{host}/{ns}/nothere@{digest}"
    created = manyfest("create", f"{host}/{ns}/ghost:1", ghost)
    assert created.returncode == 1
    assert f"no such manifest: {ghost}" in created.stderr
    for flags in ([], ["--dry-run"]):
        proc = manyfest("publish", *flags, "--json", "--target", f"{host}/{ns}/ghost:1",
                        "--template", ghost, "--platforms", "linux/amd64")
        assert proc.returncode == 3, proc.stderr
        [result] = json.loads(proc.stdout)["results"]
        assert result["status"] == "failed"
        assert f"no such manifest: {ghost}" in result["error"]


@pytest.mark.parametrize(
    "config",
    [
        {"credsStore": "nonexistent-helper"},
        {"auths": {"REGISTRY": {"auth": "!!!notbase64"}}},
        "{ not json",
    ],
)
def test_broken_credentials_never_stop_an_anonymous_registry(
    registry: RegistryServer, ns: str, config: object
) -> None:
    host = registry.host
    seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])
    text = config if isinstance(config, str) else json.dumps(config).replace("REGISTRY", host)
    (Path(os.environ["DOCKER_CONFIG"]) / "config.json").write_text(text)
    shown = manyfest("inspect", f"{host}/{ns}/app-amd64:1")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["schemaVersion"] == 2
