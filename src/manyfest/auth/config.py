"""Credentials documents in docker's config.json format, and what they give for a registry.

One :class:`AuthDocument` is one document of that format: docker's ``config.json``, the JSON
of ``$DOCKER_AUTH_CONFIG``, or a containers-auth.json(5) file (``$REGISTRY_AUTH_FILE``,
podman's ``auth.json``). :mod:`manyfest.auth.sources` puts them in order.

Docker's rules (docker/cli ``cli/config/config.go`` and ``configfile/file.go``), for
``config.json`` and ``$DOCKER_AUTH_CONFIG``:

* directory: ``$DOCKER_CONFIG``, else ``~/.docker``; file ``config.json``; a missing file
  means no credentials, a malformed one is an error.
* lookup for a registry key (``https://index.docker.io/v1/`` for Docker Hub, else
  ``host[:port]``): ``credHelpers[key]``, else ``credsStore`` when set (its "not found"
  means none, as docker's native store), else ``auths[key]`` (also matching keys written
  with a scheme or path, as docker's file store does). ``$DOCKER_AUTH_CONFIG`` gives its
  ``auths`` only (helpers named there are not run).

containers-auth.json(5) rules (podman, skopeo, buildah), for the other files:

* ``credHelpers[host]`` first; then ``auths`` keys of the form ``registry[/namespace[/repo]]``:
  the most specific key that matches the repository wins (``quay.io/ns/app``, then
  ``quay.io/ns``, then ``quay.io``); a key written with a scheme (``https://host/v1/``)
  counts as its host alone; Docker Hub is ``docker.io``.

Helper protocol (docker-credential-helpers): run ``docker-credential-<name> get`` with the
server URL on stdin; it prints ``{"ServerURL", "Username", "Secret"}``; the stdout
``credentials not found in native keychain`` means none; username ``<token>`` means the
secret is an identity (OAuth2 refresh) token.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from manyfest.errors import CredentialsError
from manyfest.reference import DOCKER_HUB, DOCKER_HUB_AUTH_KEY, registry_aliases

NOT_FOUND = "credentials not found in native keychain"
"""What a credential helper prints when it has nothing for the server URL."""
TOKEN_USERNAME = "<token>"
"""The helper protocol's user name for an identity token."""


