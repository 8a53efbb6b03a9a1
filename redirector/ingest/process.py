"""The ingest process (`clicktrail ingest`): one thread per stream, each a `StreamConsumer` with its own
Redis and ClickHouse connections, until SIGTERM/SIGINT, or, with `once`, until nothing is left. The
guarantee is the consumer's (core/streams.py)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence

import redis
from prometheus_client import CollectorRegistry

from core.cluster import connect
from core.keys import INGEST_GROUP, Keys
from core.redisclient import sync_client
from core.settings import Settings
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, StreamConsumer, StreamSpec, no_checkpoint
from redirector.ingest.clicks import ClickHandler
from redirector.ingest.enrich import Enricher
from redirector.ingest.links import LINK_EVENTS_RETAIN_MS, LinkEventHandler
from redirector.ingest.unique import UniqueClicks


def stream_specs(settings: Settings) -> list[StreamSpec]:
    """The redirector's streams: clicks and link events. (The order-events stream is attribution's.)"""
    keys = Keys.of(settings)

    def clicks(client: redis.Redis) -> ClickHandler:
        return ClickHandler(Enricher(), UniqueClicks(client, keys))

    # On a cluster every shard of the click stream is a stream of its own, with its own consumer group
    # and consumer thread in every ingester: an ingester that dies leaves its pending entries in each
    # shard to the others (XAUTOCLAIM), exactly once per shard as for a single stream (core/streams.py).
    return [
        *(
            StreamSpec("clicks", keys.click_stream(n), keys.click_dead(n), clicks)
            for n in range(keys.click_shards)
        ),
        StreamSpec(
            "links",
            keys.link_events,
            keys.link_events_dead,
            lambda _client: LinkEventHandler(),
            retain_ms=LINK_EVENTS_RETAIN_MS,
        ),
    ]


def run_streams(
    settings: Settings,
    specs: Sequence[StreamSpec],
    *,
    consumer: str,
    registry: CollectorRegistry,
    once: bool = False,
    checkpoint: Callable[[str], None] = no_checkpoint,
) -> int:
    """Drain every stream in its own thread (own Redis and ClickHouse connections) until SIGTERM/SIGINT,
    or, with `once`, until nothing is left now. Returns the exit status (1 if a consumer failed)."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    metrics = StreamMetrics(registry)
    consumers, closers = [], []
    for spec in specs:
        client = sync_client(settings, role="ingest")
        backend = connect(settings)
        closers += [client.close, backend.close]
        config = ConsumerConfig(
            stream=spec.stream,
            dead_stream=spec.dead_stream,
            group=INGEST_GROUP,
            consumer=consumer,
            batch_size=settings.ingest_batch_size,
            flush_interval_ms=settings.ingest_flush_interval_ms,
            claim_idle_ms=settings.ingest_claim_idle_ms,
            insert_timeout_s=settings.clickhouse_insert_timeout_s,
            retain_ms=spec.retain_ms,
        )
        consumers.append(
            StreamConsumer(client, backend, spec.make_handler(client), config, metrics, checkpoint=checkpoint)
        )
    results: dict[int, bool] = {}  # by consumer: the click shards share a name

    def work(item: StreamConsumer) -> None:
        results[id(item)] = item.run(stop, once=once)

    threads = [threading.Thread(target=work, args=(c,), name=f"ingest-{c.name}") for c in consumers]
    for thread in threads:
        thread.start()
    # Join with a timeout so that the main thread keeps taking signals.
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.2)
    for close in closers:
        close()
    return 0 if all(results.get(id(c), False) for c in consumers) else 1
