"""Scenario 6: webhook flood. 500 signed order webhooks per second for 30 s (smoke: 100/s for 3 s), 10 % of
them re-deliveries of an event already sent (same webhook-id and body, fresh timestamp and signature); about
one order in six has one whole line refunded and one in eight is cancelled, and a fifth of the refunds are
sent before their order (the verdict's figures give the exact counts). `clicktrail attribute --every 2` runs
throughout, then once more after the backlog is in. Verdict: no 5xx (202 for each first delivery, 200 for
each re-delivery), exactly the unique events in `order_events`, and a ledger whose per-order accrual and
balance equal the ones computed here from the unique events in order; a further run appends nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field

from loadtests.common import Run, load, run_async
from loadtests.load import read_response
from loadtests.system import DATABASE, System
from loadtests.verdict import Verdict

RATE_BPS = 800  # the merchant's default rate, the only rate in play
DUPLICATE_SHARE = 0.10
REFUND_SHARE = 0.25
CANCEL_SHARE = 0.05
EARLY_REFUND_SHARE = 0.20  # of refunds: sent before their order
EARLY_BY = 50  # deliveries ahead of the order, so that it really arrives first
CONNECTIONS = 16
MERCHANT = "floodshop"
DOMAIN = "flood.example.com"


@dataclass
class Event:
    webhook_id: str
    order_id: str
    body: bytes


@dataclass
class Plan:
    deliveries: list[Event] = field(default_factory=list)
    unique: dict[str, Event] = field(default_factory=dict)
    accrual: dict[str, int] = field(default_factory=dict)  # order id → expected accrual
    balance: dict[str, int] = field(default_factory=dict)  # order id → expected sum(amount_minor)


def half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return quotient


def line_commission(price: int, quantity: int) -> int:
    return half_even(price * quantity * RATE_BPS, 10_000)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def make_plan(total: int, click_ids: list[str], rng: random.Random) -> Plan:
    """`total` deliveries: the unique events of enough orders with re-deliveries mixed in, and the books the
    contract's rules give for those unique events taken in order of occurrence."""
    plan = Plan()
    unique_target = round(total * (1 - DUPLICATE_SHARE))
    sequence: list[Event] = []
    now_ms = int(time.time() * 1000)
    n = 0
    while len(sequence) < unique_target:
        n += 1
        order_id, at = f"FL-{n:06d}", now_ms + n
        skus = rng.sample(range(50), rng.randrange(1, 4))  # distinct SKUs: a refund names its line by SKU
        lines = [(f"SKU-{sku}", rng.randrange(100, 100_000), rng.randrange(1, 4)) for sku in skus]
        common = {"order_id": order_id, "click_id": rng.choice(click_ids), "currency": "EUR"}
        events = [
            _event(order_id, "order.created", {**common, "occurred_at": _iso(at), "items": _items(lines)})
        ]
        roll = rng.random()
        if roll < REFUND_SHARE and len(lines) > 1:  # one whole line refunded
            refund = {**common, "occurred_at": _iso(at + 1_000), "items": _items(lines[:1])}
            events.append(_event(order_id, "order.refunded", refund))
            if rng.random() < EARLY_REFUND_SHARE:
                events.reverse()  # the refund goes out first
        elif roll < REFUND_SHARE + CANCEL_SHARE:
            events.append(_event(order_id, "order.cancelled", {**common, "occurred_at": _iso(at + 2_000)}))
        sequence.extend(events)
    sequence = sequence[:unique_target]
    _spread_early_refunds(sequence)
    plan.unique = {e.webhook_id: e for e in sequence}
    plan.accrual, plan.balance = expected_books(sequence)
    deliveries = list(sequence)
    for _ in range(total - len(sequence)):  # re-deliveries of events already sent, at random later points
        at = rng.randrange(1, len(deliveries) + 1)
        deliveries.insert(at, rng.choice(deliveries[:at]))
    plan.deliveries = deliveries
    return plan


def expected_books(events: list[Event]) -> tuple[dict[str, int], dict[str, int]]:
    """Per order: (accrual, balance) from its unique events folded in order of occurrence. An order books
    its lines' commissions when created; a refund of whole lines reverses what those lines earned; a cancel
    reverses what remains; a refund or cancel with no order yet books nothing (it waits for the order)."""
    parsed = sorted((json.loads(e.body) for e in events), key=lambda b: b["data"]["occurred_at"])
    accrual: dict[str, int] = {}
    balance: dict[str, int] = {}
    remaining: dict[str, dict[str, int]] = {}
    for body in parsed:
        data, kind = body["data"], body["type"]
        order_id = data["order_id"]
        accrual.setdefault(order_id, 0)
        balance.setdefault(order_id, 0)
        if kind == "order.created":
            lines = {i["sku"]: line_commission(i["unit_price_minor"], i["quantity"]) for i in data["items"]}
            remaining[order_id] = lines
            accrual[order_id] = balance[order_id] = sum(lines.values())
        elif order_id in remaining and kind == "order.refunded":
            for item in data["items"]:
                balance[order_id] -= remaining[order_id].pop(item["sku"], 0)
        elif order_id in remaining and kind == "order.cancelled":
            balance[order_id] = 0
            remaining[order_id] = {}
    return accrual, balance


