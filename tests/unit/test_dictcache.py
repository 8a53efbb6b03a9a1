"""The many-links experiment's server (benchmarks/dictcache.py) must measure what it says: every cached
link answered from the decoded tier, under the real cache's freshness rule. It patches the cache class,
so it runs in a child interpreter, never in this one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
from benchmarks import dictcache
from core.links import Link
from redirector.cache import HOT_LINKS, LinkCache

dictcache.patch()
cache = LinkCache(2**30, ttl_ms=60_000)
links = HOT_LINKS + 5_000  # more than the real decoded tier keeps
now_ns = 10**15
for n in range(links):
    cache.put(f"c{n}", Link(f"c{n}", f"https://shop.example/{n}", "creator", "shop.example", 1), now_ns)
for n in range(links):
    cache._packed.drop(f"c{n}")  # gone from the packed tier: only the decoded tier can answer
assert all(cache.get(f"c{n}", now_ns)[1].url == f"https://shop.example/{n}" for n in range(links))
assert cache.get("c0", now_ns + 61_000 * 10**6) == (False, None)  # past its TTL: not served
cache.expire_all()
assert cache.get("c1", now_ns) == (False, None)  # after expire_all: fresh-checked again
print("ok")
"""


def test_every_cached_link_is_answered_from_the_decoded_tier_and_only_while_fresh() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
