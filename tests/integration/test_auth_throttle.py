"""Guesses at the admin token are limited per client address (redirector/throttle.py), through the real app
on the real Redis: past the limit every attempt that is not an API key answers 429 with Retry-After, the
right admin token too; of concurrent guesses no more than the limit get a 401; right tokens, however many
at once, never fill the count; API keys are never limited (256 random bits); calls without a token are not
counted; another address is not affected; the dashboard's sign-in shares the count; behind a trusted proxy
the forwarded client is the one counted (every X-Forwarded-For line, in order), and without one a forged
header changes nothing; the count ends with its window; Redis out of reach answers 503; refusals are
counted by reason; the same on a Redis Cluster."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.integration.apphelp import ADMIN, running_app
from tests.integration.dashhelp import ADMIN_TOKEN, issue_key, sign_in
from tests.integration.test_total_parsing import HOSTILE_HEADERS

pytestmark = [pytest.mark.redis]

LIMIT = 3
# Attempts at the admin token of every kind count alike: near misses, a case variant, one far too long,
# non-ASCII, one with spaces inside.
BAD_TOKENS = ["admin-test-token-", "ADMIN-TEST-TOKEN", "x" * 5000, "\u00e9\u00ff", "admin test token"]


def limited(settings, window_s: int = 600, **extra):
    return settings.model_copy(
        update={"auth_max_failures": LIMIT, "auth_failure_window_s": window_s, **extra}
    )


def bearer(token: str) -> dict[str, bytes]:
    return {"authorization": f"Bearer {token}".encode("latin-1")}  # a header is bytes: non-ASCII too


def other_client(app, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 4444))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def refusals(app) -> dict[str, float]:
    return {
        sample.labels["reason"]: sample.value
        for metric in app.ctx.registry.collect()
        if metric.name == "clicktrail_auth_refusals"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


@pytest.mark.parametrize("first_bad", range(len(BAD_TOKENS)))
def test_past_the_limit_every_admin_attempt_gets_429_the_right_one_too(
    settings, redis_client, first_bad
) -> None:
    async def scenario():
        async with running_app(limited(settings)) as (app, client):
            key = await issue_key(client, creator_id="alice")
            assert refusals(app) == {"missing": 0, "invalid": 0, "throttled": 0}
            for n in range(LIMIT):
                token = BAD_TOKENS[(first_bad + n) % len(BAD_TOKENS)]
                refused = await client.get("/api/fx", headers=bearer(token))
                assert refused.status_code == 401, (token, refused.text)
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 429
            blocked = await client.get("/api/fx", headers=bearer(BAD_TOKENS[first_bad]))
            assert blocked.status_code == 429
            assert blocked.json()["error"]["code"] == "too_many_failures"
            assert 0 < int(blocked.headers["retry-after"]) <= 600
            # API keys are not guessable, so not limited: the right one works, a wrong one is a 401
            assert (await client.get("/api/fx", headers=bearer(key))).status_code == 200
            assert (await client.get("/api/fx", headers=bearer("ctk_" + "A" * 43))).status_code == 401
            # without a token: not a guess, the usual 401
            assert (await client.get("/api/fx")).status_code == 401
            async with other_client(app, "198.51.100.9") as elsewhere:
                assert (await elsewhere.get("/api/fx", headers=ADMIN)).status_code == 200
            assert refusals(app) == {"invalid": LIMIT + 1, "throttled": 2, "missing": 1}

    asyncio.run(scenario())


def test_concurrent_guesses_get_no_more_comparisons_than_the_limit(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings)) as (app, client):
            answers = await asyncio.gather(
                *(client.get("/api/fx", headers=bearer(f"guess-{n}")) for n in range(40))
            )
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [401] * LIMIT + [429] * (40 - LIMIT)
            assert refusals(app)["invalid"] == LIMIT

    asyncio.run(scenario())


def test_concurrent_right_tokens_never_fill_the_count(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings)) as (_, client):
            answers = await asyncio.gather(*(client.get("/api/fx", headers=ADMIN) for _ in range(40)))
            assert {a.status_code for a in answers} == {200}

    asyncio.run(scenario())
    assert list(redis_client.scan_iter(match=settings.redis_prefix + "authfail:*")) == []


def test_the_count_is_kept_under_a_hash_of_the_address_with_the_windows_ttl(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings, window_s=120)) as (_, client):
            await client.get("/api/fx", headers=bearer("wrong"))
            await asyncio.sleep(1.1)
            await client.get("/api/fx", headers=bearer("wrong again"))

    asyncio.run(scenario())
    keys = list(redis_client.scan_iter(match=settings.redis_prefix + "authfail:*"))
    assert len(keys) == 1 and b"203.0.113" not in keys[0]
    assert int(redis_client.get(keys[0])) == 2
    # the first refusal started the window; the second did not push its end out
    assert 110 <= redis_client.ttl(keys[0]) <= 119


def test_right_tokens_take_no_place_and_do_not_clear_the_count(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings)) as (_, client):
            for _ in range(LIMIT - 1):
                assert (await client.get("/api/fx", headers=bearer("guess"))).status_code == 401
            for _ in range(10):  # an operator's own calls never fill the count
                assert (await client.get("/api/fx", headers=ADMIN)).status_code == 200
            assert (await client.get("/api/fx", headers=bearer("guess"))).status_code == 401
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 429

    asyncio.run(scenario())


def test_a_count_without_a_ttl_gets_one(settings, redis_client) -> None:
    """A count left without a TTL (restored from a backup, PERSIST by hand) would refuse forever."""

    async def scenario():
        async with running_app(limited(settings, window_s=60)) as (_, client):
            await client.get("/api/fx", headers=bearer("guess"))
            (key,) = redis_client.scan_iter(match=settings.redis_prefix + "authfail:*")
            redis_client.set(key, 100)  # no TTL
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 429
            assert 0 < redis_client.ttl(key) <= 60

    asyncio.run(scenario())


def test_the_count_ends_with_its_window(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings, window_s=1)) as (_, client):
            for _ in range(LIMIT):
                await client.get("/api/fx", headers=bearer("guess"))
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 429
            deadline = time.monotonic() + 5
            while (await client.get("/api/fx", headers=ADMIN)).status_code == 429:
                assert time.monotonic() < deadline, "the window never ended"
                await asyncio.sleep(0.2)

    asyncio.run(scenario())


def test_the_dashboard_sign_in_shares_the_count_and_answers_429_with_its_page(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings)) as (_, client):
            key = await issue_key(client, creator_id="alice")
            assert (await client.get("/api/fx", headers=bearer("guess"))).status_code == 401
            for _ in range(LIMIT - 1):
                assert (await sign_in(client, "not-the-admin-token")).status_code == 401
            page = await sign_in(client, ADMIN_TOKEN)
            assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")
            assert "Too many wrong attempts at the admin token" in page.text
            assert int(page.headers["retry-after"]) > 0
            assert "ct_dash=" not in page.headers.get("set-cookie", "")
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 429
            assert (await sign_in(client, key)).status_code == 303  # an API key still signs in

    asyncio.run(scenario())
    assert len(list(redis_client.scan_iter(match=settings.redis_prefix + "dash:session:*"))) == 1


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(settings, redis_client) -> None:
    proxied = limited(settings, trusted_proxies=["203.0.113.0/24"])

    async def scenario():
        async with running_app(proxied) as (_, client):
            guesser = {"x-forwarded-for": "192.0.2.50"}
            for _ in range(LIMIT):
                await client.get("/api/fx", headers={**bearer("guess"), **guesser})
            assert (await client.get("/api/fx", headers={**ADMIN, **guesser})).status_code == 429
            # the guesser's own forged hops change nothing: the right-most untrusted one counts, over
            # every line (a proxy that adds a line of its own leaves the guesser's line first), ports too
            for forged in (
                [("x-forwarded-for", "10.9.9.9, 192.0.2.50")],
                [("x-forwarded-for", "10.9.9.9"), ("x-forwarded-for", "192.0.2.50")],
                [("x-forwarded-for", "10.9.9.9"), ("x-forwarded-for", "192.0.2.50, 203.0.113.9")],
                [("x-forwarded-for", "192.0.2.50:31337")],
            ):
                answer = await client.get("/api/fx", headers=[*ADMIN.items(), *forged])
                assert answer.status_code == 429, forged
            for viewer in ("192.0.2.51", "2001:db8::1", "[2001:db8:1::1]:443"):
                answer = await client.get("/api/fx", headers={**ADMIN, "x-forwarded-for": viewer})
                assert answer.status_code == 200, viewer

    asyncio.run(scenario())


def test_without_a_trusted_proxy_a_forwarded_header_does_not_evade_the_count(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings)) as (_, client):
            for n in range(LIMIT):
                forged = {"x-forwarded-for": f"192.0.2.{n}"}
                await client.get("/api/fx", headers={**bearer("guess"), **forged})
            answer = await client.get("/api/fx", headers={**ADMIN, "x-forwarded-for": "192.0.2.200"})
            assert answer.status_code == 429

    asyncio.run(scenario())


def test_redis_out_of_reach_answers_503_never_500(settings, private_redis) -> None:
    own = limited(settings, redis_url=private_redis.url)

    async def scenario():
        async with running_app(own) as (_, client):
            key = await issue_key(client, creator_id="alice")
            private_redis.kill()
            for token in (ADMIN_TOKEN, "guess", key, "ctk_" + "A" * 43):
                answer = await client.get("/api/fx", headers=bearer(token))
                assert answer.status_code == 503, (token, answer.text)
                assert answer.json()["error"]["code"] == "redis_unavailable"
                assert answer.headers["retry-after"] == "1"
                page = await sign_in(client, token)
                assert page.status_code == 503 and "Redis cannot be reached" in page.text, token
            private_redis.start()

    asyncio.run(scenario())


@pytest.mark.cluster
def test_the_limit_holds_on_a_redis_cluster(cluster_settings, cluster_redis) -> None:
    async def scenario():
        async with running_app(limited(cluster_settings)) as (app, client):
            for _ in range(LIMIT):
                assert (await client.get("/api/fx", headers=bearer("guess"))).status_code == 401
            assert (await client.get("/api/fx", headers=ADMIN)).status_code == 429
            async with other_client(app, "198.51.100.9") as elsewhere:
                for _ in range(5):
                    assert (await elsewhere.get("/api/fx", headers=ADMIN)).status_code == 200

    asyncio.run(scenario())
    counts = list(cluster_redis.scan_iter(match=cluster_settings.redis_prefix + "authfail:*"))
    assert len(counts) == 1 and 0 < cluster_redis.ttl(counts[0]) <= 600


def test_hostile_forwarded_for_values_never_answer_5xx(settings, redis_client) -> None:
    """Every hostile header value of test_total_parsing as the X-Forwarded-For the count is keyed by,
    behind a trusted proxy, alone and after a hop, with the right and a wrong admin token."""
    proxied = limited(settings, trusted_proxies=["203.0.113.0/24"], auth_max_failures=1_000_000)

    async def scenario():
        async with running_app(proxied) as (_, client):
            for value in HOSTILE_HEADERS:
                for hops in (value, b"192.0.2.1, " + value, value + b", 203.0.113.9"):
                    for token, status in ((ADMIN_TOKEN, 200), ("guess", 401)):
                        answer = await client.get(
                            "/api/fx", headers={**bearer(token), "x-forwarded-for": hops}
                        )
                        assert answer.status_code == status, (hops, token, answer.text)

    asyncio.run(scenario())


def test_hostile_sign_in_keys_answer_a_page_never_5xx(settings, redis_client) -> None:
    async def scenario():
        async with running_app(limited(settings, auth_max_failures=1_000_000)) as (_, client):
            for value in HOSTILE_HEADERS:
                key = value.decode("latin-1")
                for typed in (key, "ctk_" + key, " " + key + " "):
                    page = await sign_in(client, typed)
                    assert page.status_code in (401, 422), (typed, page.status_code)
                    assert page.headers["content-type"].startswith("text/html")

    asyncio.run(scenario())