def _spread_early_refunds(sequence: list[Event]) -> None:
    """Move each early refund EARLY_BY deliveries ahead of its order (the pair is adjacent now)."""
    i = 1
    while i < len(sequence):
        prev, cur = sequence[i - 1], sequence[i]
        if (
            prev.order_id == cur.order_id
            and b'"order.refunded"' in prev.body
            and b'"order.created"' in cur.body
        ):
            refund = sequence.pop(i - 1)
            sequence.insert(max(0, i - 1 - EARLY_BY), refund)
        i += 1


def _items(lines: list[tuple[str, int, int]]) -> list[dict]:
    return [
        {"sku": sku, "category": "gear", "unit_price_minor": price, "quantity": qty}
        for sku, price, qty in lines
    ]


_ids = iter(range(1, 1 << 40))


def _event(order_id: str, kind: str, data: dict) -> Event:
    return Event(f"msg_{next(_ids):08d}", order_id, json.dumps({"type": kind, "data": data}).encode())


def _request(secret_key: bytes, event: Event) -> bytes:
    ts = str(int(time.time()))
    mac = hmac.new(secret_key, f"{event.webhook_id}.{ts}.".encode() + event.body, hashlib.sha256).digest()
    head = (
        f"POST /webhooks/orders/{MERCHANT} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"webhook-id: {event.webhook_id}\r\nwebhook-timestamp: {ts}\r\n"
        f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\ncontent-length: {len(event.body)}\r\n\r\n"
    )
    return head.encode() + event.body


