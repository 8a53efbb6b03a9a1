"""Ingest throughput and end-to-end lag, each next to its baseline measured in the same run.

    .venv/bin/python -m benchmarks.ingest                       # 2,000,000 clicks, 30 s of 5,000 clicks/s
    .venv/bin/python -m benchmarks.ingest --clicks 200000 --lag-seconds 10
    .venv/bin/python -m benchmarks.ingest --cluster --clicks 400000   # one node vs two shards (same run)

1. Throughput: a private Redis is pre-filled with N clicks (entries of 2,000, as the recorder writes them
   under load); one ingester (`StreamConsumer`, production batch settings unless --batch-size) drains it
   into a throw-away database on the local ClickHouse. Baseline: the very rows it stored, as TSV through
   `clickhouse-client` into a second database with the same schema (same table, same materialized views),
   in table order (`ratio_to_raw`, the headline) and in arrival order (`ratio_to_raw_arrival_order`:
   ClickHouse sorts every block by the table's key, cheaper on rows already in that order). Target: ≥ 0.5.
   The ingester and the table-order insert each run twice, in the order ingest, raw, raw, ingest (the
   second ingest drains fresh clicks into another database), and the ratio is of their summed times: this
   machine's speed moves by a third between minutes, so each side gets an early and a late run.
   CPU per click: the ingesters', the private Redis's, and the whole machine's during each path (the
   machine is shared, so that last figure includes whatever else ran).
2. Redis memory per buffered click (`MEMORY USAGE` of the pre-filled stream / N): the cost of a backlog.
3. Lag: a producer writes 5,000 clicks/s (an entry of 100 every 20 ms) while the ingester runs; a poller
   counts rows every 50 ms, so each click's lag is the first poll that saw it minus its timestamp. Target:
   p99 < 5 s. The backlog drain rate (phase 1) over the load rate must be ≥ 5.
Both databases and the Redis are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

from benchmarks.redis_server import private_redis
from core import queries
from core.clickhouse import NativeClickHouse
from core.clickid import ClickIds
from core.keys import INGEST_GROUP, Keys
from core.migrate import migrate
from core.settings import Settings
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, StreamConsumer
from redirector.click import Click, encode_batch
from redirector.ingest.clicks import ClickHandler
from redirector.ingest.enrich import Enricher
from redirector.ingest.unique import UniqueClicks

CLICKHOUSE_URL = "clickhouse://default:@127.0.0.1:9000/default"
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 307.0.0.34.111 (iPhone14,5; iOS 17_1; en_US; en; scale=3.00; 1170x2532)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI BytedanceWebview/d8a21c6",
    "Mozilla/5.0 (Linux; Android 13; SM-S908B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
    "Safari/537.36",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
)
PER_ENTRY = 2_000  # the recorder's batch size under load
LAG_ENTRY = 100
LAG_TICK_S = 0.02  # 100 clicks every 20 ms: 5,000 clicks/s
POLL_S = 0.05


def agent_mix(distinct: int) -> list[str]:
    """`distinct` user agents: the templates above, then variants of them (real traffic carries many
    versions of each browser, and the enricher parses each distinct agent once)."""
    return [
        AGENTS[k % len(AGENTS)] + ("" if k < len(AGENTS) else f" Build/{k}") for k in range(max(distinct, 1))
    ]


def make_clicks(
    ids: ClickIds, count: int, start_ms: int, step_ms: float, agents: Sequence[str] = AGENTS
) -> list[Click]:
    out = []
    for i in range(count):
        ts_ms = int(start_ms + i * step_ms)
        visitor = (i * 7919) % 200_000
        out.append(
            Click(
                ids.new(ts_ms),
                ts_ms,
                f"code{i % 20_000:05d}",
                f"creator{i % 2_000}",
                f"m{i % 50}" if i % 4 else "",
                "shop.example",
                i % 97 == 0,
                agents[visitor % len(agents)],
                "https://www.tiktok.com/",
                visitor,
                f"81.{visitor % 200}.{visitor % 250}.0/24",
                "" if i % 3 else "FR",
            )
        )
    return out


def fill(client: redis.Redis, stream: str, clicks: list[Click], per_entry: int) -> None:
    with client.pipeline(transaction=False) as pipe:
        for seq, start in enumerate(range(0, len(clicks), per_entry)):
            pipe.xadd(
                stream,
                {
                    "v": b"1",
                    "r": b"bench",
                    "s": str(seq),
                    "c": encode_batch(clicks[start : start + per_entry]),
                },
            )
            if seq % 50 == 49:
                pipe.execute()
        pipe.execute()


def consumer(
    client: redis.Redis, backend: NativeClickHouse, keys: Keys, batch_size: int, name: str = "bench"
) -> StreamConsumer:
    config = ConsumerConfig(
        stream=keys.clicks,
        dead_stream=keys.clicks_dead,
        group=INGEST_GROUP,
        consumer=name,
        batch_size=batch_size,
    )
    handler = ClickHandler(Enricher(), UniqueClicks(client, keys))
    made = StreamConsumer(client, backend, handler, config, StreamMetrics(CollectorRegistry()))
    made.ensure_group()
    return made


def _drain(redis_url: str, database: str, keys: Keys, batch_size: int, name: str) -> None:
    """One ingest process (the benchmark may run several, as production may)."""
    client = redis.Redis.from_url(redis_url)
    backend = NativeClickHouse(CLICKHOUSE_URL, database=database)
    if not consumer(client, backend, keys, batch_size, name).run(threading.Event(), once=True):
        raise SystemExit(1)


def machine_busy_s() -> float:
    """CPU seconds all processes have used since boot (Linux /proc/stat: every state but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def raw_insert(backend: NativeClickHouse, raw: NativeClickHouse, order_by: str) -> tuple[float, float]:
    """The baseline: the rows the ingester stored, as TSV through clickhouse-client into `raw`'s table
    (the client parses, the server inserts: ClickHouse's C++ all the way). Returns (wall s, machine CPU s)."""
    with tempfile.NamedTemporaryFile(suffix=".tsv") as tsv:
        export = f"SELECT * FROM {backend.database}.clicks {order_by} FORMAT TabSeparated"
        subprocess.run(["clickhouse-client", "-q", export], stdout=tsv, check=True)
        tsv.seek(0)
        machine_before = machine_busy_s()
        started = time.perf_counter()
        subprocess.run(["clickhouse-client", "-q", f"INSERT INTO {raw.database}.clicks FORMAT TabSeparated"],
                       stdin=tsv, check=True)  # fmt: skip
        raw_s = time.perf_counter() - started
        raw_machine_s = machine_busy_s() - machine_before
    assert queries.click_count(raw) == queries.click_count(backend)
    return raw_s, raw_machine_s


def _drain_all(client, backend, keys, ids, count, batch_size, ingesters, agents) -> dict:
    """Fill the stream with `count` fresh clicks, then time `ingesters` processes draining it into
    `backend`: wall and CPU seconds (the ingesters', Redis's, the machine's) and the stream's size."""
    start_ms = int(time.time() * 1000) - 6 * 3_600_000
    clicks = make_clicks(ids, count, start_ms, 6 * 3_600_000 / count, agents)
    fill(client, keys.clicks, clicks, PER_ENTRY)
    del clicks
    stream_bytes = client.memory_usage(keys.clicks, samples=0)
    url = client.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/0"
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_drain, args=(redis_url, backend.database, keys, batch_size, f"bench-{n}"))
        for n in range(ingesters)
    ]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_before, redis_before = machine_busy_s(), redis_cpu_s(client)
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    wall_s = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall_s,
        # CPU the ingesters used (robust on a shared machine, unlike the wall time): the single-core ceiling.
        "cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "machine_s": machine_busy_s() - machine_before,
        "redis_s": redis_cpu_s(client) - redis_before,
        "stream_bytes": stream_bytes,
    }


