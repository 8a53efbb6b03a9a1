"""Everything a running server shares, made once in the lifespan from the settings and torn down in
order. Handlers reach it as `request.app.state.ctx`; nothing here is a module global."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from attribution.api import MAX_CONCURRENT_HEAVY_API
from attribution.api import Metrics as AttributionMetrics
from attribution.catalog import CatalogStore
from attribution.debugger import DeliveryLog
from attribution.endpoints import EndpointStore
from attribution.merchants import MerchantStore, owner_resolver
from attribution.outbox import Outbox
from attribution.rates import RateStore
from attribution.runstats import STATS_REFRESH_INTERVAL_S, StatsCollector
from attribution.webhooks import Acceptor
from core.clickhouse import Backend
from core.clickid import ClickIds
from core.keys import INGEST_GROUP, Keys
from core.links import LinkStore, OwnerResolver
from core.redisclient import async_client, failover_client
from core.settings import Settings
from core.streaminfo import LAG_INTERVAL_S, stream_lag_async
from redirector.auth import Authenticator
from redirector.cache import LinkCache
from redirector.clicklimit import ClickLimit
from redirector.clientip import ClientAddress
from redirector.dash.site import Dashboard
from redirector.geo import CountryLookup
from redirector.linkwatch import LinkWatcher
from redirector.metrics import SNAPSHOT_INTERVAL_S, RedirectCollector, SnapshotDir, make_registry, snapshot
from redirector.preload import Preload
from redirector.recorder import Recorder
from redirector.redirect import RedirectHandler
from redirector.resolver import LinkResolver
from redirector.smartroute import SmartRouter
from redirector.stats import RecorderStats, RedirectStats
from redirector.throttle import CredentialThrottle

log = logging.getLogger("clicktrail.server")

# How long close() waits for cancelled background tasks before cancelling the stragglers again.
TASK_CANCEL_RETRY_S = 0.1


@dataclass
class AppState:
    settings: Settings
    keys: Keys
    redis: Redis
    recorder_redis: Redis
    lookup_redis: Redis
    ids: ClickIds
    links: LinkStore
    cache: LinkCache
    auth: Authenticator
    recorder: Recorder
    redirect: RedirectHandler
    redirect_stats: RedirectStats  # the redirect path's counters, and this worker's dropped records
    registry: CollectorRegistry
    watcher: LinkWatcher
    preload: Preload  # the link cache's warm-up at start-up (preload.py)
    # The attribution side's stores, made once (its handlers reach them here, like everything else).
    owners: OwnerResolver
    merchants: MerchantStore
    rates: RateStore
    catalog: CatalogStore
    acceptor: Acceptor
    attribution_metrics: AttributionMetrics
    heavy_api: asyncio.Semaphore  # catalog writes, searches and rate changes running at once
    # Events out and the webhook debugger (attribution/outbox.py, endpoints.py, debugger.py).
    outbox: Outbox
    endpoints: EndpointStore
    webhook_log: DeliveryLog
    dash: Dashboard  # the web dashboard's sessions and templates (redirector/dash/)
    _snapshots: SnapshotDir | None = None
    _own_snapshot: Callable[[], dict] | None = None
    _clickhouse: Backend | None = None
    # The ingestion lag last measured for /metrics (stream → (entries, age in s)): the dashboard shows it.
    stream_lag: dict[str, tuple[int, float]] = field(default_factory=dict)
    _attribution_stats: dict = field(default_factory=dict)  # the attributor's run statistics, as last read
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        keys = Keys.of(settings)
        # The API's client retries briefly: after a Redis restart every pooled connection is dead once
        # (on a cluster: long enough to ride out a failover).
        redis = failover_client(settings, role="serve-api")
        # The redirect path's clients fail fast, so a Redis that hangs never holds a viewer: a slow write
        # is spooled rather than retried; a slow lookup serves the cached copy or a 503 (one retry only
        # for a dropped connection).
        recorder_redis = async_client(
            settings, settings.redis_write_timeout_ms / 1000, 0, role="serve-recorder"
        )
        lookup_redis = async_client(settings, settings.redis_lookup_timeout_ms / 1000, 1, role="serve-lookup")
        ids = ClickIds(settings.secret_bytes)
        links = LinkStore(redis, keys)
        cache = LinkCache(settings.link_cache_bytes, settings.link_cache_ttl_ms)
        redirect_stats, recorder_stats = RedirectStats(), RecorderStats()
        address = ClientAddress(settings.secret_bytes, settings.trusted_proxies)
        recorder = Recorder(
            recorder_redis,
            keys,
            settings.spool_dir,
            recorder_stats,
            max_batch=settings.recorder_max_batch,
            retry_interval_ms=settings.spool_retry_interval_ms,
            min_replicas_acked=settings.redis_min_replicas_acked,
            wait_timeout_ms=max(1, settings.redis_write_timeout_ms // 2),
        )
        resolver = LinkResolver(LinkStore(lookup_redis, keys), cache, redirect_stats)
        redirect = RedirectHandler(
            resolver,
            recorder,
            ids,
            address,
            redirect_stats,
            settings.country_header,
            SmartRouter(ClickLimit(recorder_redis, keys), CountryLookup()),
        )
        snapshots = SnapshotDir(settings.data_dir / "metrics", recorder.recorder_id)

        preload = Preload(links, resolver, cache, settings.link_cache_preload_max_s)

        def own_snapshot() -> dict:
            return snapshot(redirect_stats, recorder_stats, cache, recorder.live, not preload.done)

        registry = make_registry()
        registry.register(RedirectCollector(own_snapshot, snapshots.peers))
        return cls(
            settings=settings,
            keys=keys,
            redis=redis,
            recorder_redis=recorder_redis,
            lookup_redis=lookup_redis,
            ids=ids,
            links=links,
            cache=cache,
            auth=Authenticator(
                redis,
                keys,
                settings.admin_token,
                CredentialThrottle(
                    redis, keys, address, settings.auth_max_failures, settings.auth_failure_window_s
                ),
                Counter(
                    "clicktrail_auth_refusals",
                    "API tokens and dashboard sign-ins refused, by reason (missing, invalid, throttled)",
                    ["reason"],
                    registry=registry,
                ),
            ),
            recorder=recorder,
            redirect=redirect,
            registry=registry,
            redirect_stats=redirect_stats,
            watcher=LinkWatcher(redis, keys, cache, redirect_stats),
            preload=preload,
            owners=owner_resolver(keys, settings.default_click_param),
            merchants=MerchantStore(redis, keys),
            rates=RateStore(redis, keys),
            catalog=CatalogStore(redis, keys),
            acceptor=Acceptor(redis, keys, min_replicas_acked=settings.redis_min_replicas_acked),
            attribution_metrics=AttributionMetrics(registry),
            heavy_api=asyncio.Semaphore(MAX_CONCURRENT_HEAVY_API),
            outbox=Outbox(redis, keys, settings.events_retention_days, settings.public_url),
            endpoints=EndpointStore(redis, keys, redirect_stats.drop),
            webhook_log=DeliveryLog(redis, keys, redirect_stats.drop),
            dash=Dashboard.build(settings, redis, keys),
            _snapshots=snapshots,
            _own_snapshot=own_snapshot,
        )

    def clickhouse(self) -> Backend:
        """The ClickHouse client, connected on first use (the redirect path never needs it)."""
        if self._clickhouse is None:
            from core.cluster import connect

            self._clickhouse = connect(self.settings)
        return self._clickhouse

    async def start(self) -> None:
        await self.recorder.start()
        self._tasks.append(asyncio.create_task(self.watcher.run(), name="link-watch"))
        # After the watcher: a link changed while the preload reads it is dropped again by the watcher.
        self._tasks.append(asyncio.create_task(self.preload.run(), name="link-preload"))
        self._tasks.append(asyncio.create_task(self._publish_metrics(), name="metrics-snapshot"))
        self._tasks.append(asyncio.create_task(self._watch_lag(), name="stream-lag"))
        self.registry.register(StatsCollector(lambda: self._attribution_stats))
        self._tasks.append(asyncio.create_task(self._watch_attribution(), name="attribution-stats"))

    async def close(self) -> None:
        """Runs after the server stopped accepting and drained its connections: every answered click is
        already durable; flush anything left, then close."""
        await self.recorder.close()
        # A cancellation that arrives while the Redis client is connecting can be swallowed there (the
        # task then carries on and would never end): cancel whatever still runs again until all stop.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=TASK_CANCEL_RETRY_S)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._snapshots is not None:
            self._snapshots.remove()
        await self.redis.aclose()
        await self.recorder_redis.aclose()
        await self.lookup_redis.aclose()
        if self._clickhouse is not None:
            await asyncio.to_thread(self._clickhouse.close)

    async def _watch_lag(self) -> None:
        """Ingestion lag on the server's own /metrics too, so one scrape shows whether clicks are reaching
        ClickHouse (the ingester exports the same figures with `ingest --metrics-port`)."""
        entries = Gauge(
            "clicktrail_stream_lag_entries",
            "Stream entries not yet in ClickHouse",
            ["stream"],
            registry=self.registry,
        )
        seconds = Gauge(
            "clicktrail_stream_lag_seconds",
            "Age of the oldest entry not yet in ClickHouse",
            ["stream"],
            registry=self.registry,
        )
        # On a cluster the click stream is several shards: the lag is their sum, the age their oldest.
        streams = {"clicks": self.keys.click_streams, "orders": [self.keys.orders]}
        while True:
            for name, shards in streams.items():
                count, age_s = 0, 0.0
                try:
                    for stream in shards:
                        try:
                            shard_count, shard_age_s = await stream_lag_async(
                                self.redis, stream, INGEST_GROUP
                            )
                        except RedisError as exc:
                            if "no such key" not in str(exc):
                                log.debug("stream lag unavailable: %s", exc)
                            shard_count, shard_age_s = 0, 0.0
                        count, age_s = count + shard_count, max(age_s, shard_age_s)
                except Exception:  # a gauge must never take the server down, nor stop updating
                    log.exception("stream lag computation failed")
                    continue
                entries.labels(name).set(count)
                seconds.labels(name).set(age_s)
                self.stream_lag[name] = (count, age_s)
            await asyncio.sleep(LAG_INTERVAL_S)

    async def _watch_attribution(self) -> None:
        """The attributor's run statistics (attribution/runstats.py) on this /metrics: the attributor is
        a batch job that is mostly not running when Prometheus scrapes."""
        while True:
            try:
                self._attribution_stats = await self.redis.hgetall(self.keys.attribution_stats)
            except RedisError as exc:
                log.debug("attributor statistics unavailable: %s", exc)
            except Exception:  # a gauge must never take the server down, nor stop updating
                log.exception("reading attributor statistics failed")
            await asyncio.sleep(STATS_REFRESH_INTERVAL_S)

    async def _publish_metrics(self) -> None:
        """Let sibling workers include this one's counters in their /metrics (metrics.py)."""
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            try:
                await asyncio.to_thread(self._snapshots.publish, self._own_snapshot())
            except OSError as exc:
                log.warning("cannot publish metrics snapshot: %s", exc)