async def flood(port: int, secret: str, deliveries: list[Event], rate: float) -> tuple[Counter, list[float]]:
    """Send the deliveries in order, paced at `rate`, over CONNECTIONS keep-alive connections."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    statuses: Counter = Counter()
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for event in deliveries:
        queue.put_nowait(event)
    started = time.monotonic()
    sent = 0

    async def worker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                event = queue.get_nowait()
                due = started + sent / rate
                sent += 1
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                t0 = time.monotonic()
                try:
                    writer.write(_request(key, event))
                    status, _, _ = await asyncio.wait_for(read_response(reader), 30)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.monotonic() - t0)
                statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return statuses, sorted(latencies)


def webhook_flood(run: Run) -> Verdict:
    verdict = Verdict("webhook_flood", run.mode)
    rate, seconds, clicks = run.pick((500, 30, 1_000), (100, 3, 100))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    system = run.system()
    try:
        system.start()
        merchant = system.admin("POST", "/api/merchants", {
            "merchant_id": MERCHANT, "name": "Flood Shop", "domains": [DOMAIN], "currency": "EUR",
            "default_rate_bps": RATE_BPS,
        })  # fmt: skip
        codes = system.make_links(20, url=f"https://{DOMAIN}/p/{{i}}")
        click_stats = run_async(load(system, codes, clicks / run.rate, run))
        click_ids = click_stats.click_ids
        if not system.wait_drained(60, expected=len(set(click_ids))):
            raise RuntimeError("clicks for the orders were not ingested")
        plan = make_plan(rate * seconds, click_ids, rng)
        system.start_attribute(every_s=2)
        started = time.monotonic()
        statuses, latencies = run_async(flood(system.port, merchant["webhook_secret"], plan.deliveries, rate))
        flood_s = time.monotonic() - started
        verdict.figures.update(
            seed=seed,
            deliveries=len(plan.deliveries),
            unique_events=len(plan.unique),
            orders=len(plan.accrual),
            **_event_mix(plan),
            offered_per_s=rate,
            achieved_per_s=round(len(plan.deliveries) / flood_s, 1),
            p50_ms=_ms(latencies, 0.50),
            p99_ms=_ms(latencies, 0.99),
            statuses={str(k): v for k, v in statuses.items()},
        )
        _check_flood(verdict, statuses, plan)
        drained = _wait_orders_drained(system, run.pick(180, 60), len(plan.unique))
        verdict.check("order events ingested", drained, f"orders stream lag {_orders_lag(system)}")
        _terminate_attribute(system)
        _attribute_once(system)
        first = _ledger(system)
        _attribute_once(system)
        second = _ledger(system)
        _check_events(verdict, system, plan)
        _check_ledger(verdict, plan, first, second)
    finally:
        system.close()
    return verdict


def _event_mix(plan: Plan) -> dict[str, int]:
    first_at: dict[str, int] = {}
    for index, event in enumerate(plan.deliveries):
        first_at.setdefault(event.webhook_id, index)
    created_at = {
        e.order_id: first_at[e.webhook_id] for e in plan.unique.values() if b'"order.created"' in e.body
    }
    refunds = [e for e in plan.unique.values() if b'"order.refunded"' in e.body]
    early = sum(1 for e in refunds if first_at[e.webhook_id] < created_at.get(e.order_id, 1 << 60))
    cancels = sum(1 for e in plan.unique.values() if b'"order.cancelled"' in e.body)
    return {"refunds": len(refunds), "refunds_before_order": early, "cancels": cancels}


def _ms(latencies: list[float], q: float) -> float | None:
    return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 2) if latencies else None


def _check_flood(verdict: Verdict, statuses: Counter, plan: Plan) -> None:
    duplicates = len(plan.deliveries) - len(plan.unique)
    five = {k: v for k, v in statuses.items() if isinstance(k, int) and k >= 500}
    failed = {k: v for k, v in statuses.items() if not isinstance(k, int)}
    verdict.check(
        "no 5xx, no failed delivery",
        not five and not failed,
        f"5xx: {five or 0}, connection failures: {failed or 0}",
    )
    verdict.check(
        "202 per first delivery, 200 per re-delivery",
        statuses.get(202, 0) == len(plan.unique) and statuses.get(200, 0) == duplicates,
        f"202: {statuses.get(202, 0)}/{len(plan.unique)}, 200: {statuses.get(200, 0)}/{duplicates}, "
        f"other: { {k: v for k, v in statuses.items() if k not in (200, 202)} or 0 }",
    )


def _orders_lag(system: System) -> int:
    return system.lag(system.keys.orders)[0]


def _wait_orders_drained(system: System, timeout_s: float, expected: int) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _orders_lag(system) == 0 and _scalar(system, "SELECT count() FROM order_events") >= expected:
            return True
        time.sleep(0.5)
    return False


def _terminate_attribute(system: System) -> None:
    proc = system.attribute_proc
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(60)


def _attribute_once(system: System) -> None:
    proc = subprocess.run(
        [*system.cli(), "attribute"], env=system.env(), capture_output=True, text=True, timeout=300
    )
    with open(system.logs / "attribute-once.log", "a") as log:
        log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"clicktrail attribute exited {proc.returncode}: {proc.stderr[-500:]}")


def _scalar(system: System, sql: str) -> int:
    assert system.ch is not None
    client = system.ch.client(DATABASE)
    try:
        return client.execute(sql)[0][0]
    finally:
        client.disconnect()


def _ledger(system: System) -> dict[str, tuple[int, int, int]]:
    """order id → (accrual sum, balance, rows)."""
    assert system.ch is not None
    client = system.ch.client(DATABASE)
    try:
        rows = client.execute(
            "SELECT order_id, sumIf(amount_minor, kind = 'accrual'), sum(amount_minor), count() "
            "FROM commissions GROUP BY order_id"
        )
    finally:
        client.disconnect()
    return {order_id: (int(acc), int(bal), int(n)) for order_id, acc, bal, n in rows}


def _check_events(verdict: Verdict, system: System, plan: Plan) -> None:
    assert system.ch is not None
    client = system.ch.client(DATABASE)
    try:
        total, distinct = client.execute("SELECT count(), count(DISTINCT webhook_id) FROM order_events")[0]
        stored = {row[0] for row in client.execute("SELECT DISTINCT webhook_id FROM order_events")}
    finally:
        client.disconnect()
    expected = set(plan.unique)
    verdict.figures.update(order_events_rows=total, order_events_distinct=distinct)
    verdict.check(
        "exactly the unique events stored",
        total == distinct == len(expected) and stored == expected,
        f"count()={total}, count(DISTINCT webhook_id)={distinct}, unique sent={len(expected)}, "
        f"missing {len(expected - stored)}, unexpected {len(stored - expected)}",
    )


def _check_ledger(verdict: Verdict, plan: Plan, first: dict, second: dict) -> None:
    wrong = []
    for order_id, accrual in plan.accrual.items():
        got = first.get(order_id, (0, 0, 0))
        if (got[0], got[1]) != (accrual, plan.balance[order_id]):
            wrong.append((order_id, (accrual, plan.balance[order_id]), got[:2]))
    expected_total = sum(plan.balance.values())
    got_total = sum(v[1] for v in first.values())
    verdict.figures.update(
        ledger_orders=len(first),
        ledger_balance=got_total,
        expected_balance=expected_total,
        ledger_mismatches=wrong[:10],
    )
    verdict.check(
        "ledger equals the in-order computation (accrual and balance per order)",
        not wrong,
        f"{len(plan.accrual) - len(wrong)}/{len(plan.accrual)} orders right; balance {got_total} vs "
        f"{expected_total} expected" + (f"; e.g. {wrong[:3]} (expected, got)" if wrong else ""),
    )
    rows_first = sum(v[2] for v in first.values())
    rows_second = sum(v[2] for v in second.values())
    verdict.check(
        "another attributor run appends nothing", first == second, f"ledger rows {rows_first} → {rows_second}"
    )
