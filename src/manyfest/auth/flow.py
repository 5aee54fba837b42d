"""What to send to a registry that challenges: per-registry auth state, headers, token requests.

The transport owns the HTTP; this module decides what goes in it (distribution's token auth
spec ``docs/spec/auth/token.md`` and ``oauth.md``):

* :class:`RegistryAuth` holds a registry's challenge (from its ``/v2/`` ping or a 401) and
  its credentials, looked up in :class:`~manyfest.auth.sources.CredentialSources` once per
  repository, the first time the registry asks for them (a request's repository is the one
  its scopes push to, else the first: :func:`repository_of`);
* :func:`basic_header`, :func:`token_request` and :func:`parse_token_answer` build and read
  the exchanges; :func:`login_hint` and :func:`insufficient_scope_hint` word the advice.

Credentials are looked up under the registry as written, then under its other spelling
(``host`` and ``host:80`` are one registry, see :func:`manyfest.reference.same_registry`).
``auth_keys`` is :func:`manyfest.auth.config.auth_keys`, kept here for its callers.
"""

from __future__ import annotations

import base64
import functools
import urllib.parse
from dataclasses import dataclass, field

import anyio
import msgspec

from manyfest.auth.challenge import Challenge
from manyfest.auth.config import ANONYMOUS, Credentials, auth_keys
from manyfest.auth.sources import CredentialSources, Found
from manyfest.auth.tokens import Scopes, scope
from manyfest.reference import DOCKER_HUB


@dataclass(slots=True)
class RegistryAuth:
    """A registry's auth state for one run.

    Attributes:
        registry: host[:port] as written in references.
        challenge: the last ``WWW-Authenticate`` challenge seen (``None``: no auth asked).
        credentials: the credentials last looked up (``None`` before any lookup), for
            advice; each repository's are looked up once (:meth:`lookup`).
        origin: where ``credentials`` came from (a path or ``$DOCKER_AUTH_CONFIG``).
        fixed: ``credentials`` were given (``login``): used for every repository, never
            looked up.
        offline: ask the token server for a refresh token too (``login``).
        refresh_token: the refresh token it gave ('' when none).
    """

    registry: str
    challenge: Challenge | None = None
    credentials: Credentials | None = None
    origin: str = ""
    fixed: bool = False
    offline: bool = False
    refresh_token: str = ""
    found: dict[str, Found] = field(default_factory=dict)
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    def creds(self) -> Credentials:
        """The credentials looked up so far (anonymous before any lookup)."""
        return self.credentials or ANONYMOUS

    def use(self, credentials: Credentials) -> None:
        """Authenticate with ``credentials`` for every repository (no lookup)."""
        self.credentials = credentials
        self.fixed = True

    def known(self) -> list[Credentials]:
        """Every set of credentials of this registry so far (their secrets are never shown)."""
        found = [f.credentials for f in self.found.values()]
        every = [self.credentials, *found] if self.credentials is not None else found
        return list(dict.fromkeys(every))

    async def lookup(self, sources: CredentialSources, repository: str = "") -> Credentials:
        """The credentials for ``repository`` from ``sources``, looked up once per repository
        (one helper run per registry key: the documents cache their answers).

        Raises:
            CredentialsError: a source or its credential helper failed.
        """
        if self.fixed and self.credentials is not None:
            return self.credentials
        hit = self.found.get(repository)
        if hit is None:
            async with self.lock:
                hit = self.found.get(repository)
                if hit is None:
                    hit = await sources.lookup(self.registry, repository)
                    self.found[repository] = hit
        self.credentials, self.origin = hit.credentials, hit.origin
        return hit.credentials


@functools.lru_cache(maxsize=4096)
def repository_of(scopes: Scopes) -> str:
    """The repository whose credentials a request covering ``scopes`` uses: the one pushed
    to (a mount's target), else the first named ('' when none)."""
    names: list[tuple[bool, str]] = []
    for text in scopes:
        kind, _, rest = text.partition(":")
        name, sep, actions = rest.rpartition(":")
        if kind == "repository" and sep and name:
            names.append(("push" not in actions.split(","), name))
    return min(names)[1] if names else ""


def basic_header(creds: Credentials) -> str:
    """``Basic base64(user:password)``."""
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


_MIN_SECRET = 8
"""Shorter values are not cut out of messages: common as parts of words and names (a
password ``wrong`` in a repository ``wrong-password``), they would garble them."""


def secrets_of(creds: Credentials) -> list[str]:
    """The values of ``creds`` never to show (password, tokens, the Basic header's base64),
    longest first."""
    values = [creds.password, creds.identity_token, creds.registry_token]
    if creds.username or creds.password:
        values.append(basic_header(creds).partition(" ")[2])
    return sorted({v for v in values if len(v) >= _MIN_SECRET}, key=len, reverse=True)


