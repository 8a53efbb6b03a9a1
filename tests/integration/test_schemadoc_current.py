"""docs/schema.md is what `python -m core.schemadoc` prints for today's migrations (a new migration without
meanings, or without regenerating, fails here with the command to run), and every example query in it runs
on ClickHouse 18.16 and on current ClickHouse (chdb)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.migrate import migrate
from core.schemacolumns import EXAMPLES
from core.schemadoc import COMMAND, Undocumented, generate

pytestmark = [pytest.mark.chdb, pytest.mark.clickhouse]
SCHEMA_DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_schema_reference_is_current() -> None:
    try:
        text = generate()
    except Undocumented as exc:
        pytest.fail(f"{exc}\nthen regenerate: {COMMAND}")
    assert SCHEMA_DOC.read_text() == text, f"docs/schema.md is stale: regenerate with `{COMMAND}`"


def test_example_queries_run(clickhouse, chdb_backend) -> None:
    for backend in (clickhouse, chdb_backend):
        migrate(backend, log=lambda _line: None)
        for title, sql in EXAMPLES:
            try:
                backend.execute(sql.replace("clicktrail.", f"{backend.database}."))
            except Exception as exc:
                pytest.fail(f"example {title!r} fails on {type(backend).__name__}: {exc}")
