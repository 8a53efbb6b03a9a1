"""JSON Schemas of the API's bodies for the OpenAPI document (openapi.py), taken from the definitions the
handlers use: the msgspec structs they decode into, the link field table (linkfields.FIELDS) and the
merchant patch table (policy.SETTABLE). A field added to one of those tables without a schema here makes
`components()` fail, so the spec cannot silently fall behind the code."""

from __future__ import annotations

import msgspec

from attribution import catalog, currency, debugger, endpoints, events_out, figures, fx, money, policy, rates
from attribution.catalog import Product
from attribution.fx import FxUpdate
from attribution.merchants import Merchant
from attribution.moneyapi import PayoutRequest
from attribution.rates import RatesUpdate
from attribution.webhooks import WebhookBody
from core import validate
from core.links import OPEN_IN_VALUES
from redirector import linkfields
from redirector.devices import DEVICE_VALUES, OS_VALUES
from redirector.smartlinks import MAX_RULES, MAX_VARIANT_WEIGHT, MAX_VARIANTS

REF = "#/components/schemas/{name}"


def ecma(pattern: str) -> str:
    """A pattern of core/validate.py (Python's \\A and \\Z) as JSON Schema writes it (ECMA-262)."""
    return pattern.replace("\\A", "^").replace("\\Z", "$")


ID = {"type": "string", "pattern": ecma(validate.ID_PATTERN)}
CODE = {"type": "string", "pattern": "^[A-Za-z0-9_-]{3,64}$"}
# The ISO 4217 codes money can be booked in (attribution/currency.py), not any three capitals.
CURRENCY = {"enum": sorted({c.code for c in currency.Currency if currency.is_iso(c.code)})}
TIME = {"type": "string", "format": "date-time"}
URL = {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\\\\\s]+", "maxLength": 2048,
       "description": "absolute http(s) URL"}  # fmt: skip
# The same class as core/validate.py CONTROL_CHARS, as ECMA-262 writes it.
_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029"
NO_CONTROL = f"^[^{_CONTROL}]*$"
BPS = {"type": "integer", "minimum": 0, "maximum": rates.MAX_RATE_BPS}
CATEGORY = {"type": "string", "minLength": 1, "maxLength": validate.MAX_CATEGORY_CHARS, "pattern": NO_CONTROL}
# Path parameters by name, as the handlers check them (a value outside answers 404, 400 or 422).
KEY_ID = {"type": "string", "pattern": ecma(validate.KEY_ID_PATTERN), "description": "the key's SHA-256, hex"}
PATH_PARAMETERS: dict[str, dict] = {
    "merchant_id": ID,
    "creator_id": ID,
    "code": CODE,
    "order_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_CONTROL},
    "endpoint_id": {"type": "string", "pattern": "^ep_[0-9a-f]{24}$"},
    "key_id": KEY_ID,
    "payout_id": {"type": "string", "minLength": 1},
}
# What the handlers check beyond the structs' types, by field name, wherever the field appears in a
# request body (merchant, rates, FX, products, orders, payouts): one entry states a rule for every body.
CHECKED_FIELDS: dict[str, dict] = {
    "merchant_id": ID,
    "creator_id": ID,
    "currency": CURRENCY,
    "base": CURRENCY,
    "currencies": {"type": ["array", "null"], "minItems": 1, "uniqueItems": True, "items": CURRENCY},
    "name": {
        "type": "string",
        "maxLength": validate.MAX_NAME_CHARS,
        "pattern": f"^[^{_CONTROL}]*[^{_CONTROL}\\s][^{_CONTROL}]*$",
    },
    "domains": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "format": "hostname", "pattern": ecma(validate.HOST_PATTERN)},
    },
    "click_param": {"type": "string", "pattern": ecma(validate.CLICK_PARAM_PATTERN)},
    "default_rate_bps": BPS,
    "rate_bps": {**BPS, "type": ["integer", "null"]},
    "attribution_window_days": {"type": "integer", "minimum": 1, "maximum": 365},
    "lock_days": {"type": "integer", "minimum": 0, "maximum": 365},
    "url": URL,
    "sku": {
        "type": "string",
        "minLength": 1,
        "maxLength": catalog.MAX_SKU_CHARS,
        "pattern": "^[^\\s\\u0000-\\u001f](?:.*[^\\s])?$",
    },
    "title": {"type": "string", "maxLength": catalog.MAX_TITLE_CHARS, "pattern": NO_CONTROL},
    "category": {"type": "string", "maxLength": validate.MAX_CATEGORY_CHARS, "pattern": NO_CONTROL},
    "price_minor": {"type": "integer", "minimum": 0, "maximum": catalog.MAX_PRICE_MINOR},
    "categories": {"type": "object", "additionalProperties": BPS, "propertyNames": CATEGORY},
    "creators": {"type": "object", "additionalProperties": BPS, "propertyNames": ID},
    "effective_at": {"type": ["string", "null"], "format": "date-time"},
    "rates": {
        "type": "object",
        "minProperties": 1,
        "maxProperties": fx.MAX_RATES_PER_VERSION,
        "propertyNames": CURRENCY,
        "additionalProperties": {"type": "string", "pattern": "^" + fx.RATE_RE.pattern + "$"},
    },
    "until": TIME,
    "min_amount_minor": {"type": "integer", "minimum": 0, "maximum": money.INT64_MAX},
}

