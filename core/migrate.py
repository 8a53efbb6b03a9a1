"""Numbered SQL migrations, applied in order, with their state kept in ClickHouse itself.

Each file in `migrations/` is `NNNN_name.sql`: statements separated by `;` at the end of a line, with
`{db}` standing for the database. Every statement must be idempotent (`IF NOT EXISTS`; an `ALTER TABLE
{db}.t ADD COLUMN c ...`, one column each, is skipped when the column exists), so a run that died half-way
is finished by the next one; a migration is recorded only after all its statements ran.
The SQL must be accepted by ClickHouse 18.16 and by a current ClickHouse alike."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

from core.clickhouse import Backend

STATE_TABLE = "schema_migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`: an `ALTER TABLE db.t ADD COLUMN c ...` statement (one
# column per statement) is skipped when the column is already there, so a half-applied migration finishes.
_ADD_COLUMN_RE = re.compile(r"^ALTER\s+TABLE\s+(\w+)\.(\w+)\s+ADD\s+COLUMN\s+(\w+)\s", re.I)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        text = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        text = text.replace("{db}", database)
        return [part.strip() for part in re.split(r";\s*$", text, flags=re.M) if part.strip()]


def available() -> list[Migration]:
    found = []
    for entry in resources.files("core.migrations").iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


def applied(backend: Backend) -> set[int]:
    rows = backend.execute(f"SELECT version FROM {backend.database}.{STATE_TABLE}")
    return {int(row[0]) for row in rows}


def migrate(backend: Backend, log=print) -> list[Migration]:
    """Create the database and apply every migration not yet recorded. Safe to run again."""
    if getattr(backend, "cluster", ""):
        from core.clustermigrate import migrate_cluster

        return migrate_cluster(backend, log)  # type: ignore[arg-type]
    db = backend.database
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    backend.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.{STATE_TABLE} "
        "(version UInt32, name String, applied_at DateTime) ENGINE = TinyLog"
    )
    done = applied(backend)
    ran = []
    for migration in available():
        if migration.version in done:
            continue
        for statement in migration.statements(db):
            apply_statement(backend, statement)
        backend.execute(
            f"INSERT INTO {db}.{STATE_TABLE} (version, name, applied_at) "
            "SELECT %(version)s, %(name)s, toDateTime(%(now)s)",
            {"version": migration.version, "name": migration.name, "now": int(time.time())},
        )
        log(f"applied {migration.version:04d}_{migration.name}")
        ran.append(migration)
    return ran


def apply_statement(backend: Backend, statement: str) -> None:
    """Run one migration statement so that running it again changes nothing."""
    if not _column_exists(backend, statement):
        backend.execute(statement)


def _column_exists(backend: Backend, statement: str) -> bool:
    """True when `statement` adds a column that its table already has."""
    match = _ADD_COLUMN_RE.match(statement)
    if not match:
        return False
    database, table, column = match.groups()
    rows = backend.execute(
        "SELECT count() FROM system.columns WHERE database = %(db)s AND table = %(t)s AND name = %(c)s",
        {"db": database, "t": table, "c": column},
    )
    return bool(rows[0][0])
