"""Payouts as pure rules: which ledger rows a batch pays, the payouts it makes, and the ledger transfers
each step books. The I/O around them is attribution/payoutbook.py.

- A ledger row is *payable* when its status is `approved`, it is not itself a payout transfer, its amount
  is not zero, it was booked before the batch's `until`, and no live payout pays it. Rows are identified by
  (order_id, entry_id, run_id, creator_id, currency): one attributor run appends an entry of an order once
  per credit, and when the order's credit moves to another creator or currency it books the old credit's
  reversal and the new credit's row under the same entry id (attribution/ledger.py `difference`). Should
  only the click move (same creator and currency), the two rows share the identity; they are booked at
  one time for one (creator, currency), so a batch links and releases both together.
- A batch groups the payable rows per (creator, currency); a group whose sum is positive and at least
  `min_amount_minor` becomes one payout paying every row of the group (reversals included: they net
  against the accruals). A group that is zero or negative (a reversal after an earlier payout) or below the
  minimum is left as it is, for a later batch to net against.
- Booking a payout is a transfer of its amount from `approved` to `in_payout`; confirming moves it on to
  `paid`; failing moves it back to `approved` and releases its rows (they become payable again, and a later
  batch pays them). So `sum(amount_minor)` over a creator's rows is never changed by payouts, and the
  approved balance always equals the sum of the payable rows: no row is paid twice and no payout is
  negative.
- Ids are derived from (merchant, until[, creator, currency]), so a batch resumed after a crash makes the
  same payouts.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from attribution import money

STATUS_IN_PAYOUT, STATUS_PAID, STATUS_FAILED = "in_payout", "paid", "failed"
# Stored while a confirm or fail is writing its ledger rows; shown as in_payout until they are all written.
STATUS_PAYING, STATUS_FAILING = "paying", "failing"
PUBLIC_STATUS = {STATUS_PAYING: STATUS_IN_PAYOUT, STATUS_FAILING: STATUS_IN_PAYOUT}
KIND_PAYOUT = "payout"
CREATE, CONFIRM, FAIL = "payout", "confirm", "fail"
# Each step: the status it takes the amount from and the one it gives it to.
STEPS = {
    CREATE: ("approved", STATUS_IN_PAYOUT),
    CONFIRM: (STATUS_IN_PAYOUT, STATUS_PAID),
    FAIL: (STATUS_IN_PAYOUT, "approved"),
}
# The pseudo order of a payout's transfer rows in `commissions` (`payout:<payout_id>`): no merchant's order
# id may start so, or its ledger would be read as that payout's rows (the webhook and every order path
# refuse it).
ORDER_PREFIX = "payout:"


def is_reserved_order_id(order_id: str) -> bool:
    return order_id.startswith(ORDER_PREFIX)


@dataclass(frozen=True, slots=True)
class Line:
    """A ledger row, as much of it as a payout and its statement need."""

    creator_id: str
    currency: str
    order_id: str
    entry_id: str
    run_id: str
    kind: str
    sku: str
    quantity: int
    basis_minor: int
    rate_bps: int
    amount_minor: int
    attributed_by: str = ""
    booked_ms: int = 0

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.order_id, self.entry_id, self.run_id, self.creator_id, self.currency)


@dataclass(frozen=True, slots=True)
class Planned:
    payout_id: str
    creator_id: str
    currency: str
    amount_minor: int
    lines: list[Line]


class PlannedPayout(msgspec.Struct, frozen=True):
    payout_id: str
    creator_id: str
    currency: str
    amount_minor: int
    lines: int


class Batch(msgspec.Struct, frozen=True):
    batch_id: str
    merchant_id: str
    until_ms: int
    min_amount_minor: int
    created_ms: int
    planned: list[PlannedPayout]
    booked: bool = False  # every line, transfer and payout record written


class Payout(msgspec.Struct, frozen=True):
    payout_id: str
    batch_id: str
    merchant_id: str
    creator_id: str
    currency: str
    amount_minor: int
    lines: int
    status: str
    created_ms: int
    updated_ms: int

    def public(self) -> dict:
        return {
            "payout_id": self.payout_id,
            "batch_id": self.batch_id,
            "merchant_id": self.merchant_id,
            "creator_id": self.creator_id,
            "currency": self.currency,
            "amount_minor": self.amount_minor,
            "lines": self.lines,
            "status": PUBLIC_STATUS.get(self.status, self.status),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()


def batch_id_of(merchant_id: str, until_ms: int) -> str:
    return f"{merchant_id}.{_digest('batch', merchant_id, until_ms)[:16]}"


def payout_id_of(merchant_id: str, until_ms: int, creator_id: str, currency: str) -> str:
    """`<merchant_id>.<hex>`: the merchant is read back from the id (ids never contain a dot)."""
    return f"{merchant_id}.{_digest('payout', merchant_id, until_ms, creator_id, currency)[:20]}"


def merchant_of(payout_id: str) -> str:
    return payout_id.rpartition(".")[0]


def payable(rows: Iterable[Line], signs: Counter, until_ms: int, statuses: dict) -> list[Line]:
    """The rows a batch up to `until_ms` may pay (see the module docstring). `signs` is the sum of the
    payout_lines signs per row key; `statuses` maps each row key to its ledger status. The SQL of
    core.queries.payable_totals and link_payable is this filter; this one serves the model tests."""
    return [
        r
        for r in rows
        if statuses[r.key] == "approved"
        and r.kind != KIND_PAYOUT
        and r.amount_minor != 0
        and r.booked_ms < until_ms
        and signs[r.key] <= 0
    ]


def pays(amount_minor: int, min_amount_minor: int) -> bool:
    """Whether a (creator, currency) group's payable sum becomes a payout."""
    if amount_minor > money.INT64_MAX:
        raise money.AmountOutOfRange(f"a payable balance of {amount_minor} exceeds Int64 minor units")
    return amount_minor > 0 and amount_minor >= min_amount_minor


def plan_totals(
    merchant_id: str, until_ms: int, min_amount_minor: int, totals: Iterable[tuple[str, str, int, int]]
) -> list[PlannedPayout]:
    """`plan` from (creator, currency, sum, rows) per group, as ClickHouse sums them: the batch links the
    rows of the planned groups inside ClickHouse (core.queries.link_payable) and checks the totals."""
    return [
        PlannedPayout(payout_id_of(merchant_id, until_ms, c, cu), c, cu, amount, rows)
        for c, cu, amount, rows in sorted(totals)
        if pays(amount, min_amount_minor)
    ]


def plan(merchant_id: str, until_ms: int, min_amount_minor: int, rows: Iterable[Line]) -> list[Planned]:
    """One payout per (creator, currency) whose payable sum is positive and at least the minimum."""
    groups: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for row in rows:
        groups[(row.creator_id, row.currency)].append(row)
    out = []
    for (creator_id, currency), lines in sorted(groups.items()):
        amount = sum(line.amount_minor for line in lines)
        if pays(amount, min_amount_minor):
            lines = sorted(lines, key=lambda line: line.key)
            payout_id = payout_id_of(merchant_id, until_ms, creator_id, currency)
            out.append(Planned(payout_id, creator_id, currency, amount, lines))
    return out


def transfer(step: str, amount_minor: int) -> list[tuple[str, str, int]]:
    """(entry_id, status, amount) of the two ledger rows of one step: the amount leaves one status and
    arrives in the next; the pair sums to zero."""
    source, target = STEPS[step]
    return [(f"{step}:{source}", source, -amount_minor), (f"{step}:{target}", target, amount_minor)]
