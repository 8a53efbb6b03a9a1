"""Times are written one way: core.links.iso_ms. A module with its own copy can drift (a different
precision or zone suffix in one answer), so no other module formats milliseconds itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.links import iso_ms

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "attribution", "redirector", "clicktrail")


def test_iso_ms_is_defined_once():
    owners = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if 'isoformat(timespec="milliseconds")' in path.read_text()
    ]
    assert owners == ["core/links.py"]


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "1970-01-01T00:00:00.000Z"), (1_764_547_200_123, "2025-12-01T00:00:00.123Z")]
)
def test_iso_ms(ms, text):
    assert iso_ms(ms) == text
