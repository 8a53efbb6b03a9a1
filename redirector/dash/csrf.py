"""CSRF protection of every dashboard form. A signed-in form carries its session's token (made at sign-in,
kept with the session in Redis); the sign-in form, before any session exists, carries the value of a
short cookie of its own (double submit). The check runs before a handler reads anything else of the form:
a refusal is a 403 page and nothing is written. SameSite=Strict cookies are the second fence."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request

from core import repeats
from core.errors import ApiError, read_body

FIELD = "csrf_token"
# Dashboard forms are a few short fields; a longer body is not one of ours.
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
FORM_TYPE = "application/x-www-form-urlencoded"


class Forbidden(Exception):
    """A form whose CSRF token is missing or wrong."""


def matches(expected: str | None, given: str | None) -> bool:
    """Constant-time equality of two tokens; a missing or empty one never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def check(expected: str | None, form: dict[str, str]) -> None:
    if not matches(expected, form.get(FIELD)):
        raise Forbidden("the form's security token is missing or stale: reload the page and send it again")


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form body, bounded in size and field count (stdlib parsing: Starlette's own needs
    python-multipart and reads unbounded). A field sent twice is refused (core/repeats.py says why)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not content_type and request.headers.get("content-length", "0") == "0":
        return {}  # no form at all: refused by the token check, as a form without its token is
    if content_type != FORM_TYPE:
        raise ApiError(415, "unsupported_media_type", f"a dashboard form is sent as {FORM_TYPE}")
    body = await read_body(request, MAX_FORM_BYTES)
    if body.count(b"&") >= MAX_FORM_FIELDS:  # parse_qsl's own refusal says only "ValueError"
        raise ApiError(400, "malformed_form", f"the form has more than {MAX_FORM_FIELDS} fields")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "malformed_form", "the form is not valid url-encoded UTF-8") from None
    repeated = repeats.repeated_name(pairs)
    if repeated is not None:
        raise ApiError(400, "repeated_field", f"the form sends the field {repeats.shown(repeated)} twice")
    return dict(pairs)
