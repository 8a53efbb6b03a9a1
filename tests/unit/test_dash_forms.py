"""The merchant forms' conversion into the API's bodies (redirector/dash/merchant_forms.py): whole numbers
only, rate lines `name = bps`, each refusal naming the field; the API's own checks run after these."""

import orjson
import pytest

from redirector.dash.merchant_forms import FormError, product_body, rate_lines, rates_body, whole


@pytest.mark.parametrize(
    ("raw", "optional", "expected"),
    [
        ("0", False, 0),
        ("5990", False, 5990),
        (" 42 ", False, 42),
        ("9" * 19, False, int("9" * 19)),
        ("", True, None),
        ("  ", True, None),
    ],
)
def test_whole_numbers(raw, optional, expected):
    assert whole({"n": raw}, "n", optional) == expected


@pytest.mark.parametrize(
    "raw", ["", "-1", "+1", "1.5", "59,90", "1e3", "0x10", "٣", "１２", "9" * 20, "1 2", "NaN"]
)
def test_not_whole_numbers(raw):
    with pytest.raises(FormError, match="n must be a whole number"):
        whole({"n": raw}, "n")


def test_missing_field_is_not_a_number():
    with pytest.raises(FormError, match="price_minor"):
        whole({}, "price_minor")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("\n\n", {}),
        ("shoes = 1200", {"shoes": 1200}),
        ("shoes=1200\n hats =  800 \n", {"shoes": 1200, "hats": 800}),
        ("Winter coats = 0", {"Winter coats": 0}),
        ("shoes = 1\nshoes = 2", {"shoes": 2}),  # the last line wins, as in a JSON object
    ],
)
def test_rate_lines(text, expected):
    assert rate_lines(text, "categories") == expected


@pytest.mark.parametrize("text", ["shoes", "shoes 1200", "= 1200", "shoes = ", "shoes = -5", "shoes = 1.5"])
def test_bad_rate_lines_name_the_line(text):
    with pytest.raises(FormError, match=r"categories, line 1: write name = basis points"):
        rate_lines(text, "categories")


def test_product_body_is_the_catalog_puts_json():
    form = {
        "sku": " S-1 ",
        "title": "Shoe",
        "url": "https://x.example/s",
        "price_minor": "5990",
        "currency": "eur",
    }
    assert orjson.loads(product_body(form)) == [
        {"sku": "S-1", "title": "Shoe", "url": "https://x.example/s", "category": "", "currency": "EUR",
         "price_minor": 5990}
    ]  # fmt: skip
    with_rate = orjson.loads(product_body(form | {"rate_bps": "1200"}))
    assert with_rate[0]["rate_bps"] == 1200


def test_rates_body():
    form = {"default_rate_bps": "800", "categories": "shoes = 1200", "creators": "alice = 1500"}
    assert rates_body(form) == {
        "default_rate_bps": 800,
        "categories": {"shoes": 1200},
        "creators": {"alice": 1500},
    }
