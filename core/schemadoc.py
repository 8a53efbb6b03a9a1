"""The ClickHouse schema reference for analysts (docs/schema.md), generated:

    .venv/bin/python -m core.schemadoc > docs/schema.md

Every migration is applied to a scratch database of an in-process ClickHouse (chdb, a test dependency), and
the reference lists what that database holds (`system.tables`, `system.columns`): so it shows what the
migrations make, never what someone remembered to write down. Each table's description is the comment
above its CREATE in the migration; each column's meaning comes from a `-- comment` on its line in the
migration, else from core/schemacolumns.py. A table or column without one is an error naming it
(tests/integration/test_schemadoc_current.py also fails when docs/schema.md is not what this prints)."""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, field

from core import schemacolumns
from core.clickhouse import Backend
from core.migrate import STATE_TABLE, Migration, available, migrate

COMMAND = ".venv/bin/python -m core.schemadoc > docs/schema.md"
SCRATCH_DATABASE = "clicktrail"

_CREATE_RE = re.compile(r"^CREATE\s+(TABLE|MATERIALIZED\s+VIEW)\s+IF\s+NOT\s+EXISTS\s+\{db\}\.(\w+)", re.I)
_ADD_COLUMN_RE = re.compile(r"^ALTER\s+TABLE\s+\{db\}\.(\w+)\s+ADD\s+COLUMN\s+(\w+)", re.I)
_COLUMN_LINE_RE = re.compile(r"^\s*(\w+)\s+[A-Z]\w*.*?--\s*(.+?)\s*$")
_TO_RE = re.compile(r"\bTO\s+\{db\}\.(\w+)", re.I)
_FROM_RE = re.compile(r"\bFROM\s+\{db\}\.(\w+)", re.I)


class Undocumented(Exception):
    """Tables or columns without a meaning."""


@dataclass
class Notes:
    """What the migration files say beyond the schema itself."""

    tables: dict[str, str] = field(default_factory=dict)  # table -> comment above its CREATE
    created_by: dict[str, str] = field(default_factory=dict)  # table -> migration
    added_by: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, column) -> migration
    columns: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, column) -> comment
    views: dict[str, tuple[str, str]] = field(default_factory=dict)  # view -> (reads, writes)


def read_notes(migrations: list[Migration] | None = None) -> Notes:
    notes = Notes()
    for migration in available() if migrations is None else migrations:
        label = f"{migration.version:04d}_{migration.name}"
        comment: list[str] = []
        table = ""
        for line in migration.sql.splitlines():
            stripped = line.strip()
            if stripped.startswith("--"):
                comment.append(stripped.removeprefix("--").strip())
                continue
            if created := _CREATE_RE.match(stripped):
                table = created[2]
                notes.created_by[table] = label
                if comment:
                    notes.tables[table] = " ".join(comment)
                if created[1].upper() != "TABLE":
                    statement = _statement_from(migration.sql, line)
                    target, source = _TO_RE.search(statement), _FROM_RE.search(statement)
                    notes.views[table] = (source[1] if source else "", target[1] if target else table)
            elif added := _ADD_COLUMN_RE.match(stripped):
                notes.added_by[(added[1], added[2])] = label
                if comment:  # (a comment after the `;` would end the statement: it goes above)
                    notes.columns[(added[1], added[2])] = " ".join(comment)
            elif table and (column := _COLUMN_LINE_RE.match(line)):
                notes.columns.setdefault((table, column[1]), column[2])
            comment = []
    return notes


def _statement_from(sql: str, first_line: str) -> str:
    rest = sql[sql.index(first_line) :]
    return rest.split(";", 1)[0]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default: str


@dataclass(frozen=True)
class Table:
    name: str
    engine: str
    partition_key: str
    sorting_key: str
    columns: tuple[Column, ...]


def read_tables(backend: Backend) -> list[Table]:
    """Every table and view of the migrated database, with the engine of a view's inner table."""
    db = backend.database
    rows = backend.execute(
        "SELECT name, engine, partition_key, sorting_key, toString(uuid) FROM system.tables "
        "WHERE database = %(db)s ORDER BY name",
        {"db": db},
    )
    by_name = {r[0]: r for r in rows}
    columns: dict[str, list[Column]] = {}
    for table, name, type_, kind, expression in backend.execute(
        "SELECT table, name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = %(db)s ORDER BY table, position",
        {"db": db},
    ):
        columns.setdefault(table, []).append(Column(name, type_, f"{kind} {expression}" if kind else ""))
    tables = []
    for name, engine, partition_key, sorting_key, uuid in rows:
        if name.startswith(".inner"):
            continue
        # A view with its own ENGINE stores into an inner table: `.inner.<view>` (18.16) or
        # `.inner_id.<uuid>` (current ClickHouse). Its engine and keys are the view's.
        inner = by_name.get(f".inner.{name}") or by_name.get(f".inner_id.{uuid}")
        if engine == "MaterializedView" and inner is not None:
            engine = f"MaterializedView, stored as {inner[1]}"
            partition_key, sorting_key = inner[2], inner[3]
        tables.append(Table(name, engine, partition_key, sorting_key, tuple(columns.get(name, ()))))
    return tables


def meaning(table: str, column: str, notes: Notes) -> str:
    return (
        notes.columns.get((table, column))
        or schemacolumns.COLUMNS.get(table, {}).get(column)
        or schemacolumns.SHARED.get(column, "")
    )


