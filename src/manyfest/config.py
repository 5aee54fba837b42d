"""The configuration file: defaults and per-registry settings.

Location: ``$MANYFEST_CONFIG``, else ``<user config dir>/manyfest/config.yaml`` (platformdirs;
``~/.config/manyfest/config.yaml`` on Linux). A missing file means defaults. Example::

    concurrency: 64            # requests in flight per registry (default for all)
    loopback_insecure: true    # 127.0.0.0/8, ::1, localhost insecure without --insecure
    certs_dir: /etc/docker/certs.d
    connect_timeout: 30        # seconds
    read_timeout: 60           # seconds
    retry_deadline: 300        # seconds a request is retried while a registry throttles
    error_retry_deadline: 60   # seconds a request is retried on 5xx / connection errors
    retry_max_wait: 10         # longest backoff between tries on errors, in seconds
    lists_in_flight: 32        # lists published at once (publish)
    registries:
      registry.example.com:
        concurrency: 8         # this registry's own limit
      10.1.2.3:5000:
        insecure: true         # as --insecure, for this registry only

Command-line flags win over the file (``--concurrency``, ``--insecure``); environment
variables (``MANYFEST_LOOPBACK_INSECURE``, ``MANYFEST_CERTS_DIR``) win over the file too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgspec
import platformdirs

from manyfest.errors import UsageError
from manyfest.transport.settings import Settings


class ConfigError(UsageError):
    """The configuration file is unreadable or malformed."""

    default_hint = "fix the configuration file (README.md, \"Configuration\", lists its keys)"


class RegistryConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Settings for one registry (host[:port] as written in references)."""

    concurrency: int | None = None
    insecure: bool = False


class ConfigFile(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The whole file; every key optional."""

    concurrency: int | None = None
    loopback_insecure: bool | None = None
    certs_dir: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    retry_deadline: float | None = None
    error_retry_deadline: float | None = None
    retry_max_wait: float | None = None
    lists_in_flight: int | None = None
    registries: dict[str, RegistryConfig] = msgspec.field(default_factory=dict)


CONFIG_LIMIT = 1024 * 1024
"""Largest configuration file read, in bytes (so ``/dev/zero`` is refused, not read forever)."""


def config_path() -> Path:
    """``$MANYFEST_CONFIG``, else ``<user config dir>/manyfest/config.yaml``."""
    env = os.environ.get("MANYFEST_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir("manyfest")) / "config.yaml"


def load(path: Path | None = None) -> ConfigFile:
    """Read the configuration file (defaults when it does not exist).

    Raises:
        ConfigError: unreadable, larger than :data:`CONFIG_LIMIT`, not YAML, unknown keys or
            wrong types (names the key).
    """
    named = path is not None or bool(os.environ.get("MANYFEST_CONFIG"))
    path = path or config_path()
    try:
        with path.open("rb") as fh:
            data = fh.read(CONFIG_LIMIT + 1)
    except FileNotFoundError:
        if named:  # a file the user named must exist; the default one may not
            raise ConfigError(
                f"configuration file {path} does not exist",
                hint="create it, or unset MANYFEST_CONFIG to use the default location",
            ) from None
        return ConfigFile()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > CONFIG_LIMIT:
        raise ConfigError(f"{path}: larger than {CONFIG_LIMIT // 1024 // 1024} MiB: not a "
                          "configuration file")
    try:
        config = msgspec.yaml.decode(data or b"{}", type=ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    for name, value in (("concurrency", config.concurrency),
                        ("lists_in_flight", config.lists_in_flight),
                        *((f"registries.{k}.concurrency", v.concurrency)
                          for k, v in config.registries.items())):
        if value is not None and value < 1:
            raise ConfigError(f"{path}: {name} must be at least 1, got {value}")
    for name, seconds in (("connect_timeout", config.connect_timeout),
                          ("read_timeout", config.read_timeout),
                          ("retry_deadline", config.retry_deadline),
                          ("error_retry_deadline", config.error_retry_deadline),
                          ("retry_max_wait", config.retry_max_wait)):
        if seconds is not None and not (0 < seconds < math.inf):  # NaN fails too
            raise ConfigError(f"{path}: {name} must be more than 0 seconds, got {seconds}")
    return config


def settings(
    config: ConfigFile,
    *,
    insecure: bool = False,
    concurrency: int | None = None,
    retry_deadline: float | None = None,
) -> Settings:
    """Transport settings from the file, with command-line values on top.

    Args:
        config: the loaded file.
        insecure: ``--insecure`` (every registry of the run).
        concurrency: ``--concurrency`` (every registry, over the file's values).
        retry_deadline: ``--retry-deadline`` seconds (over the file's value).
    """
    base = Settings()
    env_has = os.environ.get
    return Settings(
        insecure=insecure,
        insecure_registries=frozenset(k for k, v in config.registries.items() if v.insecure),
        loopback_insecure=base.loopback_insecure
        if env_has("MANYFEST_LOOPBACK_INSECURE") or config.loopback_insecure is None
        else config.loopback_insecure,
        certs_dir=base.certs_dir
        if env_has("MANYFEST_CERTS_DIR") or config.certs_dir is None
        else Path(config.certs_dir),
        concurrency=concurrency or config.concurrency or base.concurrency,
        registry_concurrency={}
        if concurrency
        else {k: v.concurrency for k, v in config.registries.items() if v.concurrency},
        connect_timeout=config.connect_timeout or base.connect_timeout,
        read_timeout=config.read_timeout or base.read_timeout,
        retry_deadline=retry_deadline or config.retry_deadline or base.retry_deadline,
        error_retry_deadline=config.error_retry_deadline or base.error_retry_deadline,
        retry_max_wait=config.retry_max_wait or base.retry_max_wait,
    )
