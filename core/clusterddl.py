"""Migration statements rewritten for a ClickHouse cluster, as pure functions over SQL text.

A migration is written once, for one node (core/migrations/). On a cluster (`CLICKHOUSE_CLUSTER`) each
statement of a known shape becomes:

- `CREATE TABLE IF NOT EXISTS db.t (...) ENGINE = XMergeTree(args) ...`: a local table `db.t_local`
  `ON CLUSTER`, engine `ReplicatedXMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}', args)`
  with the same columns and clauses, and `db.t` itself as a `Distributed` table over it, so every
  query names the table it always named.
- `CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.t AS SELECT ... FROM db.s ...`: the view `ON
  CLUSTER`, reading `db.s_local` and writing `db.t_local`: each node's view sees the blocks inserted on
  that node and its output is replicated like any insert.
- `CREATE MATERIALIZED VIEW IF NOT EXISTS db.v ENGINE = XMergeTree() ... AS SELECT ...` (a view with its
  own storage): the view as `db.v_local` with the replicated engine, and `db.v` as a `Distributed`
  table over it.
- `ALTER TABLE db.t ADD COLUMN c T ...` (one column): on one replica of each shard for `db.t_local`
  (replication carries a replicated table's ALTER to the other replica), and on every node for the
  `Distributed` `db.t`. Not `ON CLUSTER`: ClickHouse 18.16 refuses `ON CLUSTER` ALTERs of a table that
  is not replicated on a cluster whose shards are, and each node's step can be skipped where the column
  is there already, so a half-applied run finishes.

Anything else (another engine, a view joining tables, a DROP, several columns in one ALTER) raises
`UnknownShape` naming the statement: a guess could shard or replicate data wrongly and silently.

Sharding keys (`SHARD_KEYS`, reasons in docs/cluster.md) are one column, hashed as `halfMD5(toString(c))`,
which the ingester computes in Python too (`shard_index`), so it writes each row straight into the local
table of its shard. A table not named there is sharded by the first column of its sort key; a table that
only materialized views write (`TO` targets, views with storage) gets no key: nothing inserts into it
through the `Distributed` table."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

LOCAL_SUFFIX = "_local"
# Which column spreads each table over the shards (see docs/cluster.md, "Sharding keys").
SHARD_KEYS = {
    "clicks": "click_id",
    "links": "code",
    "order_events": "order_id",
    "commissions": "order_id",
}
# Tables written through an entrance on a cluster: a `Null` table per node (`clicks_in_local`, and a
# `Distributed` `clicks_in` over them) whose views write the table's local table *and* every rollup the
# migrations feed from the table. ClickHouse 18.16 deduplicates the views of a replicated insert not each
# on its own but all with it: a retried block whose table part was stored skips every view, so a block
# that failed between the table's part and a rollup's part (ZooKeeper lost) left that rollup short for
# good. Views of a `Null` table are deduplicated each by its own part: the same block again gives every
# target the part it missed and none twice. core/cluster.py inserts there and retries such blocks.
# Not the ledger: a block kept after a failed insert lives in one process's memory, and another
# attributor taking the lock meanwhile would book the same orders again under its own run (an entrance
# without the kept block would re-book them too, with `commissions_daily` holding the failed block's part).
ENTRANCES = {"clicks": "clicks_in"}
# But a view's part is deduplicated by its *content*: two different blocks whose rollup rows happen to be
# equal (one click each on the same link and day, say) made one part, and the second click was missing
# from the rollup for good. So each view of an entrance also writes, into a column of its target's local
# table, the sum of a hash of the source rows' identities it aggregates (SALTED_ROWS): the same block again
# gives the same sum (a retry is still dropped), another block another sum. The column is summed by merges
# like the others and means nothing; readers never need it.
SALT_COLUMN = "block_salt"
# Per table with an entrance: a hash that tells its rows apart, within a block and between blocks.
SALTED_ROWS = {"clicks": "cityHash64(click_id)"}
_ENTRANCE_NAMES = frozenset(name for e in ENTRANCES.values() for name in (e, e + "_mv"))
_MERGE_TREES = frozenset(
    {
        "MergeTree",
        "SummingMergeTree",
        "ReplacingMergeTree",
        "AggregatingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
    }
)
_KEY_TYPES = re.compile(r"^(String|U?Int(8|16|32|64))$")
# Every replicated table may be restarted with any share of its rows in parts ZooKeeper never recorded
# (core/orphanparts.py sets such parts aside that way): ClickHouse's default (0.5) refuses to attach a
# table above half, which is where an insert cut by ZooKeeper leaves a small or young table. The check
# guards against a replica pointed at the wrong ZooKeeper path; those parts would go to `detached/`, not
# away.
REPLICA_SETTINGS = "replicated_max_ratio_of_wrong_parts = 1"
_CLAUSES = re.compile(r"^(PARTITION\s+BY|ORDER\s+BY|PRIMARY\s+KEY|SAMPLE\s+BY|TTL|SETTINGS)\b", re.I)
_NAME = r"(\w+)\.(\w+)"
_CREATE_TABLE = re.compile(rf"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+{_NAME}\s*\(", re.I)
_CREATE_VIEW_TO = re.compile(
    rf"^CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+{_NAME}\s+TO\s+{_NAME}\s+AS\s+(SELECT\b.*)$",
    re.I | re.S,
)
_CREATE_VIEW_ENGINE = re.compile(
    rf"^CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+{_NAME}\s+ENGINE\s*=\s*(\w+)\s*\(", re.I
)
_ADD_COLUMN = re.compile(rf"^ALTER\s+TABLE\s+{_NAME}\s+ADD\s+COLUMN\s+(\w+)\s+(.+)$", re.I | re.S)
_AS_SELECT = re.compile(r"\bAS\s+(SELECT\b.*)$", re.I | re.S)
_FORBIDDEN_IN_VIEW = re.compile(r"\b(JOIN|POPULATE|GLOBAL)\b|\bIN\s*\(\s*SELECT\b", re.I)


class UnknownShape(ValueError):
    """A migration statement the cluster rewrite does not know; the message quotes it."""

    def __init__(self, statement: str, why: str) -> None:
        short = " ".join(statement.split())
        super().__init__(f"cannot run on a cluster ({why}): {short[:300]}")


@dataclass(frozen=True)
class Step:
    """One statement to run. scope `cluster`: once, `ON CLUSTER`; `shard`: on one live replica of each
    shard; `host`: on every node. `table`/`column` (shard and host steps): skip where the column exists."""

    scope: str
    sql: str
    table: str = ""
    column: str = ""


@dataclass
class Catalog:
    """What the migrations create: table -> kind (`table`, or `view` for a view with storage), each
    table's columns and types and the clauses after its columns, and which tables only views write."""

    kinds: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    view_targets: set[str] = field(default_factory=set)
    clauses: dict[str, str] = field(default_factory=dict)


