"""Start-up: what each kind of command imports (``manyfest.cli.app``'s rule), and the tables
that let ``--help`` avoid importing the commands.

The import set is read in a fresh interpreter that runs the CLI as the console script does
and then writes ``sys.modules``; times are the benchmark's (``benchmarks/startup.py``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect as pyinspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

# What none of the commands below may load: the network stack, the engine, the API, the
# plan parser, rich, and pydantic (typer's newer lines coerce every option through it).
HEAVY = (
    "aiohttp", "manyfest.engine", "manyfest.api", "manyfest.transport.session",
    "manyfest.registry", "manyfest.ops.publish", "manyfest.ops.plan", "rich", "pydantic",
    "yaml", "anyio",
)

_RUNNER = """
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
sys.argv = ["manyfest", *argv]
from manyfest.cli.entry import main
try:
    main()
except SystemExit as done:
    code = done.code
else:
    code = 0
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def _imports(tmp_path: Path, *argv: str) -> tuple[int, set[str], str]:
    """Run ``manyfest ARGV`` in a new interpreter: (exit code, modules loaded, stderr)."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(out), *argv],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert out.exists(), done.stderr
    data = json.loads(out.read_text())
    return data["code"], set(data["modules"]), done.stderr


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("argv", [
    ("--help",), ("--version",), (), ("inspect", "--help"), ("create", "--help"),
    ("publish", "--help"), ("rm", "--help"), ("login", "--help"), ("logout", "--help"),
])
def test_help_and_version_import_no_heavy_module(tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, modules, stderr = _imports(tmp_path, *argv)
    assert code in (0, 2), stderr  # no arguments: the help, exit 2 (docker's usage status)
    assert _heavy(modules) == []


def test_root_help_loads_no_command_module(tmp_path: Path) -> None:
    _, modules, _ = _imports(tmp_path, "--help")
    assert not {"manyfest.cli.inspect", "manyfest.cli.lists", "manyfest.cli.publish"} & modules
    assert "logging" not in modules  # loaded when a command runs (cli.output)


def test_local_commands_import_no_heavy_module(tmp_path: Path) -> None:
    """``rm`` of an absent list and ``annotate`` refusing a bad variant are local: they load
    the store, never the network stack or the engine."""
    code, modules, stderr = _imports(tmp_path, "rm", "example.com/nosuch:1")
    assert code == 1
    assert stderr.strip() == ("No such manifest: example.com/nosuch:1; create it first with "
                              "`manyfest create LIST IMAGE...`")
    assert "manyfest.store" in modules
    assert _heavy(modules) == []

    code, modules, stderr = _imports(
        tmp_path, "annotate", "example.com/l:1", "example.com/a:1", "--arch", "arm",
        "--variant", "v99",
    )
    assert code == 1
    assert "example.com/l:1" in stderr
    assert "manyfest.ops.local" in modules
    assert _heavy(modules) == []


def test_command_summaries_are_the_docstrings() -> None:
    """``manyfest --help`` lists :data:`COMMANDS`' summaries without loading the commands:
    each must be its command's first docstring paragraph, so the two never drift."""
    import typer

    from manyfest.cli.main import COMMANDS

    for name, (module_name, summary) in COMMANDS.items():
        group = typer.main.get_group(importlib.import_module(module_name).app)
        callback = group.commands[name].callback
        doc = pyinspect.getdoc(callback) or ""
        first = " ".join(doc.split("\n\n", 1)[0].split())
        assert first == summary, name


def test_every_command_is_listed() -> None:
    """Every command a module registers is in :data:`COMMANDS`, under its own module."""
    import typer

    from manyfest.cli.main import COMMANDS

    for module_name in sorted({module for module, _ in COMMANDS.values()}):
        group = typer.main.get_group(importlib.import_module(module_name).app)
        for name in group.commands:
            assert COMMANDS[name][0] == module_name


def test_template_fields_agree() -> None:
    from manyfest.cli.inspect import TEMPLATE_FIELDS
    from manyfest.ops.inspect import FIELDS

    assert TEMPLATE_FIELDS == FIELDS


def test_version_is_the_distribution_metadata() -> None:
    """``--version`` prints the installed distribution's version, which pyproject takes from
    ``manyfest._version`` (one place)."""
    from manyfest._version import __version__

    done = subprocess.run([sys.executable, "-m", "manyfest", "--version"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"manyfest {__version__}\n")
    assert importlib.metadata.version("manyfest") == __version__
