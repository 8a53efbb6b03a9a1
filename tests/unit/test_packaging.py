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


def test_the_dashboards_templates_and_assets_ship_in_the_wheel() -> None:
    """Hatch puts every file of a package in the wheel except those .gitignore names: the dashboard's
    templates and static files must exist and never be ignored (a wheel without them serves 500s)."""
    import subprocess

    dash = ROOT / "redirector" / "dash"
    files = sorted(p for folder in ("templates", "static") for p in (dash / folder).iterdir() if p.is_file())
    names = {p.name for p in files}
    assert {"base.html", "login.html", "error.html", "dash.css", "dash.js"} <= names
    ignored = subprocess.run(
        ["git", "check-ignore", *map(str, files)], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == [], f"ignored by .gitignore, so left out of the wheel: {ignored}"