def check(tables: list[Table], notes: Notes) -> None:
    """Raise Undocumented naming every table without a comment and column without a meaning."""
    missing = []
    for table in tables:
        if _is_feeder(table, notes):
            continue
        if table.name != STATE_TABLE and table.name not in notes.tables:
            missing.append(f"table {table.name}: put a `--` comment above its CREATE in its migration")
        missing += [
            f"column {table.name}.{c.name}: end its line in the migration with `-- meaning`, or add it to "
            "core/schemacolumns.py COLUMNS"
            for c in table.columns
            if not meaning(table.name, c.name, notes)
        ]
    if missing:
        raise Undocumented("undocumented schema:\n  " + "\n  ".join(missing))


def _is_feeder(table: Table, notes: Notes) -> bool:
    """A view that only feeds a table (`CREATE MATERIALIZED VIEW ... TO`): documented with that table."""
    return (
        table.engine == "MaterializedView" and notes.views.get(table.name, ("", table.name))[1] != table.name
    )


INTRO = """\
# ClickHouse schema reference

<!-- Generated by `{command}` from core/migrations/ and core/schemacolumns.py: do not edit by hand.
     tests/integration/test_schemadoc_current.py fails when this file is not what the command prints. -->

Everything clicktrail stores for analysis lives in one ClickHouse database: `clicktrail` by default, the
path of `CLICKTRAIL_CLICKHOUSE_URL`. The schema is made only by numbered migrations (`core/migrations/`,
applied by `clicktrail migrate`, recorded in `schema_migrations`); every statement runs on ClickHouse 18.16
and on current ClickHouse. This reference lists what those migrations create, table by table.

How to read it right:

- **Plain aggregates are exact without `FINAL`** on `clicks` and `commissions`: each click is stored once
  (the ingester is exactly-once), and the ledger is append-only (`sum(amount_minor)` is the balance).
- **Rollups (`SummingMergeTree`) must be summed**: always `sum()` their counters with `GROUP BY`; rows of
  one key are merged in the background, not at once. They are fed by materialized views on every insert.
- **`ReplacingMergeTree` tables hold versions**: read `links` with `FINAL` or `argMax(column, version)`.
- Times: `DateTime` columns are UTC; `*_ms` columns are milliseconds since the Unix epoch.
- Money: `*_minor` columns are integers in minor units (cents) of the row's `currency`; never floats.
- No raw IP address is stored anywhere: `ip_hash` is keyed, `ip_prefix` is the /24 or /48 network.
"""


def render(tables: list[Table], notes: Notes) -> str:
    check(tables, notes)
    shown = [t for t in tables if not _is_feeder(t, notes)]
    out = [INTRO.format(command=COMMAND), "## Tables at a glance", ""]
    out += ["| table | engine | sort key | what |", "|---|---|---|---|"]
    for table in shown:
        what = _first_sentence(_description(table, notes))
        out.append(
            f"| [`{table.name}`](#{table.name}) | {table.engine} | {_code(table.sorting_key)} | {what} |"
        )
    for table in shown:
        out += ["", f"## {table.name}", "", _description(table, notes), ""]
        out += _facts(table, notes)
        out += ["", "| column | type | meaning |", "|---|---|---|"]
        for column in table.columns:
            added = notes.added_by.get((table.name, column.name))
            since = f" (added by `{added}`)" if added else ""
            type_ = f"{column.type} {column.default}".strip()
            out.append(f"| `{column.name}` | `{type_}` | {meaning(table.name, column.name, notes)}{since} |")
    out += ["", "## Example queries", ""]
    out.append("Each of these runs on ClickHouse 18.16 and current ClickHouse in the tests.")
    for title, sql in schemacolumns.EXAMPLES:
        out += ["", f"{title}:", "", "```sql", sql + ";", "```"]
    return "\n".join(out) + "\n"


def _description(table: Table, notes: Notes) -> str:
    if table.name == STATE_TABLE:
        return schemacolumns.STATE_TABLE_NOTE
    return notes.tables[table.name]


def _facts(table: Table, notes: Notes) -> list[str]:
    facts = [f"- engine: {table.engine}"]
    if table.sorting_key:
        facts.append(f"- sort key: {_code(table.sorting_key)}")
    if table.partition_key:
        facts.append(f"- partitions: {_code(table.partition_key)}")
    if table.name in notes.created_by:
        facts.append(f"- created by migration `{notes.created_by[table.name]}`")
    feeders = sorted((v, src) for v, (src, dst) in notes.views.items() if dst == table.name)
    facts += [
        f"- a materialized view of `{src}`, filled on every insert into it"
        if view == table.name
        else f"- filled from `{src}` on every insert (materialized view `{view}`)"
        for view, src in feeders
    ]
    fed = sorted(dst for _, (src, dst) in notes.views.items() if src == table.name)
    if fed:
        facts.append("- its inserts also fill " + ", ".join(f"`{name}`" for name in fed))
    return facts


def _first_sentence(text: str) -> str:
    head = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return head.rstrip(".").replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def generate() -> str:
    """Migrate a scratch chdb database and render the reference."""
    from core.clickhouse import ChdbClickHouse  # chdb: a test dependency, imported only here

    with tempfile.TemporaryDirectory(prefix="clicktrail-schemadoc-") as scratch:
        backend = ChdbClickHouse(f"{scratch}/chdb", database=SCRATCH_DATABASE)
        try:
            migrate(backend, log=lambda _line: None)
            tables = read_tables(backend)
        finally:
            backend.close()
    return render(tables, read_notes())


def main() -> int:
    try:
        sys.stdout.write(generate())
    except Undocumented as exc:
        print(f"{exc}\nthen regenerate: {COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
