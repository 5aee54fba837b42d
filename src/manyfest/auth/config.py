"""docker's config.json: where it is and which credentials it gives for a registry.

Follows docker/cli ``cli/config/config.go`` and ``configfile/file.go``:

* directory: ``$DOCKER_CONFIG``, else ``~/.docker``; file ``config.json``; a missing file
  means no credentials, a malformed one is an error.
* lookup for a registry key (``https://index.docker.io/v1/`` for Docker Hub, else
  ``host[:port]``): ``credHelpers[key]``, else ``credsStore`` when set (its "not found"
  means anonymous, as docker's native store), else ``auths[key]`` (also matching keys
  written with a scheme or path, as docker's file store does).
* helper protocol (docker-credential-helpers): run ``docker-credential-<name> get`` with the
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

_NOT_FOUND = "credentials not found in native keychain"


def config_dir() -> Path:
    """``$DOCKER_CONFIG`` if set, else ``~/.docker`` (docker's ``config.Dir()``)."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


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


def _helper_error(text: str, status: int) -> str:
    """What a failed credential helper said (its first 200 characters, one line), unless it
    printed credentials: their secret is never shown."""
    if '"Secret"' in text:
        return f"it printed credentials but exited with status {status}"
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())[:200]
    return f"exit status {status}"


def _hostname(key: str) -> str:
    """docker's ``ConvertToHostname``: strip a scheme and any path."""
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    return key.split("/", 1)[0]


class DockerConfig:
    """A loaded ``config.json``; :meth:`credentials` resolves a registry's credentials.

    Args:
        directory: the docker config directory (default :func:`config_dir`).

    Raises:
        CredentialsError: config.json exists but is not valid JSON of docker's shape.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        path = self.directory / "config.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b"{}"
        except OSError as exc:
            raise CredentialsError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            self._file = msgspec.json.decode(data or b"{}", type=_ConfigFile)
        except msgspec.DecodeError as exc:
            raise CredentialsError(
                f"{path} is not a valid docker config file: {exc}",
                hint=f"fix or remove {path}",
            ) from exc
        self.path = path
        self._cache: dict[str, Credentials] = {}

    async def credentials(self, key: str) -> Credentials:
        """The credentials for a registry key (``https://index.docker.io/v1/`` or host[:port]).

        Raises:
            CredentialsError: the helper named for this key is missing or fails.
        """
        if key in self._cache:
            return self._cache[key]
        helper = self._file.credHelpers.get(key) or self._file.credHelpers.get(_hostname(key))
        if helper:
            creds = await self._from_helper(helper, key)
        elif self._file.credsStore:
            # As docker's native store: the helper is the source; "not found" is anonymous
            # (auths entries are only placeholders then).
            creds = await self._from_helper(self._file.credsStore, key)
        else:
            creds = self._from_auths(key)
        self._cache[key] = creds
        return creds

    def _from_auths(self, key: str) -> Credentials:
        entry = self._file.auths.get(key)
        if entry is None:
            host = _hostname(key)
            for name, candidate in self._file.auths.items():
                if _hostname(name) == host:
                    entry = candidate
                    break
        if entry is None:
            return ANONYMOUS
        username, password = entry.username, entry.password
        if entry.auth:
            try:
                decoded = base64.b64decode(entry.auth, validate=False).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CredentialsError(
                    f"{self.path}: auths[{key!r}].auth is not base64 of user:password"
                ) from exc
            username, sep, password = decoded.partition(":")
            if not sep:
                raise CredentialsError(
                    f"{self.path}: auths[{key!r}].auth is not base64 of user:password"
                )
        return Credentials(username, password, entry.identitytoken, entry.registrytoken)

    async def _from_helper(self, name: str, key: str) -> Credentials:
        import anyio  # here: the local store reads config_dir() without loading anyio

        program = f"docker-credential-{name}"
        try:
            result = await anyio.run_process([program, "get"], input=key.encode(), check=False)
        except FileNotFoundError as exc:
            raise CredentialsError(
                f"credential helper {program} named in {self.path} is not installed",
                hint=f"install {program} or remove it from {self.path}",
            ) from exc
        out = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0:
            if _NOT_FOUND in out:
                return ANONYMOUS
            err = _helper_error(result.stderr.decode(errors="replace").strip() or out,
                                result.returncode)
            raise CredentialsError(f"credential helper {program} failed for {key}: {err}")
        try:
            answer = msgspec.json.decode(result.stdout, type=_HelperAnswer)
        except msgspec.DecodeError as exc:
            raise CredentialsError(f"credential helper {program} printed invalid JSON") from exc
        if answer.Username == "<token>":
            return Credentials(identity_token=answer.Secret)
        return Credentials(answer.Username, answer.Secret)
