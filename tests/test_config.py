"""The configuration file: per-registry settings under the command line's flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manyfest import config
from manyfest.transport.settings import DEFAULT_CONCURRENCY
from tests.helpers import PLATFORMS, manyfest, seed
from tests.registry_server import RegistryServer


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "manyfest.yaml"
    path.write_text("")
    monkeypatch.setenv("MANYFEST_CONFIG", str(path))
    return path


def test_defaults_from_an_empty_file(config_file: Path) -> None:
    settings = config.settings(config.load())
    assert settings.concurrency == DEFAULT_CONCURRENCY
    assert settings.concurrency_for("r.example") == DEFAULT_CONCURRENCY
    assert settings.insecure_registries == frozenset()


def test_values_and_precedence(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text(
        "concurrency: 12\nretry_deadline: 20\nread_timeout: 5.5\ncerts_dir: /srv/certs\n"
        "registries:\n  r.example:\n    concurrency: 3\n  '10.1.2.3:5000':\n    insecure: true\n"
    )
    monkeypatch.delenv("MANYFEST_CERTS_DIR")
    s = config.settings(config.load())
    assert (s.concurrency, s.retry_deadline, s.read_timeout) == (12, 20, 5.5)
    assert s.concurrency_for("r.example") == 3
    assert s.concurrency_for("other.example") == 12
    assert s.is_insecure("10.1.2.3:5000")
    assert not s.is_insecure("r.example")
    assert str(s.certs_dir) == "/srv/certs"
    # --concurrency wins over every value of the file; the environment over the file
    flagged = config.settings(config.load(), concurrency=40)
    assert flagged.concurrency_for("r.example") == 40
    monkeypatch.setenv("MANYFEST_CERTS_DIR", "/elsewhere")
    assert str(config.settings(config.load()).certs_dir) == "/elsewhere"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("concurency: 3\n", "concurency"),
        ("registries:\n  r.example:\n    concurrency: many\n", "concurrency"),
        ("concurrency: 0\n", "concurrency must be at least 1"),
        ("retry_deadline: -1\n", "retry_deadline must be more than 0 seconds, got -1"),
        ("read_timeout: 0\n", "read_timeout must be more than 0 seconds"),
        ("registries: [\n", "not valid YAML"),
    ],
)
def test_bad_file_is_a_usage_error(config_file: Path, text: str, named: str) -> None:
    config_file.write_text(text)
    proc = manyfest("inspect", "127.0.0.1:9/a:1")
    assert proc.returncode == 2
    assert named in proc.stderr
    assert str(config_file) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_insecure_registry_from_the_file(config_file: Path, registry: RegistryServer, ns: str,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = registry.host
    seed(host, [(f"{ns}/app-amd64:1", PLATFORMS[0], ns)])
    monkeypatch.setenv("MANYFEST_LOOPBACK_INSECURE", "0")
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n  - image: {host}/{ns}/app-amd64:1\n")
    refused = manyfest("publish", str(plan))
    assert refused.returncode == 3
    config_file.write_text(f"registries:\n  '{host}':\n    insecure: true\n    concurrency: 1\n")
    proc = manyfest("publish", "--json", str(plan))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "created"


def test_default_location_may_be_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANYFEST_CONFIG", raising=False)
    assert not config.config_path().exists()
    assert config.load() == config.ConfigFile()


@pytest.mark.slow
def test_named_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("MANYFEST_CONFIG", str(missing))
    proc = manyfest("inspect", "127.0.0.1:9/a:1")
    assert proc.returncode == 2
    assert f"configuration file {missing} does not exist" in proc.stderr


@pytest.mark.slow
def test_bad_boolean_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANYFEST_LOOPBACK_INSECURE", "bogus")
    proc = manyfest("inspect", "127.0.0.1:9/a:1")
    assert proc.returncode == 2
    assert "MANYFEST_LOOPBACK_INSECURE='bogus' is not a boolean" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
