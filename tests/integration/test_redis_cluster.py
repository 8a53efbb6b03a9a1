"""clicktrail on the local Redis Cluster (scripts/cluster-redis.sh, started by scripts/test.sh) with the
single ClickHouse: the whole path end to end, redirects spread over the click-stream shards, the replica
acknowledgement (WAIT), and ingesters sharing the shards while one of them is killed."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from attribution.attributor import Attributor, Busy
from core import queries
from core.clickid import ClickIds
from core.keys import INGEST_GROUP, Keys
from core.migrate import migrate
from core.redisclient import failover_client, sync_client
from redirector.click import encode_batch
from redirector.recorder import count_clicks
from tests.integration import test_domain_ownership as ownership
from tests.integration import test_end_to_end
from tests.integration import test_smart_links as smart
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.crashhelp import CLI, ingest_env, kill_at
from tests.integration.test_end_to_end import ingest_once
from tests.integration.test_ingest import HOUR_MS, assert_exact, make_clicks

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

CLAIM_IDLE_MS = 6_000
SURVIVOR_RUNS = 3


@pytest.mark.parametrize(
    "case",
    [
        ownership.test_a_registration_claims_every_host_a_link_sends_to,
        ownership.test_a_claim_never_overwrites_a_change_made_while_it_ran,
        ownership.test_two_overlapping_registrations_at_once_one_wins,
        smart.test_patch_changes_a_link_and_clears_fields,
        smart.test_patch_refusals,
    ],
    ids=lambda case: case.__name__.removeprefix("test_"),
)
def test_links_and_domains_on_the_cluster(case, cluster_settings, cluster_redis) -> None:
    """The one-node tests of link writes that are not one transaction on a cluster (the record and the
    indexes are in different slots): PATCH, and a merchant's claim of every host a link sends to."""
    case(cluster_settings)


def test_click_to_commission_on_the_cluster(cluster_settings, clickhouse, cluster_redis) -> None:
    """Links, redirects, signed webhooks, ingest, attribution and earnings, exactly as on one Redis."""
    test_end_to_end.test_click_to_commission(cluster_settings, clickhouse, cluster_redis)


def test_redirects_spread_over_shards_and_arrive_once(cluster_settings, clickhouse, cluster_redis) -> None:
    migrate(clickhouse, log=lambda *_: None)
    keys = Keys.of(cluster_settings)

    async def scenario() -> list[str]:
        async with running_app(cluster_settings) as (app, client):
            codes = [
                (await make_link(client, "alice", f"https://shop.example.com/p/{i}"))["code"]
                for i in range(24)
            ]
        # A fresh app: every code is a cache miss, and concurrent misses are looked up together (one
        # pipeline, one batch per node), then each redirect is its own batch (round-robin over shards).
        async with running_app(cluster_settings) as (app, client):
            answers = await asyncio.gather(*(client.get(f"/{code}") for code in codes))
            assert [a.status_code for a in answers] == [302] * len(codes)
            for code in codes * 2:
                assert (await client.get(f"/{code}")).status_code == 302
            assert app.ctx.recorder.live
            count, ids = await count_clicks(app.ctx.redis, keys)
        assert count == 3 * len(codes)
        return ids

    ids = asyncio.run(scenario())
    per_shard = [cluster_redis.xlen(stream) for stream in keys.click_streams]
    assert all(per_shard), per_shard  # every shard took batches
    ingest_once(cluster_settings)
    assert queries.click_count(clickhouse) == len(ids)
    stored = {row[0] for row in clickhouse.execute(f"SELECT click_id FROM {clickhouse.database}.clicks")}
    assert stored == set(ids)
    assert [cluster_redis.xlen(stream) for stream in keys.click_streams] == [0] * keys.click_shards


@pytest.mark.parametrize(("replicas", "live"), [(1, True), (2, False)])
def test_min_replicas_acked(replicas, live, cluster_settings, clickhouse, cluster_redis) -> None:
    """Each primary has one replica: WAIT 1 is met and clicks are committed live; WAIT 2 never is, so every
    click goes to the spool (fsynced) and the viewer is still redirected."""
    settings = cluster_settings.model_copy(update={"redis_min_replicas_acked": replicas})

    async def scenario() -> None:
        async with running_app(settings) as (app, client):
            code = (await make_link(client, "alice", "https://shop.example.com/p/1"))["code"]
            for _ in range(12):
                assert (await client.get(f"/{code}")).status_code == 302
            stats = app.ctx.recorder._stats
            assert app.ctx.recorder.live is live
            if live:
                assert (stats.committed, stats.spooled) == (12, 0)
            else:
                assert (stats.committed, stats.spooled) == (0, 12)
                assert dict(stats.redis_failures) == {"ReplicasBehind": 1}
            # A webhook is acknowledged only once replicated too; else 503, and the retry is the same.
            merchant = {"merchant_id": "brand", "name": "Brand", "domains": ["shop.brand.example"],
                        "currency": "EUR", "default_rate_bps": 800}  # fmt: skip
            registered = await client.post("/api/merchants", json=merchant, headers=ADMIN)
            assert registered.status_code == 201, registered.text
            secret = registered.json()["webhook_secret"]
            items = [{"sku": "S", "category": "c", "unit_price_minor": 100, "quantity": 1}]
            body, headers = test_end_to_end.webhook(secret, "w1", "order.created", "O-1", "x" * 30, items)
            for expected in [(202, 200) if live else (503, 503)][0]:
                response = await client.post("/webhooks/orders/brand", content=body, headers=headers)
                assert response.status_code == expected, response.text
            if not live:
                assert response.json()["error"]["code"] == "replicas_behind"

    asyncio.run(scenario())