def local_name(table: str) -> str:
    return table + LOCAL_SUFFIX


def shard_expression(column: str) -> str:
    return f"halfMD5(toString({column}))"


def shard_hash(value: object) -> int:
    """`halfMD5(toString(value))` as ClickHouse computes it (first 8 bytes of the MD5, big-endian), for
    strings, bytes and integers."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, int) and not isinstance(value, bool):
        data = str(value).encode()
    else:
        raise TypeError(f"cannot shard by a {type(value).__name__}")
    # A spread over shards, not security.
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:8], "big")


def shard_index(value: object, weights: Sequence[int]) -> int:
    """The shard (0-based, in `remote_servers` order) a Distributed table with these shard weights sends
    a row with this key value to: the hash modulo the total weight, shards owning consecutive ranges."""
    slot = shard_hash(value) % sum(weights)
    for index, weight in enumerate(weights):
        if slot < weight:
            return index
        slot -= weight
    raise AssertionError("unreachable: slot below the total weight")


def _balanced(text: str, open_at: int) -> int:
    """Index just past the parenthesis that closes the one at `open_at` (quotes respected)."""
    depth, quote, i = 0, "", open_at
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'`\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _engine(statement: str, name: str, args: str, db: str, table: str) -> str:
    if name not in _MERGE_TREES:
        raise UnknownShape(statement, f"engine {name} has no replicated form here")
    path = f"'/clickhouse/tables/{{shard}}/{db}/{table}'"
    inner = ", ".join([path, "'{replica}'", *_split_top(args)])
    return f"Replicated{name}({inner})"


def _clauses(statement: str, rest: str) -> str:
    """The table's clauses after its engine, with REPLICA_SETTINGS added to its SETTINGS (SETTINGS comes
    last in a MergeTree definition)."""
    rest = rest.strip()
    if (rest and not _CLAUSES.match(rest)) or re.search(r"\bAS\s+SELECT\b", rest, re.I):
        raise UnknownShape(statement, "unexpected text after the engine")
    if not rest:
        raise UnknownShape(statement, "no ORDER BY: the engine's old syntax takes no SETTINGS")
    if re.search(r"\bPOPULATE\b", rest, re.I):
        raise UnknownShape(statement, "POPULATE")
    if re.search(r"\breplicated_max_ratio_of_wrong_parts\b", rest, re.I):
        raise UnknownShape(statement, "replicated_max_ratio_of_wrong_parts is the planner's to set")
    if re.search(r"\bSETTINGS\s+\w+\s*=", rest, re.I):
        return f"{rest}, {REPLICA_SETTINGS}"
    return f"{rest} SETTINGS {REPLICA_SETTINGS}"


def _first_sort_column(rest: str) -> str | None:
    match = re.search(r"\bORDER\s+BY\s*\(?\s*(\w+)\s*([,)]|$|\s+SETTINGS\b)", rest, re.I)
    return match[1] if match else None


class Planner:
    """Rewrites the statements of a database's migrations, in order. `catalog` first learns every
    statement of every migration (pass them all, applied or not), so a table's kind and key are known
    whatever run adds a column to it."""

    def __init__(self, database: str, cluster: str, statements: Sequence[str]) -> None:
        self.database, self.cluster = database, cluster
        self.catalog = Catalog()
        for statement in statements:
            self._learn(statement)

    def keys(self) -> dict[str, str | None]:
        """Every table's sharding key (None: only views write it); raises if a table has none."""
        return {table: self.key_of(table) for table in self.catalog.kinds}

    # --- learning the schema -------------------------------------------------------------------------
    def _learn(self, statement: str) -> None:
        cat = self.catalog
        if match := _CREATE_TABLE.match(statement):
            table = self._own(statement, match[1], match[2])
            body_end = _balanced(statement, match.end() - 1)
            cat.kinds[table] = "table"
            cat.columns[table] = {}
            for column in _split_top(statement[match.end() : body_end - 1]):
                name, _, rest = column.partition(" ")
                cat.columns[table][name] = rest.strip().split()[0] if rest.strip() else ""
            cat.clauses[table] = statement[body_end:]
        elif match := _CREATE_VIEW_TO.match(statement):
            cat.view_targets.add(self._own(statement, match[3], match[4]))
        elif match := _CREATE_VIEW_ENGINE.match(statement):
            cat.kinds[self._own(statement, match[1], match[2])] = "view"
        elif match := _ADD_COLUMN.match(statement):
            table = self._own(statement, match[1], match[2])
            cat.columns.setdefault(table, {})[match[3]] = match[4].split()[0]
        else:
            raise UnknownShape(statement, "not a CREATE TABLE, CREATE MATERIALIZED VIEW or ADD COLUMN")

    def _own(self, statement: str, db: str, table: str) -> str:
        if db != self.database:
            raise UnknownShape(statement, f"names database {db}, not {self.database}")
        if table.endswith(LOCAL_SUFFIX) or table in _ENTRANCE_NAMES:
            raise UnknownShape(
                statement, f"{table}: names ending in {LOCAL_SUFFIX} and entrances are the cluster's own"
            )
        return table

    def key_of(self, table: str) -> str | None:
        if self.catalog.kinds.get(table) == "view" or table in self.catalog.view_targets:
            return None
        columns = self.catalog.columns[table]
        column = SHARD_KEYS.get(table) or _first_sort_column(self.catalog.clauses.get(table, ""))
        if column is None or column not in columns or not _KEY_TYPES.match(columns[column]):
            raise ValueError(
                f"no sharding key for table {table}: name one (a String or integer column) in "
                "core/clusterddl.py SHARD_KEYS"
            )
        return column

    # --- rewriting ---------------------------------------------------------------------------------
    def steps(self, statement: str) -> list[Step]:
        if match := _CREATE_TABLE.match(statement):
            return self._create_table(statement, match)
        if match := _CREATE_VIEW_TO.match(statement):
            return self._view_to(statement, match)
        if match := _CREATE_VIEW_ENGINE.match(statement):
            return self._view_engine(statement, match)
        if match := _ADD_COLUMN.match(statement):
            return self._add_column(statement, match)
        raise UnknownShape(statement, "not a CREATE TABLE, CREATE MATERIALIZED VIEW or ADD COLUMN")

    def _create_table(self, statement: str, match: re.Match) -> list[Step]:
        db, table, on = self.database, match[2], f"ON CLUSTER {self.cluster}"
        body_end = _balanced(statement, match.end() - 1)
        columns = statement[match.end() - 1 : body_end]
        engine = re.match(r"\s*ENGINE\s*=\s*(\w+)\s*\(", statement[body_end:], re.I)
        if not engine:
            raise UnknownShape(statement, "no ENGINE = ...(...) after the columns")
        args_open = body_end + engine.end() - 1
        args_end = _balanced(statement, args_open)
        local = local_name(table)
        replicated = _engine(statement, engine[1], statement[args_open + 1 : args_end - 1], db, local)
        rest = _clauses(statement, statement[args_end:])
        return [
            Step(
                "cluster",
                f"CREATE TABLE IF NOT EXISTS {db}.{local} {on} {columns} ENGINE = {replicated} {rest}",
            ),
            self._distributed(table),
            *self.entrance(table),
        ]

    def entrance(self, table: str) -> list[Step]:
        """A table's entrance (see ENTRANCES): the Null table, its Distributed table, and the view that
        writes every row on into the table (`SELECT *`: columns added later pass through too)."""
        if table not in ENTRANCES:
            return []
        db, on, entrance = self.database, f"ON CLUSTER {self.cluster}", ENTRANCES[table]
        return [
            Step(
                "cluster",
                f"CREATE TABLE IF NOT EXISTS {db}.{local_name(entrance)} {on} AS {db}.{local_name(table)} "
                "ENGINE = Null()",
            ),
            Step(
                "cluster",
                f"CREATE TABLE IF NOT EXISTS {db}.{entrance} {on} AS {db}.{local_name(entrance)} "
                f"ENGINE = Distributed({self.cluster}, {db}, {local_name(entrance)}, "
                f"{shard_expression(self.key_of(table) or '')})",
            ),
            Step(
                "cluster",
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{entrance}_mv {on} TO {db}.{local_name(table)} "
                f"AS SELECT * FROM {db}.{local_name(entrance)}",
            ),
        ]

    def _distributed(self, table: str) -> Step:
        db, key = self.database, self.key_of(table)
        args = [self.cluster, db, local_name(table)] + ([shard_expression(key)] if key else [])
        return Step(
            "cluster",
            f"CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {self.cluster} AS {db}.{local_name(table)} "
            f"ENGINE = Distributed({', '.join(args)})",
        )

    def _select(self, statement: str, select: str) -> str:
        """The view's SELECT reading the local table of its one source table."""
        if _FORBIDDEN_IN_VIEW.search(select):
            raise UnknownShape(statement, "a view reading more than one table is not shard-local")
        sources = set(re.findall(rf"\b{re.escape(self.database)}\.(\w+)\b", select))
        if len(sources) != 1 or self.catalog.kinds.get(next(iter(sources))) != "table":
            raise UnknownShape(statement, "a view must read exactly one table created by a migration")
        source = sources.pop()
        # A table with an entrance feeds its views from there (see ENTRANCES).
        feeder = local_name(ENTRANCES.get(source, source))
        return re.sub(rf"\b{re.escape(self.database)}\.{source}\b", f"{self.database}.{feeder}", select)

    def _view_select(self, statement: str, select: str) -> tuple[str, bool]:
        """A view's SELECT on the cluster (`_select`) and whether it was salted: a view of a table with an
        entrance also writes SALT_COLUMN."""
        source = re.search(rf"\b{re.escape(self.database)}\.(\w+)\b", select)  # the one table
        rewritten = self._select(statement, select)
        if not (source and source[1] in ENTRANCES):
            return rewritten, False
        feeder = f"{self.database}.{local_name(ENTRANCES[source[1]])}"
        return _salted(statement, rewritten, SALTED_ROWS[source[1]], feeder), True

    def _view_to(self, statement: str, match: re.Match) -> list[Step]:
        db, view, target = self.database, match[2], match[4]
        if self.catalog.kinds.get(target) != "table":
            raise UnknownShape(statement, f"view target {target} is not a table created by a migration")
        select, salted = self._view_select(statement, match[5])
        salt: list[Step] = []
        if salted:  # the target's local table needs the column (a view with storage gets it from its SELECT)
            local = local_name(target)
            salt = [Step("shard", f"ALTER TABLE {db}.{local} ADD COLUMN {SALT_COLUMN} UInt64 DEFAULT 0",
                         local, SALT_COLUMN)]  # fmt: skip
        return [
            *salt,
            Step(
                "cluster",
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view} ON CLUSTER {self.cluster} "
                f"TO {db}.{local_name(target)} AS {select}",
            ),
        ]

    def _view_engine(self, statement: str, match: re.Match) -> list[Step]:
        db, view = self.database, match[2]
        args_end = _balanced(statement, match.end() - 1)
        local = local_name(view)
        replicated = _engine(statement, match[3], statement[match.end() : args_end - 1], db, local)
        tail = statement[args_end:]
        as_select = _AS_SELECT.search(tail)
        if not as_select:
            raise UnknownShape(statement, "no AS SELECT after the engine")
        rest = _clauses(statement, tail[: as_select.start()])
        select, _ = self._view_select(statement, as_select[1])
        return [
            Step(
                "cluster",
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{local} ON CLUSTER {self.cluster} "
                f"ENGINE = {replicated} {rest} AS {select}",
            ),
            self._distributed(view),
        ]

    def _add_column(self, statement: str, match: re.Match) -> list[Step]:
        db, table, column, definition = self.database, match[2], match[3], match[4].strip()
        if self.catalog.kinds.get(table) != "table":
            raise UnknownShape(statement, f"{table} is not a table created by a migration")
        if re.search(r",\s*(ADD|DROP|MODIFY)\b", definition, re.I):
            raise UnknownShape(statement, "one column per ALTER statement")
        local = local_name(table)
        # The entrance last: its view passes every column on, so the table must have the column first.
        on_every_node = [
            table,
            *([ENTRANCES[table] + LOCAL_SUFFIX, ENTRANCES[table]] if table in ENTRANCES else []),
        ]
        return [
            Step("shard", f"ALTER TABLE {db}.{local} ADD COLUMN {column} {definition}", local, column),
            *(
                Step("host", f"ALTER TABLE {db}.{t} ADD COLUMN {column} {definition}", t, column)
                for t in on_every_node
            ),
        ]


def _salted(statement: str, select: str, row_hash: str, feeder: str) -> str:
    """`select`, an aggregating view's SELECT reading `feeder` (db.table), also giving SALT_COLUMN: the
    sum of its rows' hashes, added before the FROM of that table (not a FROM inside an expression)."""
    # A view passing rows on needs no salt (distinct rows make distinct parts), but has no sum to add it to.
    if not re.search(r"\bGROUP\s+BY\b", select, re.I):
        raise UnknownShape(statement, "a view of a table with an entrance must aggregate (GROUP BY)")
    source = re.search(rf"\sFROM\s+{re.escape(feeder)}\b", select, re.I)
    assert source is not None  # _select put the feeder there
    salt = f", sum({row_hash}) AS {SALT_COLUMN}"
    return select[: source.start()] + salt + select[source.start() :]


def state_table_sql(database: str, cluster: str, table: str) -> str:
    """The migration-state table on a cluster: one replicated table that every node holds in full (one
    ZooKeeper path for all shards), so any node answers which migrations ran."""
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} "
        "(version UInt32, name String, applied_at DateTime) "
        f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/{table}', '{{shard}}-{{replica}}') "
        f"ORDER BY version SETTINGS {REPLICA_SETTINGS}"
    )
