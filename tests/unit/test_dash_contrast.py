"""Colour contrast of the dashboard (WCAG 2.x): every text colour of static/dash.css against the background
it is drawn on is at least 4.5:1 (1.4.3), and the charts' text 4.5:1 and series 3:1 (1.4.11, graphics).
The stylesheet is read as it is: its custom properties resolved, each rule's text colour paired with its
own background or, when it sets none (or a transparent one), the nearest ancestor rule's, then the page's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redirector.dash import charts

CSS = Path(charts.__file__).resolve().parent / "static" / "dash.css"
TEXT_MIN = 4.5
GRAPHICS_MIN = 3.0
NAMED = {"white": "#ffffff", "black": "#000000"}
# Where base.html puts a styled element inside another's background without the selector saying so: the
# sign-out form sits in the header bar. (selector prefix -> the ancestor it is drawn on)
DRAWN_INSIDE = {".signout": ".top"}


def channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    colour = NAMED.get(colour.lower(), colour)
    hex_digits = colour.lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}", hex_digits):
        raise ValueError(f"not a hex colour: {colour!r}")
    if len(hex_digits) == 3:
        hex_digits = "".join(d * 2 for d in hex_digits)
    r, g, b = (int(hex_digits[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(foreground: str, background: str) -> float:
    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(
    ("foreground", "background", "ratio"),
    [
        ("#000000", "#ffffff", 21.0),
        ("#ffffff", "#ffffff", 1.0),
        ("#fff", "#000", 21.0),
        ("white", "black", 21.0),
        ("#777777", "#ffffff", 4.48),  # the classic grey that just fails AA
        ("#767676", "#ffffff", 4.54),  # the lightest grey that passes
        ("#0000ff", "#ffffff", 8.59),
        ("#ff0000", "#ffffff", 4.0),
        ("#1d4ed8", "#ffffff", 6.7),
    ],
)
def test_contrast_ratio(foreground, background, ratio):
    assert contrast(foreground, background) == pytest.approx(ratio, abs=0.01)
    assert contrast(background, foreground) == pytest.approx(ratio, abs=0.01)  # symmetric


@pytest.mark.parametrize("bad", ["red", "#12345", "rgb(0,0,0)", "var(--x)", ""])
def test_only_hex_colours_are_read(bad):
    with pytest.raises(ValueError):
        luminance(bad)


def rules(css: str) -> list[tuple[str, dict[str, str]]]:
    """(selector, declarations) of every plain rule (those inside @media too), comma lists split."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    out = []
    for selectors, body in re.findall(r"([^{}@]+)\{([^{}]*)\}", css):
        decls = {}
        for decl in body.split(";"):
            name, _, value = decl.partition(":")
            if value.strip():
                decls[name.strip()] = value.strip()
        out.extend((s.strip(), decls) for s in selectors.split(",") if s.strip())
    return out


def resolve(value: str, variables: dict[str, str]) -> str:
    found = re.fullmatch(r"var\((--[\w-]+)\)", value.strip())
    return variables[found.group(1)] if found else value.strip()


def background_of(decls: dict[str, str]) -> str | None:
    value = decls.get("background-color") or decls.get("background")
    return None if value is None or value in ("transparent", "none", "inherit") else value


def pairs(css: str) -> list[tuple[str, str, str]]:
    """(selector, text colour, background) of every rule that sets a text colour or a background."""
    found = rules(css)
    variables = {k: v for sel, d in found if sel == ":root" for k, v in d.items() if k.startswith("--")}
    by_selector: dict[str, dict[str, str]] = {}
    for selector, decls in found:
        by_selector.setdefault(selector, {}).update(decls)
    body = by_selector["body"]

    def inherited(selector: str, pick) -> str:
        parts = selector.split()
        chain = [" ".join(parts[:end]) for end in range(len(parts), 0, -1)]
        chain += [DRAWN_INSIDE[parts[0]]] if parts[0] in DRAWN_INSIDE else []
        for candidate in chain:
            value = pick(by_selector.get(candidate, {}))
            if value:
                return value
        return pick(body)

    out = []
    for selector, decls in by_selector.items():
        if selector == ":root" or ("color" not in decls and background_of(decls) is None):
            continue
        text = inherited(selector, lambda d: d.get("color"))
        background = inherited(selector, background_of)
        out.append((selector, resolve(text, variables), resolve(background, variables)))
    return out


def test_every_text_colour_of_the_stylesheet_is_readable():
    checked = pairs(CSS.read_text())
    assert len(checked) >= 10, checked  # the parser found the stylesheet's rules
    weak = [(s, fg, bg, round(contrast(fg, bg), 2)) for s, fg, bg in checked if contrast(fg, bg) < TEXT_MIN]
    assert not weak, f"contrast below {TEXT_MIN}:1: {weak}"


def test_the_pairing_finds_ancestor_backgrounds():
    css = (
        ":root { --bg: #ffffff; --dark: #111111; } body { color: #222222; background: var(--bg); } "
        ".top { background: var(--dark); color: #ffffff; } .top a { color: #eeeeee; } "
        ".top button { background: transparent; color: #777777; } "
        "@media (x) { .cell { background: #000; } } .signout button { color: #fefefe; }"
    )
    found = {s: (fg, bg) for s, fg, bg in pairs(css)}
    assert found[".top a"] == ("#eeeeee", "#111111")
    assert found[".top button"] == ("#777777", "#111111")  # transparent: the ancestor's
    assert found[".cell"] == ("#222222", "#000")  # no colour: the page's text on its own background
    assert found["body"] == ("#222222", "#ffffff")
    assert found[".signout button"] == ("#fefefe", "#111111")  # DRAWN_INSIDE the header


@pytest.mark.parametrize(
    ("colour", "minimum"),
    [(charts.TEXT, TEXT_MIN), (charts.BAR, GRAPHICS_MIN)]
    + [(c, GRAPHICS_MIN) for c in charts.SERIES_COLOURS],
)
def test_chart_colours_on_the_chart_background(colour, minimum):
    assert contrast(colour, charts.BACKGROUND) >= minimum
