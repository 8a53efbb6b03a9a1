"""The many-links experiments' servers must measure what they say: benchmarks/dictcache.py answers every
cached link from the decoded tier, benchmarks/flatcache.py unpacks it from one flat dict of packed
records, both under the real cache's freshness rule. They patch the cache class, so each runs in a child
interpreter, never in this one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
from benchmarks import EXPERIMENT
from core.links import Link
from redirector.cache import HOT_LINKS, LinkCache

EXPERIMENT.patch()
cache = LinkCache(2**30, ttl_ms=60_000)
links = HOT_LINKS + 5_000  # more than the real decoded tier keeps
now_ns = 10**15
for n in range(links):
    cache.put(f"c{n}", Link(f"c{n}", f"https://shop.example/{n}", "creator", "shop.example", 1), now_ns)
for n in range(links):
    cache._packed.drop(f"c{n}")  # gone from the real packed tier: only the experiment's store can answer
assert all(cache.get(f"c{n}", now_ns)[1].url == f"https://shop.example/{n}" for n in range(links))
assert cache.get("c0", now_ns + 61_000 * 10**6) == (False, None)  # past its TTL: not served
cache.invalidate("c2")
assert cache.get("c2", now_ns) == (False, None)  # invalidated: gone from every tier
cache.expire_all()
assert cache.get("c1", now_ns) == (False, None)  # after expire_all: fresh-checked again
print("ok")
"""


@pytest.mark.parametrize("experiment", ["dictcache", "flatcache"])
def test_every_cached_link_is_answered_by_the_experiment_and_only_while_fresh(experiment: str) -> None:
    child = CHILD.replace("EXPERIMENT", experiment)
    done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


class _Served(Exception):
    pass


@pytest.mark.parametrize(
    ("argv", "served"),
    [
        (["serve", "--workers", "1"], True),
        (["serve", "--workers=1"], True),
        (["serve"], True),
        (["serve", "--workers", "01"], True),  # one worker, however written
        (["serve", "--workers", "2"], False),
        (["serve", "--workers=4"], False),
        (["serve", "--workers"], False),
    ],
)
def test_the_experiments_refuse_more_than_one_worker(monkeypatch, argv: list[str], served: bool) -> None:
    from benchmarks.dictcache import serve_patched
    from redirector import server

    def serve(settings, *, host: str, port: int, workers: int) -> int:
        raise _Served  # reached: the patched worker would be served

    monkeypatch.setattr(server, "serve", serve)
    monkeypatch.setattr(sys, "argv", ["clicktrail", *argv])
    monkeypatch.setenv("CLICKTRAIL_SECRET_KEY", "k" * 32)
    with pytest.raises(_Served if served else SystemExit):
        serve_patched(lambda: None)
