"""Accessibility basics of one HTML page, read with the stdlib parser: `<html lang>`, one h1 and headings
that never skip a level, a label for every form control, a text alternative for every image and chart,
a name for every button and link, unique ids. Returns the problems found (empty: none)."""

from __future__ import annotations

from html.parser import HTMLParser

# Controls that need no label: hidden ones, and buttons named by their value or content.
UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset", "image"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.lang = ""
        self.headings: list[int] = []
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, str]] = []  # (description, id) needing a <label for=id>
        self.label_depth = 0
        self.svg_depth = 0
        self.named: list[list] = []  # open <button>/<a>: [description, has name]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if self.svg_depth:
            self.svg_depth += tag == "svg"
            return
        labelled = bool(a.get("aria-label", "").strip() or a.get("aria-labelledby", "").strip())
        if tag == "html":
            self.lang = a.get("lang", "").strip()
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.headings.append(int(tag[1]))
        elif tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        elif tag in ("input", "select", "textarea"):
            self._control(tag, a, labelled)
        elif tag in ("img", "svg"):
            self._image(tag, a, labelled)
        elif tag in ("button", "a") and (tag == "button" or "href" in a):
            self.named.append([f"<{tag} {a.get('href', '')}>", labelled])

    def _control(self, tag: str, a: dict[str, str], labelled: bool) -> None:
        kind = a.get("type", "text").lower() if tag == "input" else tag
        if kind not in UNLABELLED_INPUTS and not labelled and not self.label_depth:
            self.controls.append((f"<{tag} name={a.get('name')!r}>", a.get("id", "")))

    def _image(self, tag: str, a: dict[str, str], labelled: bool) -> None:
        if tag == "img":
            if "alt" not in a:
                self.problems.append(f"<img src={a.get('src')!r}> has no alt")
            self._name_found(bool(a.get("alt", "").strip()))
            return
        self.svg_depth = 1
        if a.get("aria-hidden") != "true" and not (a.get("role") == "img" and labelled):
            self.problems.append("<svg> without role=img and aria-label (nor aria-hidden)")
        self._name_found(labelled)

    def handle_endtag(self, tag: str) -> None:
        if self.svg_depth:
            self.svg_depth -= tag == "svg"
            return
        if tag == "label":
            self.label_depth = max(0, self.label_depth - 1)
        elif tag in ("button", "a") and self.named:
            description, has_name = self.named.pop()
            if not has_name:
                self.problems.append(f"{description} has no text or aria-label")

    def handle_data(self, data: str) -> None:
        if data.strip() and not self.svg_depth:
            self._name_found(True)

    def _name_found(self, found: bool) -> None:
        if found and self.named:
            self.named[-1][1] = True


def problems(html: str) -> list[str]:
    page = _Page()
    page.feed(html)
    page.close()
    out = list(page.problems)
    if not page.lang:
        out.append("<html> has no lang")
    if page.headings.count(1) != 1:
        out.append(f"{page.headings.count(1)} <h1> (one expected)")
    if page.headings and page.headings[0] != 1:
        out.append(f"the first heading is h{page.headings[0]}")
    for before, after in zip(page.headings, page.headings[1:], strict=False):
        if after > before + 1:
            out.append(f"heading h{after} follows h{before} (a level skipped)")
    for description, ident in page.controls:
        if not ident or ident not in page.label_for:
            out.append(f"{description} has no <label for> (nor aria-label)")
    duplicates = sorted({i for i in page.ids if page.ids.count(i) > 1})
    if duplicates:
        out.append(f"duplicate ids {duplicates}")
    return out
