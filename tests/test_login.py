"""``manyfest login`` / ``logout`` against real registries (htpasswd and token auth).

* the credentials are checked with the registry first: a wrong password is one line, exit
  1, and every file byte-identical;
* they are written to docker's config.json (``auths[key].auth``, the file's other keys and
  values kept, mode 0600, atomically, under a lock), or through the credential helper it
  names (``store``/``erase``, a fake helper on PATH recording its calls), or to
  ``$REGISTRY_AUTH_FILE`` when it is set; a token server's refresh token is stored as the
  ``identitytoken``;
* push and publish then use what login wrote (end to end).
"""

from __future__ import annotations

import base64
import json
import os
import select
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from manyfest.auth.tokens import scope
from tests import test_auth
from tests.helpers import docker_cli, manyfest, requires_docker
from tests.registry_server import RegistryServer
from tests.test_auth import (
    PASSWORD,
    USER,
    create_and_push,
    inspect_digests,
    one_line,
    seed_sources,
)
from tests.token_issuer import TokenIssuer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

# The registries of test_auth (htpasswd; token auth and its issuer), one per module.
basic_registry = test_auth.basic_registry
issuer = test_auth.issuer
token_registry = test_auth.token_registry

HUB_KEY = "https://index.docker.io/v1/"


def run(*args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m manyfest ARGS`` with ``stdin`` as its standard input (empty when None)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "manyfest", *args], input=stdin or "", capture_output=True,
        text=True, env=full_env, timeout=120, check=False,
    )


