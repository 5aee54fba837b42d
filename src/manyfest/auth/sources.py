"""Where credentials are read from, in order, and the file ``manyfest login`` writes.

The order (the first source with credentials for the registry wins; README "Credentials"):

1. ``$DOCKER_AUTH_CONFIG``: a config.json document in the environment, as CI systems
   inject it (its ``auths`` only);
2. ``$REGISTRY_AUTH_FILE``: a containers-auth.json(5) file (config.json format);
3. docker's ``config.json`` (``$DOCKER_CONFIG``, else ``~/.docker``), with its
   ``credHelpers`` and ``credsStore``;
4. podman's ``auth.json``: ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/<uid>``
   when ``XDG_RUNTIME_DIR`` is unset), then ``$XDG_CONFIG_HOME/containers/auth.json``
   (``~/.config/containers/auth.json``).

Sources 2 and 4 follow containers-auth.json(5): a key may name a namespace or a repository
(``registry/namespace[/repo]``) and the most specific key matching the repository wins.
Each document is read the first time it is needed: a malformed source is one error naming
the file or the variable, and a source after the one that answered is never read.

``manyfest login``/``logout`` write ``$REGISTRY_AUTH_FILE`` when it is set (as podman does),
else docker's ``config.json`` (:meth:`CredentialSources.login_target`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from manyfest.auth.config import (
    ANONYMOUS,
    AuthDocument,
    Credentials,
    DockerConfig,
    auth_keys,
)
from manyfest.reference import DOCKER_HUB

ENV_CONFIG = "DOCKER_AUTH_CONFIG"
"""The environment variable holding a config.json document."""
ENV_AUTH_FILE = "REGISTRY_AUTH_FILE"
"""The environment variable naming a containers-auth.json(5) file."""


@dataclass(frozen=True, slots=True)
class Found:
    """The credentials a lookup found, and where (``origin``: a path or
    ``$DOCKER_AUTH_CONFIG``; '' when none was found)."""

    credentials: Credentials
    origin: str = ""


@dataclass(frozen=True, slots=True)
class LoginTarget:
    """The file ``login`` writes and ``logout`` edits.

    Attributes:
        path: the file (``$REGISTRY_AUTH_FILE`` or docker's config.json).
        namespaced: a containers-auth.json(5) file (Docker Hub's key is ``docker.io``) rather
            than docker's config.json (Docker Hub's key is ``https://index.docker.io/v1/``).
    """

    path: Path
    namespaced: bool

    def key(self, registry: str) -> str:
        """The ``auths`` key of ``registry`` (host[:port], ``docker.io`` for Docker Hub)."""
        if self.namespaced:
            return DOCKER_HUB if registry == DOCKER_HUB else registry
        return auth_keys(registry)[0]


def podman_auth_files(environ: Mapping[str, str]) -> list[Path]:
    """podman's auth.json locations, in its order (containers/image ``getAuthFilePaths``)."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    first = (Path(runtime) / "containers" if runtime else Path(f"/run/containers/{os.getuid()}"))
    config_home = environ.get("XDG_CONFIG_HOME")
    second = Path(config_home) if config_home else Path.home() / ".config"
    return [first / "auth.json", second / "containers" / "auth.json"]


class CredentialSources:
    """The credential sources of this environment, read lazily, in the documented order.

    Args:
        environ: the environment to read (default ``os.environ``, read when created).
        docker_dir: docker's config directory (default ``$DOCKER_CONFIG`` or ``~/.docker``).
    """

    def __init__(self, environ: Mapping[str, str] | None = None,
                 docker_dir: Path | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self._env_config = env.get(ENV_CONFIG, "")
        auth_file = env.get(ENV_AUTH_FILE, "")
        self.auth_file = Path(auth_file) if auth_file else None
        self.docker_dir = docker_dir or (Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG")
                                         else Path.home() / ".docker")
        loaders: list[Callable[[], AuthDocument]] = []
        if self._env_config:
            loaders.append(self._from_env)
        if self.auth_file is not None:
            loaders.append(partial(AuthDocument.read, self.auth_file, namespaced=True))
        loaders.append(partial(DockerConfig, self.docker_dir))
        for podman in podman_auth_files(env):
            loaders.append(partial(AuthDocument.read, podman, namespaced=True))
        self._loaders = loaders
        self._docs: list[AuthDocument | None] = [None] * len(loaders)

    @property
    def env_config_set(self) -> bool:
        """True when ``$DOCKER_AUTH_CONFIG`` is set (it then comes before every file)."""
        return bool(self._env_config)

    def _from_env(self) -> AuthDocument:
        return AuthDocument(
            self._env_config.encode(), f"${ENV_CONFIG}", helpers=False,
            fix_hint=f"fix or unset {ENV_CONFIG}",
        )

    def _document(self, index: int) -> AuthDocument:
        doc = self._docs[index]
        if doc is None:
            doc = self._docs[index] = self._loaders[index]()
        return doc

    async def lookup(self, registry: str, repository: str = "") -> Found:
        """The credentials for ``registry/repository`` from the first source that has some.

        Raises:
            CredentialsError: a source read on the way is malformed, or its helper fails.
        """
        for index in range(len(self._loaders)):
            doc = self._document(index)
            creds = await doc.lookup(registry, repository)
            if not creds.anonymous:
                return Found(creds, doc.origin)
        return Found(ANONYMOUS)

    def login_target(self) -> LoginTarget:
        """Where ``login`` writes: ``$REGISTRY_AUTH_FILE`` when set, else docker's
        config.json."""
        if self.auth_file is not None:
            return LoginTarget(self.auth_file, namespaced=True)
        return LoginTarget(self.docker_dir / "config.json", namespaced=False)