_WHEN = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "os": {"type": "array", "items": {"enum": list(OS_VALUES)}},
        "device": {"type": "array", "items": {"enum": list(DEVICE_VALUES)}},
        "country": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}$"}},
    },
}

# One schema per entry of linkfields.FIELDS (the fields POST and PATCH /api/links take).
LINK_FIELDS: dict[str, dict] = {
    "url": URL,
    "rules": {
        "type": "array",
        "maxItems": MAX_RULES,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {"when": _WHEN, "url": {**URL, "description": "http(s) or an app's own scheme"}},
        },
    },
    "variants": {
        "type": "array",
        "maxItems": MAX_VARIANTS,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "weight"],
            "properties": {
                "url": URL,
                "weight": {"type": "integer", "minimum": 1, "maximum": MAX_VARIANT_WEIGHT},
            },
        },
    },
    "expires_at": {**TIME, "description": "ISO 8601 with a zone; 1970-2106"},
    "max_clicks": {"type": "integer", "minimum": 1, "maximum": linkfields.MAX_CLICKS_LIMIT},
    "expired_url": URL,
    "open_in": {"enum": list(OPEN_IN_VALUES)},
}

# One schema per entry of policy.SETTABLE (the fields PATCH /api/merchants/{id} takes).
MERCHANT_SETTABLE: dict[str, dict] = {
    "attribution_priority": {"enum": list(policy.PRIORITIES)},
    "review": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "min_click_to_order_s": {
                "type": "integer",
                "minimum": 0,
                "maximum": policy.MAX_MIN_CLICK_TO_ORDER_S,
            },
            "max_clicks_per_ip_hour": {
                "type": "integer",
                "minimum": 0,
                "maximum": policy.MAX_CLICKS_PER_IP_HOUR,
            },
        },
    },
    "currencies": {"type": "array", "minItems": 1, "uniqueItems": True, "items": CURRENCY},
}

# Request and record structs the handlers decode into or answer with, described by msgspec itself.
STRUCTS = (Merchant, RatesUpdate, FxUpdate, Product, WebhookBody, PayoutRequest)


def _same_keys(schemas: dict, table: dict, where: str) -> None:
    if set(schemas) != set(table):
        missing, extra = sorted(set(table) - set(schemas)), sorted(set(schemas) - set(table))
        raise KeyError(f"redirector/apischemas.py {where}: describe {missing}, drop {extra}")


def _obj(properties: dict, required: tuple[str, ...] = (), extra: bool = True) -> dict:
    schema: dict = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = list(required)
    return schema


def _link_schemas() -> dict[str, dict]:
    _same_keys(LINK_FIELDS, linkfields.FIELDS, "LINK_FIELDS vs linkfields.FIELDS")
    clearable = {
        name: {"anyOf": [schema, {"type": "null"}]} if name in linkfields.CLEARABLE else schema
        for name, schema in LINK_FIELDS.items()
    }
    shown = {k: v for k, v in LINK_FIELDS.items() if k not in ("expires_at", "url")}
    return {
        "LinkCreate": _obj({"creator_id": ID, "code": CODE, **clearable}, ("url", "creator_id"), extra=True),
        "LinkPatch": {**_obj(clearable, extra=False), "minProperties": 1},
        "Link": _obj(
            {
                "code": {"type": "string"},
                "short_url": {"type": "string"},
                "url": {"type": "string"},
                "creator_id": {"type": "string"},
                "merchant_id": {"type": ["string", "null"]},
                "created_at": TIME,
                "updated_at": TIME,
                "disabled": {"type": "boolean"},
                "expires_at": TIME,
                **shown,
                "totals": {"type": ["object", "null"], "description": "GET only: all-time click totals"},
            },
            ("code", "short_url", "url", "creator_id", "merchant_id", "created_at", "disabled", "open_in"),
        ),
    }


