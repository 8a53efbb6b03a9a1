"""docs/operations.md lists every setting of core/settings.py with its current default, and no setting
that does not exist: a new field or a changed default fails here until the guide says so."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from core.settings import Settings

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_ROW_RE = re.compile(r"^\| `CLICKTRAIL_([A-Z0-9_]+)` \| (.+) \| (.+) \|$", re.M)


def documented() -> dict[str, str]:
    """Setting field → its default cell."""
    return {name.lower(): default for name, _meaning, default in _ROW_RE.findall(GUIDE.read_text())}


def test_every_setting_is_documented() -> None:
    missing = sorted(set(Settings.model_fields) - set(documented()))
    assert not missing, f"add a row `CLICKTRAIL_<FIELD>` to docs/operations.md, Settings: {missing}"


def test_no_documented_setting_is_unknown() -> None:
    unknown = sorted(set(documented()) - set(Settings.model_fields))
    assert not unknown, f"docs/operations.md documents settings that core/settings.py lacks: {unknown}"


def test_documented_defaults_are_current() -> None:
    rows = documented()
    for name, info in Settings.model_fields.items():
        default = info.default
        if default is PydanticUndefined or default is None:
            assert not rows[name].startswith("`"), f"{name} has no default, the guide shows {rows[name]}"
            continue
        assert f"`{default}`" in rows[name], f"{name}: default is {default!r}, the guide says {rows[name]}"
