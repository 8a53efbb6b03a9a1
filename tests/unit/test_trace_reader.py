"""trace.for_creator: what the creator an order is credited to reads of its trace. Another creator's code
terms, click details and ledger rows are that creator's (or the merchant's terms for that creator); the
order, the checks and what is the reader's own stay as the merchant reads them."""

from __future__ import annotations

import pytest

from attribution import trace

CLICK = {"click_id": "c1", "mac_ok": True, "found": True, "ts": "2026-11-02T10:00:00.000Z", "code": "bob-l1",
         "creator_id": "bob", "is_bot": False, "owner_ok": True, "in_window": True}  # fmt: skip


def code(code: str, owner: str | None, rate: int | None = None) -> dict:
    return {"code": code, "status": "active" if owner else "unknown", "creator_id": owner,
            "rate_bps": rate, "active_from_ms": 1 if owner else None, "active_to_ms": None,
            "credited": owner == "alice"}  # fmt: skip


def row(entry_id: str, creator: str, amount: int) -> dict:
    return {"entry_id": entry_id, "kind": "accrual", "creator_id": creator, "amount_minor": amount}


def a_trace(click: dict, codes: list[dict], ledger: list[dict]) -> dict:
    return {"order_id": "O-1", "events": [{"type": "order.created"}], "click": click, "codes": codes,
            "review": [], "items": [], "ledger": ledger, "outcome": "credited"}  # fmt: skip


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # all the reader's own: unchanged
        (a_trace(CLICK | {"creator_id": "alice"}, [code("A10", "alice", 900)], [row("acc:0", "alice", 5)]),
         a_trace(CLICK | {"creator_id": "alice"}, [code("A10", "alice", 900)], [row("acc:0", "alice", 5)])),
        # bob's click lost to alice's code: its checks stay, its details go
        (a_trace(CLICK, [code("A10", "alice")], []),
         a_trace(CLICK | dict.fromkeys(trace.CLICK_DETAILS), [code("A10", "alice")], [])),
        # bob's code on the order: its code, status and credit stay; his rate and span go
        (a_trace(CLICK | {"creator_id": "alice"}, [code("A10", "alice"), code("B77", "bob", 777)], []),
         a_trace(CLICK | {"creator_id": "alice"},
                 [code("A10", "alice"), code("B77", "bob", 777) | dict.fromkeys(trace.CODE_TERMS)], [])),
        # a code nobody holds, a click not found: nothing of anyone's to hide
        (a_trace(dict.fromkeys(CLICK) | {"click_id": "c1", "found": False}, [code("X1", None)], []),
         a_trace(dict.fromkeys(CLICK) | {"click_id": "c1", "found": False}, [code("X1", None)], [])),
        # a credit that moved from bob: bob's accrual and reversal are his; the order's flag row stays
        (a_trace(CLICK | {"creator_id": "alice"}, [],
                 [row("acc:0", "bob", 5), row("rev:0", "bob", -5), row("acc:1", "alice", 5),
                  row("none:x", "", 0)]),
         a_trace(CLICK | {"creator_id": "alice"}, [], [row("acc:1", "alice", 5), row("none:x", "", 0)])),
    ],
)  # fmt: skip
def test_for_creator(given: dict, expected: dict) -> None:
    before = repr(given)
    assert trace.for_creator(given, "alice") == expected
    assert repr(given) == before  # the merchant's trace is not changed in place