def _checked(schema: object) -> object:
    """The schema with CHECKED_FIELDS applied to every property of those names, at any depth."""
    if isinstance(schema, list):
        return [_checked(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _checked(value) for key, value in schema.items()}
    if isinstance(out.get("pattern"), str):  # msgspec writes Meta patterns as Python's (\A ... \Z)
        out["pattern"] = ecma(out["pattern"])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {
            name: {**prop, **CHECKED_FIELDS[name]} if name in CHECKED_FIELDS else prop
            for name, prop in out["properties"].items()
        }
    return out


def _struct_schemas() -> dict[str, dict]:
    _, found = msgspec.json.schema_components(STRUCTS, ref_template=REF)
    found = _checked(found)
    merchant = found["Merchant"]
    view = {**merchant, "properties": {k: v for k, v in merchant["properties"].items() if k != "policies"}}
    found["MerchantCreate"] = {
        **view,
        "properties": {
            **{k: v for k, v in view["properties"].items() if k != "created_at_ms"},
            "transfer_domains": {"type": "boolean", "description": "take over domains of other merchants"},
        },
    }
    found["Merchant"] = view
    _same_keys(MERCHANT_SETTABLE, policy.SETTABLE, "MERCHANT_SETTABLE vs policy.SETTABLE")
    found["MerchantPatch"] = {**_obj(MERCHANT_SETTABLE, extra=False), "minProperties": 1}
    return found


def _figure_schemas() -> dict[str, dict]:
    """The answers of the dashboard's JSON routes, from the structs their handlers answer with
    (attribution/figures.py). Not through CHECKED_FIELDS: those are rules for what a client sends."""
    _, found = msgspec.json.schema_components(figures.ANSWERS, ref_template=REF)
    return found


def _req(**properties: dict) -> dict:
    """An answer object: these fields always present (more may be added later)."""
    return _obj(properties, tuple(properties))


INT, STR, BOOL = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
MINOR = {"type": "integer", "description": "minor units"}


def _answer_schemas() -> dict[str, dict]:
    """The answers of the routes whose bodies are built from plain dicts (their views)."""
    span = _req(code=STR, creator_id=STR, rate_bps={"type": ["integer", "null"]}, active_from_ms=INT,
                active_to_ms={"type": ["integer", "null"]})  # fmt: skip
    payout = _req(
        payout_id=STR, batch_id=STR, merchant_id=STR, creator_id=STR, currency=STR, amount_minor=MINOR,
        lines=INT, status=STR, created_ms=INT, updated_ms=INT,
    )  # fmt: skip
    fx_version = _req(version=INT, base=STR, rates={"type": "object"}, effective_ms=INT, set_ms=INT)
    earnings_row = _obj({"currency": STR, "clicks": INT, "orders": INT}, ("currency",))
    return {
        "Health": _req(status={"const": "ok"}),
        "Ready": _req(ready=BOOL, recording={"enum": ["redis", "spool"]}, spool_writable=BOOL, warming=BOOL),
        "MerchantCreated": {
            "allOf": [
                {"$ref": REF.format(name="Merchant")},
                _req(webhook_secret=STR, claimed_links=INT, transferred={"type": "array"}),
            ]
        },
        "Secret": _req(webhook_secret=STR, previous_secrets_expire_at_ms={"type": ["integer", "null"]}),
        "CatalogUpserted": _req(upserted=INT, rate_version=INT),
        "RatesSet": _req(rate_version=INT, effective_ms=INT),
        "Code": _req(
            code=STR,
            creator_id=STR,
            rate_bps={"type": ["integer", "null"]},
            active=BOOL,
            spans={"type": "array", "items": span},
        ),
        "Codes": _req(codes={"type": "array", "items": {"$ref": REF.format(name="Code")}}),
        "ReviewDecision": _req(order_id=STR, decision={"enum": ["approve", "reject"]}, decided_ms=INT),
        "Trace": _obj({"order_id": STR, "outcome": STR}, ("order_id", "outcome")),
        "PayoutBatch": _req(
            batch_id=STR,
            merchant_id=STR,
            until=TIME,
            min_amount_minor=MINOR,
            created_ms=INT,
            payouts={"type": "array", "items": _obj({"payout_id": STR, "amount_minor": MINOR})},
        ),
        "Payout": payout,
        "FxVersion": {"allOf": [fx_version, _req(effective_at=TIME)]},
        "FxVersions": _req(versions={"type": "array", "items": fx_version}),
        "CatalogPage": _req(
            products={
                "type": "array",
                "items": _obj(
                    {
                        "merchant_id": STR,
                        "sku": STR,
                        "earn_rate_bps": INT,
                        "earn_rule": STR,
                        "earn_per_unit_minor": {"type": ["integer", "null"]},
                    },
                    ("merchant_id", "sku", "earn_rate_bps", "earn_rule", "earn_per_unit_minor"),
                ),
            },
            next_cursor={"type": ["string", "null"]},
        ),
        "Earnings": _obj(
            {
                "creator_id": STR,
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "clicks": INT,
                "currencies": {"type": "array", "items": earnings_row},
                "converted": {"type": "object"},
            },
            ("creator_id", "from", "to", "clicks", "currencies"),
        ),
        "EndpointDeleted": _req(id=STR, deleted={"const": True}),
        "EndpointReplayed": _req(id=STR, requeued_dead_letters=INT, requeued_events=INT),
        "WebhookAccepted": _req(status={"enum": ["accepted", "duplicate"]}),
    }


def components() -> dict[str, dict]:
    endpoint_owner = {"creator_id": ID, "merchant_id": ID}
    return {
        "Error": _obj(
            {"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}}, ("code", "message"))},
            ("error",),
        ),
        **_link_schemas(),
        **_struct_schemas(),
        "KeyCreate": {
            "oneOf": [
                _obj({"creator_id": ID}, ("creator_id",), extra=False),
                _obj({"merchant_id": ID}, ("merchant_id",), extra=False),
            ]
        },
        "Key": _obj(
            {
                "key": {"type": "string"},
                "id": KEY_ID,
                "scope": {"enum": ["creator", "merchant"]},
                **endpoint_owner,
                "created_at": TIME,
            },
            ("key", "id", "scope", "created_at"),
        ),
        "KeyInfo": _obj(
            {"id": KEY_ID, "scope": {"enum": ["creator", "merchant"]}, **endpoint_owner, "created_at": TIME},
            ("id", "scope", "created_at"),
        ),
        "EndpointCreate": {
            **_obj(
                {
                    "url": {
                        **URL,
                        "pattern": "^[Hh][Tt][Tt][Pp][Ss]://[^/?#@\\\\\\s]+",
                        "description": "https URL of a public address",
                    },
                    "events": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": sorted(events_out.EVENT_TYPES)},
                    },
                    "description": {
                        "type": "string",
                        "maxLength": endpoints.MAX_DESCRIPTION_CHARS,
                        "pattern": NO_CONTROL,
                    },
                    **endpoint_owner,
                },
                ("url", "events"),
                extra=False,
            ),
            # The admin names exactly one owner; a key names none (or its own).
            "not": {"required": ["creator_id", "merchant_id"]},
        },
        "Endpoint": _obj(
            {
                "id": {"type": "string"},
                **endpoint_owner,
                "url": {"type": "string"},
                "events": {"type": "array", "items": {"type": "string"}},
                "description": {"type": "string"},
                "created_at_ms": {"type": "integer"},
                "secret": {"type": "string", "description": "only in the answer to the creation"},
                "delivery": {"type": "object", "description": "only in GET /api/endpoints/{id}"},
            },
            ("id", "url", "events", "description", "created_at_ms"),
        ),
        **_answer_schemas(),
        **_figure_schemas(),
        "Deliveries": _obj(
            {
                "merchant_id": {"type": "string"},
                "deliveries": {
                    "type": "array",
                    "maxItems": debugger.MAX_RECORDS,
                    "items": _obj({"result": {"enum": list(debugger.RESULTS)}}),
                },
            },
            ("merchant_id", "deliveries"),
        ),
    }
