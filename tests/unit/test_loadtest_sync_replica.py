"""The load tests' replica catch-up waits out a replica that has no ZooKeeper session yet (a CI run of
zookeeper_flaps failed on Code 999 "Session expired" right after the last flap) and passes on every
other error at once; the checks after a fault compare every replica's clicks and rollups."""

from __future__ import annotations

import pytest
from clickhouse_driver.errors import ServerException

from loadtests.clickhouse_cluster_faults import CLICK_TABLES, replica_checks, sync_replica
from loadtests.verdict import Verdict


class _Replica:
    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers  # a code to raise, or None to answer
        self.calls = 0

    def execute(self, sql: str) -> list:
        assert sql == "SYSTEM SYNC REPLICA clicks_local"
        code = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if code is not None:
            raise ServerException(f"Code: {code}", code=code)
        return []


@pytest.mark.parametrize(
    "answers, calls",
    [
        ([None], 1),
        ([999, None], 2),  # Session expired
        ([225, 999, None], 3),  # no ZooKeeper, then the old session
        ([242, 242, 242, None], 4),  # read-only until the restarting thread is back
    ],
)
def test_zookeeper_answers_are_waited_out(answers: list[int | None], calls: int) -> None:
    replica = _Replica(answers)
    sync_replica(replica, "clicks_local", wait_s=5, pause_s=0)  # type: ignore[arg-type]
    assert replica.calls == calls


@pytest.mark.parametrize("code", [60, 81, 159, 210])  # unknown table, unknown database, timeout, network
def test_other_errors_are_raised_at_once(code: int) -> None:
    replica = _Replica([code, None])
    with pytest.raises(ServerException):
        sync_replica(replica, "clicks_local", wait_s=5, pause_s=0)  # type: ignore[arg-type]
    assert replica.calls == 1


def test_a_replica_that_never_gets_its_session_fails_after_the_wait() -> None:
    replica = _Replica([999])
    with pytest.raises(ServerException):
        sync_replica(replica, "clicks_local", wait_s=0.05, pause_s=0.01)  # type: ignore[arg-type]
    assert replica.calls > 1


def _replica(clicks: int, dims: int | None = None) -> dict[str, int]:
    totals = {table: clicks for table, _ in CLICK_TABLES}
    totals["clicks_daily_dims"] = clicks if dims is None else dims
    return totals


@pytest.mark.parametrize(
    "totals, replicas_agree, rollups_agree",
    [
        ([[_replica(6_020), _replica(6_020)], [_replica(5_980), _replica(5_980)]], True, True),
        # one rollup short on one replica (a part it has not fetched, or lost): both checks say so
        ([[_replica(6_020), _replica(6_020, 5_765)], [_replica(5_980), _replica(5_980)]], False, False),
        # short on both replicas alike: lost, though the replicas agree
        ([[_replica(6_020, 5_765), _replica(6_020, 5_765)], [_replica(5_980), _replica(5_980)]], True, False),
        # the raw clicks differ between replicas, each replica's rollups matching its own clicks
        ([[_replica(6_020), _replica(6_000)], [_replica(5_980), _replica(5_980)]], False, True),
    ],
)
def test_every_replica_table_is_compared(totals, replicas_agree: bool, rollups_agree: bool) -> None:
    verdict = Verdict("zookeeper_flaps", "smoke")
    replica_checks(verdict, totals)
    assert [c.ok for c in verdict.checks] == [replicas_agree, rollups_agree]
    assert verdict.figures["clicks_local_per_replica"] == [[r["clicks"] for r in s] for s in totals]
