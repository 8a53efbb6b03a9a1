import pytest

from redirector.redirect import build_location, pass_through_query


@pytest.mark.parametrize(
    ("url", "query", "expected"),
    [
        ("https://s.example/p", "", "https://s.example/p?ct_click=ID"),
        ("https://s.example/p?a=1", "", "https://s.example/p?a=1&ct_click=ID"),
        ("https://s.example/p?a=1", "b=2", "https://s.example/p?a=1&b=2&ct_click=ID"),
        ("https://s.example/p#top", "b=2", "https://s.example/p?b=2&ct_click=ID#top"),
        ("https://s.example/p?a=1#top", "", "https://s.example/p?a=1&ct_click=ID#top"),
    ],
)
def test_build_location(url: str, query: str, expected: str) -> None:
    assert build_location(url, query, "ct_click", "ID") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", ""),
        (b"utm_source=yt&x=1", "utm_source=yt&x=1"),
        (b"ct_click=FORGED&x=1", "x=1"),
        (b"x=1&ct_click=A&ct_click=B", "x=1"),
        (b"q=caf\xc3\xa9", "q=caf%C3%A9"),
        (b"q=\xff\xfe", "q=%FF%FE"),  # invalid UTF-8 is encoded, never passed raw into a header
        (b'q=a"b<c>', "q=a%22b%3Cc%3E"),
        (b"q=a b", "q=a%20b"),
    ],
)
def test_pass_through_query(raw: bytes, expected: str) -> None:
    assert pass_through_query(raw, "ct_click") == expected
