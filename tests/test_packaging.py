"""The wheel as pip builds it: typed (PEP 561 ``py.typed``), and only the package in it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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
