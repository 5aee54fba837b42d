"""``manyfest completion bash|zsh|fish``: the shell completion script, and what it completes.

Completion is click's (``_MANYFEST_COMPLETE=bash_source manyfest`` prints the same script;
the script calls ``manyfest`` with ``_MANYFEST_COMPLETE=bash_complete`` and ``COMP_WORDS`` /
``COMP_CWORD``, zsh and fish likewise): the commands (from :data:`manyfest.cli.main.COMMANDS`,
no command module loaded), each command's flags and choices, and the names of the local
manifest lists (``$DOCKER_CONFIG/manifests``) for the MANIFEST_LIST arguments of
``inspect``, ``annotate``, ``push`` and ``rm``; ``annotate``'s MANIFEST completes to the
images of the list before it.

Fast on purpose: completing reads the store's directory names (and an entry file's ``Ref``
per list, to spell the list's name back) with the standard library alone; nothing of the
network stack, the engine or the store module is imported.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import click
import typer

from manyfest.cli.app import command_app

app = command_app()
"""This module's command (loaded by :mod:`manyfest.cli.main` when it runs)."""

PROG = "manyfest"
COMPLETE_VAR = "_MANYFEST_COMPLETE"
"""The environment variable click's completion protocol uses for ``manyfest``."""


class ShellChoice(enum.StrEnum):
    """The shells ``manyfest completion`` writes a script for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


_INSTALL = {
    "bash": 'eval "$(manyfest completion bash)"  # in ~/.bashrc',
    "zsh": 'eval "$(manyfest completion zsh)"  # in ~/.zshrc',
    "fish": "manyfest completion fish > ~/.config/fish/completions/manyfest.fish",
}


@app.command()
def completion(
    shell: Annotated[ShellChoice, typer.Argument(
        metavar="SHELL",
        hidden=True,  # no Arguments: section: the usage line names it
    )],
) -> None:
    """Print the shell completion script for bash, zsh or fish.

    It completes the commands, their flags, and the names of the local manifest lists.

    \b
    Examples:
      eval "$(manyfest completion bash)"    # in ~/.bashrc
      eval "$(manyfest completion zsh)"     # in ~/.zshrc
      manyfest completion fish > ~/.config/fish/completions/manyfest.fish
    """
    print(script(shell.value), end="")


def script(shell: str) -> str:
    """The completion script of ``shell`` (``bash``, ``zsh`` or ``fish``): click's, for the
    ``manyfest`` program, ending with a newline.

    Raises:
        ValueError: ``shell`` is not one of the three.
    """
    from manyfest.cli.main import app as root

    cls = click.shell_completion.get_completion_class(shell)
    if cls is None or shell not in _INSTALL:
        raise ValueError(f"no completion for shell {shell!r}")
    command = typer.main.get_command(root)
    source = cls(command, {}, PROG, COMPLETE_VAR).source()
    return source if source.endswith("\n") else source + "\n"


def store_root() -> Path:
    """``$DOCKER_CONFIG/manifests`` (default ``~/.docker/manifests``), as the store's."""
    env = os.environ.get("DOCKER_CONFIG")
    return (Path(env) if env else Path.home() / ".docker") / "manifests"


def _filesafe(text: str) -> str:
    """docker's ``makeFilesafeName`` (:func:`manyfest.reference.filesafe`)."""
    return text.replace(":", "-").replace("/", "_")


def _layout_of(name: str) -> str:
    """The ``oci:`` list a layout's store name was made from
    (:func:`manyfest.reference.layout_of_store_name`, not imported: completion stays
    light)."""
    text = name.replace("-", ":").replace("_", "/")
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _name_of(ref: str) -> str:
    """The repository name of a reference as written (``host:5000/a/b:1@sha256:...`` →
    ``host:5000/a/b``)."""
    ref = ref.partition("@")[0]
    head, slash, last = ref.rpartition("/")
    return f"{head}{slash}{last.partition(':')[0]}"


def _entry_refs(directory: Path) -> Iterator[str]:
    """The ``Ref`` of each entry file of a list directory (docker's JSON), unreadable files
    skipped."""
    try:
        files = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError:
        return
    for path in files:
        try:
            ref = json.loads(path.read_bytes()).get("Ref")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(ref, str):
            yield ref


_HOST_PORT = re.compile(r"([^_]*[.][^_]*|localhost)-(\d+)_")


def list_name(directory: Path) -> str:
    """The reference of the local list stored in ``directory``.

    docker names the directory ``filesafe(reference)`` (``:`` → ``-``, ``/`` → ``_``), which
    cannot be read back alone; the list's repository is most often one of its images': when
    an entry's repository, made file-safe, starts the directory name, the rest is the tag.
    Otherwise the name is guessed: ``_`` → ``/``, a ``-`` after a host with a dot → the port,
    the last ``-`` → the tag. An OCI layout list (``oci-_...``) is named exactly
    (:func:`manyfest.reference.store_name` is injective for layouts).
    """
    name = directory.name
    if name.startswith("oci-_"):  # an OCI layout's name reads back exactly
        return _layout_of(name)
    for ref in _entry_refs(directory):
        repo = _name_of(ref)
        safe = _filesafe(repo)
        if name.startswith(safe + "-") and len(name) > len(safe) + 1:
            return f"{repo}:{name[len(safe) + 1:]}"
    host = _HOST_PORT.match(name)
    prefix = ""
    if host:
        prefix, name = f"{host.group(1)}:{host.group(2)}/", name[host.end():]
    repo, dash, tag = name.rpartition("-")
    guessed = f"{repo}:{tag}" if dash and repo else name
    return prefix + guessed.replace("_", "/")


def local_lists() -> list[tuple[str, Path]]:
    """Every local list: (its reference, its directory), sorted by reference."""
    root = store_root()
    try:
        dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted((list_name(d), d) for d in dirs)


_SHORT = ("docker.io/library/", "docker.io/")


def _matches(ref: str, incomplete: str) -> str | None:
    """``ref`` as the user may type it (docker.io's prefix dropped when they did not type
    it) when it starts with ``incomplete``; None otherwise."""
    if ref.startswith(incomplete):
        return ref
    for prefix in _SHORT:
        if ref.startswith(prefix) and ref[len(prefix):].startswith(incomplete):
            return ref[len(prefix):]
    return None


def complete_list(incomplete: str) -> list[str]:
    """Completion of a MANIFEST_LIST argument (typer's ``autocompletion``): the local lists
    starting with ``incomplete``."""
    found = (_matches(ref, incomplete) for ref, _ in local_lists())
    return [ref for ref in found if ref is not None]


def complete_list_image(ctx: click.Context, incomplete: str) -> list[str]:
    """Completion of ``annotate``'s MANIFEST (typer's ``autocompletion``): the images of the
    local list given before it (by the store's entry files), starting with ``incomplete``."""
    given = ctx.params.get("list_ref")
    if not isinstance(given, str):
        return []
    for ref, directory in local_lists():
        if given in (ref, *(ref[len(p):] for p in _SHORT if ref.startswith(p))):
            found = (_matches(r, incomplete) for r in _entry_refs(directory))
            return [r for r in dict.fromkeys(found) if r is not None]
    return []
