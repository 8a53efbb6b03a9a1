"""Smart-link decisions: rule matching (every dimension, empty lists, order), variant stickiness and
weights (chi-square over many seeded synthetic viewers), expiry by time."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.links import Rule, Smart, Target, Variant, planned
from redirector.smartlinks import first_match, pick_variant, time_expired, variant_point

T = Target(url="https://x.example/", host="x.example")


def rule(os=(), device=(), country=()) -> Rule:
    return Rule(target=T, os=tuple(os), device=tuple(device), country=tuple(country))


IOS_MOBILE_GB = ("ios", "mobile", "GB")
RULES_CASES = [
    # (rules, viewer (os, device, country), expected index)
    ((), IOS_MOBILE_GB, -1),
    ((rule(),), IOS_MOBILE_GB, 0),  # no dimension: everyone
    ((rule(os=[], device=[], country=[]),), IOS_MOBILE_GB, 0),  # empty lists: everyone
    ((rule(os=["ios"]),), IOS_MOBILE_GB, 0),
    ((rule(os=["android"]),), IOS_MOBILE_GB, -1),
    ((rule(os=["android", "ios"]),), IOS_MOBILE_GB, 0),
    ((rule(device=["mobile"]),), IOS_MOBILE_GB, 0),
    ((rule(device=["desktop", "tablet"]),), IOS_MOBILE_GB, -1),
    ((rule(country=["GB", "IE"]),), IOS_MOBILE_GB, 0),
    ((rule(country=["IE"]),), IOS_MOBILE_GB, -1),
    ((rule(country=["GB"]),), ("ios", "mobile", ""), -1),  # unknown country matches no country list
    # every listed dimension must match
    ((rule(os=["ios"], device=["mobile"], country=["GB"]),), IOS_MOBILE_GB, 0),
    ((rule(os=["ios"], device=["mobile"], country=["FR"]),), IOS_MOBILE_GB, -1),
    ((rule(os=["ios"], device=["tablet"], country=["GB"]),), IOS_MOBILE_GB, -1),
    # order: the first match wins, later matches are not looked at
    ((rule(os=["android"]), rule(os=["ios"]), rule()), IOS_MOBILE_GB, 1),
    ((rule(), rule(os=["ios"])), IOS_MOBILE_GB, 0),
    ((rule(country=["US"]), rule(device=["bot"]), rule(country=["GB"])), IOS_MOBILE_GB, 2),
    ((rule(os=["windows"]), rule(device=["desktop"])), ("windows", "desktop", "DE"), 0),
    ((rule(device=["bot"]),), ("other", "bot", ""), 0),
]


@pytest.mark.parametrize(("rules", "viewer", "expected"), RULES_CASES)
def test_first_match(rules, viewer, expected) -> None:
    os, device, country = viewer
    assert first_match(rules, lambda: (os, device), lambda: country) == expected


def test_facts_are_asked_only_when_a_rule_needs_them() -> None:
    asked = []

    def agent():
        asked.append("agent")
        return "ios", "mobile"

    def country():
        asked.append("country")
        return "GB"

    assert first_match((rule(os=["ios"]), rule(country=["GB"])), agent, country) == 0
    assert asked == ["agent"]
    asked.clear()
    assert first_match((rule(country=["GB"]), rule(os=["ios"]), rule(country=["FR"])), agent, country) == 0
    assert asked == ["country"]
    asked.clear()
    assert first_match((rule(os=["android"]), rule(os=["ios"]), rule(country=["X"])), agent, country) == 1
    assert asked == ["agent"]  # once, however many rules ask


def variants(*weights: int) -> tuple[int, ...]:
    """The weight bounds of variants with these weights, as a stored link carries them."""
    return planned(Smart(variants=tuple(Variant(target=T, weight=w) for w in weights))).weight_bounds


def viewers(n: int, seed: int) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    agents = [f"Mozilla/5.0 (agent {i})" for i in range(50)]
    return [(rng.getrandbits(64), rng.choice(agents)) for _ in range(n)]


# Chi-square critical values at p = 0.001 by degrees of freedom (a table, as scipy is not a dependency):
# seeded viewers make the test deterministic; the low significance level keeps a changed seed from failing
# a correct split by chance (1 in 1000).
CHI2_CRITICAL_P001 = {1: 10.828, 2: 13.816, 3: 16.266, 9: 27.877}


@pytest.mark.parametrize(
    "weights", [(70, 30), (50, 50), (1, 1, 1), (60, 25, 10, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
)
@pytest.mark.parametrize("seed", [1, 2])
def test_weights_chi_square(weights: tuple[int, ...], seed: int) -> None:
    n = 20_000
    counts = [0] * len(weights)
    split = variants(*weights)
    for ip_hash, agent in viewers(n, seed):
        counts[pick_variant(split, variant_point("Xy3kP9aQ", ip_hash, agent))] += 1
    total = sum(weights)
    expected = [n * w / total for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    assert chi2 < CHI2_CRITICAL_P001[len(weights) - 1], (counts, expected, chi2)


def test_a_skewed_split_fails_the_test() -> None:
    """The chi-square check can fail: a 50/50 split judged against 70/30 expectations does."""
    n = 20_000
    counts = [0, 0]
    for ip_hash, agent in viewers(n, 3):
        counts[pick_variant(variants(50, 50), variant_point("c0de", ip_hash, agent))] += 1
    expected = [n * 0.7, n * 0.3]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    assert chi2 > CHI2_CRITICAL_P001[1]


@given(st.integers(0, 2**64 - 1), st.text(max_size=200), st.text(min_size=3, max_size=64))
def test_sticky_per_viewer(ip_hash: int, agent: str, code: str) -> None:
    """The same viewer on the same link always gets the same variant (no per-process hash seed)."""
    split = variants(3, 5, 2)
    first = pick_variant(split, variant_point(code, ip_hash, agent))
    assert 0 <= first < 3
    assert all(pick_variant(split, variant_point(code, ip_hash, agent)) == first for _ in range(3))


def test_the_point_is_fixed_across_processes() -> None:
    # A pinned value: a process-seeded hash (Python's hash()) would make workers disagree, and a change of
    # the function would move every running A/B test's viewers.
    assert variant_point("Xy3kP9aQ", 12345, "Mozilla/5.0") == 15983287169271049146


def test_viewer_and_link_both_move_the_point() -> None:
    base = variant_point("code1", 1, "ua")
    assert variant_point("code2", 1, "ua") != base
    assert variant_point("code1", 2, "ua") != base
    assert variant_point("code1", 1, "ub") != base


@pytest.mark.parametrize(
    ("expires_at_ms", "now_ms", "expired"),
    [(0, 10**13, False), (1000, 999, False), (1000, 1000, True), (1000, 1001, True)],
)
def test_time_expired(expires_at_ms: int, now_ms: int, expired: bool) -> None:
    assert time_expired(Smart(expires_at_ms=expires_at_ms), now_ms) is expired
