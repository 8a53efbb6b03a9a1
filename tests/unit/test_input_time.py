"""Every parser of free text from a form or an API body answers in bounded time on pathological input.

A regex that backtracks (`\\s*([^=]+?)\\s*=` on a long line of spaces took 27 s for 3,000 characters)
blocks the event loop for every request, so this is tested by class: each parser below gets 64 KiB of each
input known to make backtracking patterns slow, and must answer (accept or refuse) within a second. Each
call runs in a forked child that is killed at the deadline, so a slow parser fails the test, not hangs it."""

from __future__ import annotations

import contextlib
import multiprocessing

import pytest

from attribution import catalog, codes, debugger, fx, merchant_api, report, search
from core import urls, validate
from redirector import querykeys
from redirector.dash import merchant_forms, signin

SIZE = 64 * 1024
DEADLINE_S = 1.0

_PATHOLOGICAL = {
    "spaces": " " * SIZE,
    "spaces_then_char": " " * SIZE + "a",
    "tabs_then_char": "\t" * SIZE + "x",
    "letters": "a" * SIZE,
    "equals": "=" * SIZE,
    "space_equals": " =" * (SIZE // 2),
    "name_space": "a " * (SIZE // 2),
    "digits": "9" * SIZE,
    "slashes": "/" * SIZE,
    "percent": "%25" * (SIZE // 3),
    "quotes": "'\"" * (SIZE // 2),
    "dots": "a." * (SIZE // 2),
    "dashes": "a-" * (SIZE // 2) + "!",
    "unicode": "é\u2028" * (SIZE // 2),
    "url_then_space": "http://" + "a" * SIZE + " ",
    "url_path_then_space": "https://a/" + "/" * SIZE + " ",
}


def _product(text: str) -> catalog.Product:
    return catalog.Product(sku="S-1", title=text, url=text, price_minor=1, currency="EUR", category=text)


_PARSERS = {
    "dash rate_lines": lambda s: merchant_forms.rate_lines(s, "categories"),
    "dash rate_lines (2 lines)": lambda s: merchant_forms.rate_lines("a = 1\n" + s, "creators"),
    "dash rates_body": lambda s: merchant_forms.rates_body(
        {"default_rate_bps": "1", "categories": s, "creators": s}
    ),
    "dash whole": lambda s: merchant_forms.whole({"n": s}, "n", optional=True),
    "dash product_body": lambda s: merchant_forms.product_body(
        {name: s for name in merchant_forms.PRODUCT_FIELDS}
    ),
    "dash next path": lambda s: signin._next_path("/dash/" + s),
    "api check_product": lambda s: catalog.check_product(_product(s)),
    "api check_product url": lambda s: catalog.check_product(_product("http://" + s)),
    "api search query": lambda s: search.parse_query(s[: search.MAX_QUERY_CHARS], s[:64], s[:19]),
    "api search cursor": lambda s: search.decode_cursor(s),
    "api code": lambda s: merchant_api.check_code(s),
    "api code (store)": lambda s: codes.check_code(s),
    "api fx rate": lambda s: fx.check_rate("EUR", s),
    "api fx time": lambda s: fx.parse_time_ms(s),
    "api report day": lambda s: report.parse_day(s, "from"),
    "api url": lambda s: urls.validate_url(s),
    "api https url": lambda s: urls.validate_url("https://" + s),
    "api app url": lambda s: urls.validate_app_url(s),
    "api host": lambda s: validate.is_host(s),
    "api id": lambda s: validate.is_id(s),
    "api query int": lambda s: validate.query_int(s, 1, 100),
    "api control chars": lambda s: validate.has_control_chars(s),
    "webhook refusal message": lambda s: debugger.elide_values(s),
    "redirect query param": lambda s: querykeys.drop_param(s, "ct_click"),
}


def _call(parser: str, text: str) -> None:
    with contextlib.suppress(Exception):  # a refusal is an answer: only the time matters here
        _PARSERS[parser](text)


@pytest.mark.parametrize("parser", sorted(_PARSERS))
def test_parser_answers_pathological_input_in_bounded_time(parser):
    context = multiprocessing.get_context("fork")
    slow = []
    for name, text in _PATHOLOGICAL.items():
        child = context.Process(target=_call, args=(parser, text))
        child.start()
        child.join(DEADLINE_S)
        if child.is_alive():
            child.kill()
            child.join()
            slow.append(name)
    assert not slow, f"{parser} took over {DEADLINE_S} s on 64 KiB of: {', '.join(slow)}"
