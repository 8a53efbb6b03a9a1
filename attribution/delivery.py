"""`clicktrail deliver`: sends the events in each endpoint's queue (outbox.py), signed with Standard
Webhooks, at least once and in order per endpoint.

One asyncio task per endpoint, each holding the endpoint's lease (so several `deliver` processes can run
and still never send one endpoint two events at once): it sends the queue's head and only then the next
one. A failure (timeout, refused connection, non-2xx, a redirect: never followed) schedules the same
event again with exponential backoff and jitter (backoff.py); past `DELIVER_RETRY_PERIOD_S` it goes to
the endpoint's dead letters with its last error and the queue moves on. A slow or failing endpoint
delays only its own task: connect and read timeouts are short, the whole attempt has a deadline, and at
most `DELIVER_MAX_RESPONSE_BYTES` of an answer is read.

On SIGTERM/SIGINT the worker stops taking events, lets each request in flight finish (bounded by the
timeouts), hands back any that does not (its event stays at the head of its queue and is sent again by
the next worker), releases its leases and closes. Metrics are exported on `--metrics-port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import signal
import time

import httpcore
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from redis.asyncio import Redis
from redis.exceptions import RedisError

from attribution import backoff, events_out, webhooks
from attribution.endpoints import UNREADABLE_ENDPOINT, Endpoint, EndpointStore
from attribution.events_out import Event
from attribution.guard import AddressRefused, GuardedBackend
from attribution.outbox import RECORDS_DROPPED_HELP, RECORDS_DROPPED_METRIC, Outbox, Undecodable
from core.clock import now_ms as clock_ms
from core.keys import Keys
from core.redisclient import failover_client
from core.settings import Settings

log = logging.getLogger("clicktrail.deliver")

# A lease lasts twice one attempt's deadline (never lapsing mid-request), and at least this long; a
# worker killed without releasing its leases holds its endpoints back that long.
MIN_LEASE_MS = 2_000
MAX_ERROR_CHARS = 300
# Each endpoint has at most one request in flight, so connections are bounded by the endpoints; a shared
# cap would let many hanging endpoints make the others wait for a connection. Idle ones kept: this many.
MAX_KEEPALIVE_CONNECTIONS = 100
USER_AGENT = "clicktrail-events/1"
# An endpoint with an empty queue looks again this often; this worker's own fan-out wakes it at once (a
# queue filled by another worker's fan-out or by a replay waits at most this long).
IDLE_RECHECK_S = 5.0
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter("clicktrail_events_delivered", "Events delivered (2xx)", registry=registry)
        self.retried = Counter(
            "clicktrail_event_retries",
            "Failed attempts scheduled again, by reason",
            ["reason"],
            registry=registry,
        )
        self.dead = Counter(
            "clicktrail_events_dead_lettered",
            "Events given up after the retry period, by the last failure's reason",
            ["reason"],
            registry=registry,
        )
        # The ingester's family and reasons, for the stream this process reads: one alert covers both.
        self.stream_dead = Counter(
            "clicktrail_stream_dead_letters",
            "Entries dead-lettered, by reason",
            ["stream", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "clicktrail_event_delivery_seconds",
            "Duration of one delivery attempt",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        # The server's family (redirector/metrics.py), for the records this process drops.
        self.dropped = Counter(RECORDS_DROPPED_METRIC, RECORDS_DROPPED_HELP, ["reason"], registry=registry)
        self.dropped.labels(UNREADABLE_ENDPOINT)

    def drop(self, reason: str) -> None:
        self.dropped.labels(reason).inc()


def signed_headers(endpoint: Endpoint, event: Event, body: bytes, now_s: int) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/json"),
        ("user-agent", USER_AGENT),
        ("webhook-id", event.id),
        ("webhook-timestamp", str(now_s)),
        ("webhook-signature", webhooks.sign(endpoint.secret, event.id, now_s, body)),
    ]


class Deliverer:
    def __init__(self, settings: Settings, redis: Redis, metrics: DeliveryMetrics) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = Keys.of(settings)
        self._outbox = Outbox(redis, self._keys, settings.events_retention_days, settings.public_url)
        self._store = EndpointStore(redis, self._keys, metrics.drop)
        self._metrics = metrics
        self._token = secrets.token_hex(8)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=GuardedBackend(settings.endpoints_allow_private),
            max_connections=None,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            retries=0,
        )
        self._tasks: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Condition()
        self._poll_s = settings.deliver_poll_interval_ms / 1000
        connect_s = settings.deliver_connect_timeout_ms / 1000
        read_s = settings.deliver_read_timeout_ms / 1000
        self._timeouts = {"connect": connect_s, "read": read_s, "write": read_s, "pool": connect_s}
        self._deadline_s = connect_s + 2 * read_s
        self._lease_ms = max(MIN_LEASE_MS, int(2_000 * self._deadline_s))

    async def run(self, stop: asyncio.Event, once: bool = False) -> None:
        """Until `stop` is set; with `once`, until every queue is empty or waiting for a retry."""
        try:
            while not stop.is_set():
                try:
                    fanning = await self._fan_out()
                    await self._spawn(stop, once)
                    if once:
                        await asyncio.gather(*self._tasks.values())
                        if not (fanning and await self._outbox_pending()):
                            break
                        continue
                except RedisError as exc:
                    # Redis away: nothing can be taken or acknowledged; in-flight state stays in Redis. A
                    # one-shot run says so and ends (exit 75 from the command): it waited for ever.
                    if once:
                        raise
                    log.warning("redis unavailable, retrying: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)
        finally:
            await self._shutdown()

    async def _spawn(self, stop: asyncio.Event, once: bool) -> None:
        """A task for every endpoint that has none (it exits at once if another worker holds the lease)."""
        ids = {i.decode() for i in await self._redis.smembers(self._keys.endpoints)}
        for endpoint_id in [i for i, task in self._tasks.items() if task.done() and i not in ids]:
            del self._tasks[endpoint_id]
        for endpoint_id in sorted(ids):
            task = self._tasks.get(endpoint_id)
            if task is None or task.done():
                self._tasks[endpoint_id] = asyncio.create_task(self._serve(endpoint_id, stop, once))

    async def _outbox_pending(self) -> bool:
        cursor = await self._redis.hget(self._keys.events_fanout, "cursor") or b"0-0"
        return bool(await self._redis.xrange(self._keys.events, b"(" + cursor, "+", count=1))

    async def _fan_out(self) -> bool:
        """Fan new events out if this worker holds (or can take) the fan-out lease; whether it does."""
        lease = self._keys.events_fanout_lease
        if not int(await self._renew(keys=[lease], args=[self._token, self._lease_ms])):
            return False
        moved = 0
        dead = self._metrics.stream_dead
        while (
            count := await self._outbox.fan_out(self._store, lambda r: dead.labels("events", r).inc())
        ) > 0:
            moved += count
        if moved:
            async with self._wake:
                self._wake.notify_all()
        return True

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        if stop.is_set():
            return
        async with self._wake:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)

    async def _serve(self, endpoint_id: str, stop: asyncio.Event, once: bool) -> None:
        lease = [self._keys.endpoint_lease(endpoint_id)]
        if not int(await self._renew(keys=lease, args=[self._token, self._lease_ms])):
            return  # another worker serves it
        try:
            while not stop.is_set():
                endpoint = await self._store.get(endpoint_id)
                try:
                    head = await self._outbox.head(endpoint_id) if endpoint else None
                except Undecodable as bad:
                    await self._give_up_on(endpoint_id, bad)
                    continue
                if endpoint is None or (head is None and once):
                    return
                if head is None:
                    await self._idle(stop, IDLE_RECHECK_S)
                    continue
                entry_id, event, state = head
                wait_ms = int(state.get("next_attempt_ms", 0)) - clock_ms()
                if wait_ms > 0:
                    if once:
                        return
                    await self._idle(stop, min(wait_ms / 1000, self._poll_s))
                    continue
                if not int(await self._renew(keys=lease, args=[self._token, self._lease_ms])):
                    return  # the lease lapsed and another worker took over
                reason, detail = await self._attempt(endpoint, event)
                await self._settle(endpoint_id, entry_id, event, state, reason, detail)
        except RedisError as exc:
            # The event stays where it was (at the head, or settled before the error); the next round
            # of the worker starts a new task for this endpoint.
            log.warning("endpoint %s paused, redis unavailable: %s", endpoint_id, exc)
        finally:
            with contextlib.suppress(Exception):
                await self._release(keys=lease, args=[self._token])

    async def _give_up_on(self, endpoint_id: str, bad: Undecodable) -> None:
        error = f"undecodable: {bad.reason}"[:MAX_ERROR_CHARS]
        await self._outbox.dead_letter_raw(endpoint_id, bad.entry_id, bad.payload, error, clock_ms())
        self._metrics.dead.labels("undecodable").inc()
        log.error("entry %s of endpoint %s dead-lettered: %s", bad.entry_id, endpoint_id, error)

    async def _attempt(self, endpoint: Endpoint, event: Event) -> tuple[str | None, str]:
        """(None, status) when delivered, else (reason, detail)."""
        body = events_out.payload(event)
        headers = signed_headers(endpoint, event, body, int(time.time()))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline_s):
                return await self._post(endpoint.url, headers, body)
        except TimeoutError:
            return "timeout", f"no complete answer within {self._deadline_s:g} s"
        except AddressRefused as exc:
            return "address_refused", str(exc)
        except httpcore.TimeoutException as exc:
            return "timeout", f"{type(exc).__name__}: {exc}"
        except httpcore.ConnectError as exc:
            return "connect", f"cannot connect: {exc}"
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            return "network", f"{type(exc).__name__}: {exc}"
        finally:
            self._metrics.latency.observe(time.perf_counter() - started)

    async def _post(self, url: str, headers, body: bytes) -> tuple[str | None, str]:
        cap = self._settings.deliver_max_response_bytes
        extensions = {"timeout": self._timeouts}
        async with self._pool.stream(
            "POST", url, headers=headers, content=body, extensions=extensions
        ) as resp:
            received = bytearray()
            async for chunk in resp.aiter_stream():
                received.extend(chunk[: cap - len(received)])
                if len(received) >= cap:
                    break  # the rest is never read: the connection is dropped
            status = resp.status
        if 200 <= status < 300:
            return None, str(status)
        if 300 <= status < 400:
            return "redirect", f"HTTP {status} (redirects are not followed)"
        text = bytes(received[:MAX_ERROR_CHARS]).decode("utf-8", "replace")
        return f"http_{status // 100}xx", f"HTTP {status}: {text}"

    async def _settle(self, endpoint_id: str, entry_id: str, event: Event, state, reason, detail) -> None:
        now = clock_ms()
        if reason is None:
            await self._outbox.delivered(endpoint_id, entry_id)
            self._metrics.delivered.inc()
            return
        failures = int(state.get("attempts", 0)) + 1
        first_ms = int(state.get("first_attempt_ms", now))
        settings = self._settings
        at_ms = backoff.next_attempt_ms(
            failures,
            first_ms,
            now,
            random.random(),
            base_ms=settings.deliver_retry_base_ms,
            cap_ms=settings.deliver_retry_cap_ms,
            period_ms=settings.deliver_retry_period_s * 1000,
        )
        error = f"{reason}: {detail}"[:MAX_ERROR_CHARS]
        if at_ms is None:
            await self._outbox.dead_letter(endpoint_id, entry_id, event, error, now)
            self._metrics.dead.labels(reason).inc()
            log.warning("event %s to endpoint %s dead-lettered: %s", event.id, endpoint_id, error)
            return
        self._metrics.retried.labels(reason).inc()
        state = {
            "attempts": failures,
            "first_attempt_ms": first_ms,
            "next_attempt_ms": at_ms,
            "last_error": error,
        }
        await self._outbox.retry_later(endpoint_id, state)

    async def _shutdown(self) -> None:
        """Requests in flight may finish (each is bounded by its deadline); any still running after that
        is cancelled, its event left at the head of its queue for the next worker."""
        async with self._wake:
            self._wake.notify_all()  # idle endpoints stop waiting now
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._deadline_s + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._release(keys=[self._keys.events_fanout_lease], args=[self._token])
        await self._pool.aclose()


async def run_deliver(settings: Settings, once: bool, metrics_port: int) -> int:
    registry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, registry=registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Through core/redisclient like every process: on a Redis Cluster, a plain client sent every command
    # to the first node and took each MOVED answer for "Redis unavailable", forever.
    redis = failover_client(settings, role="deliver")
    try:
        await Deliverer(settings, redis, DeliveryMetrics(registry)).run(stop, once=once)
    finally:
        await redis.aclose()
    return 0
