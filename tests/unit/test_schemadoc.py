"""The schema reference (core/schemadoc.py): what it reads from migration files, and that it refuses a table
or column without a meaning, naming it. (Its freshness and the example queries: the integration test.)"""

from __future__ import annotations

import pytest

from core.migrate import Migration
from core.schemadoc import Column, Table, Undocumented, read_notes, render

NEW_MIGRATION = Migration(
    99,
    "payouts",
    """-- One row per payout sent to a creator.
-- Append-only.
CREATE TABLE IF NOT EXISTS {db}.payouts
(
    payout_id     String,      -- the payout's id
    creator_id    String,
    amount_minor  Int64        -- paid amount in minor units
)
ENGINE = MergeTree()
ORDER BY payout_id;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.payouts_daily_mv TO {db}.payouts_daily AS
SELECT creator_id FROM {db}.payouts;
-- The payout's provider reference.
ALTER TABLE {db}.payouts ADD COLUMN provider_ref String DEFAULT '';
ALTER TABLE {db}.payouts ADD COLUMN note String DEFAULT '';
""",
)


def payouts(*extra: Column) -> Table:
    columns = (Column("payout_id", "String", ""), Column("creator_id", "String", ""))
    return Table("payouts", "MergeTree", "", "payout_id", columns + extra)


def test_notes_come_from_comments() -> None:
    notes = read_notes([NEW_MIGRATION])
    assert notes.tables["payouts"] == "One row per payout sent to a creator. Append-only."
    assert notes.created_by["payouts"] == "0099_payouts"
    assert notes.columns[("payouts", "payout_id")] == "the payout's id"
    assert notes.columns[("payouts", "amount_minor")] == "paid amount in minor units"
    assert ("payouts", "creator_id") not in notes.columns  # no comment: core/schemacolumns.py's SHARED
    assert notes.columns[("payouts", "provider_ref")] == "The payout's provider reference."
    assert notes.added_by[("payouts", "note")] == "0099_payouts"
    assert notes.views["payouts_daily_mv"] == ("payouts", "payouts_daily")


def test_documented_table_renders() -> None:
    notes = read_notes([NEW_MIGRATION])
    text = render([payouts(Column("provider_ref", "String", "DEFAULT ''"))], notes)
    assert "| `payout_id` | `String` | the payout's id |" in text
    assert "| `creator_id` | `String` | the creator who made the link |" in text  # shared meaning
    assert (
        "| `provider_ref` | `String DEFAULT ''` | The payout's provider reference. "
        "(added by `0099_payouts`) |" in text
    )
    assert "- created by migration `0099_payouts`" in text


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        ([payouts(Column("note", "String", "DEFAULT ''"))], "column payouts.note: end its line"),
        (
            [Table("refunds", "MergeTree", "", "id", (Column("payout_id", "String", ""),))],
            "table refunds: put a",
        ),
    ],
)
def test_undocumented_schema_is_refused_by_name(tables: list[Table], said: str) -> None:
    with pytest.raises(Undocumented, match=said):
        render(tables, read_notes([NEW_MIGRATION]))
