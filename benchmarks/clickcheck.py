"""The click check of the redirect benchmark: after a run, match the clicks recorded in the Redis stream
(and any local spool) against the 302s wrk received, click id by click id."""

from __future__ import annotations

from pathlib import Path

import redis

from benchmarks.wrk import REQUEST_TIMEOUT_S

# Clicks of requests abandoned by wrk at its cut-off are made at most this long before wrk exits: the
# request timeout plus wrk's own exit (reporting, writing click ids) on a loaded machine.
ABANDONED_WINDOW_MS = (REQUEST_TIMEOUT_S + 3) * 1000


def count_recorded(redis_url: str, data_dir: Path, prefix: str, page: int = 1_000) -> dict:
    """Every click in the stream as (click id, ts_ms), paged with XRANGE, plus the clicks still in a local
    spool (there should be none: Redis was up throughout)."""
    from core.keys import Keys
    from redirector import spool
    from redirector.click import decode_batch

    stream = Keys(prefix).clicks
    clicks: list[tuple[str, int]] = []
    client = redis.Redis.from_url(redis_url)
    try:
        start = "-"
        while entries := client.xrange(stream, min=start, max="+", count=page):
            for _, fields in entries:
                clicks.extend((click.click_id, click.ts_ms) for click in decode_batch(fields[b"c"]))
            start = "(" + entries[-1][0].decode()
    finally:
        client.close()
    spool_dir = data_dir / "spool"
    spool_files = sorted(spool_dir.glob(f"*{spool.SUFFIX}")) if spool_dir.is_dir() else []
    spooled = sum(
        len(decode_batch(payload)) for path in spool_files for _, _, payload in spool.read_records(path)
    )
    return {"stream_clicks": clicks, "spool_files": len(spool_files), "spool_clicks": spooled}


def check_clicks(
    figures: dict,
    ids_file: Path,
    recorded: dict,
    probe_ids: list[str],
    connections: int,
    secret: str,
    answer_status: int = 302,
) -> dict:
    """Exact, per click id: every 302 wrk received carries a valid click id that is in the stream exactly
    once. The only recorded clicks without a 302 at wrk are those of requests in flight when wrk's duration
    ended (wrk closes those connections without reading the answer, but the server recorded the click
    before answering): at most one per connection (plus any request wrk gave up on), and all from the last
    moments of the run. `answer_status` 200: the run expects escape pages (their click id is in the body),
    and the "302" figures count those."""
    from core.clickid import ClickIds

    wrk_ids = ids_file.read_text().split() if ids_file.exists() else []
    stream_clicks = recorded["stream_clicks"]
    stream_ts = dict(stream_clicks)
    wrk_set, probe_set = set(wrk_ids), set(probe_ids)
    redirects_302 = figures["statuses"].get(answer_status, 0)
    errors = figures["socket_errors"]
    abandoned = [
        ts for click_id, ts in stream_ts.items() if click_id not in wrk_set and click_id not in probe_set
    ]
    # Several wrk runs against one server (merge_runs): each abandons its own last requests.
    ends = figures.get("run_ends_ms", [figures["ended_at_ms"]])
    ages = [min((end - ts for end in ends if end >= ts), default=ends[-1] - ts) for ts in abandoned]
    verifier = ClickIds(secret.encode())
    result = {
        "redirects_302": redirects_302,
        "wrk_click_ids": len(wrk_ids),
        "wrk_click_ids_unique": len(wrk_set),
        "wrk_click_ids_invalid": sum(not verifier.verify(click_id) for click_id in wrk_set),
        "clicks_recorded": len(stream_clicks) - len(probe_set & stream_ts.keys()),
        "duplicates_in_stream": len(stream_clicks) - len(stream_ts),
        "302_without_click": len(wrk_set - stream_ts.keys()),
        "probe_clicks_missing": len(probe_set - stream_ts.keys()),
        "abandoned_at_cut_off": len(abandoned),
        "abandoned_bound": connections * len(ends) + errors["timeout"] + errors["read"],
        # How long before wrk exited the oldest abandoned click was made (small: they are the last ones).
        "abandoned_oldest_ms_before_end": max(ages, default=None),
        "spool_clicks": recorded["spool_clicks"],
        "other_statuses": {k: v for k, v in figures["statuses"].items() if k != answer_status},
    }
    result["clicks_equal_302s_plus_abandoned"] = result["clicks_recorded"] == redirects_302 + len(abandoned)
    result["passed"] = (
        result["wrk_click_ids"] == result["wrk_click_ids_unique"] == redirects_302
        and result["wrk_click_ids_invalid"] == 0
        and result["duplicates_in_stream"] == 0
        and result["302_without_click"] == 0
        and result["probe_clicks_missing"] == 0
        and result["clicks_equal_302s_plus_abandoned"]
        and result["abandoned_at_cut_off"] <= result["abandoned_bound"]
        and (not abandoned or result["abandoned_oldest_ms_before_end"] <= ABANDONED_WINDOW_MS)
        and result["spool_clicks"] == 0
        and not result["other_statuses"]
    )
    return result


def merge_runs(runs: list[dict]) -> dict:
    """The figures check_clicks needs of several wrk runs against one server, in order, as one."""
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    for figures in runs:
        for status, n in figures["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
        for name, n in figures["socket_errors"].items():
            errors[name] = errors.get(name, 0) + n
    return {
        "statuses": statuses,
        "socket_errors": errors,
        "ended_at_ms": runs[-1]["ended_at_ms"],
        "run_ends_ms": [figures["ended_at_ms"] for figures in runs],
    }
