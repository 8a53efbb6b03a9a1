"""benchmarks/linkcache.py measures what it says: every link fits and hits when the budget holds them, and
a budget too small for them evicts as the rounds go (misses, and never more links than the budget holds)."""

from benchmarks.linkcache import run


def test_links_within_the_budget_all_hit() -> None:
    fill, first = run(links=2_000, budget_mib=4, hot_links=64, rounds=1, lookups=3_000, seed=3)
    assert fill["links"] == 2_000 and first["links"] == 2_000
    assert first["miss_ratio"] == 0 and first["ns_per_request"] > 0


def test_a_small_budget_evicts_and_holds() -> None:
    fill, *rounds = run(links=20_000, budget_mib=1, hot_links=64, rounds=2, lookups=5_000, seed=3)
    assert fill["links"] < 20_000  # about 5,000 links of ~200 B fit in 1 MiB
    for row in rounds:
        assert 0.5 < row["miss_ratio"] < 1 and row["links"] <= fill["links"] + 50
