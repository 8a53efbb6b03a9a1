"""Merchant domains and currency: what `validate` refuses (hosts that are not public names, currencies money
cannot be booked in) and accepts."""

import msgspec
import pytest

from attribution.merchants import MAX_DOMAINS_PER_MERCHANT, InvalidMerchant, Merchant, validate
from core.urls import UrlError, validate_url
from tests.unit.test_urls import BAD_A_LABELS, GOOD_A_LABELS, MIXED_SPELLINGS

BASE = Merchant("m1", "Shop", ["shop.example.com"], "EUR", 800)


@pytest.mark.parametrize(
    "domain",
    [
        "foo.localhost",
        "localhost.localdomain",
        "printer.local",
        "box.localdomain",
        "db.internal",
        "nas.home.arpa",
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "93.184.216.34",  # even a public address: it has no subdomains to own
        "216.34",
        "0x7f.1",
    ],
)
def test_non_public_domains_are_refused(domain: str) -> None:
    with pytest.raises(InvalidMerchant) as info:
        validate(msgspec.structs.replace(BASE, domains=["shop.example.com", domain]))
    assert info.value.code == "non_public_host"


@pytest.mark.parametrize(
    ("domains", "normalised"),
    [
        (["Shop.Example.COM."], ["shop.example.com"]),
        (["localhost.example.com", "mylocal.shop"], ["localhost.example.com", "mylocal.shop"]),
        (["1e3.com", "shop.x1.example"], ["1e3.com", "shop.x1.example"]),
    ],
)
def test_public_domains_are_accepted(domains: list[str], normalised: list[str]) -> None:
    assert validate(msgspec.structs.replace(BASE, domains=domains)).domains == normalised


@pytest.mark.parametrize("label", BAD_A_LABELS)
@pytest.mark.parametrize("domain", ["{}.example", "shop.{}.example"])
def test_a_broken_punycode_label_is_refused(label: str, domain: str) -> None:
    with pytest.raises(InvalidMerchant) as info:
        validate(msgspec.structs.replace(BASE, domains=["shop.example.com", domain.format(label)]))
    assert info.value.code == "invalid"


def test_valid_punycode_labels_are_accepted() -> None:
    domains = [f"shop.{a_label}.example" for a_label, _ in GOOD_A_LABELS]
    assert validate(msgspec.structs.replace(BASE, domains=domains)).domains == sorted(
        {d.lower() for d in domains}
    )


@pytest.mark.parametrize("domain", ["localhost", "localhost.", "local", ""])
def test_single_label_names_are_refused(domain: str) -> None:
    with pytest.raises(InvalidMerchant):
        validate(msgspec.structs.replace(BASE, domains=[domain]))


# Found by fuzzing: a merchant in XAU (gold, no minor unit) was registered and its orders accepted.
@pytest.mark.parametrize("currency", ["AAA", "XAU", "XTS", "XDR", "ZZZ"])
@pytest.mark.parametrize("currencies", [None, ["EUR"]])
def test_a_main_currency_money_cannot_be_booked_in_is_refused(currency: str, currencies) -> None:
    with pytest.raises(InvalidMerchant, match=r"^currency"):
        validate(msgspec.structs.replace(BASE, currency=currency, currencies=currencies))


@pytest.mark.parametrize("currency", ["EUR", "JPY", "BHD", "USD"])
def test_bookable_main_currencies_are_accepted(currency: str) -> None:
    assert validate(msgspec.structs.replace(BASE, currency=currency, currencies=None)).currency == currency


def test_a_domain_given_in_unicode_is_stored_as_its_links_hosts_are() -> None:
    """Spelled as link destinations are (core/urls.py), so that a claim matches its links."""
    domains = [f"shop.{u_label}.example" for _, u_label in GOOD_A_LABELS]
    expected = sorted({f"shop.{a_label.lower()}.example" for a_label, _ in GOOD_A_LABELS})
    assert validate(msgspec.structs.replace(BASE, domains=domains)).domains == expected


@pytest.mark.parametrize("domain", MIXED_SPELLINGS)
@pytest.mark.parametrize("spelling", ["bücher", "xn--bcher-kva"])
def test_one_verdict_for_a_domain_in_either_spelling(domain: str, spelling: str) -> None:
    with pytest.raises(InvalidMerchant) as info:
        validate(msgspec.structs.replace(BASE, domains=[domain.format(spelling)]))
    assert info.value.code == "invalid"


@pytest.mark.parametrize(("domain", "stored"), [("shop.example.", "shop.example"), ("shop.example..", None)])
def test_a_domain_ends_in_one_dot_at_most_as_a_link_host_does(domain: str, stored: str | None) -> None:
    """One trailing dot (the root) is dropped, as from a link's host; two are no host name (they were all
    dropped from a domain while a link refused them)."""
    given = msgspec.structs.replace(BASE, domains=[domain])
    if stored is None:
        with pytest.raises(InvalidMerchant):
            validate(given)
        with pytest.raises(UrlError):
            validate_url(f"https://{domain}/")
    else:
        assert validate(given).domains == [stored] and validate_url(f"https://{domain}/").host == stored


def test_a_refused_name_is_not_echoed_whole() -> None:
    """A 60 KB name's refusal message used to repeat all of it."""
    with pytest.raises(InvalidMerchant) as info:
        validate(msgspec.structs.replace(BASE, domains=["xn--zz." + "a" * 60_000]))
    assert len(str(info.value)) < 400


def test_a_merchant_registers_at_most_so_many_domains() -> None:
    """Each domain is normalised and checked on the event loop: 5,500 held it 122 ms."""
    domains = [f"s{n}.shop.example" for n in range(MAX_DOMAINS_PER_MERCHANT + 1)]
    assert (
        len(validate(msgspec.structs.replace(BASE, domains=domains[:-1])).domains) == MAX_DOMAINS_PER_MERCHANT
    )
    with pytest.raises(InvalidMerchant) as info:
        validate(msgspec.structs.replace(BASE, domains=domains))
    assert info.value.code == "invalid" and "at most" in str(info.value)
