"""Events out through the real app, Redis and a real delivery worker against local receivers: endpoint
registration and its scopes and refusals, link.created signed and verified by `standardwebhooks`, order
per endpoint under failures, isolation from a hanging endpoint, dead letters and replay, the address
check at connection time."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from standardwebhooks import Webhook

from attribution import events_out
from attribution.endpoints import EndpointStore, new_endpoint
from attribution.outbox import EMIT_BATCH, Outbox
from core.keys import Keys
from core.links import Link
from tests.integration.apphelp import ADMIN, make_link, running_app
from tests.integration.receivers import HANG_S, Receiver, fast, running_deliverer

pytestmark = pytest.mark.redis

MERCHANT = {
    "merchant_id": "brand1",
    "name": "Brand One",
    "domains": ["shop.brand1.example"],
    "currency": "EUR",
    "default_rate_bps": 800,
}


async def key_for(client, **scope) -> dict[str, str]:
    response = await client.post("/api/keys", json=scope, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"authorization": "Bearer " + response.json()["key"]}


async def register(client, headers, url, events, **extra) -> dict:
    response = await client.post(
        "/api/endpoints", json={"url": url, "events": events, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _endpoints_are_scoped_and_validated(settings):
    async with running_app(settings) as (_, client):
        assert (await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)).status_code == 201
        alice = await key_for(client, creator_id="alice")
        brand = await key_for(client, merchant_id="brand1")
        url = "https://hooks.example.com/ct"
        mine = await register(client, alice, url, ["link.created"], description="my shop")
        assert mine["secret"].startswith("whsec_") and mine["creator_id"] == "alice"
        theirs = await register(client, brand, url, ["commission.booked"])
        assert theirs["merchant_id"] == "brand1"
        by_admin = await register(client, ADMIN, url, ["link.updated"], creator_id="bob")
        assert by_admin["creator_id"] == "bob"

        link_ev = {"url": url, "events": ["link.created"]}
        refusals = [
            (alice, {**link_ev, "creator_id": "bob"}, 403, "forbidden"),
            (alice, {**link_ev, "merchant_id": "brand1"}, 403, "forbidden"),
            (ADMIN, link_ev, 422, "invalid_scope"),
            (ADMIN, {**link_ev, "merchant_id": "nobody"}, 404, "unknown_merchant"),
            (alice, {**link_ev, "url": "http://hooks.example.com/"}, 422, "invalid_url.scheme"),
            (alice, {**link_ev, "url": "https://127.0.0.1/"}, 422, "invalid_url.non_public_host"),
            (alice, {**link_ev, "url": "https://10.0.0.1/"}, 422, "invalid_url.non_public_host"),
            (alice, {**link_ev, "url": "https://a:b@hooks.example.com/"}, 422, "invalid_url.credentials"),
            (alice, {**link_ev, "events": ["order.created"]}, 422, "invalid_events"),
            (alice, {**link_ev, "events": []}, 422, "invalid_events"),
            (alice, {**link_ev, "secret": "x"}, 422, "unknown_fields"),
            (alice, {**link_ev, "description": "a\nb"}, 422, "invalid_description"),
            (alice, {**link_ev, "description": "a\x7fb"}, 422, "invalid_description"),
            (alice, {**link_ev, "description": "a\u2028b"}, 422, "invalid_description"),
        ]
        for headers, body, status, code in refusals:
            response = await client.post("/api/endpoints", json=body, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), body

        listed = (await client.get("/api/endpoints", headers=alice)).json()["endpoints"]
        assert [e["id"] for e in listed] == [mine["id"]] and "secret" not in listed[0]
        assert len((await client.get("/api/endpoints", headers=ADMIN)).json()["endpoints"]) == 3
        shown = await client.get(f"/api/endpoints/{mine['id']}", headers=alice)
        assert shown.status_code == 200 and shown.json()["delivery"]["queued"] == 0
        assert "secret" not in shown.json()
        assert (await client.get(f"/api/endpoints/{mine['id']}", headers=brand)).status_code == 403
        assert (await client.get("/api/endpoints/ep_nope", headers=alice)).status_code == 404
        assert (await client.delete(f"/api/endpoints/{mine['id']}", headers=alice)).status_code == 200
        assert (await client.get(f"/api/endpoints/{mine['id']}", headers=alice)).status_code == 404
        assert (await client.get("/api/endpoints", headers=alice)).json()["endpoints"] == []


async def _link_created_is_delivered_signed(settings):
    settings = fast(settings)
    receiver = await Receiver().start()
    try:
        async with running_app(settings) as (_, client), running_deliverer(settings) as metrics:
            alice = await key_for(client, creator_id="alice")
            endpoint = await register(client, alice, receiver.url, ["link.created", "link.updated"])
            link = await make_link(client, "alice", "https://shop.example.com/p/1")
            await make_link(client, "bob", "https://shop.example.com/p/2")  # not alice's: not sent
            await receiver.wait_for(1)
            patched = await client.patch(
                f"/api/links/{link['code']}", json={"url": "https://shop.example.com/p/9"}, headers=alice
            )
            assert patched.status_code == 200, patched.text
            await receiver.wait_for(2)
            assert (await client.delete(f"/api/links/{link['code']}", headers=alice)).status_code == 200
            await client.delete(f"/api/links/{link['code']}", headers=alice)  # no change: no event
            await receiver.wait_for(3)
            await asyncio.sleep(0.2)
        request = receiver.requests[0]
        assert len(receiver.requests) == 3
        edited = Webhook(endpoint["secret"]).verify(receiver.requests[1].body, receiver.requests[1].headers)
        assert edited["type"] == "link.updated" and edited["data"]["url"] == "https://shop.example.com/p/9"
        updated = Webhook(endpoint["secret"]).verify(receiver.requests[2].body, receiver.requests[2].headers)
        assert updated["type"] == "link.updated" and updated["data"]["disabled"] is True
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "link.created"
        assert payload["data"]["code"] == link["code"] and payload["data"]["creator_id"] == "alice"
        assert request.headers["webhook-id"].startswith("evt_")
        assert metrics.delivered._value.get() == 3
    finally:
        await receiver.close()


async def _a_link_event_carries_what_the_api_shows(settings):
    """The event's link payload and the API's GET are one shape (core/links.link_json): every smart-link
    field, on creation and after a PATCH."""
    async with running_app(settings) as (app, client):
        alice = await key_for(client, creator_id="alice")
        endpoint = await register(
            client, alice, "https://hooks.example.com/ct", ["link.created", "link.updated"]
        )
        smart = {
            "rules": [{"when": {"os": ["ios"], "country": ["GB"]}, "url": "shopapp://p/1"}],
            "variants": [{"url": "https://shop.example.com/a", "weight": 3},
                         {"url": "https://shop.example.com/b", "weight": 1}],
            "expires_at": "2031-01-02T03:04:05Z",
            "max_clicks": 500,
            "expired_url": "https://shop.example.com/over",
            "open_in": "browser",
        }  # fmt: skip
        link = await make_link(client, "alice", "https://shop.example.com/p/1", **smart)
        shown = [(await client.get(f"/api/links/{link['code']}", headers=alice)).json()]
        patched = await client.patch(
            f"/api/links/{link['code']}", json={"max_clicks": 7, "rules": None}, headers=alice
        )
        assert patched.status_code == 200, patched.text
        shown.append((await client.get(f"/api/links/{link['code']}", headers=alice)).json())
        outbox, store = app.ctx.outbox, app.ctx.endpoints
        await outbox.fan_out(store, dead_lettered=pytest.fail)
        sent = []
        while (head := await outbox.head(endpoint["id"])) is not None:
            sent.append(head[1])
            await outbox.delivered(endpoint["id"], head[0])
    assert [e.type for e in sent] == ["link.created", "link.updated"]
    for event, api in zip(sent, shown, strict=True):
        api.pop("totals")  # the GET adds the ClickHouse totals; an event is the link alone
        assert event.data == api
    assert {"rules", "variants", "expires_at", "expired_url"} <= set(sent[0].data)
    assert sent[0].data["open_in"] == "browser" and sent[1].data["max_clicks"] == 7


async def emit_links(settings, creator_id: str, count: int, start_ms: int = 1_700_000_000_000) -> list[str]:
    """`count` link.updated events for one creator, in order; returns their ids."""
    redis = Redis.from_url(settings.redis_url)
    outbox = Outbox(redis, Keys(settings.redis_prefix))
    ids = []
    for i in range(count):
        link = Link(
            f"code{i}",
            "https://shop.example.com/",
            creator_id,
            "shop.example.com",
            start_ms,
            updated_at_ms=start_ms + i,
        )
        event = events_out.link_event("link.updated", link, "http://x")
        assert await outbox.emit([event], int(time.time() * 1000)) == 1
        assert await outbox.emit([event], int(time.time() * 1000)) == 0  # the same facts: stored once
        ids.append(event.id)
    await redis.aclose()
    return ids


async def add_endpoint(settings, creator_id: str, url: str, events=("link.updated",)) -> str:
    redis = Redis.from_url(settings.redis_url)
    endpoint = new_endpoint(f"creator:{creator_id}", url, tuple(events), "", int(time.time() * 1000) - 1000)
    assert await EndpointStore(redis, Keys(settings.redis_prefix), pytest.fail).create(endpoint)
    await redis.aclose()
    return endpoint.id


async def _in_order_under_failures_and_isolated_from_a_hanging_endpoint(settings):
    settings = fast(settings)
    flaky, healthy, hanging = Receiver(fail_first=3), Receiver(), Receiver(delay_s=HANG_S)
    for r in (flaky, healthy, hanging):
        await r.start()
    try:
        await add_endpoint(settings, "alice", flaky.url)
        await add_endpoint(settings, "alice", healthy.url)
        await add_endpoint(settings, "alice", hanging.url)
        started = time.monotonic()
        async with running_deliverer(settings) as metrics:
            ids = await emit_links(settings, "alice", 5)
            await healthy.wait_for(5)
            healthy_s = time.monotonic() - started
            await flaky.wait_for(8)
            await hanging.wait_for(2)
        # The healthy endpoint never waited on the hanging one (each of whose tries takes the 0.3 s
        # read timeout) nor on the failing one's backoff.
        assert healthy.ids() == ids and healthy_s < 2.0
        # The flaky one: its first event three times (500, 500, 500), then each in order, none skipped.
        assert flaky.ids() == [ids[0]] * 4 + ids[1:]
        # The hanging one keeps retrying its first event, never the next.
        assert set(hanging.ids()) == {ids[0]}
        assert metrics.retried.labels("http_5xx")._value.get() == 3
        assert metrics.retried.labels("timeout")._value.get() >= 1
    finally:
        for r in (flaky, healthy, hanging):
            await r.close()


async def _dead_letter_then_replay(settings):
    settings = fast(settings, deliver_retry_period_s=1)
    receiver = await Receiver(status=500, body=b"database is down").start()
    try:
        async with running_app(settings) as (_, client):
            alice = await key_for(client, creator_id="alice")
            endpoint = await register(client, alice, receiver.url, ["link.updated"])
            ids = await emit_links(settings, "alice", 2, start_ms=int(time.time() * 1000))
            async with running_deliverer(settings) as metrics:
                await receiver.wait_for(2)
                deadline = time.monotonic() + 5
                while metrics.dead.labels("http_5xx")._value.get() < 2:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            shown = (await client.get(f"/api/endpoints/{endpoint['id']}", headers=alice)).json()["delivery"]
            assert shown["queued"] == 0 and shown["dead_lettered"] == 2
            assert [d["event_id"] for d in shown["dead_letters"]] == ids[::-1]  # newest first
            assert shown["dead_letters"][0]["error"] == "http_5xx: HTTP 500: database is down"

            receiver.status, receiver.requests = 204, []
            replay = await client.post(f"/api/endpoints/{endpoint['id']}/replay", headers=alice)
            assert replay.json()["requeued_dead_letters"] == 2 and replay.json()["requeued_events"] == 0
            async with running_deliverer(settings):
                await receiver.wait_for(2)
            assert receiver.ids() == ids  # the same event ids, in order

            # Past events from a time on: the receiver asked for everything again.
            receiver.requests = []
            since = await client.post(
                f"/api/endpoints/{endpoint['id']}/replay",
                json={"since": "2020-01-01T00:00:00Z"},
                headers=alice,
            )
            assert since.json() == {"id": endpoint["id"], "requeued_dead_letters": 0, "requeued_events": 2}
            async with running_deliverer(settings):
                await receiver.wait_for(2)
            assert receiver.ids() == ids
            bad = await client.post(
                f"/api/endpoints/{endpoint['id']}/replay", json={"since": "yesterday"}, headers=alice
            )
            assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_since")
            # Out of range in UTC though not in local time: refused before any dead letter moves (the old
            # check of the local year moved them, then Redis refused the negative stream id: a 500).
            receiver.status = 500
            await emit_links(settings, "alice", 1, start_ms=int(time.time() * 1000))
            async with running_deliverer(settings) as metrics:
                deadline = time.monotonic() + 10
                while metrics.dead.labels("http_5xx")._value.get() < 1:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            for since in ("1970-01-01T00:00:00+14:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"):
                bad = await client.post(
                    f"/api/endpoints/{endpoint['id']}/replay", json={"since": since}, headers=alice
                )
                assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_since"), since
            shown = (await client.get(f"/api/endpoints/{endpoint['id']}", headers=alice)).json()["delivery"]
            assert shown["dead_lettered"] == 1 and shown["queued"] == 0
    finally:
        await receiver.close()


async def _the_connected_address_is_checked_and_redirects_are_not_followed(settings):
    """A name that resolved publicly at registration may point at loopback later: the worker refuses to
    connect to an address the operator does not allow (here: private ones are not allowed)."""
    strict = fast(settings, endpoints_allow_private=False)
    target, elsewhere = await Receiver().start(), await Receiver().start()
    redirecting = await Receiver(status=307, extra_headers=f"location: {elsewhere.url}\r\n").start()
    try:
        await add_endpoint(strict, "alice", f"http://localhost:{target.port}/hook")
        async with running_deliverer(strict) as metrics:
            await emit_links(strict, "alice", 1)
            deadline = time.monotonic() + 5
            while metrics.retried.labels("address_refused")._value.get() < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        assert target.requests == []

        await add_endpoint(settings, "bob", redirecting.url)
        async with running_deliverer(fast(settings)) as metrics:
            await emit_links(settings, "bob", 1, start_ms=1_700_000_100_000)
            await redirecting.wait_for(2)
        assert elsewhere.requests == [] and metrics.retried.labels("redirect")._value.get() >= 1
    finally:
        await target.close()
        await elsewhere.close()
        await redirecting.close()


async def _slow_answers_and_huge_answers(settings):
    """A receiver answering within the read timeout is served; one sending a huge answer is read only up
    to the cap (its 2xx counts); a huge error answer leaves a short last error."""
    settings = fast(settings, deliver_read_timeout_ms=1000, deliver_max_response_bytes=1024)
    slow = await Receiver(delay_s=0.4).start()
    huge = await Receiver(status=200, body=b"x" * 20_000_000).start()
    huge_error = await Receiver(status=503, body=b"e" * 20_000_000).start()
    try:
        await add_endpoint(settings, "alice", slow.url)
        await add_endpoint(settings, "alice", huge.url)
        error_endpoint = await add_endpoint(settings, "alice", huge_error.url)
        async with running_deliverer(settings) as metrics:
            ids = await emit_links(settings, "alice", 2)
            await slow.wait_for(2)
            await huge.wait_for(2)
            await huge_error.wait_for(1)
            await asyncio.sleep(0.5)
        assert slow.ids() == ids and huge.ids() == ids
        assert metrics.delivered._value.get() == 4
        client = Redis.from_url(settings.redis_url)
        state = await Outbox(client, Keys(settings.redis_prefix)).counts(error_endpoint)
        await client.aclose()
        assert state[2]["last_error"] == "http_5xx: HTTP 503: " + "e" * 280
    finally:
        for r in (slow, huge, huge_error):
            await r.close()


def test_endpoints_are_scoped_and_validated(settings, redis_client) -> None:
    asyncio.run(_endpoints_are_scoped_and_validated(settings))


def test_link_created_is_delivered_signed(settings, redis_client) -> None:
    asyncio.run(_link_created_is_delivered_signed(settings))


def test_a_link_event_carries_what_the_api_shows(settings, redis_client) -> None:
    asyncio.run(_a_link_event_carries_what_the_api_shows(settings))


def test_in_order_under_failures_and_isolated_from_a_hanging_endpoint(settings, redis_client) -> None:
    asyncio.run(_in_order_under_failures_and_isolated_from_a_hanging_endpoint(settings))


def test_dead_letter_then_replay(settings, redis_client) -> None:
    asyncio.run(_dead_letter_then_replay(settings))


def test_the_connected_address_is_checked_and_redirects_are_not_followed(settings, redis_client) -> None:
    asyncio.run(_the_connected_address_is_checked_and_redirects_are_not_followed(settings))


def test_slow_answers_and_huge_answers(settings, redis_client) -> None:
    asyncio.run(_slow_answers_and_huge_answers(settings))


def test_the_worker_rides_out_a_redis_restart(settings, private_redis) -> None:
    """Redis killed and started again under a running worker: the worker keeps running and delivers
    what comes after, and nothing acknowledged before is sent again."""
    settings = fast(settings.model_copy(update={"redis_url": private_redis.url}))

    async def scenario():
        receiver = await Receiver().start()
        try:
            await add_endpoint(settings, "alice", receiver.url)
            async with running_deliverer(settings) as metrics:
                first = await emit_links(settings, "alice", 2)
                await receiver.wait_for(2)
                deadline = time.monotonic() + 5
                while metrics.delivered._value.get() < 2:  # both acknowledged before Redis goes
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                private_redis.kill()
                await asyncio.sleep(0.5)
                private_redis.start()
                later = await emit_links(settings, "alice", 2, start_ms=1_700_000_500_000)
                await receiver.wait_for(4, timeout_s=15)
                await asyncio.sleep(0.2)
            assert receiver.ids() == first + later and metrics.delivered._value.get() == 4
        finally:
            await receiver.close()

    asyncio.run(scenario())


# Event-stream entries that are no event, each with the reason it is dead-lettered under.
UNREADABLE_EVENTS = [
    ({"e": b"\xff not json"}, "undecodable"),
    ({"e": b""}, "undecodable"),
    ({"e": b'{"id": "evt_1", "type": "link.updated"'}, "undecodable"),
    ({"e": b'{"id": 1}'}, "invalid_event"),
    ({"e": b"[]"}, "invalid_event"),
    (
        {"e": b'{"id": "e", "type": "t", "subjects": "creator:alice", "occurred_ms": 1, "data": {}}'},
        "invalid_event",
    ),
    ({"x": b"no event field"}, "missing_event"),
    # copied back by hand from the dead letters: the reason and entry id are this failure's
    ({"e": b"{", "dead_reason": b"old", "dead_entry": b"1-1"}, "undecodable"),
]


def test_an_unreadable_stream_entry_is_dead_lettered_with_its_reason(settings, redis_client) -> None:
    """The fan-out skipped an entry it could not read with a log line only: nothing counted it and nothing
    kept it past the stream's retention. Each is now dead-lettered once (`Keys.events_dead`, with its
    reason and entry id) and counted by reason, and the events behind it are delivered in order."""
    settings = fast(settings)
    keys = Keys(settings.redis_prefix)

    async def scenario():
        receiver = await Receiver().start()
        try:
            await add_endpoint(settings, "alice", receiver.url)
            first = await emit_links(settings, "alice", 1)
            bad_ids = [redis_client.xadd(keys.events, fields).decode() for fields, _ in UNREADABLE_EVENTS]
            later = await emit_links(settings, "alice", 1, start_ms=1_700_000_900_000)
            async with running_deliverer(settings) as metrics:
                await receiver.wait_for(2)
                counted = {
                    reason: metrics.stream_dead.labels("events", reason)._value.get()
                    for reason in ("undecodable", "invalid_event", "missing_event")
                }
            assert receiver.ids() == first + later
            assert counted == {"undecodable": 4, "invalid_event": 3, "missing_event": 1}
            dead = redis_client.xrange(keys.events_dead)
            assert [(f[b"dead_entry"].decode(), f[b"dead_reason"].decode()) for _, f in dead] == [
                (entry_id, reason) for entry_id, (_, reason) in zip(bad_ids, UNREADABLE_EVENTS, strict=True)
            ]
            kept = [{k: v for k, v in f.items() if k not in (b"dead_reason", b"dead_entry")} for _, f in dead]
            assert kept[:-1] == [
                {k.encode(): v for k, v in fields.items()} for fields, _ in UNREADABLE_EVENTS[:-1]
            ]
            async with running_deliverer(settings) as metrics:  # a second worker: nothing twice
                await asyncio.sleep(0.3)
                assert metrics.stream_dead.labels("events", "undecodable")._value.get() == 0
            assert redis_client.xlen(keys.events_dead) == len(UNREADABLE_EVENTS)
        finally:
            await receiver.close()

    asyncio.run(scenario())


def test_a_replay_over_unreadable_stream_entries_requeues_the_events_around_them(
    settings, redis_client
) -> None:
    """A replay with `since` decoded every stream entry from that time on and raised at the first one that
    is no event: the endpoint's past events could never be replayed across it (a 500 every time)."""
    keys = Keys(settings.redis_prefix)

    async def scenario():
        endpoint_id = await add_endpoint(settings, "alice", "http://127.0.0.1:9/")
        first = await emit_links(settings, "alice", 1)
        for fields, _ in UNREADABLE_EVENTS:
            redis_client.xadd(keys.events, fields)
        later = await emit_links(settings, "alice", 1, start_ms=1_700_000_900_000)
        redis = Redis.from_url(settings.redis_url)
        try:
            endpoint = await EndpointStore(redis, keys, pytest.fail).get(endpoint_id)
            assert await Outbox(redis, keys).replay(endpoint, since_ms=0) == (0, 2)
            queued = redis_client.xrange(keys.endpoint_queue(endpoint_id))
            assert [events_out.decode(f[b"e"]).id for _, f in queued] == first + later
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_an_unreadable_queue_head_or_endpoint_record_blocks_nothing(settings, redis_client) -> None:
    """A queue head that is no event was read again every half second, its task died each time, and the
    events behind it waited for ever (a one-shot run crashed); an endpoint record that does not decode
    stopped the whole worker. Now the head is dead-lettered as it came (counted, shown without an id) and
    the record left out."""
    settings = fast(settings)
    keys = Keys(settings.redis_prefix)

    async def scenario():
        receiver = await Receiver().start()
        try:
            endpoint_id = await add_endpoint(settings, "alice", receiver.url)
            broken = await add_endpoint(settings, "alice", receiver.url)
            redis_client.hset(keys.endpoint(broken), "record", b"{broken")
            redis_client.xadd(keys.endpoint_queue(endpoint_id), {"e": b"{garbage"})
            redis_client.xadd(keys.endpoint_queue(endpoint_id), {"x": b"no event field"})
            ids = await emit_links(settings, "alice", 2)
            async with running_deliverer(settings) as metrics:
                await receiver.wait_for(2)
                assert metrics.dead.labels("undecodable")._value.get() == 2
                # Left out of the fan-out and its own task each time they read it: counted every time.
                assert metrics.dropped.labels("unreadable_endpoint")._value.get() >= 2
            assert receiver.ids() == ids
            redis = Redis.from_url(settings.redis_url)
            try:
                shown = await Outbox(redis, keys).dead_letters(endpoint_id, 10)
            finally:
                await redis.aclose()
            assert [(d["event_id"], d["error"].split(":")[0]) for d in shown] == [("", "undecodable")] * 2
        finally:
            await receiver.close()

    asyncio.run(scenario())


