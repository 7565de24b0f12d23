"""Installing from a fresh clone (`pip install .`, `pipx install .`) prints no build warnings."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_an_spdx_string() -> None:
    """`project.license` as a table is deprecated by setuptools (PEP 639): a plain SPDX string,
    with a setuptools that reads it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"][0]


def test_building_the_wheel_prints_no_deprecation(tmp_path: Path) -> None:
    """The build that `pip install .` runs says nothing about a deprecated license table."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w",
         str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "deprecated" not in (built.stdout + built.stderr).lower()
    wheels = list(tmp_path.glob("goldrush_follower-*.whl"))
    assert wheels
    # Every module of every subpackage (api/, core/, engine/, config/, ...) is in the wheel.
    with zipfile.ZipFile(wheels[0]) as wheel:
        packed = set(wheel.namelist())
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "follower").rglob("*.py")}
    assert sources <= packed, sorted(sources - packed)
