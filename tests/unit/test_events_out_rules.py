"""Pure rules of events out: the backoff schedule, endpoint URL rules, delivery-time address rules, and
the commission events built from ledger rows."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution import backoff, endpoints, events_out
from core.links import Link
from core.rows import CommissionRow

BASE_MS, CAP_MS, PERIOD_MS = 5_000, 3_600_000, 3 * 86_400_000


@pytest.mark.parametrize(
    ("failures", "jitter", "delay_ms"),
    [
        (1, 0.0, 2_500),  # half the first step at least
        (1, 0.999999, 4_999),  # never the whole step or more
        (2, 0.0, 5_000),
        (3, 0.5, 15_000),  # 20 s step: 10 s fixed + 5 s drawn
        (10, 0.0, 1_280_000),  # 5 s × 2^9 = 2560 s
        (11, 0.0, 1_800_000),  # capped at one hour: half of it fixed
        (100, 0.999999, 3_599_998),  # a huge exponent stays capped
    ],
)
def test_retry_delay(failures, jitter, delay_ms):
    assert backoff.retry_delay_ms(failures, jitter, BASE_MS, CAP_MS) == delay_ms


def test_failures_count_from_one():
    with pytest.raises(ValueError):
        backoff.retry_delay_ms(0, 0.5, BASE_MS, CAP_MS)


@pytest.mark.parametrize(
    ("first_ms", "now_ms", "failures", "expected"),
    [
        (0, 0, 1, 2_500),  # the first retry
        (0, 1_000_000, 5, 1_000_000 + 40_000),  # step 80 s, jitter 0
        (0, PERIOD_MS - 2_000_000, 20, PERIOD_MS - 200_000),  # still within 3 days
        (0, PERIOD_MS - 1_000, 20, None),  # the next try would fall past 3 days: dead letter
    ],
)
def test_next_attempt_gives_up_after_the_period(first_ms, now_ms, failures, expected):
    got = backoff.next_attempt_ms(
        failures, first_ms, now_ms, 0.0, base_ms=BASE_MS, cap_ms=CAP_MS, period_ms=PERIOD_MS
    )
    assert got == expected


@given(st.integers(1, 500), st.floats(0, 1, exclude_max=True))
def test_delay_is_within_half_and_whole_step(failures, jitter):
    step = min(CAP_MS, BASE_MS * 2 ** min(failures - 1, 62))
    assert step // 2 <= backoff.retry_delay_ms(failures, jitter, BASE_MS, CAP_MS) < step


@given(st.floats(0, 1, exclude_max=True))
def test_a_schedule_with_jitter_ends_within_the_period(jitter):
    """Retrying until dead-lettered never schedules a try past the period, and the number of tries is
    bounded (about a hundred over three days with a one-hour cap)."""
    now, failures = 0, 0
    while True:
        failures += 1
        at = backoff.next_attempt_ms(
            failures, 0, now, jitter, base_ms=BASE_MS, cap_ms=CAP_MS, period_ms=PERIOD_MS
        )
        if at is None:
            break
        assert at <= PERIOD_MS
        now = at
    assert 70 <= failures <= 160


@pytest.mark.parametrize(
    ("url", "allow_http", "allow_private", "result"),
    [
        ("https://hooks.example.com/ct", False, False, "https://hooks.example.com/ct"),
        ("HTTPS://Hooks.Example.com", False, False, "https://hooks.example.com/"),
        ("http://hooks.example.com/ct", False, False, "invalid_url.scheme"),
        ("http://hooks.example.com/ct", True, False, "http://hooks.example.com/ct"),
        ("https://user:pw@hooks.example.com/", False, False, "invalid_url.credentials"),
        ("https://127.0.0.1:9000/x", False, False, "invalid_url.non_public_host"),
        ("https://10.1.2.3/x", False, False, "invalid_url.non_public_host"),
        ("https://169.254.169.254/latest", False, False, "invalid_url.non_public_host"),
        ("https://localhost/x", False, False, "invalid_url.non_public_host"),
        ("https://[::1]/x", False, False, "invalid_url.non_public_host"),
        ("https://127.1/x", False, False, "invalid_url.non_public_host"),
        ("http://127.0.0.1:9000/x", True, True, "http://127.0.0.1:9000/x"),
        ("http://127.0.0.1:9000/x", False, True, "invalid_url.scheme"),
        ("ftp://hooks.example.com/", True, True, "invalid_url.scheme"),
        ("https://hooks.example.com/" + "a" * 2100, False, False, "invalid_url.too_long"),
        ("https://hooks.example.com/a\nb", False, False, "invalid_url.control_character"),
        (42, False, False, "invalid_url.not_a_string"),
    ],
)
def test_endpoint_urls(url, allow_http, allow_private, result):
    try:
        got = endpoints.check_url(url, allow_http, allow_private)
    except endpoints.EndpointError as exc:
        got = exc.code
    assert got == result


@pytest.mark.parametrize(
    ("address", "allow_private", "allowed"),
    [
        ("93.184.216.34", False, True),
        ("127.0.0.1", False, False),
        ("127.0.0.1", True, True),
        ("10.0.0.7", False, False),
        ("169.254.169.254", False, False),
        ("::1", False, False),
        ("::ffff:127.0.0.1", False, False),
        ("2606:4700::1111", False, True),
        ("not-an-ip", True, False),
    ],
)
def test_delivery_addresses(address, allow_private, allowed):
    assert endpoints.address_allowed(address, allow_private) is allowed


@pytest.mark.parametrize(
    ("events", "result"),
    [
        (["link.created"], ("link.created",)),
        (["link.updated", "commission.booked", "link.updated"], ("commission.booked", "link.updated")),
        ([], "invalid_events"),
        (["order.created"], "invalid_events"),
        ("link.created", "invalid_events"),
        ([1], "invalid_events"),
    ],
)
def test_event_type_lists(events, result):
    try:
        got = endpoints.check_events(events)
    except endpoints.EndpointError as exc:
        got = exc.code
    assert got == result


def _row(entry_id, kind, status, amount, run_id="r1", order_id="A-1", creator="alice"):
    return CommissionRow(
        merchant_id="brand1", order_id=order_id, entry_id=entry_id, kind=kind, status=status,
        amount_minor=amount, orders=0, currency="EUR", creator_id=creator, click_id="c" * 30, sku="SKU-1",
        quantity=1, basis_minor=5990, rate_bps=800, rate_rule="default", rate_version=1, reason="",
        event_id="", effective_at=0, effective_ms=0, booked_ms=1_700_000_000_000, run_id=run_id,
    )  # fmt: skip


def test_commission_events_one_per_order_and_kind():
    rows = [
        _row("acc:0", "accrual", "pending", 479),
        _row("acc:1", "accrual", "pending", 100),
        _row("apr:0:pending", "approval", "pending", -479),
        _row("apr:0:approved", "approval", "approved", 479),
        _row("none:x", "none", "pending", 0),
        _row("acc:0", "accrual", "pending", 300, order_id="A-2"),
    ]
    events = events_out.commission_events(rows)
    summary = sorted((e.type, e.data["order_id"], e.data["amount_minor"]) for e in events)
    assert summary == [
        ("commission.approved", "A-1", 479),
        ("commission.booked", "A-1", 579),
        ("commission.booked", "A-2", 300),
    ]
    assert all(e.subjects == ("creator:alice", "merchant:brand1") for e in events)
    # Deterministic: the same booking gives the same ids; another run's booking other ids.
    assert [e.id for e in events_out.commission_events(list(reversed(rows)))] == [e.id for e in events]
    other_run = [_row("acc:0", "accrual", "pending", 479, run_id="r2")]
    assert events_out.commission_events(other_run)[0].id not in {e.id for e in events}
    assert events_out.commission_events([_row("none:x", "none", "pending", 0)]) == []


def test_payload_is_standard_webhooks_shaped():
    event = events_out.commission_events([_row("acc:0", "accrual", "pending", 479)])[0]
    body = events_out.payload(event)
    assert body.startswith(b'{"type":"commission.booked","timestamp":"2023-11-14T22:13:20.000Z","data":{')
    assert events_out.decode(events_out.encode(event)) == event


def test_link_event_ids_follow_the_facts():
    link = Link("Xy3kP9aQ", "https://shop.example.com/p/1", "alice", "shop.example.com", 1_000, "brand1")
    created = events_out.link_event("link.created", link, "http://127.0.0.1:8000")
    assert created.id == events_out.link_event("link.created", link, "http://127.0.0.1:8000").id
    assert created.subjects == ("creator:alice", "merchant:brand1")
    assert (
        created.data["short_url"] == "http://127.0.0.1:8000/Xy3kP9aQ"
        and created.data["merchant_id"] == "brand1"
    )
    disabled = msgspec.structs.replace(link, disabled=True, updated_at_ms=2_000)
    moved = msgspec.structs.replace(link, url="https://shop.example.com/p/2", updated_at_ms=2_000)
    ids = {events_out.link_event("link.updated", x, "http://x").id for x in (disabled, moved)}
    assert len(ids) == 2 and created.id not in ids  # two changes within one millisecond: two events
