"""Every process builds its Redis clients in core/redisclient.py and its key names with `Keys.of(settings)`:
a client or a `Keys` made anywhere else ignores `CLICKTRAIL_REDIS_CLUSTER` (`clicktrail deliver` did both,
and delivered nothing on a Redis Cluster). Checked on the source of every package a process runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "redirector", "attribution", "clicktrail")
REDIS_CLASSES = frozenset({"Redis", "StrictRedis", "RedisCluster", "SyncRedis", "AsyncRedisCluster"})
# The one module allowed each construction.
ALLOWED = {"a Redis client": "core/redisclient.py", "a Keys": "core/keys.py"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def constructions(source: str) -> list[tuple[str, int]]:
    """(what, line) of each Redis client or `Keys` the source builds: `Redis(...)`, `X.Redis.from_url(...)`,
    `RedisCluster(...)` and the like, `Keys(...)` (not `Keys.of(...)`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if _name(func) in REDIS_CLASSES or (
            isinstance(func, ast.Attribute) and func.attr in ("from_url", "from_pool")
            and _name(func.value) in REDIS_CLASSES
        ):  # fmt: skip
            found.append(("a Redis client", node.lineno))
        elif _name(func) == "Keys":
            found.append(("a Keys", node.lineno))
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        ("r = Redis.from_url(url)", ["a Redis client"]),
        ("r = redis.asyncio.Redis.from_url(url, socket_timeout=1)", ["a Redis client"]),
        ("r = SyncRedis.from_url(url)", ["a Redis client"]),
        ("r = redis.Redis(host='h')", ["a Redis client"]),
        ("r = RedisCluster.from_url(url)", ["a Redis client"]),
        ("k = Keys(settings.redis_prefix)", ["a Keys"]),
        ("k = Keys.of(settings)", []),
        ("c = Client.from_url(url)", []),  # clickhouse-driver
        ("u = strip_from_url(url, 'p')", []),
    ],
)
def test_constructions_are_found(source: str, expected: list[str]) -> None:
    assert [what for what, _ in constructions(source)] == expected


def test_only_the_one_module_of_each_builds_it() -> None:
    stray = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for what, line in constructions(path.read_text()):
                if ALLOWED[what] != relative:
                    stray.append(f"{relative}:{line}: {what}")
    assert stray == []
