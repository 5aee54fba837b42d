"""Faults found by trying manyfest as a new user would, each kept as a test of its kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import PLATFORMS, manyfest, seed
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)


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


def test_annotate_new_arch_clears_the_old_variant(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    seed(host, [(f"{ns}/app-arm:1", PLATFORMS[1], ns)])  # linux/arm/v7
    target = f"{host}/{ns}/app:ann"
    manyfest("create", target, f"{host}/{ns}/app-arm:1", check=True)
    moved = manyfest("annotate", "--arch", "386", target, f"{host}/{ns}/app-arm:1")
    assert (moved.returncode, moved.stderr) == (0, "")
    shown = json.loads(manyfest("inspect", "-v", target, f"{host}/{ns}/app-arm:1").stdout)
    assert shown["Descriptor"]["platform"] == {"architecture": "386", "os": "linux"}
    manyfest("annotate", "--arch", "arm", "--variant", "v6", target, f"{host}/{ns}/app-arm:1",
             check=True)
    cleared = manyfest("annotate", "--variant", "", target, f"{host}/{ns}/app-arm:1")
    assert cleared.returncode == 0, cleared.stderr
    shown = json.loads(manyfest("inspect", "-v", target, f"{host}/{ns}/app-arm:1").stdout)
    assert shown["Descriptor"]["platform"] == {"architecture": "arm", "os": "linux"}


def test_plan_platforms_checked_before_any_request(registry: RegistryServer, ns: str,
                                                   tmp_path: Path) -> None:
    host = registry.host
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n"
                    f"  - image: {host}/{ns}/app-x:1\n    platform: {{os: linux, "
                    "architecture: foo}\n")
    before = registry.request_count()
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 2
    assert "document 1: manifests[0].platform" in proc.stderr
    assert f"{host}/{ns}/app-x:1" in proc.stderr
    assert "unsupported os/arch combination: linux/foo" in proc.stderr
    args = manyfest("publish", "--target", f"{host}/{ns}/app:1", "--template",
                    f"{host}/{ns}/app-ARCH:1", "--platforms", "linux/amd64/v9")
    assert args.returncode == 2
    assert "unsupported variant 'v9' for architecture 'amd64'" in args.stderr
    assert registry.request_count() == before


def test_config_platforms_are_taken_as_built(registry: RegistryServer, ns: str,
                                             tmp_path: Path) -> None:
    """An image whose config says linux/amd64/v8 publishes as it is (docker and manifest-tool
    do not refuse what was built); only platforms the plan writes are checked."""
    from manyfest.platform import Platform

    host = registry.host
    odd = Platform("linux", "amd64", "v8")
    seed(host, [(f"{ns}/odd:1", odd, ns), (f"{ns}/arm64:1", PLATFORMS[2], ns)])
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n  - image: {host}/{ns}/odd:1\n"
                    f"  - image: {host}/{ns}/arm64:1\n")
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(manyfest("inspect", f"{host}/{ns}/app:1").stdout)
    assert listed["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux",
                                                  "variant": "v8"}


def test_duplicate_plan_keys_are_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("image: r.example/m:1\nimage: r.example/m:2\n"
                    "manifests: [{image: r.example/a:1}]\n")
    proc = manyfest("publish", str(plan))
    assert proc.returncode == 2
    assert "found duplicate key 'image'" in proc.stderr
    assert "line 2" in proc.stderr


def test_store_keeps_one_lock_file(registry: RegistryServer, ns: str) -> None:
    host = registry.host
    seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])
    for i in range(3):
        manyfest("create", f"{host}/{ns}/app:{i}", f"{host}/{ns}/app-amd64:1", check=True)
    assert manyfest("rm", f"{host}/{ns}/app:0", f"{host}/{ns}/nope:1").returncode == 1
    root = Path(os.environ["DOCKER_CONFIG"]) / "manifests"
    assert sorted(p.name for p in root.iterdir()) == [
        ".manyfest.lock",
        f"127.0.0.1-{registry.port}_{ns}_app-1",
        f"127.0.0.1-{registry.port}_{ns}_app-2",
    ]
