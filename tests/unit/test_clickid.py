import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clickid import ID_CHARS, ClickIds, decode, timestamp_ms

SECRET = b"s" * 32


def test_ids_are_unique_urlsafe_and_carry_their_time() -> None:
    ids = ClickIds(SECRET)
    minted = [ids.new(1_764_000_000_123) for _ in range(10_000)]
    assert len(set(minted)) == len(minted)
    assert all(len(i) == ID_CHARS <= 32 for i in minted)
    assert all(
        set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in minted
    )
    assert {timestamp_ms(i) for i in minted} == {1_764_000_000_123}


def test_two_processes_do_not_collide() -> None:
    a, b = ClickIds(SECRET), ClickIds(SECRET)
    assert not {a.new(5) for _ in range(1000)} & {b.new(5) for _ in range(1000)}


def test_verify_accepts_own_and_rejects_altered_or_foreign() -> None:
    ids = ClickIds(SECRET)
    good = ids.new()
    assert ids.verify(good)
    assert ClickIds(SECRET).verify(good)  # any process with the same secret
    assert not ClickIds(b"other-secret").verify(good)
    for position in range(ID_CHARS):
        flipped = good[:position] + ("A" if good[position] != "A" else "B") + good[position + 1 :]
        assert not ids.verify(flipped), position


@pytest.mark.parametrize("bad", ["", "short", "x" * 30, "!" * 30, "A" * 31, None, 12345, "é" * 30])
def test_malformed_ids(bad) -> None:
    assert not ClickIds(SECRET).verify(bad)


@pytest.mark.parametrize("bad", ["", "short", "!" * 30, "A" * 31, None, 12345, "é" * 30])
def test_malformed_ids_do_not_decode(bad) -> None:
    assert decode(bad) is None
    assert timestamp_ms(bad) is None


def test_ids_have_the_documented_layout() -> None:
    """Timestamp | nonce | counter | keyed BLAKE2b of those 14 bytes, base64url without padding (the layout
    ClickHouse-side tools and older ids rely on), whatever shortcut mints them."""
    import base64
    import hashlib

    ids = ClickIds(SECRET)
    key = hashlib.blake2b(SECRET, digest_size=32, person=b"ct-clickid").digest()
    for click_id in [ids.new(1_764_000_000_123 + i) for i in range(2_000)]:
        raw = base64.urlsafe_b64decode(click_id + "==")
        assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == click_id
        assert raw[14:] == hashlib.blake2b(raw[:14], key=key, digest_size=8).digest()


def _reference_decode(click_id):
    """The standard library's reading of an id, with its one canonical spelling (what `decode` must equal)."""
    import base64
    import binascii

    if not isinstance(click_id, str) or len(click_id) != ID_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(click_id + "==")
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 22 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != click_id:
        return None
    return raw


_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(
    st.one_of(
        st.text(alphabet=_ID_ALPHABET, min_size=30, max_size=30),
        # one character off the alphabet: the standard alphabet's, padding, space, non-ASCII, control
        st.tuples(
            st.text(alphabet=_ID_ALPHABET, min_size=29, max_size=29),
            st.sampled_from(["+", "/", "=", " ", "\n", ".", "é", "\x00", "\u2028", "Ａ"]),
            st.integers(0, 29),
        ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
        st.text(min_size=28, max_size=32),
    )
)
def test_decode_reads_exactly_what_the_standard_library_reads(text) -> None:
    assert decode(text) == _reference_decode(text)


@pytest.mark.parametrize("last", list(_ID_ALPHABET))
def test_only_the_canonical_last_character_decodes(last) -> None:
    """22 bytes leave the 30th character 4 spare bits: only the spelling with those bits zero is an id."""
    click_id = ClickIds(SECRET).new(1_764_000_000_123)[:29] + last
    assert (decode(click_id) is not None) == (_ID_ALPHABET.index(last) % 16 == 0)