def login(host: str, user: str = USER, password: str = PASSWORD,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``manyfest login -u USER --password-stdin HOST`` with the password and a newline."""
    return run("login", "-u", user, "--password-stdin", host, stdin=password + "\n", env=env)


def config_path() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative name → bytes)."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


OTHER_KEYS: dict[str, Any] = {
    "auths": {"other.example:5000": {"auth": b64("x:y"), "email": "x@example.com"}},
    "HttpHeaders": {"X-Meta": "kept"},
    "proxies": {"default": {"httpProxy": "http://proxy.example:3128"}},
    "psFormat": "table {{.ID}}",
    "someFutureKey": [1, 2.5, {"nested": None, "flag": True}, "ünïcode"],
}


# ---------------------------------------------------------------- htpasswd (Basic)


def test_login_then_push(basic_registry: RegistryServer, ns: str) -> None:
    host = basic_registry.host
    proc = login(host)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Login Succeeded\n"
    assert proc.stderr == ""
    path = config_path()
    assert json.loads(path.read_text()) == {"auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Nothing but the file (and its lock) is left beside it: no temporary file.
    assert sorted(p.name for p in path.parent.iterdir()) == [".config.json.lock", "config.json"]
    # End to end: create + push + inspect with what login wrote.
    sources = seed_sources(host, ns)
    digest = create_and_push(f"{host}/{ns}/app:1", sources)
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())


def test_login_keeps_every_other_key(basic_registry: RegistryServer) -> None:
    host = basic_registry.host
    path = config_path()
    path.write_text(json.dumps(OTHER_KEYS, indent=1))
    path.chmod(0o644)
    proc = login(host)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(json.dumps(OTHER_KEYS))
    expected["auths"][host] = {"auth": b64(f"{USER}:{PASSWORD}")}
    written = json.loads(path.read_text())
    assert written == expected
    assert list(written) == list(expected)  # key order kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A second login (another user) replaces the entry only.
    again = login(host, "user", PASSWORD)
    assert again.returncode == 0, again.stderr
    assert json.loads(path.read_text()) == expected


def test_login_creates_the_directory(basic_registry: RegistryServer, tmp_path: Path) -> None:
    directory = tmp_path / "new" / "docker"
    proc = login(basic_registry.host, env={"DOCKER_CONFIG": str(directory)})
    assert proc.returncode == 0, proc.stderr
    written = json.loads((directory / "config.json").read_text())
    assert written == {"auths": {basic_registry.host: {"auth": b64(f"{USER}:{PASSWORD}")}}}


def test_login_follows_a_symlink(basic_registry: RegistryServer, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker-config.json"
    real.parent.mkdir()
    real.write_text('{"auths": {}}')
    config_path().symlink_to(real)
    proc = login(basic_registry.host)
    assert proc.returncode == 0, proc.stderr
    assert config_path().is_symlink()
    assert basic_registry.host in json.loads(real.read_text())["auths"]


def test_wrong_password_writes_nothing(basic_registry: RegistryServer) -> None:
    host = basic_registry.host
    path = config_path()
    path.write_text(json.dumps(OTHER_KEYS))
    before = snapshot(path.parent)
    proc = login(host, password="wrong-password")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert one_line(proc.stderr) == (
        f"log in to {host}: registry answered 401 (UNAUTHORIZED: authentication required); "
        "check the user name and password; nothing was written"
    )
    assert snapshot(path.parent) == before
    unknown = login(host, user="nobody")
    assert unknown.returncode == 1
    assert snapshot(path.parent) == before


def test_password_flag_warns(basic_registry: RegistryServer) -> None:
    proc = run("login", "-u", USER, "-p", PASSWORD, basic_registry.host)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Login Succeeded\n"
    assert proc.stderr == (
        "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n"
    )


def test_password_stdin_keeps_everything_but_the_last_newline(
    basic_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A password with spaces and a trailing newline pair: only one "\n" (and "\r") goes.
    proc = login(basic_registry.host, password=" pass\r")
    assert proc.returncode == 1  # " pass" is not the password: it was not stripped
    assert "check the user name and password" in one_line(proc.stderr)
    assert not config_path().exists()


@pytest.mark.parametrize(
    ("args", "stdin", "line"),
    [
        (["--password-stdin"], "pw\n", "--password-stdin needs --username; give the user name "
         "with -u/--username"),
        (["-u", "u", "-p", "pw", "--password-stdin"], "pw\n",
         "--password and --password-stdin are mutually exclusive; check the command line "
         "(see --help)"),
        (["-u", "u"], "", "cannot perform an interactive login from a non-TTY device; give "
         "-u/--username and the password with --password-stdin"),
        ([], "", "cannot perform an interactive login from a non-TTY device; give "
         "-u/--username and the password with --password-stdin"),
    ],
    ids=["stdin-without-user", "both-passwords", "no-tty-no-password", "no-tty-nothing"],
)
def test_login_usage_errors(
    basic_registry: RegistryServer, args: list[str], stdin: str, line: str
) -> None:
    proc = run("login", *args, basic_registry.host, stdin=stdin)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == line
    assert not config_path().exists()


def test_login_bad_server_is_a_usage_error() -> None:
    proc = login("not a registry!")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        "'not a registry!' is not a registry; name it as host[:port] (e.g. "
        "registry.example.com or localhost:5000)"
    )


def _read_until(fd: int, needle: bytes, seen: bytearray) -> None:
    """Read the terminal until ``needle`` has appeared (a safety limit of 120 s per read,
    never reached unless the process hangs)."""
    while needle not in seen:
        ready, _, _ = select.select([fd], [], [], 120)
        assert ready, f"no {needle!r} on the terminal; got {bytes(seen)!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            chunk = b""
        assert chunk, f"terminal closed before {needle!r}; got {bytes(seen)!r}"
        seen += chunk


def test_login_prompts_on_a_terminal(basic_registry: RegistryServer) -> None:
    host = basic_registry.host
    master, slave = os.openpty()
    # setsid --ctty: the terminal becomes the controlling one (getpass reads /dev/tty).
    proc = subprocess.Popen(
        ["setsid", "--ctty", sys.executable, "-m", "manyfest", "login", host],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "200"},
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"Username: ", seen)
        os.write(master, f"{USER}\n".encode())
        _read_until(master, b"Password: ", seen)
        os.write(master, f"{PASSWORD}\n".encode())
        _read_until(master, b"Login Succeeded", seen)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    # The password is never echoed.
    assert PASSWORD.encode() not in seen.replace(b"Password: ", b"")
    assert json.loads(config_path().read_text()) == {
        "auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}
    }


# ---------------------------------------------------------------- token auth


def test_login_token_registry_then_publish(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str, tmp_path: Path
) -> None:
    host = token_registry.host
    mark = issuer.mark()
    proc = login(host)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Login Succeeded\n"
    # One token request with the credentials, asking no scope and a refresh token (this
    # issuer gives none: the password is stored).
    [request] = issuer.since(mark)
    assert (request.method, request.status, request.user, request.scopes) == (
        "GET", 200, USER, ())
    assert (request.offline, request.client_id) == (True, "manyfest")
    assert json.loads(config_path().read_text()) == {
        "auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}
    }
    sources = seed_sources(host, ns)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n"
                    + "".join(f"  - image: {ref}\n" for ref in sources))
    published = manyfest("publish", "--json", str(plan))
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["results"][0]["status"] == "created"
    assert inspect_digests(f"{host}/{ns}/app:1") == set(sources.values())


def test_login_stores_the_identity_token(
    token_registry: RegistryServer, issuer: TokenIssuer, ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    monkeypatch.setattr(issuer, "issue_refresh_tokens", True)
    mark = issuer.mark()
    proc = login(host)
    assert proc.returncode == 0, proc.stderr
    [request] = issuer.since(mark)
    assert request.offline
    entry = json.loads(config_path().read_text())["auths"][host]
    # As docker stores it: the user without the password, and the refresh token.
    assert entry["auth"] == b64(f"{USER}:")
    assert entry["identitytoken"].startswith("refresh-")
    assert issuer.refresh_tokens[entry["identitytoken"]] == USER
    # Pushing with it: OAuth2 refresh-token grants (POST), no password sent.
    sources = seed_sources(host, ns)
    mark = issuer.mark()
    digest = create_and_push(f"{host}/{ns}/app:1", sources)
    used = issuer.since(mark)
    assert used
    assert {(r.method, r.status, r.user) for r in used} == {("POST", 200, USER)}
    assert frozenset({scope(f"{ns}/app", ["pull", "push"])}) in {frozenset(r.scopes)
                                                                  for r in used}
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())


def test_token_server_refuses_writes_nothing(
    token_registry: RegistryServer, issuer: TokenIssuer
) -> None:
    host = token_registry.host
    path = config_path()
    path.write_text(json.dumps(OTHER_KEYS))
    before = snapshot(path.parent)
    proc = login(host, password="wrong-password")
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"get a token from 127.0.0.1:{issuer.port} for {host}: token server answered 401 "
        "(UNAUTHORIZED: bad credentials); check the user name and password; nothing was "
        "written"
    )
    assert snapshot(path.parent) == before


# ---------------------------------------------------------------- credential helpers


def install_store_helper(bin_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``docker-credential-<name>`` that keeps one secret per server URL in ``bin_dir``
    (``store``/``get``/``erase``) and logs ``<action> <stdin>`` per call; returns the log."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / f"{name}.log"
    vault = bin_dir / f"{name}.vault"
    vault.mkdir()
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        "input=$(cat)\n"
        f'echo "$1 $input" >> "{log}"\n'
        "case \"$1\" in\n"
        "  store)\n"
        "    server=$(printf '%s' \"$input\" | sed 's/.*\"ServerURL\": *\"\\([^\"]*\\)\".*/\\1/')\n"
        f'    printf \'%s\' "$input" > "{vault}/$(printf %s "$server" | tr / _)" ;;\n'
        "  get|erase)\n"
        f'    file="{vault}/$(printf %s "$input" | tr / _)"\n'
        '    if [ ! -f "$file" ]; then echo "credentials not found in native keychain"; '
        "exit 1; fi\n"
        '    if [ "$1" = get ]; then cat "$file"; else rm "$file"; fi ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.mark.parametrize("how", ["credHelpers", "credsStore"])
def test_login_through_a_helper(
    basic_registry: RegistryServer, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    host = basic_registry.host
    log = install_store_helper(tmp_path / "bin", "vault", monkeypatch)
    doc: dict[str, Any] = (
        {"credHelpers": {host: "vault"}, "credsStore": "absent"} if how == "credHelpers"
        else {"credsStore": "vault"}
    )
    path = config_path()
    path.write_text(json.dumps({**doc, "psFormat": "kept"}))
    proc = login(host)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Login Succeeded\n"
    stored = json.dumps({"ServerURL": host, "Username": USER, "Secret": PASSWORD})
    assert log.read_text().splitlines() == [f"store {stored}"]
    # The file keeps an empty entry (docker's native store does the same); no secret in it.
    assert json.loads(path.read_text()) == {**doc, "psFormat": "kept", "auths": {host: {}}}
    # End to end: push with the helper's answer.
    sources = seed_sources(host, ns)
    digest = create_and_push(f"{host}/{ns}/app:1", sources)
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())
    # logout erases through the helper, then says there is nothing more.
    out = run("logout", host)
    assert (out.returncode, out.stdout, out.stderr) == (
        0, f"Removing login credentials for {host}\n", "")
    assert log.read_text().splitlines()[-1] == f"erase {host}"
    assert json.loads(path.read_text()) == {**doc, "psFormat": "kept", "auths": {}}
    before = path.read_bytes()
    again = run("logout", host)
    assert (again.returncode, again.stdout) == (0, f"Not logged in to {host}\n")
    assert path.read_bytes() == before


def test_helper_that_fails_to_store_writes_nothing(
    basic_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = basic_registry.host
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-broken"
    script.write_text("#!/bin/sh\ncat > /dev/null\necho 'keychain is locked' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = config_path()
    path.write_text(json.dumps({"credsStore": "broken"}))
    before = path.read_bytes()
    proc = login(host)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"credential helper docker-credential-broken could not store the credentials for "
        f"{host}: keychain is locked; nothing was written; check the helper"
    )
    assert path.read_bytes() == before


# ---------------------------------------------------------------- logout


def test_logout_removes_the_entry_only(basic_registry: RegistryServer) -> None:
    host = basic_registry.host
    path = config_path()
    path.write_text(json.dumps(OTHER_KEYS))
    assert login(host).returncode == 0
    proc = run("logout", host)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0, f"Removing login credentials for {host}\n", "")
    assert json.loads(path.read_text()) == OTHER_KEYS
    before = path.read_bytes()
    again = run("logout", host)
    assert (again.returncode, again.stdout, again.stderr) == (
        0, f"Not logged in to {host}\n", "")
    assert path.read_bytes() == before


def test_logout_docker_hub_and_url_forms() -> None:
    path = config_path()
    none = run("logout")
    assert (none.returncode, none.stdout) == (0, f"Not logged in to {HUB_KEY}\n")
    assert not path.exists()  # nothing to remove: no file created
    path.write_text(json.dumps({"auths": {HUB_KEY: {"auth": b64("a:b")},
                                          "https://reg.example:5000": {"auth": b64("c:d")}}}))
    hub = run("logout", "docker.io")
    assert (hub.returncode, hub.stdout) == (0, f"Removing login credentials for {HUB_KEY}\n")
    # docker's logout also removes entries written with a scheme.
    other = run("logout", "https://reg.example:5000/v2/")
    assert (other.returncode, other.stdout) == (
        0, "Removing login credentials for reg.example:5000\n")
    assert json.loads(path.read_text()) == {"auths": {}}


# ---------------------------------------------------------------- REGISTRY_AUTH_FILE


def test_login_writes_registry_auth_file(
    basic_registry: RegistryServer, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = basic_registry.host
    auth_file = tmp_path / "containers" / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    proc = login(host)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(auth_file.read_text()) == {
        "auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}
    }
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert not config_path().exists()
    sources = seed_sources(host, ns)
    digest = create_and_push(f"{host}/{ns}/app:1", sources)
    assert inspect_digests(f"{host}/{ns}/app@{digest}") == set(sources.values())
    out = run("logout", host)
    assert out.stdout == f"Removing login credentials for {host}\n"
    assert json.loads(auth_file.read_text()) == {"auths": {}}


def test_docker_auth_config_set_warns(
    basic_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"auths": {}}))
    proc = login(basic_registry.host)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        "warning: DOCKER_AUTH_CONFIG is set and takes precedence over the credentials login "
        "stores; unset DOCKER_AUTH_CONFIG to use them\n"
    )


def test_malformed_docker_auth_config_is_said_so(
    basic_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QA: a broken $DOCKER_AUTH_CONFIG was said to "take precedence"."""
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", '{"auths":{')
    proc = login(basic_registry.host)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        "warning: $DOCKER_AUTH_CONFIG is not a valid docker config document (JSON): Input data "
        "was truncated; fix or remove $DOCKER_AUTH_CONFIG (it is read before what login "
        "stores, and every command that needs credentials will fail until it is fixed)\n"
    )


