"""Shell completion: ``manyfest completion bash|zsh|fish`` and click's protocol behind it.

The protocol is run as the shells' scripts run it: ``manyfest`` in a subprocess with
``_MANYFEST_COMPLETE=bash_complete`` (``zsh_complete``, ``fish_complete``) and ``COMP_WORDS``
/ ``COMP_CWORD``; the candidates are asserted exactly. Local list names come from a real
store (``ManifestStore.save`` under a test ``DOCKER_CONFIG``), in docker's layout, whose
directory names (``127.0.0.1-5000_ns_app-1.0``) are spelled back as references. Where bash is
installed the script is sourced in it and its function called as bash's ``complete`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manyfest import mediatypes, reference
from manyfest.cli.main import COMMANDS as ALL_COMMANDS
from manyfest.content import Manifest
from manyfest.platform import Platform
from manyfest.store import ManifestStore, StoredImage
from tests.test_startup import _heavy, _imports

COMMANDS = list(ALL_COMMANDS)  # every command, in --help order


def _manifest(seed: str, layers: int = 12) -> Manifest:
    """An OCI image manifest of ``layers`` layers (sizes of a real image's)."""
    def digest(text: str) -> str:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    doc = {
        "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": digest(seed + "config"),
                   "size": 48_213},
        "layers": [{"mediaType": mediatypes.OCI_LAYER, "digest": digest(f"{seed}{i}"),
                    "size": 1_000_000 + 7919 * i} for i in range(layers)],
    }
    return Manifest.from_bytes(json.dumps(doc, indent=3).encode())


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    """A DOCKER_CONFIG with three local lists (one on docker.io), as ``create`` saves them;
    the environment to run manyfest with."""
    config = tmp_path / "docker"
    lists = {
        "127.0.0.1:5000/ns/app:1.0": ["127.0.0.1:5000/ns/app-amd64:1.0",
                                      "127.0.0.1:5000/ns/app-arm64:1.0"],
        "registry.example/team/tool:2-alpine": ["registry.example/team/tool:2-alpine-amd64"],
        "busybox:latest": ["busybox:1.36-amd64"],
    }
    saved = ManifestStore(config / "manifests")
    for name, images in lists.items():
        target = reference.parse(name)
        entries = [StoredImage(reference.parse(ref), _manifest(ref), Platform("linux", "amd64"))
                   for ref in images]
        with saved.locked(target):
            saved.save(target, entries)
    return {"DOCKER_CONFIG": str(config), "HOME": str(tmp_path)}


