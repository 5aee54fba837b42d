"""``manyfest login`` and ``manyfest logout``: docker's ``login``/``logout``.

``login [SERVER]`` (Docker Hub when omitted) checks the credentials with the registry, then
stores them (:mod:`manyfest.ops.login`) and prints ``Login Succeeded``; refused: one line,
exit 1, nothing written. The password comes from ``-p`` (warned about, as docker does),
``--password-stdin`` (the whole of stdin, one trailing newline removed) or a prompt on a
terminal. ``logout [SERVER]`` removes them (``Removing login credentials for ...``; ``Not
logged in to ...`` when there were none, exit 0). Both write ``$REGISTRY_AUTH_FILE`` when it
is set, else docker's config.json.

Start-up rule: nothing heavy is imported at module level here (the transport, aiohttp and
the operations are imported inside the commands).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from manyfest.cli.app import (
    InsecureOpt,
    Stopped,
    command_app,
    execute,
    fail,
    interrupted_exit,
    stderr,
)
from manyfest.errors import ManyfestError, UsageError

app = command_app()
"""This module's commands (loaded by :mod:`manyfest.cli.main` when one runs)."""

ServerArg = Annotated[
    str,
    typer.Argument(
        metavar="[SERVER]",
        show_default=False,
        hidden=True,  # no Arguments: section (docker has none): the usage line names it
    ),
]

INSECURE_PASSWORD = "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
"""docker's warning for ``-p`` (on stderr)."""


def _registry(server: str) -> str:
    from manyfest.ops.login import server_registry

    try:
        return server_registry(server)
    except ManyfestError as exc:
        raise fail(exc) from None


def _warn_env_config() -> None:
    """As docker: ``$DOCKER_AUTH_CONFIG`` is read before what login and logout write."""
    from manyfest.auth.config import AuthDocument
    from manyfest.auth.sources import ENV_CONFIG

    text = os.environ.get(ENV_CONFIG)
    if text:
        try:
            AuthDocument(text.encode(), f"${ENV_CONFIG}", helpers=False)
        except ManyfestError as exc:  # QA: it was said to "take precedence" when broken
            stderr.print(f"warning: {exc.one_line()} (it is read before what login stores, and "
                         "every command that needs credentials will fail until it is fixed)",
                         markup=False)
            return
        stderr.print(
            f"warning: {ENV_CONFIG} is set and takes precedence over the credentials login "
            f"stores; unset {ENV_CONFIG} to use them",
            markup=False,
        )


def _read_credentials(username: str, password: str, password_stdin: bool) -> tuple[str, str]:
    """(user, password) from the flags, stdin or a prompt on a terminal (docker's rules).

    Raises:
        typer.Exit: a usage error (exit 2), one line printed.
    """
    if password:
        stderr.print(INSECURE_PASSWORD, markup=False)
        if password_stdin:
            raise fail(UsageError("--password and --password-stdin are mutually exclusive"))
    if password_stdin:
        if not username:
            raise fail(UsageError("--password-stdin needs --username",
                                  hint="give the user name with -u/--username"))
        text = sys.stdin.read()
        password = text.removesuffix("\n").removesuffix("\r")
    if not (username and password) and not sys.stdin.isatty():
        raise fail(UsageError(
            "cannot perform an interactive login from a non-TTY device",
            hint="give -u/--username and the password with --password-stdin",
        ))
    if not username:
        stderr.print("Username: ", end="", markup=False)
        username = sys.stdin.readline().strip()
        if not username:
            raise fail(UsageError("a user name is required", hint="give -u/--username"))
    if not password:
        import getpass

        password = getpass.getpass("Password: ", stream=sys.stderr)
        if not password:
            raise fail(UsageError("a password is required",
                                  hint="type it, or give it with --password-stdin"))
    return username, password


@app.command("login")
def login_command(
    server: ServerArg = "",
    username: Annotated[
        str, typer.Option("--username", "-u", metavar="USER", help="Username",
                          show_default=False)
    ] = "",
    password: Annotated[
        str, typer.Option("--password", "-p", metavar="PASSWORD",
                          help="Password or personal access token (insecure: use "
                          "--password-stdin)", show_default=False)
    ] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Take the password or token from stdin")
    ] = False,
    insecure: InsecureOpt = False,
) -> None:
    """Authenticate to a registry.

    Docker Hub when SERVER is omitted. The credentials are checked with the registry, then
    stored: in $REGISTRY_AUTH_FILE when it is set, else in docker's config.json (through its
    credential helper when it names one).

    \b
    Example:
      manyfest login -u ci --password-stdin registry.example:5000 < token.txt
    """
    from manyfest.cli.app import settings_from

    registry = _registry(server)
    _warn_env_config()
    user, secret = _read_credentials(username, password, password_stdin)
    settings = settings_from(insecure)

    async def body() -> None:
        from manyfest.ops.login import login

        await login(registry, user, secret, settings=settings)

    try:
        execute(body)
    except Stopped:
        raise interrupted_exit(f"login to {registry} stopped (nothing was written)") from None
    print("Login Succeeded")


@app.command("logout")
def logout_command(server: ServerArg = "") -> None:
    """Log out from a registry.

    Docker Hub when SERVER is omitted. Removes its stored credentials from $REGISTRY_AUTH_FILE
    when it is set, else from docker's config.json (and from its credential helper).

    \b
    Example:
      manyfest logout registry.example:5000
    """
    registry = _registry(server)
    _warn_env_config()

    async def body() -> tuple[bool, str]:
        from manyfest.ops.login import logout

        result = await logout(registry)
        return result.removed, result.name

    try:
        removed, name = execute(body)
    except Stopped:
        raise interrupted_exit(f"logout from {registry} stopped") from None
    if removed:
        print(f"Removing login credentials for {name}")
    else:
        print(f"Not logged in to {name}")
