"""The link fields `POST /api/links` and `PATCH /api/links/{code}` take, as one table: field → parser.
Both endpoints run the same parsers (a new field is one entry here), then `apply` builds the link.

A parser takes the JSON value and returns it checked, or raises ApiError(422); nothing is written until
every field of the request has passed. Destinations are checked like `url` (core/urls.py): http(s) only,
except that a rule may send to an app's own scheme (`shopapp://...`); the dangerous schemes and any
scheme without `//` are refused everywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from core import validate
from core.clock import NotATime, parse_iso_ms
from core.errors import ApiError
from core.links import (
    OPEN_IN_DEFAULT,
    Link,
    OwnerResolver,
    Rule,
    Smart,
    Target,
    Variant,
    check_open_in,
    link_hosts,
    planned,
)
from core.urls import Destination, UrlError, validate_app_url, validate_url
from redirector.devices import DEVICE_VALUES, OS_VALUES
from redirector.querykeys import strip_from_url
from redirector.smartlinks import MAX_RULES, MAX_VARIANT_WEIGHT, MAX_VARIANTS

# Far enough for any real campaign, and what every consumer of the time stamp (ClickHouse DateTime) holds.
MAX_EXPIRES_AT_MS = (2**32 - 1) * 1000
MAX_CLICKS_LIMIT = 10**12
_WHEN_VALUES = {"os": frozenset(OS_VALUES), "device": frozenset(DEVICE_VALUES)}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    os: tuple[str, ...]
    device: tuple[str, ...]
    country: tuple[str, ...]
    dest: Destination


def _invalid(field: str, message: str, code: str = "invalid_field") -> ApiError:
    return ApiError(422, code, f"{field}: {message}")


def _destination(field: str, value: object, app_schemes: bool = False) -> Destination:
    try:
        return validate_app_url(value) if app_schemes else validate_url(value)
    except UrlError as exc:
        raise ApiError(422, f"invalid_url.{exc.reason}", f"{field}: {exc}") from None


def _object(field: str, value: object, keys: set[str]) -> dict:
    if not isinstance(value, dict):
        raise _invalid(field, "must be an object")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise _invalid(field, f"unknown keys {unknown}")
    return value


def _list(field: str, value: object, most: int) -> list:
    if not isinstance(value, list):
        raise _invalid(field, "must be a list")
    if len(value) > most:
        raise _invalid(field, f"at most {most} entries", "too_many")
    return value


def parse_url(value: object) -> Destination:
    return _destination("url", value)


def parse_rules(value: object) -> tuple[RuleSpec, ...]:
    specs = []
    for i, raw in enumerate(_list("rules", value, MAX_RULES)):
        rule = _object(f"rules[{i}]", raw, {"when", "url"})
        when = _object(f"rules[{i}].when", rule.get("when", {}), {"os", "device", "country"})
        dims = {}
        for dim in ("os", "device", "country"):
            values = _list(f"rules[{i}].when.{dim}", when.get(dim, []), 300)
            for v in values:
                ok = validate.is_country(v) if dim == "country" else v in _WHEN_VALUES[dim]
                if not isinstance(v, str) or not ok:
                    allowed = "ISO 3166 alpha-2 codes" if dim == "country" else sorted(_WHEN_VALUES[dim])
                    raise _invalid(f"rules[{i}].when.{dim}", f"{v!r} is not one of {allowed}")
            dims[dim] = tuple(dict.fromkeys(values))
        if "url" not in rule:
            raise _invalid(f"rules[{i}]", "url is required")
        specs.append(RuleSpec(dest=_destination(f"rules[{i}].url", rule["url"], app_schemes=True), **dims))
    return tuple(specs)


def parse_variants(value: object) -> tuple[tuple[Destination, int], ...]:
    variants = []
    for i, raw in enumerate(_list("variants", value, MAX_VARIANTS)):
        variant = _object(f"variants[{i}]", raw, {"url", "weight"})
        weight = variant.get("weight")
        if type(weight) is not int or not 1 <= weight <= MAX_VARIANT_WEIGHT:
            raise _invalid(f"variants[{i}].weight", f"must be an integer 1..{MAX_VARIANT_WEIGHT}")
        variants.append((_destination(f"variants[{i}].url", variant.get("url")), weight))
    return tuple(variants)


def parse_expires_at(value: object) -> int:
    """ISO-8601 with a time zone (`Z` or an offset) → Unix ms; a time in the past is allowed (the link
    expires at once)."""
    try:
        ms = parse_iso_ms(value)
    except NotATime as exc:
        raise _invalid("expires_at", str(exc)) from None
    if not 0 < ms <= MAX_EXPIRES_AT_MS:
        raise _invalid("expires_at", "must be between 1970 and 2106")
    return ms


def parse_max_clicks(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_CLICKS_LIMIT:
        raise _invalid("max_clicks", f"must be an integer 1..{MAX_CLICKS_LIMIT}")
    return value


def parse_expired_url(value: object) -> Destination:
    return _destination("expired_url", value)


# Every link field the API takes (besides creator_id and code, fixed at creation) → its parser.
# `null` in a PATCH clears a smart-link field; `url` cannot be cleared.
FIELDS: dict[str, Callable[[object], object]] = {
    "url": parse_url,
    "rules": parse_rules,
    "variants": parse_variants,
    "expires_at": parse_expires_at,
    "max_clicks": parse_max_clicks,
    "expired_url": parse_expired_url,
    "open_in": check_open_in,
}
CLEARABLE = frozenset(FIELDS) - {"url"}


def parse(body: dict, patch: bool) -> dict[str, object]:
    """The link fields of a request body, each parsed (None: cleared). A PATCH names only link fields."""
    if patch:
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise _invalid("body", f"only {sorted(FIELDS)} can be changed, not {unknown}", "unknown_field")
        if not body:
            raise _invalid("body", "name at least one field to change", "empty_patch")
    parsed: dict[str, object] = {}
    for name, parser in FIELDS.items():
        if name not in body:
            continue
        value = body[name]
        if value is None and name in CLEARABLE:
            parsed[name] = None
        else:
            parsed[name] = parser(value)
    if not patch and "url" not in parsed:
        parse_url(body.get("url"))  # raises the usual "url must be a non-empty string"
    return parsed


def current(link: Link) -> dict[str, object]:
    """A stored link's fields in the parsed form, so a PATCH can merge the changed ones over them."""
    smart = link.smart or Smart()
    keep = Destination(url=link.url, host=link.host)

    def dest(target: Target) -> Destination:
        web = target.url.startswith(("http://", "https://"))
        return Destination(url=target.url, host=target.host if web else "")  # a deep link follows `url`

    return {
        "url": keep,
        "rules": tuple(RuleSpec(r.os, r.device, r.country, dest(r.target)) for r in smart.rules) or None,
        "variants": tuple((dest(v.target), v.weight) for v in smart.variants) or None,
        "expires_at": smart.expires_at_ms or None,
        "max_clicks": smart.max_clicks or None,
        "expired_url": None if smart.expired is None else dest(smart.expired),
        "open_in": link.open_in,
    }