def _complete(words: str, env: dict[str, str] | None = None, shell: str = "bash") -> list[str]:
    """The candidates ``manyfest`` answers for the command line ``words`` (the cursor in its
    last word, empty after a trailing space), as the ``shell``'s script asks."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    full = {**os.environ, **(env or {}), "_MANYFEST_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    if shell == "fish":
        full["COMP_CWORD"] = "" if words.endswith(" ") else words.split()[-1]
    done = subprocess.run([sys.executable, "-m", "manyfest"], env=full, capture_output=True,
                          text=True, check=False, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    lines = [line for line in done.stdout.splitlines() if line]  # none: one empty line
    if shell == "bash":  # "type,value" lines
        return [line.split(",", 1)[1] for line in lines]
    if shell == "zsh":  # type, value, help: three lines each
        return [lines[i + 1] for i in range(0, len(lines), 3)]
    return [line.split(",", 1)[1].split("\t")[0] for line in lines]


def test_commands_flags_and_choices() -> None:
    assert _complete("manyfest ") == COMMANDS
    assert _complete("manyfest p") == ["push", "publish"]
    assert _complete("manyfest --") == ["--debug", "--quiet", "--progress", "--log-format",
                                        "--version", "--help"]
    assert _complete("manyfest push --p") == ["--purge"]
    assert _complete("manyfest publish --media-type ") == ["oci", "docker", "auto"]
    assert _complete("manyfest publish --platform-check w") == ["warn"]
    assert _complete("manyfest create --attestations ") == ["keep", "drop"]
    assert _complete("manyfest completion ") == ["bash", "zsh", "fish"]


def test_local_list_names(store: dict[str, str]) -> None:
    every = ["127.0.0.1:5000/ns/app:1.0", "docker.io/library/busybox:latest",
             "registry.example/team/tool:2-alpine"]
    for command in ("push", "rm", "inspect", "annotate"):
        assert _complete(f"manyfest {command} ", store) == every, command
    assert _complete("manyfest push 127", store) == ["127.0.0.1:5000/ns/app:1.0"]
    assert _complete("manyfest rm registry.example/team/tool:2-alpine ", store) == every
    # docker.io's names complete as typed: short
    assert _complete("manyfest push bu", store) == ["busybox:latest"]
    # annotate's MANIFEST: the images of the list given before it
    assert _complete("manyfest annotate 127.0.0.1:5000/ns/app:1.0 ", store) == [
        "127.0.0.1:5000/ns/app-amd64:1.0", "127.0.0.1:5000/ns/app-arm64:1.0",
    ]
    assert _complete("manyfest annotate busybox:latest b", store) == ["busybox:1.36-amd64"]
    assert _complete("manyfest annotate nosuch:1 ", store) == []


def test_no_store_completes_nothing(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    assert _complete("manyfest push ", env) == []


def test_zsh_and_fish_protocols(store: dict[str, str]) -> None:
    for shell in ("zsh", "fish"):
        assert _complete("manyfest pu", shell=shell) == ["push", "publish"], shell
        assert _complete("manyfest push 127", store, shell) == ["127.0.0.1:5000/ns/app:1.0"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_name_the_program(shell: str) -> None:
    done = subprocess.run([sys.executable, "-m", "manyfest", "completion", shell],
                          capture_output=True, text=True, check=False, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert f"_MANYFEST_COMPLETE={shell}_complete" in done.stdout
    assert "_manyfest_completion" in done.stdout
    # click's own protocol prints the same script
    env = {**os.environ, "_MANYFEST_COMPLETE": f"{shell}_source"}
    same = subprocess.run([sys.executable, "-m", "manyfest"], env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert same.stdout == done.stdout


def test_unknown_shell_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "manyfest", "completion", "tcsh"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("SHELL 'tcsh': expected one of bash, zsh, fish; see "
                           "`manyfest completion --help`\n")


def _wrapper(tmp_path: Path) -> dict[str, str]:
    """PATH with a ``manyfest`` that runs this interpreter's manyfest (the script calls it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "manyfest"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m manyfest "$@"\n')
    program.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_bash_sources_the_script_and_completes(tmp_path: Path, store: dict[str, str]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed on this machine")
    program = (
        'source <(manyfest completion bash)\n'
        'complete -p manyfest\n'
        'COMPREPLY=(); COMP_WORDS=(manyfest push 127); COMP_CWORD=2\n'
        '_manyfest_completion manyfest\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
        'COMPREPLY=(); COMP_WORDS=(manyfest pu); COMP_CWORD=1\n'  # bash resets it per call
        '_manyfest_completion manyfest\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, **store, **_wrapper(tmp_path)}
    done = subprocess.run([bash, "--norc", "--noprofile", "-c", program], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "complete -o nosort -F _manyfest_completion manyfest",
        "127.0.0.1:5000/ns/app:1.0",
        "push", "publish",
    ]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_read_the_script(tmp_path: Path, shell: str) -> None:
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed on this machine")
    path = tmp_path / f"manyfest.{shell}"
    path.write_text(subprocess.run([sys.executable, "-m", "manyfest", "completion", shell],
                                   capture_output=True, text=True, check=True).stdout)
    check = ["-n", str(path)]  # parse only: a syntax error fails
    done = subprocess.run([binary, *check], capture_output=True, text=True, check=False,
                          timeout=120)
    assert (done.returncode, done.stderr) == (0, "")


def test_completing_imports_no_heavy_module(tmp_path: Path, store: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Completing a list name (and printing the script) loads neither the network stack nor
    the engine, nor the store module."""
    for key, value in store.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("_MANYFEST_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "manyfest annotate 127.0.0.1:5000/ns/app:1.0 ")
    monkeypatch.setenv("COMP_CWORD", "3")
    code, modules, stderr = _imports(tmp_path)
    assert code == 0, stderr
    assert _heavy(modules) == []
    assert "manyfest.store" not in modules
    monkeypatch.delenv("_MANYFEST_COMPLETE")
    code, modules, stderr = _imports(tmp_path, "completion", "zsh")
    assert code == 0, stderr
    assert _heavy(modules) == []
