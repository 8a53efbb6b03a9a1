"""A merchant's forms: a product of the catalog, the rates, discount codes, and the webhook secret's
rotation. Each form goes through the function the JSON API's PUT/POST uses (the same checks, the same
store): bad input shows the page again with the reason and writes nothing; a refused CSRF token never
reaches these handlers (page.py). A successful change shows the page again with a notice."""

from __future__ import annotations

import re

import orjson
from starlette.responses import Response

from attribution import api as attribution_api
from attribution import codes, merchant_api, search
from attribution.merchants import Merchant
from core.clock import now_ms as clock_ms
from core.errors import ApiError
from core.links import iso_ms
from core.validate import ascii_upper
from redirector.dash.page import Page, page
from redirector.dash.views_merchant import merchant_of

# Products listed on the catalog page (the search API's page size), codes on the codes page.
CATALOG_PAGE = 50
CODES_SHOWN = 100
PRODUCT_FIELDS = ("sku", "title", "url", "category", "price_minor", "currency", "rate_bps")
_WHOLE = re.compile(r"[0-9]{1,19}")
# The basis points of one "name = basis points" line of the rates form's text areas. Each line is split
# with partition() rather than one regex over the line: a pattern like `\s*([^=]+?)\s*=` backtracks in
# cubic time on a long line of spaces without "=" (3,000 spaces took 27 s on the event loop).
_RATE_BPS = re.compile(r"[0-9]{1,9}")


class FormError(ValueError):
    """A form field that cannot become the API's body; the message names the field."""


def whole(form: dict[str, str], name: str, optional: bool = False) -> int | None:
    raw = form.get(name, "").strip()
    if not raw and optional:
        return None
    if not _WHOLE.fullmatch(raw):
        raise FormError(f"{name} must be a whole number" + (" or empty" if optional else ""))
    return int(raw)


def refused(what: str, exc: Exception, done: str = "saved") -> str:
    """The page's error line: what was not saved (or removed), and the API's reason."""
    return f"{what} not {done}: {exc.message if isinstance(exc, ApiError) else exc}"


def product_body(form: dict[str, str]) -> bytes:
    """The product form as the catalog PUT's JSON body (one product): the API's decoder checks the rest."""
    product: dict = {name: form.get(name, "").strip() for name in ("sku", "title", "url", "category")}
    product["currency"] = ascii_upper(form.get("currency", "").strip())
    product["price_minor"] = whole(form, "price_minor")
    rate = whole(form, "rate_bps", optional=True)
    if rate is not None:
        product["rate_bps"] = rate
    return orjson.dumps([product])


