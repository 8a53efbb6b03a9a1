"""Full-match validation: every validator refuses a trailing newline (and every other near miss) whoever
calls it, and the modules that validate ids, currencies, click parameters and hosts go through it."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution import merchants, webhooks
from core import validate
from core.errors import ApiError
from redirector.api import check_id
from tests.unit.folding import FOLDING

# Each valid value, and what an attacker appends or prepends to it.
NEAR_MISSES = ["\n", "\r\n", "\r", "\x00", " ", "\t", "\x0b", "\u2028"]
VALID = {
    validate.is_id: ["a", "creator-1", "A_b-9", "x" * 64],
    validate.is_currency: ["EUR", "USD", "JPY"],
    validate.is_click_param: ["ct_click", "ref.id", "c", "x" * 64],
    validate.is_country: ["DE", "US"],
    validate.is_host: ["shop.example.com", "a.b", "xn--bcher-kva.example"],
    validate.is_host_label: ["shop", "a", "xn--bcher-kva", "a-b"],
    validate.is_code: ["abc", "my-code_1", "Z" * 64],
}
INVALID = {
    validate.is_id: ["", "x" * 65, "a b", "a/b", "é", None, 5, b"abc"],
    validate.is_currency: ["eur", "EU", "EURO", "€UR", None],
    validate.is_click_param: ["", "ct click", "a=b", "a&b", "x" * 65, "ct_cl\u0131ck", None],
    validate.is_country: ["de", "D", "DEU", None],
    validate.is_host: ["localhost", "-a.com", "a-.com", "A.COM", "a..b", "a." * 130 + "com", None],
    validate.is_host_label: ["", "-a", "a-", "A", "a_b", "x" * 64],
    validate.is_code: ["ab", "x" * 65, "a b", "a/b", "a.b", None],
}


def _plain(table: dict) -> list:
    return [
        pytest.param(check, v, id=f"{check.__name__}-{v!r}")
        for check, values in table.items()
        for v in values
    ]


def _spoiled(table: dict) -> list:
    return [
        pytest.param(check, spoiled, id=f"{check.__name__}-{spoiled!r}")
        for check, values in table.items()
        for value in values
        for bad in NEAR_MISSES
        for spoiled in (value + bad, bad + value)
    ]


@pytest.mark.parametrize(("check", "value"), _plain(VALID))
def test_valid_values_pass(check, value) -> None:
    assert check(value) is True


@pytest.mark.parametrize(("check", "value"), _spoiled(VALID))
def test_a_valid_value_with_a_newline_or_other_control_fails(check, value) -> None:
    assert check(value) is False


@pytest.mark.parametrize(("check", "value"), _plain(INVALID))
def test_invalid_values_fail(check, value) -> None:
    assert check(value) is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("1764237600", 1764237600),
        ("999999999999", 999999999999),
        ("1764237600\n", None),
        (" 1764237600", None),
        ("+1764237600", None),
        ("-5", None),
        ("", None),
        ("1e9", None),
        ("0x10", None),
        ("1_000", None),
        ("²", None),  # isdigit() is True; int() raises
        ("¹²³", None),
        ("١٢٣", None),  # Arabic-Indic digits: int() would read 123
        ("１２３", None),  # full-width digits
        ("9" * 13, None),
        (None, None),
    ],
)
def test_timestamp_s(raw, expected) -> None:
    assert validate.timestamp_s(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("65536", 65536), ("1" * 19, int("1" * 19)), ("1" * 20, None), ("", None), ("-1", None)]
    + [(v, None) for v in ("12\n", " 12", "²", "١٢", "1.0", "0x1", None)],
)
def test_content_length(raw, expected) -> None:
    assert validate.content_length(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1), ("200", 200), ("007", 7), ("0", None), ("201", None), ("", None), (None, None)]
    + [(v, None) for v in ("1" * 5000, "0" * 4400 + "5", "-1", "+1", " 1", "1 ", "²", "١", "１", "1.0")],
)
def test_query_int(raw, expected) -> None:
    assert validate.query_int(raw, 1, 200) == expected


BASE = merchants.Merchant("m1", "Shop", ["shop.example.com"], "EUR", 800)


@pytest.mark.parametrize(
    "change",
    [
        {"merchant_id": "m1\n"},
        {"merchant_id": "m1\r"},
        {"currency": "EUR\n"},
        {"currency": "eur"},
        {"click_param": "ct_click\n"},
        {"click_param": "ct_click\r\nSet-Cookie:a"},
        {"click_param": "ct_click\x00"},
        {"click_param": "ct click"},
        {"domains": ["shop\n.example.com"]},
        {"domains": ["localhost"]},
        {"currencies": ["EUR\n"]},
        {"currencies": ["EUR", "usd"]},
    ],
)
def test_merchant_validation_is_full_match(change: dict) -> None:
    with pytest.raises(merchants.InvalidMerchant):
        merchants.validate(msgspec.structs.replace(BASE, **change))


def test_merchant_validation_keeps_valid_merchants() -> None:
    # without `currencies` a merchant accepts its one currency, and the record says so
    assert merchants.validate(BASE) == msgspec.structs.replace(BASE, currencies=["EUR"])
    two = msgspec.structs.replace(BASE, currencies=["USD", "EUR"])
    assert merchants.validate(two) == two


@pytest.mark.parametrize("value", ["c1\n", "c1\r\n", "\nc1", "c1\x00", "", None, 7, "x" * 65])
def test_check_id_refuses_near_misses(value) -> None:
    with pytest.raises(ApiError) as caught:
        check_id(value, "creator_id")
    assert caught.value.status == 422


@pytest.mark.parametrize("currency", ["EUR\n", "EUR\r", "EU", "eur", "EUR "])
def test_webhook_currency_is_full_match(currency: str) -> None:
    body = (
        b'{"type":"order.cancelled","data":{"order_id":"A-1","currency":"%s",'
        b'"occurred_at":"2026-11-27T10:00:00Z"}}' % currency.encode("unicode_escape")
    )
    with pytest.raises(msgspec.ValidationError):
        webhooks.parse(body)


def test_webhook_currency_accepts_a_real_code() -> None:
    body = (
        b'{"type":"order.cancelled","data":{"order_id":"A-1","currency":"EUR",'
        b'"occurred_at":"2026-11-27T10:00:00Z"}}'
    )
    assert webhooks.parse(body).data.currency == "EUR"


@pytest.mark.parametrize(
    ("text", "upper"),
    [("", ""), ("de", "DE"), ("Eur", "EUR"), ("a-b_9", "A-B_9"), ("é", "é"), ("uſd", "UſD"), ("ıdr", "ıDR")],
)
def test_ascii_upper_changes_ascii_letters_only(text: str, upper: str) -> None:
    assert validate.ascii_upper(text) == upper


@pytest.mark.parametrize("char", FOLDING)
def test_no_letter_upper_cases_into_a_currency_or_a_country(char: str) -> None:
    """Each letter whose Unicode upper case is ASCII ("ß" is "SS", South Sudan): never a valid value."""
    assert validate.ascii_upper(f"x{char}") == f"X{char}"
    for text in (char, f"{char}s", f"s{char}"):
        assert validate.country_or_empty(text) == ""
    for text in (f"u{char}d", f"{char}dr", f"us{char}", f"e{char}"):
        assert not validate.is_currency(validate.ascii_upper(text))


@pytest.mark.parametrize(
    ("header", "country"),
    [("DE", "DE"), ("de", "DE"), ("dE", "DE"), ("", ""), ("D", ""), ("DEU", ""), ("D1", ""), ("T1", ""),
     (" D", ""), ("D\n", ""), ("\xc4\xb1", "")],
)  # fmt: skip
def test_country_or_empty(header: str, country: str) -> None:
    assert validate.country_or_empty(header) == country


@given(st.text(max_size=4) | st.text(alphabet=st.characters(max_codepoint=0xFF), min_size=2, max_size=2))
def test_country_or_empty_is_the_country_pattern_once_upper_cased(text: str) -> None:
    """country_or_empty checks without the regex (it runs on every redirect with the header): the same
    answer as COUNTRY_PATTERN on the ASCII upper case, for any text."""
    upper = validate.ascii_upper(text)
    assert validate.country_or_empty(text) == (upper if validate.is_country(upper) else "")
