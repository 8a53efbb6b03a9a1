"""Charts of the dashboard as inline SVG drawn on the server: no script, no external resource, nothing for
a Content-Security-Policy to allow. Each function returns a `Chart`: the SVG and the same figures as table
rows, because the page shows both (a screen reader or a phone reads the table; the SVG is the picture).

Pure functions over plain data. Labels come from users (country names, device names, creator ids), so every
text is escaped and stripped of the characters XML 1.0 forbids: the output is well-formed XML for any input.
Values are integers (counts, minor units); negative values draw as zero and keep their label."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# Colours of the chart, checked for contrast against BACKGROUND in tests/unit/test_dash_contrast.py:
# text needs 4.5:1 (WCAG 1.4.3), the series 3:1 as graphics (WCAG 1.4.11).
BACKGROUND = "#ffffff"
TEXT = "#1f2937"
GRID = "#d1d5db"
SERIES_COLOURS = ("#1d4ed8", "#b45309")
BAR = "#1d4ed8"

WIDTH_PX = 640
LINE_HEIGHT_PX = 260
# Room for the y labels, the legend and the x labels around the plot of the line chart.
MARGIN_LEFT_PX, MARGIN_RIGHT_PX, MARGIN_TOP_PX, MARGIN_BOTTOM_PX = 64, 16, 32, 36
# Bar chart: one row per label; labels longer than this are cut in the picture (whole in the table).
BAR_ROW_PX, BAR_LABEL_PX, BAR_VALUE_PX, BAR_LABEL_CHARS = 26, 150, 110, 20
# Markers (with a hover title each) only while they stay apart; a year of days draws as a plain line.
MAX_MARKERS = 62
MAX_X_LABELS = 8
# Text alternative: the first few bars are named, the rest counted (the table has them all).
SUMMARY_ITEMS = 10

_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Format = Callable[[int], str]


def count(value: int) -> str:
    return f"{value:,}"


@dataclass(frozen=True)
class Chart:
    svg: Markup
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def text(value: object) -> str:
    """Escaped for XML text and attributes (quotes too), without the characters XML 1.0 cannot hold."""
    return escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)


def _cut(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _px(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def nice_step(top: int, steps: int = 4) -> int:
    """The smallest 1, 2 or 5 times a power of ten that reaches `top` in `steps` steps (integers only, so
    any size of value works)."""
    target = max(1, -(-top // steps))
    base = 1
    while True:
        for m in (1, 2, 5):
            if m * base >= target:
                return m * base
        base *= 10


def _svg(width: int, height: int, title: str, summary: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" aria-label="{text(summary)}">'
        f"<title>{text(title)}</title><desc>{text(summary)}</desc>"
        f'<rect width="{width}" height="{height}" fill="{BACKGROUND}"/>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _empty(width: int, height: int, title: str) -> list[str]:
    return [
        f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="{TEXT}" '
        f'font-size="14">{text("No data for " + title)}</text>'
    ]


def line_svg(
    days: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str,
    fmt: Format = count,
) -> Chart:
    """A daily chart of up to two series over the same days (e.g. ("human", [...]), ("bot", [...])): the
    first drawn as a filled area, the others as lines. `days` are the x labels ("2026-11-30")."""
    for name, values in series:
        if len(values) != len(days):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(days)} days")
    rows = tuple((str(day), *(fmt(values[i]) for _, values in series)) for i, day in enumerate(days))
    columns = ("day", *(str(name) for name, _ in series))
    if not days or not series:
        summary = f"{title}: no data"
        return Chart(_svg(WIDTH_PX, 120, title, summary, _empty(WIDTH_PX, 120, title)), title, columns, rows)
    parts = []
    for name, values in series:
        peak = max(range(len(values)), key=lambda i: values[i])
        total = fmt(sum(values))
        parts.append(f"{name} {total} in total, highest {fmt(values[peak])} on {days[peak]}")
    summary = f"{title}, {len(days)} days from {days[0]} to {days[-1]}: " + "; ".join(parts)
    body = _line_body(days, series, fmt)
    return Chart(_svg(WIDTH_PX, LINE_HEIGHT_PX, title, summary, body), title, columns, rows)


def _line_body(days: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], fmt: Format) -> list[str]:
    left, top = MARGIN_LEFT_PX, MARGIN_TOP_PX
    plot_w = WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX
    plot_h = LINE_HEIGHT_PX - MARGIN_TOP_PX - MARGIN_BOTTOM_PX
    step = nice_step(max(max(max(values), 0) for _, values in series))
    y_max = step * 4
    n = len(days)

    def x(i: int) -> float:
        return left + plot_w / 2 if n == 1 else left + i * plot_w / (n - 1)

    def y(v: int) -> float:
        return top + plot_h - (max(v, 0) / y_max) * plot_h

    out = []
    for k in range(5):
        gy = top + plot_h - k * plot_h / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_px(gy)}" y2="{_px(gy)}" stroke="{GRID}"/>')
        out.append(
            f'<text x="{left - 6}" y="{_px(gy + 4)}" text-anchor="end" fill="{TEXT}" '
            f'font-size="11">{text(fmt(step * k))}</text>'
        )
    every = -(-n // MAX_X_LABELS)
    for i in range(0, n, every):
        out.append(
            f'<text x="{_px(x(i))}" y="{LINE_HEIGHT_PX - 14}" text-anchor="middle" fill="{TEXT}" '
            f'font-size="11">{text(days[i])}</text>'
        )
    for s, (name, values) in enumerate(series):
        colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
        points = " ".join(f"{_px(x(i))},{_px(y(v))}" for i, v in enumerate(values))
        if s == 0 and n > 1:
            base = f"{_px(x(n - 1))},{_px(top + plot_h)} {_px(x(0))},{_px(top + plot_h)}"
            out.append(f'<polygon points="{points} {base}" fill="{colour}" fill-opacity="0.15"/>')
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        if n <= MAX_MARKERS:
            out.extend(
                f'<circle cx="{_px(x(i))}" cy="{_px(y(v))}" r="3" fill="{colour}">'
                f"<title>{text(f'{days[i]}: {name} {fmt(v)}')}</title></circle>"
                for i, v in enumerate(values)
            )
        lx = left + s * 160
        out.append(f'<rect x="{lx}" y="8" width="12" height="12" fill="{colour}"/>')
        out.append(
            f'<text x="{lx + 18}" y="18" fill="{TEXT}" font-size="12">{text(_cut(str(name), 20))}</text>'
        )
    return out


def bar_svg(
    rows: Sequence[tuple[str, int]], *, title: str, fmt: Format = count, column: str = "value"
) -> Chart:
    """Horizontal bars, one per (label, value), in the order given (rank them before); bar length is
    proportional to the value, the longest bar being the largest value."""
    table = tuple((str(label), fmt(value)) for label, value in rows)
    columns = ("name", column)
    if not rows:
        summary = f"{title}: no data"
        return Chart(_svg(WIDTH_PX, 80, title, summary, _empty(WIDTH_PX, 80, title)), title, columns, table)
    named = ", ".join(f"{label} {value}" for label, value in table[:SUMMARY_ITEMS])
    more = f", and {len(rows) - SUMMARY_ITEMS} more" if len(rows) > SUMMARY_ITEMS else ""
    summary = f"{title}: {named}{more}"
    height = 8 + BAR_ROW_PX * len(rows)
    area = WIDTH_PX - BAR_LABEL_PX - BAR_VALUE_PX
    top_value = max(max(value for _, value in rows), 0)
    body = []
    for i, (label, value) in enumerate(rows):
        y0 = 4 + i * BAR_ROW_PX
        length = area * (value / top_value) if top_value and value > 0 else 0.0
        body.append(
            f'<text x="{BAR_LABEL_PX - 8}" y="{y0 + 17}" text-anchor="end" fill="{TEXT}" font-size="12">'
            f"{text(_cut(str(label), BAR_LABEL_CHARS))}</text>"
        )
        body.append(
            f'<rect class="bar" x="{BAR_LABEL_PX}" y="{y0 + 3}" width="{_px(length)}" '
            f'height="{BAR_ROW_PX - 6}" fill="{BAR}"><title>{text(f"{label}: {fmt(value)}")}</title></rect>'
        )
        body.append(
            f'<text x="{_px(BAR_LABEL_PX + length + 6)}" y="{y0 + 17}" fill="{TEXT}" font-size="12">'
            f"{text(fmt(value))}</text>"
        )
    return Chart(_svg(WIDTH_PX, height, title, summary, body), title, columns, table)