async def apply(link: Link, fields: dict[str, object], resolve: OwnerResolver, client) -> Link:
    """`link` with `fields` (parsed) set, every destination owned by the merchant of its host (one owner
    lookup for all hosts), the click parameter stripped from each. A deep link (host "") is the click of
    the link's own host: the app is the shop's."""
    merged = {**current(link), **fields}
    main: Destination = merged["url"]
    rules: tuple[RuleSpec, ...] = merged["rules"] or ()
    variants: tuple[tuple[Destination, int], ...] = merged["variants"] or ()
    expired: Destination | None = merged["expired_url"]
    dests = [main, *(r.dest for r in rules), *(d for d, _ in variants), *([expired] if expired else [])]
    hosts = sorted({d.host for d in dests if d.host})
    owners = await resolve(client, hosts)
    merchant_id, click_param = owners[main.host]

    def target(dest: Destination) -> Target:
        host = dest.host or main.host
        owner, param = owners[host]
        return Target(url=strip_from_url(dest.url, param), host=host, merchant_id=owner, click_param=param)

    smart = planned(
        Smart(
            rules=tuple(Rule(target(r.dest), r.os, r.device, r.country) for r in rules),
            variants=tuple(Variant(target(d), w) for d, w in variants),
            expires_at_ms=merged["expires_at"] or 0,
            max_clicks=merged["max_clicks"] or 0,
            expired=target(expired) if expired else None,
        )
    )
    return msgspec.structs.replace(
        link,
        url=strip_from_url(main.url, click_param),
        host=main.host,
        merchant_id=merchant_id,
        click_param=click_param,
        smart=None if smart == planned(Smart()) else smart,
        open_in=merged["open_in"] or OPEN_IN_DEFAULT,
    )


async def owners_changed(link: Link, resolve: OwnerResolver, client) -> bool:
    """Whether a merchant claimed one of the link's hosts since `apply` resolved them (the caller then
    joins the claim with LinkStore.reconcile)."""
    hosts = link_hosts(link)
    owners = await resolve(client, hosts)
    targets = [link, *(link.smart.targets() if link.smart is not None else [])]
    return any(owners[t.host] != (t.merchant_id, t.click_param) for t in targets if t.host)
