"""Checks that an answer of the in-process app is one docs/openapi.json describes: its status is listed for
the operation and its JSON body fits that status's schema (formats included). The fuzzer
(test_api_fuzz.py) sees mostly empty stores; the tests that fill ClickHouse first use this to check the
answers that carry figures."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator, FormatChecker

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@cache
def _document() -> dict:
    return json.loads(SPEC.read_text())


def assert_documented(response: httpx.Response, method: str, path: str) -> None:
    """`path` as the document spells it (`/api/merchants/{merchant_id}/clicks`)."""
    doc = _document()
    operation = doc["paths"].get(path, {}).get(method.lower())
    assert operation is not None, f"{method} {path} is not in docs/openapi.json"
    described = operation["responses"].get(str(response.status_code))
    assert described is not None, f"{method} {path}: status {response.status_code} is not documented"
    schema = described["content"]["application/json"]["schema"]
    # The components beside the schema, so that its "#/components/..." references resolve.
    rooted = {**schema, "components": doc["components"]}
    validator = Draft202012Validator(rooted, format_checker=FormatChecker())
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(response.json())
    ]
    assert not problems, f"{method} {path} answered outside its schema: {problems}"
