"""``login`` and ``logout``: check credentials with a registry, store and erase them.

As ``docker login`` (docker/cli ``cli/command/registry/login.go``): the credentials are first
checked with the registry (``GET /v2/``: a Basic challenge answered with them, a Bearer one
by a token asked of its realm with them, :meth:`~manyfest.transport.Transport.verify_login`);
refused, nothing is written. A refresh token the token server gives is stored as the
``identitytoken`` instead of the password (distribution's token spec, ``offline_token``).
They are written to ``$REGISTRY_AUTH_FILE`` when it is set, else docker's config.json
(:meth:`~manyfest.auth.sources.CredentialSources.login_target`), through the credential
helper the file names for the registry (:mod:`manyfest.auth.writer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import anyio

from manyfest import reference
from manyfest.auth import writer
from manyfest.auth.config import Credentials, hostname
from manyfest.auth.sources import CredentialSources
from manyfest.errors import AuthenticationError, AuthorizationError, UsageError
from manyfest.transport import Settings, Transport

_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def server_registry(server: str) -> str:
    """The registry named by login's ``SERVER`` (host[:port], or a URL as docker accepts:
    ``https://host/v1/``); Docker Hub (``docker.io``) when empty.

    Raises:
        UsageError: not a registry host[:port].
    """
    host = hostname(server.strip())
    if not host or host in _HUB_NAMES:
        return reference.DOCKER_HUB
    try:
        return reference.parse_registry(host)
    except UsageError:
        raise UsageError(
            f"{server!r} is not a registry",
            hint="name it as host[:port] (e.g. registry.example.com or localhost:5000)",
        ) from None


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What ``login`` did.

    Attributes:
        registry: the registry (``docker.io`` for Docker Hub).
        key: the key the credentials are stored under.
        stored_in: the credential helper's program, or the file written.
        identity_token: True when a refresh token was stored instead of the password.
    """

    registry: str
    key: str
    stored_in: str
    identity_token: bool


async def login(registry: str, username: str, password: str, *, settings: Settings | None = None,
                sources: CredentialSources | None = None) -> LoginResult:
    """Check ``username``/``password`` with ``registry``, then store them.

    Raises:
        AuthenticationError: the registry or its token server refused them (nothing is
            written).
        TransportError, RegistryError: the registry could not be asked.
        CredentialsError: they could not be stored (the file is left as it was).
    """
    sources = sources or CredentialSources()
    target = sources.login_target()
    async with Transport(settings, credentials=sources) as transport:
        try:
            token = await transport.verify_login(registry, Credentials(username, password))
        except (AuthenticationError, AuthorizationError) as exc:
            exc.hint = "check the user name and password; nothing was written"
            raise
    stored = Credentials(username, "" if token else password, identity_token=token)
    where = await anyio.to_thread.run_sync(partial(writer.store, target, registry, stored))
    return LoginResult(registry, target.key(registry), where, bool(token))


@dataclass(frozen=True, slots=True)
class LogoutResult:
    """What ``logout`` did.

    Attributes:
        registry: the registry (``docker.io`` for Docker Hub).
        key: the key its credentials were stored under.
        name: how docker names it in its output (the key's host; Docker Hub's key).
        removed: False when there was nothing to remove.
        path: the file edited.
    """

    registry: str
    key: str
    name: str
    removed: bool
    path: str


async def logout(registry: str, *, sources: CredentialSources | None = None) -> LogoutResult:
    """Remove the stored credentials of ``registry`` (from the file login writes, and from
    the credential helper it names).

    Raises:
        CredentialsError: the file cannot be read or written, or the helper failed.
    """
    sources = sources or CredentialSources()
    target = sources.login_target()
    key = target.key(registry)
    removed = await anyio.to_thread.run_sync(partial(writer.erase, target, registry))
    name = key if registry == reference.DOCKER_HUB else hostname(key)
    return LogoutResult(registry, key, name, removed, str(target.path))
