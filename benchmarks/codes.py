"""Deterministic pseudo-random link codes: code i is the same in Python (seeding, the bare app) and in the
wrk Lua script (`redirect.lua`), so wrk can pick a random existing code per request without a code file.

code(i) = "bm" + 6 base-62 digits of (i * 2654435761) mod 2**32: a bijection on 32-bit integers, so codes
are unique, look random, and are 8 characters (the contract's generated codes have at least 7).
"""

from __future__ import annotations

CODE_PREFIX = "bm"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODE_DIGITS = 6
# Knuth's multiplicative hash constant (odd, so multiplication mod 2**32 is a bijection).
MULTIPLIER = 2654435761
MODULUS = 2**32
# i * MULTIPLIER must stay below 2**53 so LuaJIT's doubles compute it exactly.
MAX_LINKS = 3_000_000


def code_for(index: int) -> str:
    value = (index * MULTIPLIER) % MODULUS
    digits = []
    for _ in range(CODE_DIGITS):
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return CODE_PREFIX + "".join(reversed(digits))


def destination_for(index: int) -> str:
    """The product URL behind code `index` (no merchant owns the host: links without a merchant)."""
    return f"https://shop.example.com/p/{index}"


def check_links(count: int) -> int:
    if not 1 <= count <= MAX_LINKS:
        raise ValueError(f"links must be 1..{MAX_LINKS}, got {count}")
    return count
