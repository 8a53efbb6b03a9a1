"""docs/api.md is current (its generated tables equal what `python -m redirector.apiref` writes), lists
every operation of the OpenAPI document, and no Markdown or Python file of the repository sends readers
to files outside it."""

from __future__ import annotations

import re
from pathlib import Path

from redirector import apiref, openapi
from redirector.app import api_routes

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_part_of_docs_api_md_is_current() -> None:
    text = apiref.GUIDE.read_text()
    assert apiref.BEGIN in text and apiref.END in text
    assert apiref.current_guide(text) == text, "regenerate: python -m redirector.apiref"


def test_every_operation_is_in_the_guide() -> None:
    text = apiref.GUIDE.read_text()
    for path, item in openapi.document(api_routes())["paths"].items():
        for method in item:
            assert f"| {method.upper()} | `{path}` |" in text


def test_error_codes_are_found_in_the_source() -> None:
    found = apiref.error_codes()
    for code, status in [("forbidden", 403), ("code_taken", 409), ("body_too_large", 413), ("bad_size", 400)]:
        assert status in found[code], code


def test_readme_links_the_api_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/api.md" in readme and "docs/openapi.json" in readme


def test_nothing_points_outside_the_repository() -> None:
    # Spelled in two pieces so that this file does not match itself (nor a plain grep for the folder).
    folder = "shared" + "/"
    outside = re.compile(re.escape(folder))
    offenders = []
    for pattern in ("*.md", "*.py"):
        for path in ROOT.rglob(pattern):
            if ".venv" in path.parts or ".git" in path.parts or ".clicktrail" in path.parts:
                continue
            if outside.search(path.read_text(errors="replace")):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders
