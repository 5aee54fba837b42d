"""A small token server for tests: distribution's token auth, RS256 JWTs signed with x5c.

It runs an ``aiohttp.web`` app on a free 127.0.0.1 port in a background thread with its own
event loop, checks Basic credentials (or an OAuth2 refresh token posted as a form), grants
every action a scope asks for (``repository:<name>:<actions>``) to known users, and records
each request it answers so tests can count tokens and read the scopes asked for.

The registry is configured with :meth:`TokenIssuer.registry_config` (``auth: token``:
realm, service, issuer, rootcertbundle = the PEM of the self-signed signing certificate).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "manyfest-test-registry"
ISSUER = "manyfest-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scope(text: str) -> tuple[str, str, list[str]] | None:
    """``repository:<name>:<a,b>`` → (type, name, actions); None when not of that shape."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request answered by the issuer."""

    method: str
    scheme: str
    service: str
    scopes: tuple[str, ...]
    user: str
    status: int
    at: float
    offline: bool = False
    """``offline_token=true`` was asked (a refresh token wanted, as ``docker login`` asks)."""
    client_id: str = ""


@dataclass
class TokenIssuer:
    """Distribution token server on loopback; use as a context manager.

    Attributes:
        workdir: where the signing certificate PEM is written.
        users: accepted Basic credentials (user → password).
        refresh_tokens: accepted OAuth2 refresh tokens (token → user).
        expires_in: lifetime given to tokens, in seconds (``exp`` and ``expires_in``).
        stale_first: the first token issued for each scope set is already expired for the
            registry (``exp`` two minutes ago, beyond its 60 s leeway) although its
            ``expires_in`` promises 300 s: a token that goes bad while the client caches it.
        anonymous_pull: grant ``pull`` to requests without credentials (else 401).
        read_only: users granted ``pull`` only, whatever they ask for.
        one_scope: grant one scope per token, as some token servers do: a request asking for
            several scopes gets access for the first one it names only (so a cross-repository
            mount, which needs the target's ``pull,push`` and the source's ``pull`` in one
            token, is refused by the registry).
        echo_refused: a refusal's message repeats what was presented (the Authorization
            header, the refresh token), as some token servers do, to check it is not shown.
        issue_refresh_tokens: answer a Basic-authenticated request asking
            ``offline_token=true`` with a ``refresh_token`` too (then accepted for that user).
        issued: every token issued so far (to look for them in outputs).
    """

    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    expires_in: int = 300
    stale_first: bool = False
    anonymous_pull: bool = False
    read_only: set[str] = field(default_factory=set)
    one_scope: bool = False
    echo_refused: bool = False
    issue_refresh_tokens: bool = False
    issued: list[str] = field(default_factory=list)
    requests: list[TokenRequest] = field(default_factory=list)
    port: int = 0
    _stale_done: set[tuple[str, ...]] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "manyfest test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.workdir / "token-signer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    # ---------------------------------------------------------------- configuration

    @property
    def realm(self) -> str:
        """The realm URL (plain HTTP on loopback)."""
        return f"http://127.0.0.1:{self.port}/token"

    def registry_config(self) -> dict[str, str]:
        """The registry's ``auth.token`` settings for this issuer."""
        return {
            "realm": self.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.cert_path),
        }

    # ---------------------------------------------------------------- records

    def mark(self) -> int:
        """The number of requests answered so far (pass to :meth:`since`)."""
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[TokenRequest]:
        """Requests answered after ``mark``."""
        with self._lock:
            return list(self.requests[mark:])

    # ---------------------------------------------------------------- tokens

    def sign(self, subject: str, access: list[dict[str, object]], *, exp: int, iat: int) -> str:
        """A compact RS256 JWT with the signing certificate in ``x5c``."""
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": exp,
            "nbf": iat - 5,
            "iat": iat,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def _user(self, request: web.Request, form: dict[str, str]) -> str | None:
        """The authenticated user, '' for anonymous, None for bad credentials."""
        if form.get("grant_type") == "refresh_token":
            return self.refresh_tokens.get(form.get("refresh_token", ""))
        header = request.headers.get("Authorization", "")
        if not header:
            return ""
        kind, _, value = header.partition(" ")
        if kind.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return user if user in self.users and self.users[user] == password else None

    async def _handle(self, request: web.Request) -> web.Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            posted = await request.post()
            form = {k: str(v) for k, v in posted.items()}
            scopes = tuple(s for s in form.get("scope", "").split(" ") if s)
            service = form.get("service", "")
        else:
            scopes = tuple(request.query.getall("scope", []))
            service = request.query.get("service", "")
        offline = request.query.get("offline_token") == "true"
        client_id = form.get("client_id") or request.query.get("client_id", "")
        user = self._user(request, form)
        status = 200
        if user is None or (user == "" and not self.anonymous_pull):
            status = 401
        elif service != SERVICE:
            status = 400
        with self._lock:
            self.requests.append(
                TokenRequest(
                    request.method, request.scheme, service, scopes, user or "", status,
                    time.monotonic(), offline, client_id,
                )
            )
        if status != 200:
            message = "bad credentials"
            if self.echo_refused:
                presented = form.get("refresh_token") or request.headers.get("Authorization", "")
                message += f": {presented}"
            body = {"errors": [{"code": "UNAUTHORIZED", "message": message}]}
            return web.json_response(body, status=status)
        access: list[dict[str, object]] = []
        for text in scopes[:1] if self.one_scope else scopes:
            parsed = parse_scope(text)
            if parsed is None or parsed[0] != "repository":
                continue
            kind, name, actions = parsed
            full = user and user not in self.read_only
            granted = actions if full else [a for a in actions if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        expires_in = self.expires_in
        exp = now + expires_in
        with self._lock:
            if self.stale_first and scopes not in self._stale_done:
                self._stale_done.add(scopes)
                exp, expires_in = now - 120, 300
        token = self.sign(user or "anonymous", access, exp=exp, iat=now)
        with self._lock:
            self.issued.append(token)
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat()
        answer: dict[str, object] = {"expires_in": expires_in, "issued_at": issued}
        answer["access_token" if form else "token"] = token
        if offline and user and self.issue_refresh_tokens and not form:
            refresh = f"refresh-{uuid.uuid4().hex}"
            with self._lock:
                self.refresh_tokens[refresh] = user
            answer["refresh_token"] = refresh
        return web.json_response(answer)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> TokenIssuer:
        """Bind a free loopback port and serve in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="token-issuer", daemon=True)
        self._thread.start()

        async def serve() -> web.AppRunner:
            app = web.Application()
            app.router.add_route("GET", "/token", self._handle)
            app.router.add_route("POST", "/token", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, runner = self._loop, self._runner
        if loop is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> TokenIssuer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
