"""`clicktrail migrate` on a cluster: the same numbered migrations, each statement rewritten by
core/clusterddl.py and run `ON CLUSTER` (creations), on one replica of each shard (a replicated table's
ALTER) or on every node (a Distributed table's ALTER).

The state table is replicated to every node (`clusterddl.state_table_sql`), so any node answers which
migrations ran: a second run applies nothing, and a run that died half-way is finished by the next one
(creations are `IF NOT EXISTS`, and each node's ALTER is skipped where the column is there already).
Every statement is rewritten before the first one runs, so a shape the rewrite does not know stops the
run before it changes anything."""

from __future__ import annotations

import time
from itertools import chain

from core.clickhouse import ClickHouseError
from core.cluster import ClusterClickHouse, Replica
from core.clusterddl import ENTRANCES, Planner, Step, state_table_sql
from core.migrate import STATE_TABLE, Migration, applied, available


def migrate_cluster(backend: ClusterClickHouse, log=print) -> list[Migration]:
    db, cluster = backend.database, backend.cluster
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {cluster}")
    backend.execute(state_table_sql(db, cluster, STATE_TABLE))
    done = applied(backend)
    migrations = available()
    planner = Planner(db, cluster, [s for m in migrations for s in m.statements(db)])
    plans = [(m, [planner.steps(s) for s in m.statements(db)]) for m in migrations if m.version not in done]
    for migration, steps in plans:
        for step in chain.from_iterable(steps):
            run_step(backend, step)
        backend.execute(
            f"INSERT INTO {db}.{STATE_TABLE} (version, name, applied_at) "
            "SELECT %(version)s, %(name)s, toDateTime(%(now)s)",
            {"version": migration.version, "name": migration.name, "now": int(time.time())},
        )
        log(f"applied {migration.version:04d}_{migration.name} on cluster {cluster}")
    # A database migrated before tables had entrances gets them now (IF NOT EXISTS: nothing for the
    # others); its rollup views keep reading the table itself, so only a new database has the entrance's
    # exactly-once rollups (docs/cluster.md).
    for table in ENTRANCES:
        for step in planner.entrance(table) if table in planner.catalog.kinds else []:
            run_step(backend, step)
    return [m for m, _ in plans]


def run_step(backend: ClusterClickHouse, step: Step) -> None:
    if step.scope == "cluster":
        backend.execute(step.sql)
    elif step.scope == "shard":
        for shard in range(len(backend.shards())):
            _on_one_replica(backend, shard, step)
    elif step.scope == "host":
        for replica in chain.from_iterable(backend.shards()):
            _run_unless_column(backend, replica, step)
    else:
        raise ValueError(f"unknown step scope {step.scope!r}")


def _on_one_replica(backend: ClusterClickHouse, shard: int, step: Step) -> None:
    """A replicated table's ALTER on the shard's first live replica; replication does the others."""
    errors = []
    for replica in backend.replicas_in_order(shard):
        try:
            _run_unless_column(backend, replica, step)
            return
        except ClickHouseError as exc:
            errors.append(f"{replica.address}: {exc}")
    raise ClickHouseError(f"{step.sql}: no replica of shard {shard + 1} ran it: {'; '.join(errors)}")


def _run_unless_column(backend: ClusterClickHouse, replica: Replica, step: Step) -> None:
    rows = backend.execute_on(
        replica,
        "SELECT count() FROM system.columns WHERE database = %(db)s AND table = %(t)s AND name = %(c)s",
        {"db": backend.database, "t": step.table, "c": step.column},
    )
    if not rows[0][0]:
        backend.execute_on(replica, step.sql)
