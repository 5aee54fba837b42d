"""Installing manyfest as a tool, as the README says: ``uv tool install`` and ``pipx install``.

Each installs the wheel built from this tree into directories of the test's own, from a
directory of wheels (the dependencies, fetched once by pip from the configured package
index), with no index: the console script then runs from the tool's own environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from manyfest._version import __version__

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False,
                          env=env)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """manyfest's wheel and every dependency's, in one directory."""
    out = tmp_path_factory.mktemp("wheels")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out), str(REPO_ROOT)])
    assert len(list(out.glob("manyfest-*.whl"))) == 1
    return out


@pytest.fixture(scope="module")
def installers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding uv and pipx (from the package index, as setup does)."""
    where = tmp_path_factory.mktemp("installers")
    venv.create(where, with_pip=True)
    _run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", "uv", "pipx"])
    return where / "bin"


def _tool_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PIPX_"))}
    env.pop("PYTHONPATH", None)  # the installed copy, not this tree
    env["HOME"] = str(tmp_path / "home")
    return env


def _check_installed(script: Path, env: dict[str, str]) -> None:
    assert script.exists(), script
    assert _run([str(script), "--version"], env) == f"manyfest {__version__}\n"
    assert "publish" in _run([str(script), "--help"], env)


def test_uv_tool_install(tmp_path: Path, wheels: Path, installers: Path) -> None:
    env = _tool_env(tmp_path)
    env["UV_TOOL_DIR"] = str(tmp_path / "tools")
    env["UV_TOOL_BIN_DIR"] = str(tmp_path / "bin")
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    env["UV_PYTHON_DOWNLOADS"] = "never"
    [wheel] = wheels.glob("manyfest-*.whl")
    _run([str(installers / "uv"), "tool", "install", "--python", sys.executable, "--no-index",
          "--find-links", str(wheels), str(wheel)], env)
    _check_installed(tmp_path / "bin" / "manyfest", env)


def test_pipx_install(tmp_path: Path, wheels: Path, installers: Path) -> None:
    env = _tool_env(tmp_path)
    env["PIPX_HOME"] = str(tmp_path / "pipx")
    env["PIPX_BIN_DIR"] = str(tmp_path / "bin")
    env["PIPX_MAN_DIR"] = str(tmp_path / "man")
    [wheel] = wheels.glob("manyfest-*.whl")
    _run([str(installers / "pipx"), "install", "--python", sys.executable,
          f"--pip-args=--no-index --find-links {wheels}", str(wheel)], env)
    _check_installed(tmp_path / "bin" / "manyfest", env)
    assert shutil.which("manyfest", path=str(tmp_path / "bin")) is not None
