"""The dashboard's Jinja2 environment, made once at start-up (state.py) and kept in the app state.
Autoescape is on for every template: a link URL, a product name or a refusal reason shown on a page is
text, never markup. Every page is sent with headers that keep it out of caches and frames and let it load
nothing from anywhere but this server."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from attribution.report import major_units

# Nothing external: styles, script and images from this server only; no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def money(minor: int, currency: str) -> str:
    """Minor units as the currency's major units (ISO 4217 digits), with the code."""
    return f"{major_units(minor, currency)} {currency}".strip()


class Renderer:
    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("redirector.dash", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,  # a typo in a template fails its test instead of showing nothing
            trim_blocks=True,
            lstrip_blocks=True,
            # Templates ship in the package: compiled once, never checked on disk again (with the default,
            # every page stat()ed its templates on the event loop).
            auto_reload=False,
        )
        self.env.filters["money"] = money
        self.env.filters["count"] = lambda n: f"{int(n):,}"

    def html(self, template: str, context: dict, status: int = 200) -> HTMLResponse:
        body = self.env.get_template(template).render(context)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
