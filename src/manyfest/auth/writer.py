"""Storing and erasing credentials, as ``docker login``/``docker logout`` do.

The file is docker's config.json or a containers-auth.json(5) file
(:class:`~manyfest.auth.sources.LoginTarget`). When it names a credential helper for the
registry (``credHelpers[key]``; in docker's config.json also ``credsStore``), the secret goes
to the helper (``docker-credential-<name> store`` with ``{"ServerURL", "Username",
"Secret"}`` on stdin; ``erase`` with the server URL on stdin) and the file keeps an empty
``auths[key]`` entry, as docker's native store writes it; otherwise ``auths[key]`` holds
``auth`` = base64(user:password) (and ``identitytoken`` when the token server gave one,
the password then not stored).

Every write keeps the rest of the file as it was (every other key and value, unknown ones
included), is atomic (a temporary file in the same directory, fsync, rename), has mode 0600,
creates the directory and the file when absent, and holds a lock (``.<name>.lock`` beside
the file) against concurrent writers. A symbolic link is followed (its target is written).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import filelock

from manyfest.auth.config import (
    NOT_FOUND,
    TOKEN_USERNAME,
    AuthDocument,
    Credentials,
    helper_error,
    hostname,
)
from manyfest.auth.sources import LoginTarget
from manyfest.errors import CredentialsError
from manyfest.files import atomic_write

_SECRET_FIELDS = ("auth", "username", "password", "identitytoken", "registrytoken")


def _real(path: Path) -> Path:
    """``path``, or the file its symbolic link points at."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _lock(path: Path) -> filelock.FileLock:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CredentialsError(f"cannot create {path.parent}: {exc.strerror}") from exc
    return filelock.FileLock(str(path.parent / f".{path.name}.lock"))


def _load(path: Path) -> dict[str, Any]:
    """The file's JSON object ({} when absent or empty)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from exc
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        # The readers' words for the same file (one message for one broken file).
        AuthDocument(data, str(path))
        raise CredentialsError(f"{path} is not a valid docker config file",
                               hint=f"fix or remove {path}") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"{path} is not a JSON object", hint=f"fix or remove {path}")
    auths = doc.get("auths")
    if auths is not None and not isinstance(auths, dict):
        raise CredentialsError(f"{path}: auths is not an object", hint=f"fix or remove {path}")
    return doc


def _save(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically, mode 0600 (tab-indented, no final newline: the
    bytes docker writes)."""
    data = json.dumps(doc, indent="\t", ensure_ascii=False).encode()
    try:
        atomic_write(path, data, mode=0o600, sync_dir=True)
    except OSError as exc:
        raise CredentialsError(f"cannot write {path}: {exc.strerror}") from exc


def _helper_for(doc: dict[str, Any], key: str, namespaced: bool) -> str:
    helpers = doc.get("credHelpers")
    helpers = helpers if isinstance(helpers, dict) else {}
    name = helpers.get(key) or helpers.get(hostname(key))
    if not name and not namespaced:
        name = doc.get("credsStore")
    return name if isinstance(name, str) else ""


def _run_helper(name: str, action: str, stdin: bytes, origin: Path) -> tuple[int, str]:
    program = f"docker-credential-{name}"
    try:
        result = subprocess.run([program, action], input=stdin, capture_output=True,
                                check=False)
    except FileNotFoundError as exc:
        raise CredentialsError(
            f"credential helper {program} named in {origin} is not installed",
            hint=f"install {program} or remove it from {origin}",
        ) from exc
    out = (result.stdout or b"").decode(errors="replace").strip()
    err = (result.stderr or b"").decode(errors="replace").strip()
    return result.returncode, err or out


def store(target: LoginTarget, registry: str, creds: Credentials) -> str:
    """Store ``creds`` for ``registry`` in ``target`` (through its helper when it names one).

    Returns:
        Where the secret went: the helper's program name, or the file's path.

    Raises:
        CredentialsError: the file cannot be read or written, or the helper failed (the
            file is then left as it was).
    """
    path = _real(target.path)
    key = target.key(registry)
    with _lock(path):
        doc = _load(path)
        auths = doc.setdefault("auths", {})
        helper = _helper_for(doc, key, target.namespaced)
        entry = auths.get(key)
        entry = {k: v for k, v in entry.items() if k not in _SECRET_FIELDS} if isinstance(
            entry, dict) else {}
        if helper:
            username = TOKEN_USERNAME if creds.identity_token else creds.username
            secret = creds.identity_token or creds.password
            payload = json.dumps({"ServerURL": key, "Username": username, "Secret": secret})
            status, said = _run_helper(helper, "store", payload.encode(), path)
            if status != 0:
                raise CredentialsError(
                    f"credential helper docker-credential-{helper} could not store the "
                    f"credentials for {key}: {helper_error(said, status)}",
                    hint="nothing was written; check the helper",
                )
            where = f"docker-credential-{helper}"
        else:
            password = "" if creds.identity_token else creds.password
            entry["auth"] = base64.b64encode(f"{creds.username}:{password}".encode()).decode()
            if creds.identity_token:
                entry["identitytoken"] = creds.identity_token
            where = str(path)
        auths[key] = entry
        _save(path, doc)
    return where


def _variants(key: str, namespaced: bool) -> list[str]:
    """The ``auths`` keys one registry may have been stored under (docker's logout tries
    these: the key, its host, and the host with a scheme)."""
    if namespaced:
        return [key]
    host = hostname(key)
    return list(dict.fromkeys([key, host, f"http://{host}", f"https://{host}"]))


def erase(target: LoginTarget, registry: str) -> bool:
    """Remove the credentials of ``registry`` from ``target`` (and from its helper).

    Returns:
        True when there was something to remove (an ``auths`` entry, or the helper's).

    Raises:
        CredentialsError: the file cannot be read or written, or the helper failed.
    """
    path = _real(target.path)
    key = target.key(registry)
    if not path.exists():
        return False
    with _lock(path):
        doc = _load(path)
        auths = doc.get("auths") or {}
        removed = False
        helper = _helper_for(doc, key, target.namespaced)
        if helper:
            status, said = _run_helper(helper, "erase", key.encode(), path)
            if status == 0:
                removed = True
            elif NOT_FOUND not in said:
                raise CredentialsError(
                    f"credential helper docker-credential-{helper} could not erase the "
                    f"credentials for {key}: {helper_error(said, status)}",
                    hint="nothing was changed; check the helper",
                )
        for name in _variants(key, target.namespaced):
            if name in auths:
                del auths[name]
                removed = True
        if removed:
            _save(path, doc)
    return removed
