"""The in-app browser classifier against real user agents (tests/unit/fixtures/inapp_agents.toml: each with
its public source) and against ordinary browsers and the same apps' bots, which must not match."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redirector.inapp import InAppClassifier, inapp_of, load_apps

FIXTURE = Path(__file__).parent / "fixtures" / "inapp_agents.toml"
AGENTS = tomllib.loads(FIXTURE.read_text(encoding="utf-8"))["agent"]
APPS = load_apps()
ORDINARY = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130 Mobile"


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: f"{a['app'] or 'none'}:{a['ua'][:40]}")
def test_real_agents(agent):
    assert agent["source"], "every fixture agent names where it was found"
    assert inapp_of(agent["ua"]) == agent["app"]


def test_every_listed_app_has_a_real_agent():
    assert {name for name, _ in APPS} <= {a["app"] for a in AGENTS}
    assert sum(1 for a in AGENTS if not a["app"]) >= 20  # and plenty that must not match


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("", ""),
        ("musical_ly", "tiktok"),
        ("Instagram", ""),  # the token is "Instagram " (with its version after it), not the bare word
        ("[FBAN/MessengerForiOS;FBAV/1]", "messenger"),  # Messenger wins over the FBAN/FBAV it carries
        ("[FBAN/FBIOS;FBAV/1]", "facebook"),
        ("Barcelona 355.0 Android Instagram 1", "threads"),  # list order decides, not position
        (ORDINARY + " Inline/2.0", ""),  # " Line/" needs its space and case
        (ORDINARY + " line/7.4.0", ""),
        ("x" * 100_000 + " Snapchat/1", "snapchat"),  # long agents are searched through
    ],
)
def test_edges(user_agent, expected):
    assert inapp_of(user_agent) == expected


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_no_token_no_app(text):
    """Anything without a listed token is not in-app; the classifier never raises."""
    tokens = [t for _, ts in APPS for t in ts]
    if not any(t in text for t in tokens):
        assert inapp_of(text) == ""


@given(st.sampled_from(APPS), st.integers(0, 2), st.text(max_size=40), st.text(max_size=40))
def test_a_token_anywhere_names_an_app_at_least_as_high(app, index, before, after):
    name, tokens = app
    found = inapp_of(before + tokens[index % len(tokens)] + after)
    ranks = [n for n, _ in APPS]
    assert found and ranks.index(found) <= ranks.index(name)


def test_list_order_is_the_priority():
    classify = InAppClassifier((("b", ("XY",)), ("a", ("X",))))
    assert classify("XY") == "b"
    assert classify("X") == "a"
    assert InAppClassifier((("a", ("X",)), ("b", ("XY",))))("XY") == "a"
