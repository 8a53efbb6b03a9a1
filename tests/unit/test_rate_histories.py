"""A merchant's stored rate versions keep only the SKU rates each changed (attribution/rates.py), and
`decode_versions` folds them into one history per SKU. Differential: every version read back must give,
for every SKU, the rate a whole table per version (the storage before) gives, whether the versions were
stored as changes, whole (as before), or a mix of both, as a list written before this change and
appended to after is."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import rates, rules
from attribution.rates import StoredVersion, decode_versions
from attribution.rules import RateVersion, SkuRates

SKUS = [f"S-{n}" for n in range(6)]
CREATORS = ["alice", "bob"]
CATEGORIES = ["", "shoes", "hats"]

# One change of a version: SKU -> a rate (set) or None (cleared); the head's default also moves.
changes = st.dictionaries(st.sampled_from(SKUS), st.none() | st.integers(0, 10_000), max_size=4)
steps = st.lists(
    st.tuples(
        changes,
        st.integers(0, 10_000),
        st.dictionaries(st.sampled_from(CREATORS), st.integers(0, 10_000), max_size=1),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


def stored_lists(history: list[tuple[dict, int, dict, bool]]) -> tuple[list[bytes], list[dict[str, int]]]:
    """The raw versions (each stored whole, as before, when its flag says so; else as its changes) and the
    whole SKU table of each version, the reference."""
    raws, tables, table = [], [], {}
    for number, (change, default, creators, whole) in enumerate(history, start=1):
        before = dict(table)
        for sku, rate in change.items():
            if rate is None:
                table.pop(sku, None)
            else:
                table[sku] = rate
        if whole:
            stored = StoredVersion(number, 1_000 * number, default, {"shoes": 700}, dict(table), creators)
        else:
            delta = {s: None for s in before if s not in table}
            delta |= {s: r for s, r in table.items() if before.get(s) != r}
            stored = StoredVersion(number, 1_000 * number, default, {"shoes": 700}, {}, creators, delta)
        raws.append(msgspec.json.encode(stored))
        tables.append(dict(table))
    return raws, tables


@settings(max_examples=300, deadline=None)
@given(steps)
def test_every_version_reads_back_its_whole_table(history) -> None:
    raws, tables = stored_lists(history)
    versions = decode_versions(raws)
    assert [v.version for v in versions] == list(range(1, len(history) + 1))
    for version, table, (_, default, creators, _) in zip(versions, tables, history, strict=True):
        assert dict(version.skus) == table and len(version.skus) == len(table)
        assert (version.default_bps, version.creators, version.categories) == (
            default,
            creators,
            {"shoes": 700},
        )
        whole = RateVersion(version.version, version.effective_ms, default, {"shoes": 700}, table, creators)
        for sku in [*SKUS, "NOT-SOLD"]:
            assert (sku in version.skus) == (sku in table)
            assert version.skus.get(sku) == table.get(sku)
            for creator in [*CREATORS, "carol"]:
                for category in CATEGORIES:
                    assert rules.rate_for(version, creator, sku, category) == rules.rate_for(
                        whole, creator, sku, category
                    )


def test_a_version_stored_whole_before_changes_is_read_as_its_difference() -> None:
    """The format written before: each version carries its whole table, and no sku_changes field."""
    old = [
        b'{"version":1,"effective_ms":1000,"default_bps":500,"categories":{},"skus":{"A":100,"B":200},'
        b'"creators":{}}',
        b'{"version":2,"effective_ms":2000,"default_bps":500,"categories":{},"skus":{"B":250,"C":300},'
        b'"creators":{}}',
    ]
    new = msgspec.json.encode(StoredVersion(3, 3000, 600, {}, {}, {}, {"A": 150, "C": None}))
    one, two, three = decode_versions([*old, new])
    assert (dict(one.skus), dict(two.skus), dict(three.skus)) == (
        {"A": 100, "B": 200},
        {"B": 250, "C": 300},
        {"A": 150, "B": 250},
    )


@pytest.mark.parametrize(
    ("version", "sku", "rate"),
    [
        (1, "A", None),  # before its first change
        (2, "A", 100),
        (3, "A", 100),  # a version that did not change it keeps the rate before
        (4, "A", None),  # cleared
        (5, "A", 300),
        (9, "A", 300),
        (5, "B", None),  # never set
    ],
)
def test_a_skus_rate_is_its_latest_change_at_or_before_the_version(version, sku, rate) -> None:
    rates = SkuRates({"A": ((2, 4, 5), (100, None, 300))}, version)
    assert rates.get(sku) == rate and (sku in rates) == (rate is not None)
    if rate is None:
        with pytest.raises(KeyError):
            rates[sku]
    else:
        assert rates[sku] == rate


def test_a_version_with_neither_a_table_nor_changes_changes_nothing() -> None:
    """No writer makes one (helper-74 asked): read as an empty whole table it would clear every SKU rate."""
    first = msgspec.json.encode(StoredVersion(1, 1000, 500, {}, {"A": 1, "B": 2}, {}))
    neither = b'{"version":2,"effective_ms":2000,"default_bps":500,"skus":null,"sku_changes":null}'
    assert [dict(v.skus) for v in decode_versions([first, neither])] == [{"A": 1, "B": 2}, {"A": 1, "B": 2}]


@pytest.mark.parametrize(
    ("sizes", "runs"),
    [
        ([], []),
        ([10], [[10]]),
        ([60, 60, 60], [[60], [60], [60]]),
        ([30, 30, 30, 200, 1], [[30, 30, 30], [200], [1]]),
    ],
)
def test_a_rewrite_is_sent_in_runs_of_about_the_byte_bound(sizes, runs) -> None:
    """A legacy list's rewrite goes in RPUSHes of about REWRITE_BYTES_PER_COMMAND (here 100), in order; a
    version bigger than the bound goes alone (helper-74: a count of 1,000 could make one huge command)."""
    raws = [bytes(size) for size in sizes]
    assert [[len(raw) for raw in run] for run in rates._batches(raws, 100)] == runs