def scrub(text: str, creds: Credentials) -> str:
    """``text`` with every secret of ``creds`` replaced by ``[redacted]`` (an answer that
    echoes what it was sent, e.g. a token server's "invalid refresh token <token>")."""
    for secret in secrets_of(creds):
        text = text.replace(secret, "[redacted]")
    return text


CLIENT_ID = "manyfest"
"""The ``client_id`` sent to token servers (token spec: any meaningful value)."""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token request to make: method, URL, headers, body (OAuth2 POST or token GET)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


def token_request(realm: str, chal: Challenge, creds: Credentials, scopes: Scopes, *,
                  offline: bool = False) -> TokenRequest:
    """The request for a token covering ``scopes`` at ``realm``.

    With an identity token: OAuth2 ``POST grant_type=refresh_token``; otherwise ``GET
    realm?service=..&scope=..`` with Basic credentials when there are any (anonymous
    otherwise). ``offline`` (``login``) also asks for a refresh token, as the token spec
    says: ``offline_token=true``, ``client_id`` and ``account`` (the user name).
    """
    if creds.identity_token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": creds.identity_token,
            "service": chal.service,
            "client_id": CLIENT_ID,
            "scope": " ".join(sorted(scopes)),
        }
        return TokenRequest(
            "POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode(form).encode(),
        )
    query = [("service", chal.service)] if chal.service else []
    query += [("scope", s) for s in sorted(scopes)]
    if offline and (creds.username or creds.password):
        query += [("offline_token", "true"), ("client_id", CLIENT_ID)]
        if creds.username:
            query.append(("account", creds.username))
    headers: dict[str, str] = {}
    if creds.username or creds.password:
        headers["Authorization"] = basic_header(creds)
    sep = "&" if "?" in realm else "?"
    return TokenRequest("GET", realm + (sep + urllib.parse.urlencode(query) if query else ""),
                        headers)


class _TokenAnswer(msgspec.Struct):
    token: str = ""
    access_token: str = ""
    expires_in: int = 0
    refresh_token: str = ""


def refresh_token_of(body: bytes) -> str:
    """The ``refresh_token`` of a token server's answer ('' when none): what ``docker
    login`` stores as ``identitytoken``."""
    try:
        return msgspec.json.decode(body, type=_TokenAnswer).refresh_token
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def parse_token_answer(body: bytes) -> tuple[str, float] | None:
    """(token, expires_in seconds; 60 when absent) from a token server's JSON; None if none."""
    try:
        answer = msgspec.json.decode(body, type=_TokenAnswer)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    token = answer.token or answer.access_token
    if not token:
        return None
    return token, float(answer.expires_in or 60)


def login_command(registry: str) -> str:
    """The command that stores credentials for ``registry``."""
    return "`manyfest login`" if registry == DOCKER_HUB else f"`manyfest login {registry}`"


def login_hint(auth: RegistryAuth, config_path: str) -> str:
    """What to do about a 401: log in to this registry, or fix its credentials where they
    came from (``config_path``: the file ``login`` writes)."""
    key = auth_keys(auth.registry)[0]
    login = login_command(auth.registry)
    if auth.creds().anonymous:
        return f"no credentials for {key} in {config_path}: log in with {login}"
    if auth.origin.startswith("$"):
        name = auth.origin[1:]
        return (f"the credentials for {key} in {auth.origin} were refused: fix them there, or "
                f"unset {name} and log in with {login}")
    where = f" in {auth.origin}" if auth.origin else ""
    return f"the credentials for {key}{where} were refused: log in again with {login}"


def normal_scope(text: str) -> str:
    """``repository:<name>:<actions>`` with actions in :func:`scope` order; others as is."""
    kind, _, rest = text.partition(":")
    name, sep, actions = rest.rpartition(":")
    if kind != "repository" or not sep or not name:
        return text
    return scope(name, [a for a in actions.split(",") if a])


def insufficient_scope_hint(auth: RegistryAuth, asked_scopes: str) -> str:
    """Advice for a login that worked but was not granted what was asked (``asked_scopes``
    is the challenge's space-separated ``scope`` parameter)."""
    creds = auth.creds()
    who = f"user {creds.username!r}" if creds.username else "your account"
    # Registries list scopes and actions in any order: sort them for a stable line.
    asked = ", ".join(sorted(normal_scope(s) for s in asked_scopes.split()))
    return (
        f"{who} was not granted all of the access asked for"
        + (f" ({asked})" if asked else "")
        + f": ask for it, or log in as another user with {login_command(auth.registry)}"
    )
