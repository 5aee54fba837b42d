"""The wheel as pip builds it: typed (PEP 561 ``py.typed``), and only the package in it; the
sdist: only the source (package, tests, docs), no caches, virtualenvs or results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from manyfest._version import __version__

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_wheel_is_typed_and_holds_only_the_package(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(REPO_ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("manyfest-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "manyfest/py.typed" in names
    assert "manyfest/cli/main.py" in names
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"manyfest", next(n for n in top if n.endswith(".dist-info"))}, top


SDIST_TOP = {"src", "tests", "benchmarks", "docs", "scripts", "README.md", "pyproject.toml",
             ".gitignore", "PKG-INFO"}
"""What the sdist holds at its top: the package's source, its tests (with the benchmarks/
modules they import), docs/, the docs generator, README, pyproject, and what hatch adds
(PKG-INFO, .gitignore)."""
JUNK = ("src/manyfest/__pycache__/api.cpython-311.pyc", "tests/__pycache__/x.pyc",
        "benchmarks/results/run.json", ".pytest_cache/v/cache/nodeids", ".venv/bin/python",
        ".mypy_cache/3.11/x.json", ".hypothesis/examples/x", "dist/old.tar.gz",
        "tests/.ruff_cache/x", ".ci/run", "scripts/setup.sh", ".demo/registry/x")
"""Files planted in a copy of the tree that the sdist must leave out."""


def _hatchling(tmp_path: Path) -> Path:
    """hatchling installed into a directory of its own (the build backend, as pip's isolated
    build would install it), so the sdist is built as a PEP 517 frontend builds it."""
    target = tmp_path / "hatchling"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "hatchling"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return target


def _source_files(root: Path) -> set[str]:
    """Files of the tree the sdist should carry: everything under the included directories but
    caches, plus the top-level files hatch and the configuration name."""
    out = {"README.md", "pyproject.toml", ".gitignore", "scripts/gen_cli_docs.py"}
    for top in ("src", "tests", "benchmarks", "docs"):
        for path in (root / top).rglob("*"):
            rel = path.relative_to(root).as_posix()
            parts = rel.split("/")
            if path.is_file() and not (
                {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
                & set(parts) or rel.endswith((".pyc", ".pyo")) or rel.startswith(
                    "benchmarks/results/")
            ):
                out.add(rel)
    return out


def test_sdist_holds_only_the_source(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    # Copied without what is big and never source (.demo/ holds the demo's registry data); the
    # sdist's exclusion of such things is checked with the junk planted below.
    shutil.copytree(REPO_ROOT, tree,
                    ignore=shutil.ignore_patterns(".venv", ".git", "dist", ".demo"))
    for junk in JUNK:
        path = tree / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("junk\n")
    backend = _hatchling(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; from hatchling.build import build_sdist; print(build_sdist(sys.argv[1]))",
         str(out)],
        cwd=tree, env=dict(os.environ, PYTHONPATH=str(backend)),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    base = f"manyfest-{__version__}"
    assert proc.stdout.strip() == f"{base}.tar.gz"
    with tarfile.open(out / f"{base}.tar.gz") as sdist:
        names = [m.name for m in sdist.getmembers() if m.isfile()]
    assert all(n.startswith(f"{base}/") for n in names), names
    members = {n.removeprefix(f"{base}/") for n in names}
    assert {m.split("/", 1)[0] for m in members} == SDIST_TOP
    assert members - {"PKG-INFO"} == _source_files(tree)
    for junk in JUNK:
        assert junk not in members, junk
    for needed in ("src/manyfest/py.typed", "src/manyfest/cli/main.py", "tests/conftest.py",
                   "tests/registry_server.py", "benchmarks/run.py", "docs/plan.md",
                   "docs/commands.md"):
        assert needed in members, needed