def rate_lines(text: str, field: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, equals, bps = (part.strip() for part in line.partition("="))
        if not (name and equals and _RATE_BPS.fullmatch(bps)):
            raise FormError(f"{field}, line {number}: write name = basis points, e.g. shoes = 1200")
        out[name] = int(bps)
    return out


def rates_body(form: dict[str, str]) -> dict:
    """The rates form as PUT /api/merchants/{id}/rates's body."""
    return {
        "default_rate_bps": whole(form, "default_rate_bps"),
        "categories": rate_lines(form.get("categories", ""), "categories"),
        "creators": rate_lines(form.get("creators", ""), "creators"),
    }


async def _catalog_page(view: Page, merchant: Merchant, status: int = 200, **extra) -> Response:
    ctx = view.ctx
    query = search.parse_query("", "", str(CATALOG_PAGE))
    products, more = await ctx.catalog.search([merchant.merchant_id], query, "", search.decode_cursor(""))
    version = await ctx.rates.current_head(merchant.merchant_id)
    context = {
        "merchant": merchant,
        "products": products,
        "more": more is not None,
        "rates": version,
        "product": extra.pop("product", {}),
        "rates_form": extra.pop("rates_form", None),
        "error": "",
        "notice": "",
    }
    return view.render("merchant_catalog.html", status=status, **(context | extra))


@page("merchant")
async def catalog_page(view: Page) -> Response:
    return await _catalog_page(view, await merchant_of(view))


@page("merchant")
async def put_product(view: Page) -> Response:
    merchant = await merchant_of(view)
    entered = {name: view.form.get(name, "") for name in PRODUCT_FIELDS}
    try:
        body = product_body(view.form)
        await attribution_api.upsert_catalog(view.ctx, merchant.merchant_id, body)
    except (FormError, ApiError) as exc:
        return await _catalog_page(view, merchant, 422, product=entered, error=refused("Product", exc))
    return await _catalog_page(view, merchant, notice=f"Product {entered['sku'].strip()} saved.")


@page("merchant")
async def put_rates(view: Page) -> Response:
    merchant = await merchant_of(view)
    entered = {name: view.form.get(name, "") for name in ("default_rate_bps", "categories", "creators")}
    try:
        version = await attribution_api.set_rates(view.ctx, merchant.merchant_id, rates_body(view.form))
    except (FormError, ApiError) as exc:
        return await _catalog_page(view, merchant, 422, rates_form=entered, error=refused("Rates", exc))
    return await _catalog_page(view, merchant, notice=f"Rates saved (version {version.version}).")


async def _codes_page(view: Page, merchant: Merchant, status: int = 200, **extra) -> Response:
    """CODES_SHOWN codes in order after `?after=` (a merchant may have 10,000: the page stays small)."""
    found = await codes.CodeStore(view.ctx.redis, view.ctx.keys).raw_all(merchant.merchant_id)
    after = view.request.query_params.get("after", "").encode("utf-8", "surrogatepass")
    names = [k for k in sorted(found) if k > after]
    shown = names[:CODES_SHOWN]
    # Only the page's codes are decoded: all of a merchant's 10,000 held the loop the redirects share.
    context = {
        "merchant": merchant,
        "codes": [codes.view(spans) for spans in codes.decode_all({k: found[k] for k in shown}).values()],
        "total": len(found),
        "next_after": shown[-1].decode() if len(names) > CODES_SHOWN else "",
        "entered": extra.pop("entered", {}),
        "error": "",
        "notice": "",
    }
    return view.render("merchant_codes.html", status=status, **(context | extra))


@page("merchant")
async def codes_page(view: Page) -> Response:
    return await _codes_page(view, await merchant_of(view))


@page("merchant")
async def assign_code(view: Page) -> Response:
    """PUT /api/merchants/{id}/codes/{code}'s checks and store: assign (or re-assign) a code."""
    merchant = await merchant_of(view)
    entered = {name: view.form.get(name, "") for name in ("code", "creator_id", "rate_bps")}
    try:
        code = merchant_api.check_code(entered["code"].strip())
        body = {"creator_id": entered["creator_id"].strip()}
        rate = whole(view.form, "rate_bps", optional=True)
        if rate is not None:
            body["rate_bps"] = rate
        creator_id, rate_bps = merchant_api.check_assignment(body)
        store = codes.CodeStore(view.ctx.redis, view.ctx.keys)
        spans = await store.put(merchant.merchant_id, code, creator_id, rate_bps, clock_ms())
    except (FormError, ApiError, codes.TooManyCodes) as exc:
        return await _codes_page(view, merchant, 422, entered=entered, error=refused("Code", exc))
    stored = codes.view(spans)["code"]
    return await _codes_page(view, merchant, notice=f"Code {stored} now credits {creator_id}.")


@page("merchant")
async def remove_code(view: Page) -> Response:
    """DELETE /api/merchants/{id}/codes/{code}: the code stops crediting orders from now on."""
    merchant = await merchant_of(view)
    try:
        code = merchant_api.check_code(view.form.get("code", "").strip())
    except ApiError as exc:
        return await _codes_page(view, merchant, 422, error=refused("Code", exc, "removed"))
    spans = await codes.CodeStore(view.ctx.redis, view.ctx.keys).delete(
        merchant.merchant_id, code, clock_ms()
    )
    if spans is None:
        return await _codes_page(view, merchant, 422, error=f"Code not removed: no active code {code}.")
    return await _codes_page(view, merchant, notice=f"Code {codes.view(spans)['code']} removed.")


@page("merchant")
async def secret_page(view: Page) -> Response:
    merchant = await merchant_of(view)
    return view.render("merchant_secret.html", merchant=merchant, secret="", previous_until="")


@page("merchant")
async def rotate_secret(view: Page) -> Response:
    """POST /api/merchants/{id}/secrets: a new signing secret, shown on this answer only."""
    merchant = await merchant_of(view)
    secret, old_expiry_ms = await view.ctx.merchants.add_secret(merchant.merchant_id, clock_ms())
    until = iso_ms(old_expiry_ms) if old_expiry_ms else ""
    return view.render("merchant_secret.html", merchant=merchant, secret=secret, previous_until=until)