def config_dir() -> Path:
    """``$DOCKER_CONFIG`` if set, else ``~/.docker`` (docker's ``config.Dir()``)."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def auth_keys(registry: str) -> list[str]:
    """The config.json keys to look under, in order (Docker Hub's key; host, then host:80)."""
    if registry == DOCKER_HUB:
        return [DOCKER_HUB_AUTH_KEY]
    return registry_aliases(registry)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What to authenticate with.

    Attributes:
        username: user name ('' when only a token is known).
        password: password or personal access token.
        identity_token: an OAuth2 refresh token (``identitytoken``), sent to the token server.
        registry_token: a bearer token to send as is (``registrytoken``).
    """

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @property
    def anonymous(self) -> bool:
        """True when there is nothing to authenticate with."""
        return not (self.username or self.password or self.identity_token or self.registry_token)


ANONYMOUS = Credentials()


class _AuthEntry(msgspec.Struct, omit_defaults=True):
    auth: str = ""
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""


class _ConfigFile(msgspec.Struct):
    auths: dict[str, _AuthEntry] = msgspec.field(default_factory=dict)
    credsStore: str = ""  # noqa: N815 - docker's key
    credHelpers: dict[str, str] = msgspec.field(default_factory=dict)  # noqa: N815


class _HelperAnswer(msgspec.Struct):
    Username: str = ""
    Secret: str = ""


def helper_error(text: str, status: int) -> str:
    """What a failed credential helper said (its first 200 characters, one line), unless it
    printed credentials: their secret is never shown."""
    if '"Secret"' in text:
        return f"it printed credentials but exited with status {status}"
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())[:200]
    return f"exit status {status}"


def hostname(key: str) -> str:
    """docker's ``ConvertToHostname``: strip a scheme and any path."""
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    return key.split("/", 1)[0]


def containers_key(key: str) -> str:
    """containers/image's ``normalizeAuthFileKey``: a key written with a scheme is its host
    alone (a docker-style key); ``index.docker.io`` is ``docker.io``; others are kept
    (``registry/namespace/repo``)."""
    stripped = key.removeprefix("http://").removeprefix("https://")
    if stripped != key:
        stripped = stripped.split("/", 1)[0]
    host, slash, rest = stripped.partition("/")
    if host == "index.docker.io":
        host = DOCKER_HUB
    return host + slash + rest


def lookup_chain(registry: str, repository: str) -> list[str]:
    """The auth.json keys for ``registry/repository``, most specific first
    (``quay.io/a/b``, ``quay.io/a``, ``quay.io``)."""
    parts = [p for p in repository.split("/") if p]
    chain = [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    return [*chain, registry]


class AuthDocument:
    """One credentials document of docker's config.json format.

    Args:
        data: the document's bytes (empty: no credentials).
        origin: what names it in messages: its path, or ``$DOCKER_AUTH_CONFIG``.
        namespaced: containers-auth.json(5) rules (keys with a namespace, ``credHelpers``
            only) instead of docker's.
        helpers: run the credential helpers it names (False for ``$DOCKER_AUTH_CONFIG``).
        fix_hint: the advice when it is malformed.

    Raises:
        CredentialsError: ``data`` is not valid JSON of docker's config shape.
    """

    def __init__(self, data: bytes, origin: str, *, namespaced: bool = False,
                 helpers: bool = True, fix_hint: str = "") -> None:
        self.origin = origin
        self.namespaced = namespaced
        self.helpers = helpers
        kind = "auth file (containers-auth.json(5))" if namespaced else "docker config file"
        if origin.startswith("$"):
            kind = "docker config document (JSON)"
        try:
            self._file = msgspec.json.decode(data.strip() or b"{}", type=_ConfigFile)
        except msgspec.DecodeError as exc:
            raise CredentialsError(
                f"{origin} is not a valid {kind}: {exc}",
                hint=fix_hint or f"fix or remove {origin}",
            ) from exc
        self._cache: dict[str, Credentials] = {}
        self._normalized: dict[str, tuple[str, _AuthEntry]] | None = None

    @classmethod
    def read(cls, path: Path, *, namespaced: bool = False) -> AuthDocument:
        """The document in ``path`` (a missing file: no credentials).

        Raises:
            CredentialsError: unreadable or malformed.
        """
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise CredentialsError(f"cannot read {path}: {exc.strerror}") from exc
        return cls(data, str(path), namespaced=namespaced)

    @property
    def empty(self) -> bool:
        """True when the document names no credentials and no helper."""
        f = self._file
        return not (f.auths or f.credHelpers or f.credsStore)

    async def lookup(self, registry: str, repository: str = "") -> Credentials:
        """The credentials this document gives for ``registry/repository`` (anonymous when
        none). ``repository`` matters only to namespaced keys (containers-auth.json(5)).

        Raises:
            CredentialsError: a helper named for it is missing or fails; a bad ``auth``.
        """
        if not self.namespaced:
            for key in auth_keys(registry):
                found = await self.credentials(key)
                if not found.anonymous:
                    return found
            return ANONYMOUS
        aliases = registry_aliases(registry)
        if self.helpers:
            for alias in aliases:
                helper = self._file.credHelpers.get(alias)
                if helper:
                    return await self._helper_cached(helper, alias)
        table = self._by_containers_key()
        for alias in aliases:
            for key in lookup_chain(alias, repository):
                if key in table:
                    name, entry = table[key]
                    return self._decode(entry, name)
        return ANONYMOUS

    def _by_containers_key(self) -> dict[str, tuple[str, _AuthEntry]]:
        if self._normalized is None:
            table: dict[str, tuple[str, _AuthEntry]] = {}
            for name, entry in self._file.auths.items():
                table.setdefault(containers_key(name), (name, entry))
            self._normalized = table
        return self._normalized

    async def credentials(self, key: str) -> Credentials:
        """The credentials for a registry key (``https://index.docker.io/v1/`` or host[:port]),
        by docker's rules.

        Raises:
            CredentialsError: the helper named for this key is missing or fails.
        """
        if key in self._cache:
            return self._cache[key]
        helpers = self._file.credHelpers if self.helpers else {}
        helper = helpers.get(key) or helpers.get(hostname(key))
        store = self._file.credsStore if self.helpers else ""
        if helper:
            creds = await self._from_helper(helper, key)
        elif store:
            # As docker's native store: the helper is the source; "not found" is anonymous
            # (auths entries are only placeholders then).
            creds = await self._from_helper(store, key)
        else:
            creds = self._from_auths(key)
        self._cache[key] = creds
        return creds

    async def _helper_cached(self, name: str, key: str) -> Credentials:
        if key not in self._cache:
            self._cache[key] = await self._from_helper(name, key)
        return self._cache[key]

    def _from_auths(self, key: str) -> Credentials:
        entry = self._file.auths.get(key)
        if entry is None:
            host = hostname(key)
            for name, candidate in self._file.auths.items():
                if hostname(name) == host:
                    entry = candidate
                    break
        if entry is None:
            return ANONYMOUS
        return self._decode(entry, key)

    def _decode(self, entry: _AuthEntry, key: str) -> Credentials:
        username, password = entry.username, entry.password
        if entry.auth:
            bad = CredentialsError(
                f"{self.origin}: auths[{key!r}].auth is not base64 of user:password",
                hint=f"log in again, or fix {self.origin}",
            )
            try:
                decoded = base64.b64decode(entry.auth, validate=False).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise bad from exc
            username, sep, password = decoded.partition(":")
            if not sep:
                raise bad
        return Credentials(username, password, entry.identitytoken, entry.registrytoken)

    async def _from_helper(self, name: str, key: str) -> Credentials:
        import anyio  # here: the local store reads config_dir() without loading anyio

        program = f"docker-credential-{name}"
        try:
            result = await anyio.run_process([program, "get"], input=key.encode(), check=False)
        except FileNotFoundError as exc:
            raise CredentialsError(
                f"credential helper {program} named in {self.origin} is not installed",
                hint=f"install {program} or remove it from {self.origin}",
            ) from exc
        out = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0:
            if NOT_FOUND in out:
                return ANONYMOUS
            err = helper_error(result.stderr.decode(errors="replace").strip() or out,
                               result.returncode)
            raise CredentialsError(f"credential helper {program} failed for {key}: {err}")
        try:
            answer = msgspec.json.decode(result.stdout, type=_HelperAnswer)
        except msgspec.DecodeError as exc:
            raise CredentialsError(f"credential helper {program} printed invalid JSON") from exc
        if answer.Username == TOKEN_USERNAME:
            return Credentials(identity_token=answer.Secret)
        return Credentials(answer.Username, answer.Secret)


class DockerConfig(AuthDocument):
    """docker's ``config.json`` of a config directory (default :func:`config_dir`).

    Raises:
        CredentialsError: config.json exists but is not valid JSON of docker's shape.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / "config.json"
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise CredentialsError(f"cannot read {self.path}: {exc.strerror}") from exc
        super().__init__(data, str(self.path))
