"""From one node to a cluster without losing data (`clicktrail migrate --to-cluster --from URL`).

The cluster's schema is created first (core/clustermigrate.py). Then each table that anything but a view
writes (clicks, links, order events, the ledger, and any table a later migration adds) is copied by the
cluster itself: `INSERT INTO db.t SELECT ... FROM remote('old:9000', db.t)` through the Distributed table
with `insert_distributed_sync = 1`, so each row goes synchronously to the local replicated table of the
shard its key names (the same shard the ingester would pick) and the statement returns only when every
shard has its rows. The rollups are not copied: the copied rows pass through the materialized views on
each shard, which rebuild them exactly.

A table is copied only while it is empty on the cluster; one that already holds as many rows as the
source is skipped, so the command can be run again after a failure. A table that holds some rows but
not all is refused (a copy died half-way, or something else wrote there): nothing is guessed.
Stop the ingesters and the attributor before the copy (Redis buffers clicks and order events meanwhile),
then point them at the cluster: their stream positions and cursors live in Redis, not in ClickHouse."""

from __future__ import annotations

from collections.abc import Callable

from core.clickhouse import Backend
from core.cluster import ClusterClickHouse
from core.clusterddl import ENTRANCES
from core.migrate import applied, available, migrate

# Wait for every shard to store its rows before the INSERT returns (no asynchronous Distributed buffer).
COPY_SETTINGS = {"insert_distributed_sync": 1}


class CopyRefused(RuntimeError):
    """The copy cannot go on safely; the message says why."""


def copy_to_cluster(
    source: Backend, source_address: str, cluster: ClusterClickHouse, log: Callable[[str], None] = print
) -> dict[str, int]:
    """Copy every written table of `source` (one node, reachable from the cluster's nodes at
    `source_address`, `host:port`) into `cluster`; returns the rows copied per table."""
    missing = {m.version for m in available()} - applied(source)
    if missing:
        raise CopyRefused(f"run `clicktrail migrate` on the single node first (missing {sorted(missing)})")
    migrate(cluster, log=log)
    copied = {}
    for table, key in cluster.shard_keys().items():
        if key is None:
            continue  # written only by its materialized view: rebuilt by the copy of its source
        copied[table] = _copy_table(source, source_address, cluster, table)
        log(f"{table}: {copied[table]:,} rows copied")
    return copied


def _count(backend: Backend, table: str) -> int:
    return int(backend.execute(f"SELECT count() FROM {backend.database}.{table}")[0][0])


def _copy_table(source: Backend, source_address: str, cluster: ClusterClickHouse, table: str) -> int:
    want, have = _count(source, table), _count(cluster, table)
    if have == want:
        return 0
    if have:
        raise CopyRefused(
            f"{table} holds {have:,} of {want:,} rows on the cluster: a copy died half-way or something "
            "else writes there; drop the cluster's database and run the copy again"
        )
    columns = [
        row[0]
        for row in cluster.execute(
            "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": cluster.database, "t": table},
        )
    ]
    names = ", ".join(columns)
    # Through the table's entrance where it has one: the views that feed its rollups read from there.
    target = ENTRANCES.get(table, table)
    cluster.execute(
        f"INSERT INTO {cluster.database}.{target} ({names}) SELECT {names} "
        f"FROM remote('{source_address}', {source.database}.{table})",
        settings=COPY_SETTINGS,
    )
    copied = _count(cluster, table)
    if copied != want:
        raise CopyRefused(f"{table}: {copied:,} rows on the cluster after the copy, {want:,} on the node")
    return copied
