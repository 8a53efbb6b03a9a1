"""Host ownership rules (attribution/domains.py): the most specific registered domain owns a host, and every
overlap of a registration with another merchant's domains is found, by shape."""

import pytest

from core.domains import (
    OVERLAP_PARENT,
    OVERLAP_SAME,
    OVERLAP_SUBDOMAIN,
    Overlap,
    find_overlaps,
    owner_of,
    parents,
)

OWNED = {"example.com": "m2", "shop1.example.com": "m1", "x.deep.shop1.example.com": "m3"}


@pytest.mark.parametrize(
    ("host", "owner"),
    [
        ("example.com", "m2"),
        ("www.example.com", "m2"),
        ("shop1.example.com", "m1"),  # the more specific domain wins over the parent
        ("p.shop1.example.com", "m1"),
        ("deep.shop1.example.com", "m1"),
        ("x.deep.shop1.example.com", "m3"),
        ("y.x.deep.shop1.example.com", "m3"),
        ("shop10.example.com", "m2"),  # a sibling that shares a prefix is not a subdomain
        ("notexample.com", ""),
        ("com", ""),
        ("93.184.216.34", ""),
    ],
)
def test_owner_is_the_most_specific_registered_domain(host: str, owner: str) -> None:
    assert owner_of(host, OWNED) == owner


def test_parents_exclude_the_top_level_domain() -> None:
    assert parents("a.b.example.com") == ["b.example.com", "example.com"]
    assert parents("example.com") == []


def overlaps_of(domains: list[str], owned: dict[str, str], merchant_id: str = "new") -> list[Overlap]:
    """find_overlaps fed as Redis would feed it: owners of the domains and their parents, and the
    registered subdomains below each domain."""
    seen = {n: o for n, o in owned.items() if any(d == n or d.endswith("." + n) for d in domains)}
    below = {d: {n: o for n, o in owned.items() if n.endswith("." + d)} for d in domains}
    return find_overlaps(merchant_id, domains, seen, below)


@pytest.mark.parametrize(
    ("domains", "owned", "expected"),
    [
        # the same domain
        (["shop.example"], {"shop.example": "m1"}, [("shop.example", "shop.example", "m1", OVERLAP_SAME)]),
        # a parent of it is registered
        (
            ["a.shop.example"],
            {"shop.example": "m1"},
            [("a.shop.example", "shop.example", "m1", OVERLAP_PARENT)],
        ),
        # a subdomain of it is registered (the example)
        (
            ["example.com"],
            {"shop1.example.com": "m1"},
            [("example.com", "shop1.example.com", "m1", OVERLAP_SUBDOMAIN)],
        ),
        # deeper nesting both ways
        (["c.example"], {"a.b.c.example": "m1"}, [("c.example", "a.b.c.example", "m1", OVERLAP_SUBDOMAIN)]),
        (["a.b.c.example"], {"c.example": "m1"}, [("a.b.c.example", "c.example", "m1", OVERLAP_PARENT)]),
        # a parent and a subdomain owned by two others
        (
            ["b.c.example"],
            {"c.example": "m1", "a.b.c.example": "m2"},
            [
                ("b.c.example", "c.example", "m1", OVERLAP_PARENT),
                ("b.c.example", "a.b.c.example", "m2", OVERLAP_SUBDOMAIN),
            ],
        ),
        # only the nearest registered parent owns the domain's hosts today
        (
            ["a.b.c.example"],
            {"c.example": "m1", "b.c.example": "m2"},
            [("a.b.c.example", "b.c.example", "m2", OVERLAP_PARENT)],
        ),
        # siblings and look-alikes never conflict
        (["shop2.example.com"], {"shop1.example.com": "m1"}, []),
        (["shop.example.com"], {"myshop.example.com": "m1", "shop.example.co": "m1"}, []),
        (["example.com"], {"example.com.evil.example": "m1", "notexample.com": "m1"}, []),
        # a merchant's own domains are no conflict
        (["example.com", "shop.example.com"], {"example.com": "new", "x.shop.example.com": "new"}, []),
        # nothing registered
        (["example.com"], {}, []),
    ],
)
def test_every_overlap_shape_is_found(domains, owned, expected) -> None:
    found = overlaps_of(domains, owned)
    assert [(o.domain, o.taken, o.owner, o.kind) for o in found] == expected
    for overlap in found:
        assert overlap.owner in overlap.describe()
