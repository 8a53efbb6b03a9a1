"""Smart-link decisions as pure functions over plain data: which rule matches a viewer, which variant a
viewer sticks to, whether a link has expired. The redirect (smartroute.py) gathers the viewer's facts,
only those a link's rules ask for, and calls these."""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable

from core.links import Rule, Smart

# Limits of the contract ("at most 20 rules", "at most 10 variants").
MAX_RULES = 20
MAX_VARIANTS = 10
# A weight is a positive integer; bounded so the sum stays small and a typo cannot be a billion.
MAX_VARIANT_WEIGHT = 1_000_000
NO_VARIANT = -1


def first_match(
    rules: tuple[Rule, ...],
    agent: Callable[[], tuple[str, str]],
    country: Callable[[], str],
) -> int:
    """The index of the first rule whose every listed dimension contains the viewer's value, or -1.

    The viewer's facts are asked for lazily (`agent()` gives (os, device), `country()` the ISO code, ""
    when unknown), so a link whose rules never name a country never pays for a lookup. An empty
    dimension matches everyone; a rule with no dimension at all matches everyone."""
    os = device = viewer_country = None
    for index, rule in enumerate(rules):
        if rule.os or rule.device:
            if os is None:
                os, device = agent()
            if rule.os and os not in rule.os:
                continue
            if rule.device and device not in rule.device:
                continue
        if rule.country:
            if viewer_country is None:
                viewer_country = country()
            if viewer_country not in rule.country:
                continue
        return index
    return -1


def variant_point(code: str, ip_hash: int, user_agent: str) -> int:
    """A viewer's fixed 64-bit point for a link: the same (keyed IP hash, user agent) always lands on the
    same point, on every worker and server (no process-seeded hash), and different links are independent.
    Not keyed itself: the IP hash already is (clientip.py), so nobody can aim at a variant from an IP."""
    # A code never holds a newline, nor a hex number one: each line is one field.
    viewer = f"{ip_hash:x}\n{code}\n{user_agent}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(viewer, digest_size=8).digest(), "big")


def pick_variant(weight_bounds: tuple[int, ...], point: int) -> int:
    """The variant a point falls into, each taking a share of the points in proportion to its weight
    (`weight_bounds`: the running sums of the weights, Smart.weight_bounds)."""
    return bisect_right(weight_bounds, point % weight_bounds[-1])


def time_expired(smart: Smart, now_ms: int) -> bool:
    return smart.expires_at_ms != 0 and now_ms >= smart.expires_at_ms