def test_an_unreadable_endpoint_record_is_left_out_of_listings_and_counted(settings, redis_client) -> None:
    """The listings and the admin's page left a record that does not decode out with a log line only:
    nothing on /metrics said an endpoint was missing. Each time one is left out it is counted now."""
    keys = Keys(settings.redis_prefix)

    async def scenario():
        async with running_app(settings) as (_, client):
            alice = await key_for(client, creator_id="alice")
            kept = await register(client, alice, "https://hooks.example.com/a", ["link.created"])
            broken = await register(client, alice, "https://hooks.example.com/b", ["link.created"])
            redis_client.hset(keys.endpoint(broken["id"]), "record", b"{broken")
            for headers in (alice, ADMIN):
                listed = (await client.get("/api/endpoints", headers=headers)).json()["endpoints"]
                assert [e["id"] for e in listed] == [kept["id"]]
            assert (await client.get(f"/api/endpoints/{broken['id']}", headers=alice)).status_code == 404
            text = (await client.get("/metrics")).text
        assert 'clicktrail_records_dropped_total{reason="unreadable_endpoint"} 3.0' in text

    asyncio.run(scenario())


def test_a_link_event_lost_to_redis_is_counted(settings, redis_client) -> None:
    """A link stored but its event not emitted (Redis failed in between) was a log line only: the
    endpoints never hear of the link, and nothing on /metrics said so."""

    async def scenario():
        async with running_app(settings) as (app, client):

            async def unreachable(link, now_ms):
                raise RedisConnectionError("Connection refused")

            app.ctx.outbox.link_created = unreachable
            link = await make_link(client, "alice", "https://shop.example.com/p/1")
            assert (await client.get(f"/api/links/{link['code']}", headers=ADMIN)).status_code == 200
            text = (await client.get("/metrics")).text
        assert 'clicktrail_records_dropped_total{reason="link_event_lost"} 1.0' in text

    asyncio.run(scenario())


