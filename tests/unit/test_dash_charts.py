"""The dashboard's SVG charts (redirector/dash/charts.py): well-formed for any input, escaped, with a text
alternative, and bars proportional to their values."""

import xml.etree.ElementTree as ET

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from redirector.dash import charts
from redirector.dash.render import Renderer

NS = {"s": "http://www.w3.org/2000/svg"}
HOSTILE = ["<script>alert(1)</script>", 'a"b', "x' onload='y", "&amp;", "]]>", "\x00\x0b\ud800", "é🙂"]
HUGE = 10**30


def parse(chart: charts.Chart) -> ET.Element:
    root = ET.fromstring(str(chart.svg))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.find("s:title", NS) is not None and root.find("s:desc", NS) is not None
    return root


def bar_widths(root: ET.Element) -> list[float]:
    return [float(r.get("width")) for r in root.findall("s:rect[@class='bar']", NS)]


@pytest.mark.parametrize(
    ("days", "series", "label_has"),
    [
        ([], [("human", []), ("bot", [])], "no data"),
        (["2026-11-30"], [("human", [5]), ("bot", [0])], "human 5 in total"),
        (["d1", "d2"], [("human", [HUGE, 1]), ("bot", [0, HUGE])], f"highest {HUGE:,} on d1"),
        (["d1", "d2", "d3"], [("human", [0, 0, 0]), ("bot", [0, 0, 0])], "human 0 in total"),
        (["d1", "d2"], [("human", [-3, 2])], "human -1 in total"),
        ([f"d{i}" for i in range(400)], [("human", list(range(400)))], "400 days from d0 to d399"),
    ],
)
def test_line_chart_cases(days, series, label_has):
    chart = charts.line_svg(days, series, title="Clicks per day")
    root = parse(chart)
    assert label_has in root.get("aria-label")
    assert len(chart.rows) == len(days)
    assert chart.columns == ("day", *(name for name, _ in series))


def test_line_chart_markers_only_while_they_fit():
    few = parse(charts.line_svg(["a", "b"], [("h", [1, 2])], title="t"))
    many = parse(charts.line_svg([str(i) for i in range(100)], [("h", [1] * 100)], title="t"))
    assert len(few.findall("s:circle", NS)) == 2
    assert many.findall("s:circle", NS) == []


def test_line_chart_refuses_series_of_another_length():
    with pytest.raises(ValueError, match="human"):
        charts.line_svg(["a", "b"], [("human", [1])], title="t")


@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_labels_are_escaped(label):
    bar = charts.bar_svg([(label, 3), ("ok", 1)], title=label)
    line = charts.line_svg([label], [(label, [1])], title=label)
    for chart in (bar, line):
        parse(chart)
        assert "<script" not in str(chart.svg)
    assert bar.rows[0][0] == label  # the table keeps the label whole; Jinja escapes it there


@pytest.mark.parametrize(
    ("rows", "widths"),
    [
        ([], []),
        ([("FR", 7)], [charts.WIDTH_PX - charts.BAR_LABEL_PX - charts.BAR_VALUE_PX]),
        ([("FR", 10), ("DE", 5), ("NL", 0)], [380.0, 190.0, 0.0]),
        ([("a", 0), ("b", 0)], [0.0, 0.0]),
        ([("a", -5), ("b", 5)], [0.0, 380.0]),
        ([("a", HUGE), ("b", HUGE // 4)], [380.0, 95.0]),
    ],
)
def test_bar_chart_cases(rows, widths):
    chart = charts.bar_svg(rows, title="Top countries")
    root = parse(chart)
    assert bar_widths(root) == widths
    assert chart.rows == tuple((label, f"{value:,}") for label, value in rows)


def test_formatter_is_used_in_picture_table_and_summary():
    chart = charts.bar_svg([("alice", 123456)], title="Sales", fmt=lambda v: f"EUR {v / 100:.2f}")
    assert chart.rows == (("alice", "EUR 1234.56"),)
    assert "alice EUR 1234.56" in parse(chart).get("aria-label")


def test_summary_names_the_first_bars_and_counts_the_rest():
    rows = [(f"c{i}", 100 - i) for i in range(15)]
    label = parse(charts.bar_svg(rows, title="t")).get("aria-label")
    assert "c9 91" in label and "c10" not in label and "and 5 more" in label


@pytest.mark.parametrize(
    ("top", "step"), [(0, 1), (1, 1), (4, 1), (5, 2), (9, 5), (40, 10), (41, 20), (HUGE, 5 * 10**29)]
)
def test_nice_step(top, step):
    assert charts.nice_step(top) == step


labels = st.text(max_size=40)
values = st.integers(min_value=-(10**40), max_value=10**40)


@given(st.lists(st.tuples(labels, values), max_size=30), labels)
def test_bar_chart_is_well_formed_and_proportional(rows, title):
    root = parse(charts.bar_svg(rows, title=title))
    widths = bar_widths(root)
    assert len(widths) == len(rows)
    top = max([v for _, v in rows] + [0])
    area = charts.WIDTH_PX - charts.BAR_LABEL_PX - charts.BAR_VALUE_PX
    for (_, value), width in zip(rows, widths, strict=True):
        expected = area * value / top if top and value > 0 else 0.0
        assert abs(width - expected) <= 0.01


@given(
    st.integers(min_value=0, max_value=40).flatmap(
        lambda n: st.tuples(
            st.lists(labels, min_size=n, max_size=n),
            st.lists(st.tuples(labels, st.lists(values, min_size=n, max_size=n)), min_size=1, max_size=2),
        )
    )
)
def test_line_chart_is_well_formed(data):
    days, series = data
    root = parse(charts.line_svg(days, series, title="t"))
    ys = [float(c.get("cy")) for c in root.findall("s:circle", NS)]
    assert all(charts.MARGIN_TOP_PX <= y <= charts.LINE_HEIGHT_PX - charts.MARGIN_BOTTOM_PX for y in ys)


def test_the_renderer_has_no_filter_that_marks_text_safe():
    """Charts arrive as Markup built by charts.py (labels escaped there); a filter turning any string into
    Markup (as `svg` once did, unused) would let a template switch autoescape off for user text."""
    env = Renderer().env
    hostile = "<script>alert(1)</script>"
    for name in set(env.filters) - set(jinja2.defaults.DEFAULT_FILTERS):
        try:
            out = env.from_string("{{ x|" + name + " }}").render(x=hostile)
        except (TypeError, ValueError):
            continue  # a filter for numbers only (money, count)
        assert "<script" not in out, name
    assert "<script" not in env.from_string("{{ x }}").render(x=hostile)