def test_ingester_killed_while_sharing_shards(cluster_settings, clickhouse, cluster_redis) -> None:
    """Clicks in every shard; one ingester is killed mid-way (entries pending in several shards), the
    other takes its pending entries over (XAUTOCLAIM) once they are idle: exactly N rows in ClickHouse."""
    migrate(clickhouse, log=lambda *_: None)
    keys = Keys.of(cluster_settings)
    clicks = make_clicks(ClickIds(cluster_settings.secret_bytes), 6_000, int(time.time() * 1000) - HOUR_MS, 1)
    per_entry = 100
    for seq, start in enumerate(range(0, len(clicks), per_entry)):
        stream = keys.click_stream(seq % keys.click_shards)
        batch = encode_batch(clicks[start : start + per_entry])
        cluster_redis.xadd(stream, {"v": b"1", "r": b"test", "s": str(seq).encode(), "c": batch})
    tuning = {
        "CLICKTRAIL_INGEST_BATCH_SIZE": "300",
        # Room for a slow insert on a busy machine; the claim idle time must exceed it (core/streams.py).
        "CLICKTRAIL_INGEST_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
        "CLICKTRAIL_CLICKHOUSE_INSERT_TIMEOUT_S": "5",
    }
    env = ingest_env(cluster_settings, tuning)
    # Killed while its threads hold batches of several shards.
    kill_at(env, "after_insert", 4, "doomed")
    pending = [cluster_redis.xpending(s, INGEST_GROUP)["pending"] for s in keys.click_streams]
    assert sum(pending) > 0, pending
    # Inserted but not acknowledged: the survivor must find these in ClickHouse and not store them twice.
    assert queries.click_count(clickhouse) > 0
    time.sleep(CLAIM_IDLE_MS / 1000 + 0.1)  # the dead consumer's entries become claimable
    # `--once` stops at the first error (a ClickHouse insert timing out on a busy machine), leaving its
    # entries pending for the next run: run it again, as cron would, a bounded number of times.
    for _ in range(SURVIVOR_RUNS):
        done = subprocess.run([CLI, "ingest", "--once", "--consumer", "survivor"], env=env, timeout=180)
        if done.returncode == 0:
            break
    assert done.returncode == 0
    assert_exact(clickhouse, clicks)
    assert [cluster_redis.xpending(s, INGEST_GROUP)["pending"] for s in keys.click_streams] == [0] * 6


@pytest.mark.parametrize(("replicas", "runs"), [(1, True), (2, False)])
def test_attributor_lock_waits_for_replicas(
    replicas, runs, cluster_settings, clickhouse, cluster_redis
) -> None:
    """The attributor holds its lock only once a replica has it; otherwise it reports Busy and gives the
    lock back (the next run is not kept out for the lock's TTL)."""
    migrate(clickhouse, log=lambda *_: None)
    keys = Keys.of(cluster_settings)

    async def scenario() -> None:
        client = failover_client(cluster_settings, role="test")
        attributor = Attributor(
            client, keys, clickhouse, ClickIds(cluster_settings.secret_bytes), min_replicas_acked=replicas
        )
        try:
            if runs:
                assert (await attributor.run_once()).outcomes == {}
            else:
                with pytest.raises(Busy, match="replicated"):
                    await attributor.run_once()
            assert await client.get(keys.attribution_lock) is None
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_url_naming_several_nodes_survives_a_dead_first_one(cluster_settings) -> None:
    settings = cluster_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1,127.0.0.1:7002/0"})
    client = sync_client(settings, role="test")
    try:
        assert client.ping()
        assert len(client.get_primaries()) == 3
    finally:
        client.close()

    async def scenario() -> None:
        async_one = failover_client(settings, role="test")
        try:
            assert await async_one.ping()
        finally:
            await async_one.aclose()

    asyncio.run(scenario())