def test_broken_config_json_is_one_message(basic_registry: RegistryServer) -> None:
    """QA: login and the readers described one broken config.json in two ways."""
    path = config_path()
    path.write_text('{"auths": {')
    before = snapshot(path.parent)
    proc = login(basic_registry.host)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"{path} is not a valid docker config file: Input data was truncated; fix or remove "
        f"{path}"
    )
    after = snapshot(path.parent)
    after.pop(".config.json.lock", None)  # the writers' lock file (docker ignores it)
    assert after == before


# ---------------------------------------------------------------- concurrent writers


_WRITER = """
import sys
from pathlib import Path
from manyfest.auth import writer
from manyfest.auth.config import Credentials
from manyfest.auth.sources import LoginTarget
target = LoginTarget(Path(sys.argv[1]), namespaced=False)
for n in range(int(sys.argv[3])):
    writer.store(target, f"{sys.argv[2]}-{n}.example:5000", Credentials("u", f"p{n}"))
print("done")
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Six processes storing 15 registries each into one file at once: every entry is there
    (each write reads, changes and renames under the lock)."""
    writers = tmp_path / "shared" / "config.json"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(writers), f"w{i}", "15"],
                         stdout=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert (proc.returncode, out) == (0, "done\n")
    auths = json.loads(writers.read_text())["auths"]
    assert set(auths) == {f"w{i}-{n}.example:5000" for i in range(6) for n in range(15)}
    assert auths["w3-7.example:5000"] == {"auth": b64("u:p7")}