def throughput(client, backends, raw, keys, ids, count, batch_size, ingesters, agents) -> dict:
    """The ingester and the raw insert in the order I R R I (then the raw insert in arrival order): this
    machine's speed moves by a third between minutes, so each side gets one early and one late run, and
    the ratio is of their sums. The second ingest drains fresh clicks (new ids) through keys of its own
    (stream, group, unique-visitor hashes) into a second database; both raw runs insert the first
    ingest's rows."""
    first = _drain_all(client, backends[0], keys, ids, count, batch_size, ingesters, agents)
    stored = queries.click_count(backends[0])
    totals = queries.rollup_totals(backends[0])
    raw_runs = [raw_insert(backends[0], raw[n], "") for n in (0, 2)]
    # Keys of its own (stream, consumer group, unique-visitor hashes): with the first drain's, every visitor
    # of the second would be known already, and the unique flags would cost Redis less the second time.
    again = Keys(f"{keys.prefix}again:")
    second = _drain_all(client, backends[1], again, ids, count, batch_size, ingesters, agents)
    assert queries.click_count(backends[1]) == stored
    # The same rows in the order they arrived (the stream's, which is ts_ms order here): ClickHouse sorts
    # each block by the table's key, which costs more on arrival order than on table order.
    arrival_s, _ = raw_insert(backends[0], raw[1], "ORDER BY ts_ms")
    ingests = (first, second)
    ingest_s = sum(run["wall_s"] for run in ingests)
    raw_s = sum(wall for wall, _ in raw_runs)
    clicks = 2 * count

    def per_click_us(seconds: float, n: int = clicks) -> float:
        return round(seconds / n * 1e6, 1)

    return {
        "clicks": count,
        "batch_size": batch_size,
        "ingesters": ingesters,
        "stored": stored,
        "rollups_agree": len(set(totals.values())) == 1,
        "order": "ingest, raw, raw, ingest (then raw in arrival order)",
        "ingest_s_runs": [round(run["wall_s"], 2) for run in ingests],
        "raw_tsv_s_runs": [round(wall, 2) for wall, _ in raw_runs],
        "ingest_s": round(ingest_s / 2, 2),
        "ingest_clicks_per_s": round(clicks / ingest_s),
        "ingest_cpu_us_per_click": per_click_us(sum(run["cpu_s"] for run in ingests)),
        "ingest_redis_cpu_us_per_click": per_click_us(sum(run["redis_s"] for run in ingests)),
        # Every process on the machine (ClickHouse, Redis, the ingesters, and whatever else runs there):
        # the CPU each path costs in all, next to the cores the machine has.
        "ingest_machine_cpu_us_per_click": per_click_us(sum(run["machine_s"] for run in ingests)),
        "raw_machine_cpu_us_per_click": per_click_us(sum(machine for _, machine in raw_runs)),
        "cores": os.cpu_count(),
        "raw_tsv_s": round(raw_s / 2, 2),
        "raw_clicks_per_s": round(clicks / raw_s),
        "ratio_to_raw": round(raw_s / ingest_s, 3),
        "ratio_to_raw_runs": [
            round(wall / run["wall_s"], 3) for (wall, _), run in zip(raw_runs, ingests, strict=True)
        ],
        "raw_arrival_order_clicks_per_s": round(count / arrival_s),
        "ratio_to_raw_arrival_order": round(arrival_s / (ingest_s / 2), 3),
        "redis_bytes_per_buffered_click": round(first["stream_bytes"] / count, 1),
    }


