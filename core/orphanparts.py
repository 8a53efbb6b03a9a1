"""Parts a replica keeps though ZooKeeper never recorded them, and how the cluster backend sets them aside.

When ZooKeeper goes away *while* a replica commits a part, ClickHouse 18.16 answers "Unknown status,
client must retry" (code 319) and keeps the part active on that replica, whether or not ZooKeeper
recorded it. The client sends the block again (core/cluster.py), so the block is stored as a part
ZooKeeper knows and that replica reads its rows twice; 18.16 checks such a part once, 5 minutes later,
and sets it aside only then or at the next restart. So the backend remembers each replica that answered
319 (`answered`), and after the next insert on its shard succeeds (ZooKeeper is back: `shard_took_insert`)
it compares every replicated table of the database on that replica with the parts ZooKeeper lists for it.
A table with active parts ZooKeeper does not list (looked at twice, ORPHAN_RECHECK_S apart) is restarted
on that replica (`SYSTEM RESTART REPLICA`), which moves them to `detached/` as `ignored_...`.

Only what such a commit can leave is set aside: parts of level 0 (inserted, never merged) written since
shortly before the answer. An insert that timed out on the client may have ended the same way on the
server, so a network error on an insert puts its replica in doubt too; the check costs a few small
queries when every part is known. A replica in doubt is looked at most once per RETRY_S (a dead one
costs a connect timeout each time), after an insert on its shard or while the ingester is idle, and the
work is done by one thread at a time (the others go on).

ClickHouse refuses to attach a table whose unknown parts hold more than its
`replicated_max_ratio_of_wrong_parts` of its rows (0.5 by default), which a young table cut by ZooKeeper
easily reaches. Tables made by core/clusterddl.py set it to 1, and any share is set aside; on older
tables a larger share than ORPHAN_ROWS_MAX_SHARE is left, and its replica stays in doubt and is looked
at again as the table grows.

A restart is a detach and an attach on the server. An attach refused (ZooKeeper lost again in between,
or too many unknown parts) leaves the table detached on that replica, so every
table is noted before its restart and kept noted until it is seen attached; a missing one is attached
again (`ATTACH TABLE`, from its metadata on the node's disk) after each later insert on its shard until
that works. docs/cluster.md has the story."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING

from core.clickhouse import ClickHouseError

if TYPE_CHECKING:
    from core.cluster import ClusterClickHouse, Replica

log = logging.getLogger("core.cluster")

# ClickHouse's UNKNOWN_STATUS_OF_INSERT: the replica lost ZooKeeper while committing the part; the part
# stays active on that replica whether or not ZooKeeper recorded it.
UNKNOWN_STATUS_OF_INSERT = 319
# A part ZooKeeper does not know is looked at twice, this far apart, before its table is restarted. A
# committed part is active only after ZooKeeper recorded it, so this is a margin, not the guard.
ORPHAN_RECHECK_S = 0.5
# ClickHouse refuses to attach a table whose parts unknown to ZooKeeper hold more than
# `replicated_max_ratio_of_wrong_parts` (0.5) of its rows: stay well below and leave a larger share to
# ClickHouse's own part check.
ORPHAN_ROWS_MAX_SHARE = 0.4
_ANY_SHARE = re.compile(r"\breplicated_max_ratio_of_wrong_parts\s*=\s*1\b")
# A replica whose tables wait (`waiting`) stays in doubt this long after its doubtful answer, at most:
# ClickHouse's own check of such a part comes 5 minutes after it.
WAIT_AT_MOST_S = 900
# A replica in doubt is looked at no more often than this (each failure is logged once per look).
RETRY_S = 10.0
# Parts written this long before the failed insert's answer may still be its own (server and client clocks).
WRITTEN_MARGIN_S = 60
# ClickHouse's answers when a node could not connect to another: ALL_CONNECTION_TRIES_FAILED, NETWORK_ERROR,
# SOCKET_TIMEOUT.
NOT_CONNECTED_CODES = frozenset({279, 210, 209})
# CANNOT_GET_CREATE_TABLE_QUERY: ATTACH of a table the node has no metadata of (never made there).
NO_METADATA = 390
# A sweep (a reader's check of every replica) looks at parts written this recently. ClickHouse's own
# check of such a part comes 5 minutes after the answer, but needs ZooKeeper: after a long outage it
# comes only once ZooKeeper is back, so the window is far longer than the check's delay.
SWEPT_SINCE_S = 86_400


class OrphanParts:
    """The replicas in doubt of one cluster backend, and the tables a restart may have left detached."""

    def __init__(self, backend: ClusterClickHouse, network_errors: tuple[type[BaseException], ...]) -> None:
        self._backend = backend
        self._network_errors = network_errors
        self.in_doubt: dict[Replica, float] = {}  # replica -> when (unix s) its first doubtful answer came
        self.detached: set[tuple[Replica, str]] = set()
        # Tables of a replica whose unknown parts held too many of their rows at its last look.
        self.waiting: dict[Replica, list[str]] = {}
        self._next_look: dict[Replica, float] = {}
        self._lock = threading.Lock()

    def answered(self, replica: Replica, exc: ClickHouseError) -> None:
        """An insert on `replica` failed with `exc`: remember the replica if the part may be there."""
        cause = exc.__cause__
        unknown = getattr(cause, "code", None) == UNKNOWN_STATUS_OF_INSERT
        if unknown or isinstance(cause, self._network_errors):
            self.in_doubt.setdefault(replica, time.time())  # one dict step: no lock needed

    def shard_took_insert(self, shard: int) -> None:
        """ZooKeeper answers for `shard` again (an insert went in, or the ingester is idle): attach what a
        failed restart left detached, then set aside the unknown parts of its replicas in doubt. Replicas
        looked at less than RETRY_S ago wait; so does this call while another thread works."""
        if not (self.in_doubt or self.detached) or not self._lock.acquire(blocking=False):
            return
        try:
            now = time.monotonic()
            # Copies first (other threads may add to them); then the replicas due a look.
            replicas = list(self.in_doubt) + [d[0] for d in list(self.detached)]
            due = {
                r for r in replicas
                if r.shard == shard and self._next_look.get(r, 0.0) <= now
            }  # fmt: skip
            for replica in due:
                self._next_look[replica] = now + RETRY_S
                self._look(replica)
        finally:
            self._lock.release()

    def _look(self, replica: Replica) -> None:
        try:
            for _, table in [d for d in self.detached if d[0] == replica]:
                self._attach(replica, table)
            since_s = self.in_doubt.get(replica)
            if since_s is not None:
                self.drop(replica, since_s=since_s)
                if not self.waiting.get(replica):  # else: looked at again, as the tables grow
                    self.in_doubt.pop(replica, None)
                elif time.time() - since_s > WAIT_AT_MOST_S:
                    tables = ", ".join(self.waiting[replica])
                    log.error("%s: unknown parts of %s still hold too many rows after %.0f min: left "
                              "to ClickHouse's own part check",
                              replica.address, tables, WAIT_AT_MOST_S / 60)  # fmt: skip
                    self.in_doubt.pop(replica, None)
        except ClickHouseError as exc:
            log.warning("%s: parts unknown to ZooKeeper not checked yet (again in %.0f s): %s",
                        replica.address, RETRY_S, str(exc)[:300])  # fmt: skip

    def sweep(self, since_s: float) -> list[str]:
        """Look now at every replica of the cluster, not only those in doubt: attach the tables a failed
        restart left detached and set aside the unknown parts written since `since_s` (or since the
        replica's doubtful answer, if earlier). For a process about to read rows as the truth (the
        attributor's stored ledger, a payout batch's lines): a replica it reads may have been left so by
        another process, or by itself before a restart, which no `in_doubt` here remembers. Returns
        what is still in doubt: replicas whose look failed on a live server, tables left waiting
        (`drop`), and tables that could not be attached again. A replica this process cannot reach is
        skipped only if the node queries go to cannot connect to it either (`_served`): reads then go to
        the next one, and ClickHouse sets unknown parts aside itself when a server starts."""
        left: list[str] = []
        with self._lock:  # waits for a look another thread is making
            for shard in self._backend.shards():
                left += self._attach_missing(shard)
            for replica in [r for shard in self._backend.shards() for r in shard]:
                try:
                    for _, table in [d for d in self.detached if d[0] == replica]:
                        self._attach(replica, table)
                    self.drop(replica, since_s=min(since_s, self.in_doubt.get(replica, since_s)))
                except ClickHouseError as exc:
                    if isinstance(exc.__cause__, self._network_errors) and not self._served(replica):
                        log.warning("%s: not reachable, its parts not looked at: %s",
                                    replica.address, str(exc)[:300])  # fmt: skip
                    else:
                        left.append(f"{replica.address}: {str(exc)[:300]}")
                    continue
                waiting = self.waiting.get(replica)
                if waiting:
                    tables = ", ".join(waiting)
                    left.append(f"{replica.address}: unknown parts left in {tables} (see the log)")
                else:
                    self.in_doubt.pop(replica, None)
        return left

    def _attach_missing(self, shard: list[Replica]) -> list[str]:
        """Replicated tables one replica of `shard` lacks and another has: a restart cut between its
        detach and its attach (by any process, this one's notes in `detached` are not needed) leaves a
        table so, and the replica then takes none of its inserts. Attached again from the node's own
        metadata; returns what could not be (a replica that does not answer is the sweep's to judge)."""
        db = self._backend.database
        sql = "SELECT name FROM system.tables WHERE database = %(db)s AND engine LIKE 'Replicated%%'"
        held: dict[Replica, set[str]] = {}
        for replica in shard:
            try:
                held[replica] = {str(r[0]) for r in self._backend.execute_on(replica, sql, {"db": db})}
            except ClickHouseError:
                continue
        wanted = set().union(*held.values())
        left = []
        for replica, tables in held.items():
            for table in sorted(wanted - tables):
                try:
                    self._backend.execute_on(replica, f"ATTACH TABLE {db}.{table}")
                except ClickHouseError as exc:
                    if getattr(exc.__cause__, "code", None) != NO_METADATA:  # else: not made there yet
                        left.append(f"{replica.address}: {table} is detached: {str(exc)[:200]}")
                    continue
                log.warning("%s %s.%s: attached again (detached, as a restart cut short leaves a table)",
                            replica.address, db, table)  # fmt: skip
        return left

    def _served(self, replica: Replica) -> bool:
        """Whether the node queries go to reaches `replica`: then reads through the `Distributed` tables
        may come from it, though this process cannot look at it (a partition between the two). Only a
        failure to connect says it does not; any other answer (a refused login...) counts as reached."""
        try:
            self._backend.execute(
                "SELECT count() FROM remote(%(address)s, system.one, %(user)s, %(password)s)",
                {"address": replica.address, **self._backend.credentials()},
            )
        except ClickHouseError as exc:
            return getattr(exc.__cause__, "code", None) not in NOT_CONNECTED_CODES
        return True

    def drop(self, replica: Replica, since_s: float = 0.0) -> dict[str, list[str]]:
        """Set aside, on `replica`, the active parts of level 0 written since `since_s` (unix s, less
        WRITTEN_MARGIN_S) of the database's replicated tables that ZooKeeper does not list for it, by
        restarting each such table there. Returns the parts set aside, per table. A table is left (logged,
        and listed in `waiting`) when its unknown parts hold more of its rows than `_max_share` allows,
        or when ZooKeeper also lacks parts no cut commit leaves (merged or older ones: its state is lost,
        and the restart would set those aside too)."""
        db = self._backend.database
        tables = self._backend.execute_on(
            replica,
            "SELECT table, zookeeper_path, replica_name FROM system.replicas WHERE database = %(db)s",
            {"db": db},
        )
        dropped: dict[str, list[str]] = {}
        kept: list[str] = []
        for table, zookeeper_path, replica_name in tables:
            listed = f"{zookeeper_path}/replicas/{replica_name}/parts"
            after_s = int(since_s - WRITTEN_MARGIN_S)
            orphans = self._unlisted(replica, table, listed, after_s)
            if not orphans:
                continue
            time.sleep(ORPHAN_RECHECK_S)
            again = self._unlisted(replica, table, listed, after_s)
            orphans = {name: rows for name, rows in orphans.items() if name in again}
            if not orphans:
                continue
            # A restart sets aside *every* part ZooKeeper does not list, not only these. A commit cut by
            # ZooKeeper leaves level-0 parts only, written lately; any other unlisted part (merged, or
            # older) means ZooKeeper lost state (restored from a snapshot, a path made anew), and a
            # restart would take the table back in time: left to the operator.
            beyond = sorted(set(self._unlisted(replica, table, listed, None)) - set(orphans))
            if beyond:
                if table not in self.waiting.get(replica, []):
                    log.error("%s %s.%s: ZooKeeper does not list parts an insert cut by it cannot have "
                              "left: %s (and %s): its state may be lost; the table is not restarted, and "
                              "readers of the ledger wait",
                              replica.address, db, table, beyond[:5], sorted(orphans))  # fmt: skip
                kept.append(table)
                continue
            if sum(orphans.values()) > self._max_share(replica, table) * self._rows(replica, table):
                if table not in self.waiting.get(replica, []):  # once, not at every look
                    log.warning("%s %s.%s: parts unknown to ZooKeeper hold too many of its rows to restart "
                                "it: %s (looked at again later, as the table grows; ClickHouse's own part "
                                "check sets them aside after 5 minutes)",
                                replica.address, db, table, sorted(orphans))  # fmt: skip
                kept.append(table)
                continue
            self._restart(replica, table)
            log.warning("%s %s.%s: set aside parts ZooKeeper does not know (an insert answered 'Unknown "
                        "status' and was sent again): %s",
                        replica.address, db, table, sorted(orphans))  # fmt: skip
            dropped[table] = sorted(orphans)
        self.waiting[replica] = kept
        return dropped

    def _rows(self, replica: Replica, table: str) -> int:
        rows = self._backend.execute_on(
            replica,
            "SELECT sum(rows) FROM system.parts WHERE database = %(db)s AND table = %(t)s AND active",
            {"db": self._backend.database, "t": table},
        )
        return int(rows[0][0])

    def _max_share(self, replica: Replica, table: str) -> float:
        """The share of `table`'s rows its unknown parts may hold for a restart: any, when the table was
        made with core/clusterddl.py REPLICA_SETTINGS; else ORPHAN_ROWS_MAX_SHARE (ClickHouse's 0.5 would
        refuse the attach)."""
        engine = self._backend.execute_on(
            replica,
            "SELECT engine_full FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            {"db": self._backend.database, "t": table},
        )
        return 1.0 if engine and _ANY_SHARE.search(engine[0][0]) else ORPHAN_ROWS_MAX_SHARE

    def _restart(self, replica: Replica, table: str) -> None:
        # Noted first: if the restart fails between its detach and its attach, even the check of whether
        # the table is there may fail with it, and the table must not be forgotten.
        self.detached.add((replica, table))
        try:
            self._backend.execute_on(replica, f"SYSTEM RESTART REPLICA {self._backend.database}.{table}")
        finally:
            self._attach(replica, table)

    def _attach(self, replica: Replica, table: str) -> None:
        """Attach `table` on `replica` if it is not there; forget it once it is seen attached."""
        db = self._backend.database
        if not self._exists(replica, table):
            self._backend.execute_on(replica, f"ATTACH TABLE {db}.{table}")
            log.warning("%s %s.%s: attached again after a restart that failed", replica.address, db, table)
        self.detached.discard((replica, table))

    def _exists(self, replica: Replica, table: str) -> bool:
        rows = self._backend.execute_on(
            replica,
            "SELECT count() FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            {"db": self._backend.database, "t": table},
        )
        return bool(int(rows[0][0]))

    def _unlisted(
        self, replica: Replica, table: str, listed_path: str, after_s: int | None
    ) -> dict[str, int]:
        """Active parts of level 0 of `table` on `replica` written at or after `after_s` (name: rows) that
        its ZooKeeper parts list lacks; with `after_s` None, every active part it lacks."""
        db = self._backend.database
        which = "" if after_s is None else "AND level = 0 AND toUInt32(modification_time) >= %(after)s"
        local = self._backend.execute_on(
            replica,
            "SELECT name, rows FROM system.parts "
            f"WHERE database = %(db)s AND table = %(t)s AND active {which}",
            {"db": db, "t": table, "after": max(0, after_s or 0)},
        )
        if not local:
            return {}
        listed = {row[0] for row in self._backend.execute_on(
            replica, "SELECT name FROM system.zookeeper WHERE path = %(p)s", {"p": listed_path}
        )}  # fmt: skip
        return {str(name): int(rows) for name, rows in local if name not in listed}
