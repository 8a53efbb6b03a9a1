"""API keys after they are issued: the admin lists a creator's or merchant's keys by id and revokes one;
a revoked key fails its next request and leaves nothing behind in Redis. On one node and on a cluster."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from click.testing import CliRunner

from clicktrail import cli
from core.clock import now_ms
from core.keys import Keys
from redirector.auth import reindex_keys
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.attributionhelp import add_merchant


async def issue(client, **subject: str) -> dict:
    response = await client.post("/api/keys", json=subject, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


async def listed(client, **subject: str) -> list[dict]:
    response = await client.get("/api/keys", params=subject, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["keys"]


def planted(redis_client, settings, key: str, fields: dict) -> tuple[str, str]:
    """A key record written straight into Redis (not by `POST /api/keys`), on alice's list."""
    key_id = hashlib.sha256(key.encode()).hexdigest()
    keys = Keys.of(settings)
    redis_client.hset(keys.api_key(key_id), mapping=fields)
    redis_client.sadd(keys.api_keys_of("creator", "alice"), key_id)
    return key, key_id


def key_records(redis_client, settings) -> list[bytes]:
    """Every API key record and per-subject index under the test's prefix."""
    pattern = settings.redis_prefix + "*apikey*"
    return sorted(redis_client.scan_iter(match=pattern, count=1000))


def test_the_admin_lists_and_revokes_keys(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            first = await issue(client, creator_id="alice")
            await asyncio.sleep(0.005)  # a later millisecond: the list is oldest first
            second = await issue(client, creator_id="alice")
            bob = await issue(client, creator_id="bob")
            for issued in (first, second, bob):
                assert issued["id"] == hashlib.sha256(issued["key"].encode()).hexdigest()
            assert len(key_records(redis_client, settings)) == 5  # three records, two subjects' indexes
            alice = await listed(client, creator_id="alice")
            # Oldest first, ids only: no answer but the issuing one carries a key.
            assert [k["id"] for k in alice] == [first["id"], second["id"]]
            assert all(set(k) == {"id", "scope", "creator_id", "created_at"} for k in alice)
            assert [k["created_at"] for k in alice] == [first["created_at"], second["created_at"]]
            assert [k["id"] for k in await listed(client, creator_id="bob")] == [bob["id"]]
            assert await listed(client, creator_id="nobody") == []

            links = "/api/links?creator_id=alice"
            assert (await client.get(links, headers=bearer(first["key"]))).status_code == 200
            revoked = await client.delete(f"/api/keys/{first['id']}", headers=ADMIN)
            assert revoked.status_code == 200, revoked.text
            assert revoked.json() == {k: first[k] for k in ("id", "scope", "creator_id", "created_at")}
            # The revoked key fails at once; the others go on.
            assert (await client.get(links, headers=bearer(first["key"]))).status_code == 401
            assert (await client.get(links, headers=bearer(second["key"]))).status_code == 200
            assert (
                await client.get("/api/links?creator_id=bob", headers=bearer(bob["key"]))
            ).status_code == 200
            assert [k["id"] for k in await listed(client, creator_id="alice")] == [second["id"]]
            again = await client.delete(f"/api/keys/{first['id']}", headers=ADMIN)
            assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_key"

            # A merchant's keys, listed apart from the creators' of the same id.
            await add_merchant(app.ctx.redis, app.ctx.keys, "brand1", ["shop.brand1.example"], now_ms())
            shop = await issue(client, merchant_id="brand1")
            assert await listed(client, creator_id="brand1") == []
            assert [k["merchant_id"] for k in await listed(client, merchant_id="brand1")] == ["brand1"]
            assert (await client.delete(f"/api/keys/{shop['id']}", headers=ADMIN)).status_code == 200
            codes = "/api/merchants/brand1/codes"
            assert (await client.get(codes, headers=bearer(shop["key"]))).status_code == 401
            for key in (second, bob):
                assert (await client.delete(f"/api/keys/{key['id']}", headers=ADMIN)).status_code == 200

    asyncio.run(scenario())
    # Every key revoked leaves nothing behind: no record, no index entry.
    assert key_records(redis_client, settings) == []


@pytest.mark.parametrize(
    "key_id",
    [
        "abc",
        "0" * 63,
        "0" * 65,
        "A" * 64,  # the id is lowercase hex
        "g" * 64,
        "0" * 62 + "%20",
        "ctk_" + "0" * 60,  # a key is not its id
        " " + "0" * 63,
    ],
)
def test_malformed_key_ids_are_refused(settings, key_id) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            answer = await client.delete(f"/api/keys/{key_id}", headers=ADMIN)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["code"] == "invalid_key_id"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "invalid_scope"),
        ({"creator_id": "a", "merchant_id": "b"}, "invalid_scope"),
        ({"subject_id": "a"}, "invalid_scope"),
        ({"creator_id": ""}, "invalid_id"),
        ({"creator_id": "a b"}, "invalid_id"),
        ({"merchant_id": "x" * 65}, "invalid_id"),
        ({"merchant_id": "é"}, "invalid_id"),
    ],
)
def test_listing_needs_exactly_one_valid_subject(settings, params, code) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            answer = await client.get("/api/keys", params=params, headers=ADMIN)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["code"] == code

    asyncio.run(scenario())


