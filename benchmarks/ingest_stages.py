"""Where an ingested click's time goes: each stage of the ingester on its own, then the insert alone.

    .venv/bin/python -m benchmarks.ingest_stages                 # 400,000 clicks, batches of 100,000
    .venv/bin/python -m benchmarks.ingest_stages --clicks 200000 --rounds 5

1. Stages, CPU of this thread per click (median over `--rounds`), on batches as benchmarks/ingest.py makes
   them: msgpack decode, building the columns (clicks.py `build`; the unique flag runs in its thread),
   the unique flag's Python side (its Redis script runs in the shared Redis under a throw-away prefix,
   removed at the end), and clickhouse-driver serialising the block into a sink (no socket).
2. The insert alone, wall time per click: the built columns inserted with clickhouse-driver as one
   block, as batches, and as quarter batches, next to clickhouse-client's TSV insert of the same rows
   (the baseline of `benchmarks.ingest`), each into a fresh database, in the same run.
The numbers of docs/performance.md ("Where a click's time goes") come from here. Databases are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time

import redis
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.columns.service import write_column

from benchmarks.ingest import AGENTS, CLICKHOUSE_URL, PER_ENTRY, make_clicks
from core.clickhouse import NativeClickHouse
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from core.rows import ClickRow
from core.settings import Settings
from redirector.click import SCHEMA_VERSION, encode_batch
from redirector.ingest.clicks import ClickHandler
from redirector.ingest.enrich import Enricher
from redirector.ingest.unique import UniqueClicks

# The clicks table's non-String column types (core/migrations/0001, 0040).
TYPES = {"ts": "DateTime", "ts_ms": "UInt64", "is_head": "UInt8", "is_bot": "UInt8", "is_unique": "UInt8",
         "ip_hash": "UInt64", "variant": "Int16"}  # fmt: skip


class _NoSocket:
    def sendall(self, data: bytes) -> None:
        pass


class _Context:
    """What the driver's column writers read: DateTime values are given as Unix seconds."""

    settings = {"use_client_time_zone": True}  # noqa: RUF012 - read-only stand-in
    client_settings = {"strings_as_bytes": False, "strings_encoding": "utf-8", "use_numpy": False,  # noqa: RUF012
                       "input_format_null_as_default": False}  # fmt: skip
    server_info = None


def serialise(columns: list) -> None:
    out = BufferedSocketWriter(_NoSocket(), 1 << 20)
    for name, column in zip(ClickRow.columns(), columns, strict=True):
        write_column(_Context(), name, TYPES.get(name, "String"), list(column), out)
    out.flush()


def stages(handler: ClickHandler, client: redis.Redis, payloads: list[bytes], rounds: int) -> dict:
    spent: dict[str, list[float]] = {"decode": [], "build": [], "unique_flag": [], "serialise": []}
    prefix = f"ct:bench:stages:{secrets.token_hex(3)}:"
    count = 0
    try:
        for n in range(rounds):
            handler._unique = UniqueClicks(client, Keys(f"{prefix}{n}:"))  # every visitor new, as a backlog
            started = time.thread_time()
            records = [r for p in payloads for r in handler.decode("1-0", {b"v": SCHEMA_VERSION, b"c": p})]
            spent["decode"].append(time.thread_time() - started)
            count = len(records)
            started = time.thread_time()
            columns = handler.build(records)
            spent["build"].append(time.thread_time() - started)
            columns[10] = columns[10].result()
            handler._unique = UniqueClicks(client, Keys(f"{prefix}{n}:again:"))
            people = (
                [r.code for r in records], columns[2], columns[17], [r.user_agent for r in records],
                [r.click_id for r in records],
            )  # fmt: skip
            started = time.thread_time()
            handler._unique_column(columns[8], *people)
            spent["unique_flag"].append(time.thread_time() - started)
            started = time.thread_time()
            serialise(columns)
            spent["serialise"].append(time.thread_time() - started)
    finally:
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
    return {name: round(statistics.median(values) / count * 1e6, 2) for name, values in spent.items()}


def insert_alone(columns_of, records: list, batch_size: int) -> dict:
    """Wall µs per click of the insert alone, per block size, and of the raw TSV insert."""
    run = secrets.token_hex(3)
    out: dict[str, float] = {}
    databases = []
    try:
        for size in (len(records), batch_size, max(batch_size // 4, 1)):
            blocks = [columns_of(records[i : i + size]) for i in range(0, len(records), size)]
            db = NativeClickHouse(CLICKHOUSE_URL, database=f"ct_bench_stages_{size}_{run}")
            databases.append(db)
            migrate(db, log=lambda _line: None)
            started = time.perf_counter()
            for block in blocks:
                db.insert("clicks", ClickRow.columns(), block)
            out[f"driver_blocks_of_{size}"] = round((time.perf_counter() - started) / len(records) * 1e6, 2)
        raw = NativeClickHouse(CLICKHOUSE_URL, database=f"ct_bench_stages_raw_{run}")
        databases.append(raw)
        migrate(raw, log=lambda _line: None)
        with tempfile.NamedTemporaryFile(suffix=".tsv") as tsv:
            export = f"SELECT * FROM {databases[0].database}.clicks FORMAT TabSeparated"
            subprocess.run(["clickhouse-client", "-q", export], stdout=tsv, check=True)
            tsv.seek(0)
            started = time.perf_counter()
            insert = f"INSERT INTO {raw.database}.clicks FORMAT TabSeparated"
            subprocess.run(["clickhouse-client", "-q", insert], stdin=tsv, check=True)
            out["raw_tsv_one_insert"] = round((time.perf_counter() - started) / len(records) * 1e6, 2)
    finally:
        for db in databases:
            db.execute(f"DROP DATABASE IF EXISTS {db.database}")
            db.close()
    return out


def run(clicks: int, batch_size: int, rounds: int) -> dict:
    ids = ClickIds(secrets.token_bytes(16))
    start_ms = int(time.time() * 1000) - 6 * 3_600_000
    made = make_clicks(ids, clicks, start_ms, 6 * 3_600_000 / clicks, AGENTS)
    payloads = [encode_batch(made[i : i + PER_ENTRY]) for i in range(0, clicks, PER_ENTRY)]
    per_batch = batch_size // PER_ENTRY
    client = redis.Redis.from_url(Settings().redis_url)
    handler = ClickHandler(Enricher(), UniqueClicks(client, Keys("ct:bench:stages:warm:")))
    figures = {"clicks": clicks, "batch_size": batch_size, "load_average": os.getloadavg()}
    figures["stages_us_per_click"] = stages(handler, client, payloads[:per_batch], rounds)
    records = [r for p in payloads for r in handler.decode("1-0", {b"v": SCHEMA_VERSION, b"c": p})]
    handler._unique_column = lambda is_bot, *_columns: [0] * len(is_bot)  # not stored by the inserts below

    def columns_of(part: list) -> list:
        columns = handler.build(part)
        columns[10] = columns[10].result()
        return columns

    figures["insert_wall_us_per_click"] = insert_alone(columns_of, records, batch_size)
    client.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=400_000)
    parser.add_argument("--batch-size", type=int, default=Settings().ingest_batch_size)
    parser.add_argument("--rounds", type=int, default=7, help="Repeats of the stage measurements.")
    args = parser.parse_args()
    print(json.dumps(run(args.clicks, args.batch_size, args.rounds), indent=2))


if __name__ == "__main__":
    main()
