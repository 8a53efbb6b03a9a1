"""The link cache alone, in one process: the time of a lookup and the memory a link costs, with many links.

    .venv/bin/python -m benchmarks.linkcache --links 1000000 --budget-mib 256 [--hot-links 4096]

Fills a LinkCache (redirector/cache.py) with `--links` links, then looks codes up uniformly at random in
rounds, each code a fresh str object as the redirect path makes it (so its hash is not cached), putting a
link back on a miss. Prints each round's mean time per request (the lookup, the loop's own timing, and on
a miss the link's making and its put), its misses and the worst single request (a resize or an eviction
stall shows there; the benchmark's own data is frozen out of the garbage collector, as the worker's
start-up state is), and the growth of the process's RSS per cached link (its key, its record, the cache's
arrays) after the fill and after each round. With `--links` above what the budget holds, the rounds evict
as they go.

A same-run comparison of two versions of the cache runs this once per version, one after the other, on a
quiet machine: lookup times here move by a quarter between rounds.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from core.links import Link
from redirector.cache import HOT_LINKS, LinkCache

CODE_CHARS = "abcdefghijkmnpqrstuvwxyz23456789"
NOW_NS = 10**15  # one instant: every link stays fresh, the TTL plays no part
TTL_MS = 10**12


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def sample_link(code: str, rng: random.Random) -> Link:
    host = f"shop{rng.randrange(1000)}.example.com"
    url = f"https://{host}/products/item-{rng.randrange(10**6)}?ref=x"
    return Link(code, url, f"creator-{rng.randrange(10**4)}", host, 1_700_000_000_000)


def run(links: int, budget_mib: int, hot_links: int, rounds: int, lookups: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    codes = ["".join(rng.choices(CODE_CHARS, k=7)) for _ in range(links)]
    gc.freeze()  # as the worker does after start-up: full collections would not walk the codes list
    try:
        return _rounds(codes, budget_mib, hot_links, rounds, lookups, rng)
    finally:
        gc.unfreeze()  # a caller's later objects (a test run's) are collected as usual


def _rounds(codes: list[str], budget_mib: int, hot_links: int, rounds: int, lookups: int,
            rng: random.Random) -> list[dict]:  # fmt: skip
    links = len(codes)
    before = rss_bytes()
    cache = LinkCache(budget_mib * 2**20, ttl_ms=TTL_MS, hot_links=hot_links)
    worst = 0.0
    for listed in codes:
        code = ("/" + listed)[1:]  # the cache's own key object, as the worker's (counted in the RSS)
        link = sample_link(code, rng)
        started = time.perf_counter()
        cache.put(code, link, NOW_NS)
        worst = max(worst, time.perf_counter() - started)
    results = [{"round": "fill", "links": len(cache), "worst_ms": worst * 1e3,
                "rss_b_per_link": (rss_bytes() - before) / max(len(cache), 1)}]  # fmt: skip
    for number in range(1, rounds + 1):
        wanted = [("/" + codes[rng.randrange(links)])[1:] for _ in range(lookups)]  # fresh str objects
        misses, worst = 0, 0.0
        began = time.perf_counter()
        for code in wanted:
            started = time.perf_counter()
            if not cache.get(code, NOW_NS)[0]:
                misses += 1
                cache.put(code, sample_link(code, rng), NOW_NS)
            worst = max(worst, time.perf_counter() - started)
        elapsed = time.perf_counter() - began
        del wanted
        results.append({"round": number, "links": len(cache), "ns_per_request": elapsed / lookups * 1e9,
                        "miss_ratio": misses / lookups, "worst_ms": worst * 1e3,
                        "rss_b_per_link": (rss_bytes() - before) / max(len(cache), 1)})  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--budget-mib", type=int, default=256)
    parser.add_argument("--hot-links", type=int, default=HOT_LINKS)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--lookups", type=int, default=200_000, help="per round")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for row in run(args.links, args.budget_mib, args.hot_links, args.rounds, args.lookups, args.seed):
        if row["round"] == "fill":
            print(f"fill: {row['links']:,} links cached, worst put {row['worst_ms']:.2f} ms, "
                  f"RSS {row['rss_b_per_link']:.0f} B a link")  # fmt: skip
        else:
            print(f"round {row['round']}: {row['ns_per_request']:,.0f} ns a request, misses "
                  f"{row['miss_ratio']:.3f}, worst {row['worst_ms']:.2f} ms, "
                  f"RSS {row['rss_b_per_link']:.0f} B a link")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