def test_only_the_admin_lists_and_revokes(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            alice = await issue(client, creator_id="alice")
            await add_merchant(app.ctx.redis, app.ctx.keys, "brand1", ["shop.brand1.example"], now_ms())
            shop = await issue(client, merchant_id="brand1")
            path = f"/api/keys/{alice['id']}"
            refusals = (
                (bearer(alice["key"]), 403),
                (bearer(shop["key"]), 403),
                ({}, 401),
                (bearer("ctk_x"), 401),
            )
            for headers, status in refusals:
                assert (await client.get("/api/keys?creator_id=alice", headers=headers)).status_code == status
                assert (await client.delete(path, headers=headers)).status_code == status
            # Refused calls changed nothing: the key still works and is still listed.
            assert (
                await client.get("/api/links?creator_id=alice", headers=bearer(alice["key"]))
            ).status_code == 200
            assert [k["id"] for k in await listed(client, creator_id="alice")] == [alice["id"]]

    asyncio.run(scenario())


def test_a_key_whose_record_is_gone_is_not_listed(settings, redis_client) -> None:
    """A list entry left without its record (the record deleted by hand) is skipped and taken off the
    list, and revoking that id answers 404."""

    async def scenario():
        async with running_app(settings) as (_, client):
            alice = await issue(client, creator_id="alice")
            keys = Keys.of(settings)
            redis_client.delete(keys.api_key(alice["id"]))
            assert redis_client.scard(keys.api_keys_of("creator", "alice")) == 1
            assert await listed(client, creator_id="alice") == []
            assert redis_client.scard(keys.api_keys_of("creator", "alice")) == 0  # taken off the list
            assert (await client.delete(f"/api/keys/{alice['id']}", headers=ADMIN)).status_code == 404

    asyncio.run(scenario())


@pytest.mark.cluster
def test_keys_are_listed_and_revoked_on_a_redis_cluster(cluster_settings, cluster_redis) -> None:
    async def scenario():
        async with running_app(cluster_settings) as (app, client):
            issued = [await issue(client, creator_id="alice") for _ in range(3)]
            assert {k["id"] for k in await listed(client, creator_id="alice")} == {k["id"] for k in issued}
            assert (await client.delete(f"/api/keys/{issued[0]['id']}", headers=ADMIN)).status_code == 200
            links = "/api/links?creator_id=alice"
            assert (await client.get(links, headers=bearer(issued[0]["key"]))).status_code == 401
            assert (await client.get(links, headers=bearer(issued[1]["key"]))).status_code == 200
            assert {k["id"] for k in await listed(client, creator_id="alice")} == {
                k["id"] for k in issued[1:]
            }
            await add_merchant(app.ctx.redis, app.ctx.keys, "brand1", ["shop.brand1.example"], now_ms())
            shop = await issue(client, merchant_id="brand1")
            assert [k["id"] for k in await listed(client, merchant_id="brand1")] == [shop["id"]]
            assert len(key_records(cluster_redis, cluster_settings)) == 3 + 2  # records, two lists
            for key in (*issued[1:], shop):
                assert (await client.delete(f"/api/keys/{key['id']}", headers=ADMIN)).status_code == 200
            assert key_records(cluster_redis, cluster_settings) == []
            # A key from a release before the lists, found by a reindex over every primary.
            key_id = hashlib.sha256(b"ctk_before").hexdigest()
            record = {"scope": "creator", "subject_id": "carol", "created_at_ms": "1"}
            cluster_redis.hset(app.ctx.keys.api_key(key_id), mapping=record)
            assert await listed(client, creator_id="carol") == []
            assert await reindex_keys(app.ctx.redis, app.ctx.keys) == 1
            assert [k["id"] for k in await listed(client, creator_id="carol")] == [key_id]

    asyncio.run(scenario())


def test_one_of_many_simultaneous_revocations_wins(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            alice = await issue(client, creator_id="alice")
            path = f"/api/keys/{alice['id']}"
            answers = await asyncio.gather(*(client.delete(path, headers=ADMIN) for _ in range(12)))
            assert sorted(a.status_code for a in answers) == [200] + [404] * 11
            assert key_records(redis_client, settings) == []

    asyncio.run(scenario())


# Records `POST /api/keys` never writes (edited by hand), each under the id of a key someone holds.
HAND_EDITED = [
    {"created_at_ms": "1"},
    {"scope": "admin", "subject_id": "alice", "created_at_ms": "1"},
    {"scope": "creator", "created_at_ms": "1"},
    {"scope": "creator", "subject_id": "a b", "created_at_ms": "1"},
    {"scope": "creator", "subject_id": "", "created_at_ms": "1"},
    {"scope": "Creator", "subject_id": "alice"},
    {"scope": b"\xff\xfe", "subject_id": "alice"},
]


@pytest.mark.parametrize("fields", HAND_EDITED, ids=[str(n) for n in range(len(HAND_EDITED))])
def test_a_hand_edited_key_record_authenticates_nothing_and_is_never_a_5xx(
    settings, redis_client, fields
) -> None:
    key, key_id = planted(redis_client, settings, "ctk_" + "h" * 43, fields)
    keys = Keys.of(settings)

    async def scenario():
        async with running_app(settings) as (_, client):
            refused = await client.get("/api/links?creator_id=alice", headers=bearer(key))
            assert refused.status_code == 401, refused.text
            assert await listed(client, creator_id="alice") == []
            assert redis_client.scard(keys.api_keys_of("creator", "alice")) == 0
            gone = await client.delete(f"/api/keys/{key_id}", headers=ADMIN)
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_key"
            assert not redis_client.exists(keys.api_key(key_id))

    asyncio.run(scenario())


@pytest.mark.parametrize("created", ["x", "", "-1", "9" * 30])
def test_a_record_with_an_unreadable_issue_time_is_a_key_issued_at_the_epoch(
    settings, redis_client, created
) -> None:
    record = {"scope": "creator", "subject_id": "alice", "created_at_ms": created}
    key, key_id = planted(redis_client, settings, "ctk_" + "t" * 43, record)

    async def scenario():
        async with running_app(settings) as (_, client):
            assert (await client.get("/api/links?creator_id=alice", headers=bearer(key))).status_code == 200
            (shown,) = await listed(client, creator_id="alice")
            assert shown["id"] == key_id and shown["created_at"] == "1970-01-01T00:00:00.000Z"
            assert (await client.delete(f"/api/keys/{key_id}", headers=ADMIN)).status_code == 200

    asyncio.run(scenario())


def _id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_reindex_lists_keys_issued_before_the_lists(settings, redis_client, monkeypatch) -> None:
    """Records as releases before 2026-12-02 wrote them (on no list): `clicktrail keys reindex` puts each
    valid one on its subject's list, once; a hand-edited record stays on none."""
    keys = Keys.of(settings)
    old = [("creator", "alice"), ("creator", "alice"), ("merchant", "brand1"), ("creator", "bob")]
    for n, (scope, subject_id) in enumerate(old):
        record = {"scope": scope, "subject_id": subject_id, "created_at_ms": str(1_000 + n)}
        redis_client.hset(keys.api_key(_id(f"ctk_old{n}")), mapping=record)
    redis_client.hset(keys.api_key("ab" * 32), mapping={"scope": "root"})
    redis_client.hset(keys.api_key("not-an-id"), mapping={"scope": "creator", "subject_id": "eve"})
    monkeypatch.setenv("CLICKTRAIL_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("CLICKTRAIL_REDIS_PREFIX", settings.redis_prefix)
    monkeypatch.setenv("CLICKTRAIL_SECRET_KEY", "reindex-test")
    monkeypatch.setenv("CLICKTRAIL_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    first = runner.invoke(cli.main, ["keys", "reindex"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("4 key(s)"), first.output
    assert runner.invoke(cli.main, ["keys", "reindex"]).output.startswith("0 key(s)")  # safe to run again
    assert redis_client.smembers(keys.api_keys_of("creator", "eve")) == set()

    async def scenario():
        async with running_app(settings) as (_, client):
            alice = [k["id"] for k in await listed(client, creator_id="alice")]
            assert alice == [_id("ctk_old0"), _id("ctk_old1")]
            assert [k["id"] for k in await listed(client, merchant_id="brand1")] == [_id("ctk_old2")]
            assert (await client.delete(f"/api/keys/{_id('ctk_old3')}", headers=ADMIN)).status_code == 200
            assert await listed(client, creator_id="bob") == []

    asyncio.run(scenario())


def test_another_subjects_key_on_a_list_moves_to_its_own(settings, redis_client) -> None:
    """Only a hand edit puts bob's key on alice's list: alice's listing does not show it, and moves it to
    bob's list, where it can still be revoked."""
    key, key_id = planted(
        redis_client, settings, "ctk_" + "b" * 43, {"scope": "creator", "subject_id": "bob"}
    )
    keys = Keys.of(settings)

    async def scenario():
        async with running_app(settings) as (_, client):
            assert await listed(client, creator_id="alice") == []
            assert redis_client.smembers(keys.api_keys_of("creator", "alice")) == set()
            assert [k["id"] for k in await listed(client, creator_id="bob")] == [key_id]
            assert (await client.get("/api/links?creator_id=bob", headers=bearer(key))).status_code == 200
            assert (await client.delete(f"/api/keys/{key_id}", headers=ADMIN)).status_code == 200
            assert key_records(redis_client, settings) == []

    asyncio.run(scenario())


def test_a_key_and_its_subjects_list_are_written_in_one_transaction(settings, redis_client) -> None:
    """What Redis is sent when a key is issued, as MONITOR shows it: the record and the list entry
    between one client's MULTI and EXEC, so that no crash can leave a usable key off its list."""
    import threading

    import redis

    keys = Keys.of(settings)
    sentinel = f"end-of-{settings.redis_prefix}"
    commands: list[tuple[str, str]] = []  # (client address, command)
    ready = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(settings.redis_url).monitor() as monitor:
            ready.set()
            for seen in monitor.listen():
                commands.append((seen["client_address"] + ":" + seen["client_port"], seen["command"]))
                if sentinel in seen["command"]:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(10)  # (set once Redis answered MONITOR's OK)

    async def scenario() -> str:
        async with running_app(settings) as (_app, client):
            return (await issue(client, creator_id="alice"))["id"]

    key_id = asyncio.run(scenario())
    redis_client.echo(sentinel)
    watcher.join(10)
    assert not watcher.is_alive()
    record, index = keys.api_key(key_id), keys.api_keys_of("creator", "alice")
    writes = [(c, cmd) for c, cmd in commands if record in cmd or index in cmd]
    assert [cmd.split()[0] for _, cmd in writes] == ["HSET", "SADD"], writes
    (client,) = {c for c, _ in writes}
    own = [cmd for c, cmd in commands if c == client]
    at = next(n for n, cmd in enumerate(own) if cmd.startswith("HSET") and record in cmd)
    assert [cmd.split()[0] for cmd in own[at - 1 : at + 3]] == ["MULTI", "HSET", "SADD", "EXEC"], own
