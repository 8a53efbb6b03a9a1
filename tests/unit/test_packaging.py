"""The Docker image builds the wheel from the folders it copies: every package the wheel ships must be
copied (a package added to the layout and forgotten in the Dockerfile breaks only the image build, which
no Docker engine here runs)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_dockerfile_copies_every_package_the_wheel_ships() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert packages == set(pyproject["tool"]["importlinter"]["root_packages"])