def lag(client, backend, keys, ids, seconds: float, batch_size: int) -> dict:
    base = queries.click_count(backend)
    produced: list[int] = []  # ts_ms of each click, in stream order
    polls: list[tuple[float, int]] = []
    stop, done = threading.Event(), threading.Event()

    def produce() -> None:
        next_at = time.monotonic()
        end = next_at + seconds
        while time.monotonic() < end:
            now_ms = int(time.time() * 1000)
            batch = make_clicks(ids, LAG_ENTRY, now_ms, 0)
            client.xadd(keys.clicks, {"v": b"1", "r": b"bench", "s": b"0", "c": encode_batch(batch)})
            produced.extend([now_ms] * LAG_ENTRY)
            next_at += LAG_TICK_S
            time.sleep(max(0.0, next_at - time.monotonic()))
        done.set()

    def poll() -> None:
        own = NativeClickHouse(CLICKHOUSE_URL, database=backend.database)
        while not stop.is_set():
            polls.append((time.time() * 1000, queries.click_count(own) - base))
            time.sleep(POLL_S)
        own.close()

    ingester = consumer(redis.Redis(connection_pool=client.connection_pool), backend, keys, batch_size)
    threads = [threading.Thread(target=produce), threading.Thread(target=poll),
               threading.Thread(target=ingester.run, args=(stop,))]  # fmt: skip
    for thread in threads:
        thread.start()
    done.wait()
    deadline = time.monotonic() + 30
    while (not polls or polls[-1][1] < len(produced)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    stop.set()
    for thread in threads:
        thread.join()
    lags, p = [], 0
    for index, ts_ms in enumerate(produced):
        while p < len(polls) and polls[p][1] < index + 1:
            p += 1
        lags.append((polls[p][0] if p < len(polls) else float("inf")) - ts_ms)
    lags.sort()
    return {
        "rate_clicks_per_s": round(len(produced) / seconds),
        "clicks": len(produced),
        "lag_p50_s": round(lags[len(lags) // 2] / 1000, 2),
        "lag_p99_s": round(lags[int(len(lags) * 0.99)] / 1000, 2),
        "lag_max_s": round(lags[-1] / 1000, 2),
    }


def run(
    clicks: int,
    lag_seconds: float,
    ingesters: int = 1,
    batch_size: int | None = None,
    distinct_agents: int = len(AGENTS),
) -> dict:
    """Throughput against the raw insert, then (unless `lag_seconds` is 0) lag at 5,000 clicks/s; returns
    the figures. The throw-away
    databases and the private Redis are removed at the end."""
    batch_size = batch_size or Settings().ingest_batch_size
    run_id = secrets.token_hex(3)
    backend = NativeClickHouse(CLICKHOUSE_URL, database=f"ct_bench_ingest_{run_id}")
    second = NativeClickHouse(CLICKHOUSE_URL, database=f"ct_bench_ingest2_{run_id}")
    raw = [NativeClickHouse(CLICKHOUSE_URL, database=f"ct_bench_raw{n}_{run_id}") for n in (1, 2, 3)]
    ids = ClickIds(secrets.token_bytes(16))
    keys = Keys("ct:bench:")
    try:
        for db in (backend, second, *raw):
            migrate(db, log=lambda _line: None)
        with tempfile.TemporaryDirectory() as work, private_redis(Path(work)) as url:
            client = redis.Redis.from_url(url)
            figures = {
                "throughput": throughput(
                    client,
                    (backend, second),
                    raw,
                    keys,
                    ids,
                    clicks,
                    batch_size,
                    ingesters,
                    agent_mix(distinct_agents),
                ),
                "distinct_agents": distinct_agents,
            }
            if lag_seconds > 0:  # 0: throughput only
                figures["lag"] = lag(client, backend, keys, ids, lag_seconds, batch_size)
                figures["drain_vs_load"] = round(
                    figures["throughput"]["ingest_clicks_per_s"] / figures["lag"]["rate_clicks_per_s"], 1
                )
            client.close()
    finally:
        for db in (backend, second, *raw):
            db.execute(f"DROP DATABASE IF EXISTS {db.database}")
            db.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=2_000_000)
    parser.add_argument("--lag-seconds", type=float, default=30)
    parser.add_argument("--ingesters", type=int, default=1, help="Ingest processes draining the backlog.")
    parser.add_argument(
        "--batch-size", type=int, default=Settings().ingest_batch_size, help="Clicks per insert."
    )
    parser.add_argument(
        "--agents", type=int, default=len(AGENTS), help="Distinct user agents among the clicks."
    )
    parser.add_argument("--out", type=Path, default=None, help="Write the figures as JSON here too.")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="One node vs the local two-shard cluster (benchmarks/ingest_cluster.py).",
    )
    args = parser.parse_args()
    if args.cluster:
        from benchmarks.ingest_cluster import run as run_cluster

        figures = run_cluster(args.clicks, args.batch_size)
    else:
        figures = run(args.clicks, args.lag_seconds, args.ingesters, args.batch_size, args.agents)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