# ---------------------------------------------------------------- the docker CLI


def docker_in(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The docker CLI with its own DOCKER_CONFIG (no daemon needed: it logs in itself)."""
    binary = docker_cli()
    assert binary is not None
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_CONFIG": str(config)}, timeout=120,
                          check=False)


@requires_docker
def test_same_file_as_docker_login(basic_registry: RegistryServer, tmp_path: Path) -> None:
    """docker login and manyfest login write the same bytes; each logout undoes the other's
    login, to the same bytes again."""
    host = basic_registry.host
    theirs = tmp_path / "docker-config"
    theirs.mkdir()
    refused = docker_in(theirs, "login", "-u", USER, "--password-stdin", host,
                        stdin="wrong-password\n")
    assert refused.returncode == 1  # the same refusal as ours (test_wrong_password_...)
    docker_login = docker_in(theirs, "login", "-u", USER, "--password-stdin", host,
                             stdin=PASSWORD + "\n")
    assert docker_login.returncode == 0, docker_login.stderr
    assert docker_login.stdout == "Login Succeeded\n"
    ours = login(host)
    assert ours.returncode == 0, ours.stderr
    assert config_path().read_bytes() == (theirs / "config.json").read_bytes()
    # docker logs out of what manyfest wrote, manyfest out of what docker wrote.
    assert docker_in(config_path().parent, "logout", host).returncode == 0
    out = run("logout", host, env={"DOCKER_CONFIG": str(theirs)})
    assert out.stdout == f"Removing login credentials for {host}\n"
    assert config_path().read_bytes() == (theirs / "config.json").read_bytes() == (
        b'{\n\t"auths": {}\n}')


def test_login_to_a_registry_without_auth(registry: RegistryServer) -> None:
    """A registry that asks for nothing accepts any credentials (docker stores them too); the
    server may be written as a URL, as docker accepts it."""
    proc = login(f"http://{registry.host}/v2/", user="anyone", password="anything")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Login Succeeded\n"
    assert json.loads(config_path().read_text()) == {
        "auths": {registry.host: {"auth": b64("anyone:anything")}}
    }
