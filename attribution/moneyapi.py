"""HTTP routes for FX rates and payouts, and the converted totals of the earnings API. Handlers take
shared resources from `request.app.state.ctx`; the rules are fx.py and payouts.py, the I/O payoutbook.py."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from attribution import currency, fx, money, statement
from attribution.payoutbook import LedgerBusy, PayoutBook, PlanMismatch, WrongState, decode_payouts
from attribution.payouts import Batch, Payout
from core.clickhouse import ClickHouseError
from core.clock import now_ms as clock_ms
from core.errors import ApiError, error_response, json_list, json_pieces_response, json_response, read_json
from core.links import iso_ms

log = logging.getLogger(__name__)
# A payout request that meets an attributor run or a ClickHouse outage comes back this much later.
RETRY_AFTER_S = 5
# The converted fields: what a creator can be paid from (review stays out until decided).
CONVERTED_FIELDS = ("pending_minor", "approved_minor", "in_payout_minor", "paid_minor")


class PayoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    until: str
    min_amount_minor: int = 0


def _decode(data: object, kind):
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


def payout_book(ctx) -> PayoutBook:
    return PayoutBook(ctx.redis, ctx.keys, ctx.clickhouse)


def _unavailable(code: str, message: str) -> Response:
    return error_response(503, code, message, {"retry-after": str(RETRY_AFTER_S)})


# --- FX ------------------------------------------------------------------------------------------------
async def put_fx(request: Request):
    ctx = request.app.state.ctx
    (await ctx.auth.authenticate(request)).require_admin()
    update = _decode(await read_json(request), fx.FxUpdate)
    now_ms = clock_ms()
    try:
        base, rates, effective_ms = fx.validate(update, now_ms)
    except fx.InvalidFx as exc:
        raise ApiError(422, "invalid_fx", str(exc)) from None
    version = await fx.FxStore(ctx.redis, ctx.keys).put(base, rates, effective_ms, now_ms)
    return json_response({**version.as_dict(), "effective_at": iso_ms(effective_ms)}, 201)


async def get_fx(request: Request):
    """Every FX version, oldest first (any authenticated caller: rates are not secret)."""
    ctx = request.app.state.ctx
    await ctx.auth.authenticate(request)
    raws = await fx.FxStore(ctx.redis, ctx.keys).raw_versions()
    return json_pieces_response(await asyncio.to_thread(_fx_answer, raws))


def _fx_answer(raws: list[bytes]) -> list[bytes]:
    return json_list("versions", (v.as_dict() for v in fx.decode_versions(raws)))


async def converted(ctx, rows: list, target: str, now_ms: int) -> dict:
    """The `converted` object of the earnings API: the rows' totals in `target` at the rates in effect
    at `now_ms`. ApiError 400 for a bad code, 422 naming the currency that has no rate."""
    if not currency.is_iso(target):
        raise ApiError(400, "bad_currency", f"in={target!r} is not an ISO 4217 currency code such as EUR")
    totals = {r.currency: {f: getattr(r, f) for f in CONVERTED_FIELDS} for r in rows if r.currency}
    raws = await fx.FxStore(ctx.redis, ctx.keys).raw_versions()
    in_effect = await asyncio.to_thread(lambda: fx.rates_at(fx.decode_versions(raws), target, now_ms))
    try:
        fields, used = fx.convert_totals(totals, target, {c: rate for c, (rate, _) in in_effect.items()})
    except fx.MissingRate as exc:
        raise ApiError(422, "missing_fx_rate", str(exc)) from None
    except money.AmountOutOfRange as exc:
        raise ApiError(422, "sum_out_of_range", str(exc)) from None
    return {"currency": target, **{f: fields.get(f, 0) for f in CONVERTED_FIELDS}, "rates": used}


# --- payouts ---------------------------------------------------------------------------------------------
def _until_ms(value: str, now_ms: int) -> int:
    try:
        until_ms = fx.parse_time_ms(value)
    except fx.InvalidFx as exc:
        raise ApiError(422, "invalid", f"until: {exc}") from None
    if until_ms > now_ms:
        # Rows booked between now and a future `until` would be missed by a batch that is then final.
        raise ApiError(
            422, "until_in_future", f"until ({value}) is in the future: a batch pays what is booked"
        )
    return until_ms


async def create_payouts(request: Request):
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    (await ctx.auth.authenticate(request)).require_merchant(merchant_id)
    if await ctx.merchants.get(merchant_id) is None:
        raise ApiError(404, "unknown_merchant", f"no merchant {merchant_id!r}")
    body = _decode(await read_json(request), PayoutRequest)
    now_ms = clock_ms()
    until_ms = _until_ms(body.until, now_ms)
    if not 0 <= body.min_amount_minor <= money.INT64_MAX:
        raise ApiError(422, "invalid", f"min_amount_minor must be within 0..{money.INT64_MAX}")
    book = payout_book(ctx)
    try:
        batch, created = await book.create_batch(merchant_id, until_ms, body.min_amount_minor, now_ms)
        raw_records = await book.raw_payouts_of(batch)
    except LedgerBusy as exc:
        return _unavailable("ledger_busy", str(exc))
    except ClickHouseError as exc:
        log.warning("payout batch of %s failed: %s", merchant_id, exc)
        return _unavailable("clickhouse_unavailable", "the ledger cannot be reached now; repeat this request")
    except money.AmountOutOfRange as exc:
        raise ApiError(422, "sum_out_of_range", str(exc)) from None
    except PlanMismatch as exc:
        raise _unfinishable(exc) from None
    # In a thread: a batch of 50,000 creators took 0.1-0.6 s to decode and encode, which the redirects
    # that share the event loop waited for (the thread lets them in between, every switch interval).
    answer = await asyncio.to_thread(_batch_answer, batch, raw_records)
    return Response(answer, status_code=201 if created else 200, media_type="application/json")


def _unfinishable(exc: PlanMismatch) -> ApiError:
    """A batch cut short that cannot be finished (its lines do not add up to its plan: the ledger changed
    under the lock, a bug): every payout write of the merchant waits for it, so an operator must look."""
    log.error("payout batch cannot be finished: %s", exc)
    return ApiError(409, "batch_cannot_finish", f"{exc}; an operator must look at this batch (docs/money.md)")


def _batch_answer(batch: Batch, raw_records: list[bytes]) -> bytes:
    return orjson.dumps(_batch_view(batch, decode_payouts(raw_records)))


def _batch_view(batch: Batch, records: list[Payout]) -> dict:
    return {
        "batch_id": batch.batch_id,
        "merchant_id": batch.merchant_id,
        "until": iso_ms(batch.until_ms),
        "min_amount_minor": batch.min_amount_minor,
        "created_ms": batch.created_ms,
        "payouts": [
            {k: v for k, v in p.public().items() if k not in ("batch_id", "merchant_id")} for p in records
        ],
    }


async def _payout_for(request: Request, write: bool) -> tuple[object, Payout]:
    """The payout named in the path, if the caller may see it (write: only its merchant or the admin)."""
    ctx = request.app.state.ctx
    principal = await ctx.auth.authenticate(request)
    payout_id = request.path_params["payout_id"]
    payout = await payout_book(ctx).get(payout_id)
    if payout is None:
        raise ApiError(404, "unknown_payout", f"no payout {payout_id!r}")
    if write or principal.kind != "creator":
        principal.require_merchant(payout.merchant_id)
    else:
        principal.require_creator(payout.creator_id)
    return ctx, payout


async def get_payout(request: Request):
    _, payout = await _payout_for(request, write=False)
    return json_response(payout.public())


async def get_statement(request: Request):
    ctx, payout = await _payout_for(request, write=False)
    book = payout_book(ctx)
    try:
        # Off the event loop: 200,000 lines took 0.5 s to render (2.4 us a line), which the redirects that
        # share it waited for.
        csv = await book.rendered_lines(payout, statement.render)
    except ClickHouseError as exc:
        log.warning("statement of %s unavailable: %s", payout.payout_id, exc)
        return _unavailable("clickhouse_unavailable", "statements are read from ClickHouse; retry later")
    return Response(
        csv,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{payout.payout_id}.csv"'},
    )


async def _step(request: Request, confirm: bool):
    ctx, payout = await _payout_for(request, write=True)
    book = payout_book(ctx)
    try:
        step = book.confirm if confirm else book.fail
        done = await step(payout.payout_id, clock_ms())
    except WrongState as exc:
        raise ApiError(409, "wrong_state", str(exc)) from None
    except PlanMismatch as exc:
        raise _unfinishable(exc) from None
    except LedgerBusy as exc:
        return _unavailable("ledger_busy", str(exc))
    except ClickHouseError as exc:
        log.warning("payout %s step failed: %s", payout.payout_id, exc)
        return _unavailable("clickhouse_unavailable", "the ledger cannot be reached now; repeat this request")
    return json_response(done.public() if done else payout.public())


async def confirm_payout(request: Request):
    return await _step(request, confirm=True)


async def fail_payout(request: Request):
    return await _step(request, confirm=False)


def routes() -> list[Route]:
    return [
        Route("/api/fx", put_fx, methods=["PUT"]),
        Route("/api/fx", get_fx, methods=["GET"]),
        Route("/api/merchants/{merchant_id}/payouts", create_payouts, methods=["POST"]),
        Route("/api/payouts/{payout_id}", get_payout, methods=["GET"]),
        Route("/api/payouts/{payout_id}/statement.csv", get_statement, methods=["GET"]),
        Route("/api/payouts/{payout_id}/confirm", confirm_payout, methods=["POST"]),
        Route("/api/payouts/{payout_id}/fail", fail_payout, methods=["POST"]),
    ]
