"""ClickHouse on a cluster (`CLICKHOUSE_CLUSTER`): the same `Backend` contract as one node, so callers do
not change.

- Queries go to any live node (the URL's host, else the first of `CLICKHOUSE_ALT_HOSTS` that answers)
  and read the `Distributed` tables, with `load_balancing = 'in_order'` and `prefer_localhost_replica =
  0`: every query reads each shard from its first live replica, the one inserts go to as well, so a
  process reads what it wrote (the attributor's ledger difference and the ingester's key check depend on
  that) and only a failover can show it a replica that has not fetched the latest parts yet.
- Inserts of rows never go through a `Distributed` table (its asynchronous buffer can lose or double
  rows): each row's shard is computed here from the table's sharding key exactly as ClickHouse would
  (core/clusterddl.py), and each shard's block is inserted synchronously into the local replicated table
  on its first live replica, else the next. A block retried on any replica of its shard after a failure
  is dropped by ClickHouse's replicated block deduplication (the block's hash is kept in ZooKeeper for
  the shard), and so are the blocks its materialized views derive from it; the ingester's key check
  (core/streams.py) covers a retry whose block differs.
- Clicks go in through their entrance (`clicks_in_local`, core/clusterddl.py ENTRANCES), whose views
  write `clicks_local` and every rollup, each deduplicated on its own: a block that failed part-way
  (ZooKeeper lost after some targets stored their part, before the others did) is complete after the
  same block is sent again, and no target has it twice. A block of the ingester's tables whose every
  attempt failed is kept and sent again, unchanged, before the ingester's next key check
  (`settle_failed_inserts`, KEPT_WHEN_FAILED) and before any other insert of the table: the key check
  alone would see its clicks stored and skip them, leaving a rollup short.
- A replica that loses ZooKeeper *while committing* a part may keep it though ZooKeeper never recorded
  it, and then reads the re-sent block's rows twice: core/orphanparts.py sets such parts aside.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

from core.clickhouse import Backend, ClickHouseError, NativeClickHouse, PartsInDoubt, ship_id_sets
from core.clusterddl import ENTRANCES, Planner, local_name, shard_index
from core.orphanparts import SWEPT_SINCE_S, OrphanParts

# Every query: read each shard from its first live replica in `remote_servers` order, never the local
# replica just because it is local, so reads follow the replica that inserts go to. A statement that
# inserts through a `Distributed` table (an INSERT ... SELECT such as the payout batch's) writes each
# shard's block synchronously into its replicated table: it returns only when every row is stored, so a
# read right after it sees them, and a failure is the caller's to retry (never a buffer that retries or
# drops on its own).
READ_SETTINGS = {"load_balancing": "in_order", "prefer_localhost_replica": 0, "insert_distributed_sync": 1}
# A replica that failed is tried last for this long, so a dead one does not cost a connect timeout on
# every block.
REPLICA_PENALTY_S = 10.0
CONNECT_TIMEOUT_S = 2
# The tables whose failed blocks are kept and sent again, unchanged, before the ingester's next key check
# and before any other insert of the table: those the ingester writes, whose stream group keeps a failed
# batch with the process that read it (core/streams.py). The key check alone can be fooled: a replica
# that answered "Unknown status" shows the block's rows (core/orphanparts.py) until they are set aside,
# and a clicks block stored part-way has its rows in `clicks` and not in every rollup. Not the ledger:
# another attributor may book its orders meanwhile (core/clusterddl.py ENTRANCES).
KEPT_WHEN_FAILED = frozenset({*ENTRANCES, "links", "order_events"})


@dataclass(frozen=True)
class _Unfinished:
    """A block of a table with an entrance whose insert failed: to be sent again as it was."""

    table: str
    columns: tuple[str, ...]
    shard: int
    block: list[list[Any]]


@dataclass(frozen=True)
class Replica:
    shard: int  # 0-based, remote_servers order
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class ClusterClickHouse:
    """The Backend for a cluster. Thread-safe through one lock (its statements run one at a time)."""

    ships_id_sets = True

    def __init__(
        self,
        url: str,
        cluster: str,
        alt_hosts: Sequence[str] = (),
        database: str | None = None,
        insert_timeout_s: int = 20,
    ) -> None:
        from clickhouse_driver import Client, errors

        parts = urlsplit(url)
        self.database = database or parts.path.strip("/") or "clicktrail"
        self.cluster = cluster
        self._user, self._password = parts.username or "default", parts.password or ""
        self._timeout_s = insert_timeout_s
        self._driver_errors = (errors.Error, OSError, EOFError)
        self._network_errors = (errors.NetworkError, errors.SocketTimeoutError, OSError, EOFError)
        # Replicas that answered "Unknown status" (or lost the connection) to an insert, and their repair.
        self.orphans = OrphanParts(self, self._network_errors)
        self._client_class = Client
        hosts = [f"{parts.hostname}:{parts.port or 9000}", *alt_hosts]
        self._entry = self._client(hosts)
        self._lock = threading.Lock()
        self._shards: list[list[Replica]] | None = None
        self._weights: list[int] = []
        self._clients: dict[str, Any] = {}
        self._failed_at: dict[str, float] = {}
        self._keys: dict[str, str | None] | None = None
        self._unfinished: list[_Unfinished] = []
        self._settle_lock = threading.Lock()

    def _client(self, hosts: Sequence[str]) -> Any:
        host, _, port = hosts[0].rpartition(":")
        return self._client_class(
            host,
            port=int(port),
            user=self._user,
            password=self._password,
            database="default",
            alt_hosts=",".join(hosts[1:]) or None,
            connect_timeout=CONNECT_TIMEOUT_S,
            send_receive_timeout=self._timeout_s,
            settings=READ_SETTINGS,
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._driver_errors as exc:
            raise ClickHouseError(f"{type(exc).__name__}: {exc}") from exc

    # --- Backend ---------------------------------------------------------------------------------------
    def execute(
        self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> list[tuple]:
        """Run `sql` on the entry node. A read that fails because the node went away is run once more
        at once, on the next live node (the driver reconnects through the alt hosts); anything else is
        the caller's to retry, since it may have run. An IdSet goes as an external table, which the
        entry node sends on to every shard the query reads."""
        params, tables = ship_id_sets(params)
        with self._lock:
            for attempt in range(2):
                try:
                    with self._errors():
                        return self._entry.execute(
                            sql,
                            params,
                            settings={**READ_SETTINGS, **(settings or {})},
                            external_tables=tables,
                        )
                except ClickHouseError as exc:
                    if attempt or not (_is_read(sql) and isinstance(exc.__cause__, self._network_errors)):
                        raise
                    self._entry.disconnect()
        raise AssertionError("unreachable")

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        """Insert `data` (one sequence per column), each row into the local table of its shard."""
        if not data or not len(data[0]):
            return 0
        key = self.shard_keys().get(table)
        if key is None:
            raise ClickHouseError(f"{table} has no sharding key: only materialized views write it")
        if table in KEPT_WHEN_FAILED:
            self.settle_failed_inserts()
        shards = self.shards()
        per_shard: list[list[int]] = [[] for _ in shards]
        weights = self._weights
        for row, value in enumerate(data[list(columns).index(key)]):
            per_shard[shard_index(value, weights)].append(row)
        for shard, rows in enumerate(per_shard):
            if rows:
                pick = itemgetter(*rows)
                block = [list(pick(col)) if len(rows) > 1 else [col[rows[0]]] for col in data]
                self._write_block(_Unfinished(table, tuple(columns), shard, block))
        return len(data[0])

    def settle_failed_inserts(self) -> None:
        """Send again, as it was, every block of a table in KEPT_WHEN_FAILED whose insert failed in this
        process: each target takes its part if it missed it and drops it as a duplicate otherwise. Raises
        while ClickHouse still refuses; the ingester calls this before its key check (core/streams.py)."""
        with self._settle_lock:
            while self._unfinished:
                block = self._unfinished[0]
                self._on_shard(block.shard, self._insert_sql(block), block.block)
                self._unfinished.pop(0)
        # Also when no insert comes (an idle ingester): replicas in doubt are looked at (orphanparts.py).
        if self.orphans.in_doubt or self.orphans.detached:  # (so the topology was read: an insert failed)
            for shard in range(len(self.shards())):
                self.orphans.shard_took_insert(shard)

    def credentials(self) -> dict[str, str]:
        """The user and password of the URL, for queries that connect onward (`remote()`)."""
        return {"user": self._user, "password": self._password}

    def settle_unknown_parts(self) -> None:
        """Before a read taken as the truth: set aside, on every replica, the parts ZooKeeper never
        recorded (orphanparts.py `sweep`), or raise while one may be left. A few small queries per
        replica and table when there is none."""
        left = self.orphans.sweep(time.time() - SWEPT_SINCE_S)
        if left:
            raise PartsInDoubt(f"parts unknown to ZooKeeper may be left: {'; '.join(left)}")

    def _write_block(self, block: _Unfinished) -> None:
        try:
            self._on_shard(block.shard, self._insert_sql(block), block.block)
        except ClickHouseError:
            if block.table in KEPT_WHEN_FAILED:
                self._unfinished.append(block)
            raise

    def _insert_sql(self, block: _Unfinished) -> str:
        table = local_name(ENTRANCES.get(block.table, block.table))
        return f"INSERT INTO {self.database}.{table} ({', '.join(block.columns)}) VALUES"

    def close(self) -> None:
        with self._lock:
            for client in (self._entry, *self._clients.values()):
                with contextlib.suppress(*self._driver_errors):
                    client.disconnect()

    # --- topology ----------------------------------------------------------------------------------
    def shards(self) -> list[list[Replica]]:
        """The cluster's replicas per shard, in `remote_servers` order (read once)."""
        if self._shards is None:
            rows = self.execute(
                "SELECT shard_num, shard_weight, host_address, port FROM system.clusters "
                "WHERE cluster = %(cluster)s ORDER BY shard_num, replica_num",
                {"cluster": self.cluster},
            )
            if not rows:
                raise ClickHouseError(f"cluster {self.cluster!r} is not in the servers' remote_servers")
            numbers = sorted({int(r[0]) for r in rows})
            self._weights = [int(next(r[1] for r in rows if int(r[0]) == n)) for n in numbers]
            self._shards = [
                [Replica(i, str(r[2]), int(r[3])) for r in rows if int(r[0]) == n]
                for i, n in enumerate(numbers)
            ]
        return self._shards

    def shard_keys(self) -> dict[str, str | None]:
        if self._keys is None:
            from core.migrate import available

            statements = [s for m in available() for s in m.statements(self.database)]
            self._keys = Planner(self.database, self.cluster, statements).keys()
        return self._keys

    def replicas_in_order(self, shard: int) -> list[Replica]:
        """A shard's replicas, those that failed in the last REPLICA_PENALTY_S last."""
        now = time.monotonic()
        replicas = self.shards()[shard]
        return sorted(replicas, key=lambda r: now - self._failed_at.get(r.address, -1e18) < REPLICA_PENALTY_S)

    def execute_on(
        self, replica: Replica, sql: str, params: Any = None, columnar: bool = False
    ) -> list[tuple]:
        """Run one statement on one node (inserts, migrations' per-shard and per-node steps, tests)."""
        with self._lock, self._errors():
            client = self._clients.get(replica.address)
            if client is None:
                client = self._clients[replica.address] = self._client([replica.address])
            try:
                return client.execute(sql, params, columnar=columnar)
            except self._driver_errors:
                self._failed_at[replica.address] = time.monotonic()
                client.disconnect()
                raise

    def _on_shard(self, shard: int, sql: str, block: list[list[Any]]) -> None:
        errors = []
        for replica in self.replicas_in_order(shard):
            try:
                self.execute_on(replica, sql, block, columnar=True)
            except ClickHouseError as exc:
                self.orphans.answered(replica, exc)
                errors.append(f"{replica.address}: {exc}")
                continue
            # The shard takes inserts again, so ZooKeeper is back: repair what a 319 may have left.
            self.orphans.shard_took_insert(shard)
            return
        raise ClickHouseError(f"no replica of shard {shard + 1} took the block: {'; '.join(errors)}")


_READS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "EXISTS"})


def _is_read(sql: str) -> bool:
    words = sql.split(None, 1)
    return bool(words) and words[0].upper() in _READS


def connect(settings: Any, insert_timeout_s: int | None = None) -> Backend:
    """The backend the settings name: a cluster when `clickhouse_cluster` is set, else one node (with
    failover to `clickhouse_alt_hosts`)."""
    timeout = insert_timeout_s or settings.clickhouse_insert_timeout_s
    if settings.clickhouse_cluster:
        return ClusterClickHouse(
            settings.clickhouse_url,
            settings.clickhouse_cluster,
            alt_hosts=settings.clickhouse_alt_hosts,
            insert_timeout_s=timeout,
        )
    return NativeClickHouse(
        settings.clickhouse_url, insert_timeout_s=timeout, alt_hosts=settings.clickhouse_alt_hosts
    )
