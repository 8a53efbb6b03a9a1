"""Which in-app browser (TikTok, Instagram, Facebook, ...) a user agent belongs to, from the token list in
`inapp_tokens.toml` (its header says where each token comes from and how to add an app).

Pure and cheap: one Aho-Corasick pass over the agent finds every token at once (the maintained
`ahocorasick-rs`; about 5x faster here than one regular expression of all the tokens, which Python's `re`
tries one by one at each position); the earliest app in list order among the matches wins. Only links
with `open_in: "browser"` ever call it (redirect.py), so plain redirects never pay for it."""

from __future__ import annotations

import tomllib
from importlib import resources

import ahocorasick_rs

TOKENS_FILE = "inapp_tokens.toml"

App = tuple[str, tuple[str, ...]]


def load_apps() -> tuple[App, ...]:
    """(name, tokens) per app, in the file's order (first match wins)."""
    text = resources.files("redirector").joinpath(TOKENS_FILE).read_text(encoding="utf-8")
    apps = tuple((app["name"], tuple(app["tokens"])) for app in tomllib.loads(text)["app"])
    names = [name for name, _ in apps]
    if len(set(names)) != len(names) or not all(tokens and all(tokens) for _, tokens in apps):
        raise ValueError(f"{TOKENS_FILE}: duplicate app names or empty tokens")
    return apps


class InAppClassifier:
    """Built once from the app list; calling it is pure (no state changes)."""

    def __init__(self, apps: tuple[App, ...]) -> None:
        self._names = [name for name, _ in apps]
        # Pattern index -> the app's rank in the list (a smaller rank wins).
        self._rank = [rank for rank, (_, tokens) in enumerate(apps) for _ in tokens]
        patterns = [token for _, tokens in apps for token in tokens]
        # Overlapping matches: a token inside a longer one (FBAN/ in FBAN/Messenger) is reported too, so
        # the app ranked first is found whichever token spans the other.
        self._find = ahocorasick_rs.AhoCorasick(patterns).find_matches_as_indexes

    def __call__(self, user_agent: str) -> str:
        """The app's name, or "" for anything that is not a known in-app browser."""
        found = self._find(user_agent, overlapping=True)
        if not found:
            return ""
        rank = self._rank
        return self._names[min(rank[index] for index, _, _ in found)]


inapp_of = InAppClassifier(load_apps())