async def _many_events_in_one_emit(settings):
    """One emit of more events than a script call takes: each id stored once, in the order given, whether
    it repeats inside the call, across the batch boundary, or was emitted before."""
    redis = Redis.from_url(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    outbox = Outbox(redis, keys)
    links = [
        Link(f"code{i}", "https://shop.example.com/", "alice", "shop.example.com", 1, updated_at_ms=1 + i)
        for i in range(EMIT_BATCH + 7)
    ]
    events = [events_out.link_event("link.updated", link, "http://x") for link in links]
    now_ms = int(time.time() * 1000)
    try:
        assert await outbox.emit(events[:3], now_ms) == 3
        # events[0..2] seen before; events[5] three times: early, at the end of the first script call, last.
        batch = [*events[: EMIT_BATCH - 1], events[5], *events[EMIT_BATCH - 1 :], events[5]]
        assert await outbox.emit(batch, now_ms) == len(events) - 3
        assert await outbox.emit(events, now_ms) == 0
        stored = [events_out.decode(f[b"e"]).id for _, f in await redis.xrange(keys.events)]
        assert stored == [e.id for e in events]
    finally:
        await redis.aclose()


def test_many_events_in_one_emit(settings, redis_client) -> None:
    asyncio.run(_many_events_in_one_emit(settings))
