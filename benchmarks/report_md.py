"""The markdown of the performance report (report.py), rendered from its result dict: a headline table of
ratios to the same-run baselines, then one section per figure, each stating the machine, the versions and
the exact command behind it."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import perfprofile
from benchmarks.openloop import (
    CLIENT_PROCS,
    TARGET_SHARE,
    TICK_S,
    profiled_runs,
    server_cpu_us,
    target_points,
)
from benchmarks.paired import profile_of
from benchmarks.redirect import format_table
from benchmarks.report_targets import STAGE_NAMES, allowance_word, ingest_budget, targets_section, workers_of
from benchmarks.report_targets import busy_cores as _busy_cores
from benchmarks.report_targets import fmt as _fmt
from core.settings import Settings

# The link cache size of every run but the memory one: clicktrail's default.
DEFAULT_CACHE_BYTES = Settings.model_fields["link_cache_bytes"].default
NOTES = (
    "- One 2-core machine runs everything: the server, its Redis, ClickHouse and the load generator share "
    "the cores, so absolute figures are lower than on a dedicated box and vary between runs. The ratios "
    "to the same-run baselines are the figures to compare; the cores columns tell a slow server from a "
    "starved one.",
    "- Section 1 uses wrk, a closed-loop client: at saturation its latencies understate what a user waits. "
    "Section 2 uses an open-loop client (benchmarks/openloop.py; wrk2 is not packaged in Debian) whose "
    "latencies count from the scheduled send. It is Python (uvloop, protocols, 2 processes): its CPU is "
    "listed per rate, and its timers add up to about 1 ms to the latency from the scheduled send.",
    "- Memory: RSS is the whole worker process (interpreter, app and cache); bytes per cached link is the "
    "RSS difference between an empty and a full cache divided by the links. Redis bytes per buffered click "
    "is the used_memory difference over a run in which only the recorder wrote (the clicks of the cache "
    "warm-up); the ingest section's figure is MEMORY USAGE of a stream of synthetic clicks with longer "
    "user agents.",
    "- The ingest and attribution sections create and drop their own ClickHouse databases on the local "
    "server; attribution keeps its merchant and rates under a throw-away prefix of the local Redis, removed "
    "at the end. Every other Redis and nginx is private to the run and stopped with its process group.",
)


def machine_line(result: dict) -> str:
    m = result["machine"]
    return (
        f"{m['cpus']} cores ({m['cpu_model']}), {m['memory']} RAM, Linux {m['kernel']}; Python "
        f"{m['python']}, "
        f"uvicorn {m['uvicorn']}, {m['nginx']}, {m['redis'].split(' sha=')[0]}, {m['wrk']}, "
        f"ClickHouse {m.get('clickhouse', '?')}; git {m['git']}"
    )


def _stated(result: dict, *commands: str) -> str:
    """The machine, the versions and the exact commands behind a figure."""
    text = f"*Machine:* {machine_line(result)}  \n*Command:* `{result['command']}`"
    for command in commands:
        if command:
            text += f"  \n*Driver:* `{command}`"
    return text + "\n"


def _redirect_run(result: dict, links: int, workers: int, mix: str = "uniform") -> dict | None:
    for run in result.get("redirect", {}).get("runs", []):
        if run["links"] == links and run["workers"] == workers and run.get("mix", "uniform") == mix:
            return run
    return None


def click_checks(result: dict) -> list[tuple[str, bool]]:
    checks = []
    for run in result.get("redirect", {}).get("runs", []):
        if "clicktrail" in run:
            checks.append(
                (
                    f"redirect {run['links']:,} links, {run['workers']} worker(s), "
                    f"{run.get('mix', 'uniform')}",
                    run["clicktrail"]["check"]["passed"],
                )
            )
    for name, runs in result.get("paired", {}).get("pairs", {}).items():
        for n, run in enumerate(runs, 1):
            for side in ("a", "b"):
                if "check" in run[side]:
                    checks.append(
                        (
                            f"paired {name} run {n}: {run[side]['system']} {run[side]['links']:,} links",
                            run[side]["check"]["passed"],
                        )
                    )
    checks += _open_loop_checks(result.get("open_loop", {}))
    for name in ("empty", "backlog"):
        if name in result.get("backlog", {}):
            checks.append((f"backlog: {name} stream", result["backlog"][name]["check"]["passed"]))
    if "memory" in result:
        checks.append(("memory: cache warm-up run", result["memory"]["warm_wrk"]["check"]["passed"]))
    return checks


def _open_loop_checks(ol: dict) -> list[tuple[str, bool]]:
    checks = []
    if "max_run" in ol:
        checks.append(("open loop: maximum (wrk)", ol["max_run"]["check"]["passed"]))
    for point in ol.get("points", []):
        checks.append((f"open loop {point['offered_rate_per_s']:,}/s", point["check"]["passed"]))
    for n, point in enumerate(ol.get("target_repeats", []), start=2):
        checks.append((f"open loop {point['offered_rate_per_s']:,}/s, run {n}", point["check"]["passed"]))
    if made := ol.get("profile_runs"):
        checks.append(("open loop, perf's runs: maximum (wrk)", made["max_run"]["check"]["passed"]))
        rate = made["point"]["offered_rate_per_s"]
        checks.append((f"open loop, perf's runs: {rate:,}/s", made["point"]["check"]["passed"]))
    return checks


def _links_rows(result: dict, small: int, large: int) -> list[tuple[str, str, str]]:
    """The many-links figure per code mix, each against the fewest links' run of the same mix."""
    rows = []
    for mix, named in (("uniform", ""), ("zipf:1.1", ", Zipf(1.1) codes")):
        few, many = _redirect_run(result, small, 1, mix), _redirect_run(result, large, 1, mix)
        if large == small or not (few and many and "clicktrail" in few and "clicktrail" in many):
            continue
        ratio = many["clicktrail"]["requests_per_s"] / few["clicktrail"]["requests_per_s"]
        rows.append(
            (
                f"clicktrail req/s with {large:,} links{named}",
                f"{many['clicktrail']['requests_per_s']:,.0f}/s",
                f"{ratio:.2f} x the {small:,}-link figure{named and ' (same mix)'}",
            )
        )
    return rows


def _paired_rows(result: dict) -> list[tuple[str, str, str]]:
    """The paired ratios (benchmarks/paired.py): every run's, as issue 16 counts them."""
    pr = result.get("paired")
    if not pr:
        return []
    rows = []
    for name, runs in pr["pairs"].items():
        if not runs:
            continue
        a, b = runs[0]["a"], runs[0]["b"]
        rows.append(
            (
                f"paired {name}: {a['system']} {a['links']:,} links / {b['system']} {b['links']:,} links, "
                f"{len(runs)} run(s) of {pr['slices']} slices x {pr['slice_s']:g} s each side",
                " / ".join(_fmt(run["ratio"], ".3f") for run in runs),
                "same minutes for both sides (wrk alternating A B B A ...); per server CPU-second "
                + " / ".join(_fmt(run["ratio_per_server_cpu_s"], ".2f") for run in runs),
            )
        )
    return rows


def headline(result: dict) -> list[tuple[str, str, str]]:
    """(figure, value, what it is compared with) rows: the ratios that matter."""
    rows = []
    small, large = min(result["mode"]["links"]), max(result["mode"]["links"])
    run = _redirect_run(result, small, 1)
    if run and "clicktrail" in run:
        c = run["clicktrail"]
        r = run["ratios"]
        rows.append(
            (
                f"clicktrail req/s, 1 worker, {small:,} links, p99",
                f"{c['requests_per_s']:,.0f}/s, p99 {c['latency_ms']['p99']:.1f} ms",
                f"{_fmt(r.get('c/b'), '.2f')} x bare ASGI, {_fmt(r.get('c/a'), '.2f')} x nginx static 302",
            )
        )
    rows += _links_rows(result, small, large)
    rows += _paired_rows(result)
    two = _redirect_run(result, small, 2)
    if run and two and "clicktrail" in two:
        ratio = two["clicktrail"]["requests_per_s"] / run["clicktrail"]["requests_per_s"]
        rows.append(
            (
                "clicktrail req/s, 2 workers",
                f"{two['clicktrail']['requests_per_s']:,.0f}/s",
                f"{ratio:.2f} x 1 worker; {_fmt(two['ratios'].get('c/b'), '.2f')} x bare ASGI (2 workers)",
            )
        )
    for point in result.get("open_loop", {}).get("points", []):
        if point["share_of_max"] in (0.5, 0.9):
            lat = point["latency_ms"]
            rows.append(
                (
                    f"open loop at {point['share_of_max']:.0%} of max ({point['offered_rate_per_s']:,}/s)",
                    f"p50 {lat['p50']:.1f} / p99 {lat['p99']:.1f} / p99.9 {lat['p99.9']:.1f} ms",
                    "latency from the scheduled send",
                )
            )
    if "backlog" in result:
        b = result["backlog"]
        ratio = b["backlog"]["requests_per_s"] / b["empty"]["requests_per_s"]
        rows.append(
            (
                f"req/s with {b['backlog_clicks']:,} unconsumed clicks in the stream",
                f"{b['backlog']['requests_per_s']:,.0f}/s, p99 {b['backlog']['latency_ms']['p99']:.1f} ms",
                f"{ratio:.2f} x empty stream (p99 {b['empty']['latency_ms']['p99']:.1f} ms)",
            )
        )
    if "memory" in result:
        m = result["memory"]
        rows.append(
            (
                f"RSS of one worker, {m['links']:,} links cached",
                f"{m['rss_kb_full_cache']['max'] / 1024:,.0f} MiB",
                f"{m['rss_kb_empty_cache']['max'] / 1024:,.0f} MiB with an empty cache; "
                f"{m['rss_bytes_per_cached_link']:,.0f} B per cached link",
            )
        )
        rows.append(
            (
                "Redis bytes per buffered click",
                f"{m['redis_bytes_per_buffered_click']} B",
                f"used_memory delta over {m['clicks_buffered']:,} recorded clicks",
            )
        )
    if "ingest" in result:
        t, lag = result["ingest"]["throughput"], result["ingest"]["lag"]
        rows.append(
            (
                "ingest clicks/s (1 ingester)",
                f"{t['ingest_clicks_per_s']:,}/s",
                f"{t['ratio_to_raw']:.2f} x raw clickhouse-client TSV insert ({t['raw_clicks_per_s']:,}/s)",
            )
        )
        rows.append(
            (
                "ingest lag at 5,000 clicks/s",
                f"p50 {lag['lag_p50_s']} s, p99 {lag['lag_p99_s']} s",
                f"drain rate {result['ingest']['drain_vs_load']} x the load",
            )
        )
    for r in result.get("attribution", {}).get("runs", []):
        rows.append(
            (
                f"attribution, {r['orders']:,} orders vs {_run_label(r)}",
                f"{r['orders_per_s']:,} orders/s",
                f"{r['ratio_to_bare_join']} x the time of the bare ClickHouse join ({r['bare_join_s']} s)",
            )
        )
    return rows


def render(result: dict, out: Path, charts: list[Path]) -> str:
    def img(name: str) -> str:
        for path in charts:
            if path.name == name:
                return f"![{name}]({os.path.relpath(path, out.parent)})\n"
        return ""

    m = result["machine"]
    checks = click_checks(result)
    lines = [
        "# clicktrail performance report",
        "",
        f"Measured {m['started_at']} in **{result['mode']['name']}** mode "
        f"({result.get('total_seconds', '?')} s), load average {m['load_average_before']} before. "
        "Every figure is next to a baseline measured in the same run on the same machine; compare the "
        "ratios, not the absolute figures (the machine is shared: see the cores columns).",
        "",
        _stated(result),
        "## Headline",
        "",
        "| figure | value | compared with |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in headline(result)]
    passed = sum(ok for _, ok in checks)
    lines += [
        "",
        f"**Click checks: {passed} of {len(checks)} passed** (every 302 the client received carries a "
        "click id stored exactly once; the only other stored clicks are those of requests in flight "
        "when wrk stopped): " + ", ".join(f"{n} {'OK' if ok else 'FAILED'}" for n, ok in checks) + ".",
    ]
    for name, error in result.get("errors", {}).items():
        lines += ["", f"**Section {name} FAILED:** `{error}`"]
    lines += targets_section(result)
    lines += _redirect_section(result, img) + _paired_section(result)
    lines += _open_loop_section(result, img) + _growth_section(result, img)
    lines += _memory_section(result, img) + _ingest_section(result)
    lines += ["", "## How to read these figures", "", *NOTES, "", "## Sections' wall time", ""]
    lines.append(", ".join(f"{k} {v} s" for k, v in result.get("section_seconds", {}).items()))
    return "\n".join(lines) + "\n"


def _redirect_section(result: dict, img) -> list[str]:
    if "redirect" not in result:
        return []
    red = result["redirect"]
    o = red["options"]
    wrk_cmd = next((r["clicktrail"]["command"] for r in red["runs"] if "clicktrail" in r), "")
    return [
        "",
        "## 1. Throughput and latency per configuration",
        "",
        f"wrk (closed loop), {o['connections']} connections, {o['threads']} threads, "
        f"{o['duration_s']:g} s per "
        "system, random codes. a) nginx answering a static 302 (the HTTP limit), b) a bare ASGI app "
        "answering "
        "a 302 from a dict under clicktrail's uvicorn settings (the Python ceiling), c) `clicktrail serve` "
        "recording every click into a private redis-server (AOF, everysec).",
        "",
        img("redirect-throughput.png"),
        img("redirect-latency.png"),
        "```",
        format_table(red),
        "```",
        "cores: used during the run by the server (clicktrail: + its redis) / wrk / the whole machine.",
        "",
        _stated(result, wrk_cmd),
    ]


def _paired_section(result: dict) -> list[str]:
    pr = result.get("paired")
    if not pr:
        return []
    lines = [
        "",
        "## 1b. Paired ratios (two servers up at once)",
        "",
        f"benchmarks/paired.py: both servers of a pair run side by side (one worker each; a clicktrail side "
        f"has its own private Redis) and wrk ({pr['connections']} connections, {pr['mix']} codes) drives "
        f"them in {pr['slices']} slices of {pr['slice_s']:g} s each, in the order A B B A A B ..., both "
        "slices of a pair with the same seed: the minute-to-minute swing of this machine falls on both "
        "sides of a ratio alike, which section 1's systems, measured one after the other, cannot give. "
        "Each run starts fresh servers; every clicktrail side's clicks are checked over all its slices.",
        "",
        "| pair | run | A req/s | B req/s | A / B | per server CPU-s | slices' A / B (min-max) | "
        "A p99 ms (median of slices) | B p99 ms | target | clicks |",
        "|" + "---|" * 11,
    ]
    for name, runs in pr["pairs"].items():
        for n, run in enumerate(runs, 1):
            a, b, sl = run["a"], run["b"], [x for x in run["slice_ratios"] if x is not None]
            label = f"{name}: {a['system']} {a['links']:,} / {b['system']} {b['links']:,}"
            lines.append(
                f"| {label} | {n} | {a['requests_per_s']:,.0f} | {b['requests_per_s']:,.0f} | "
                f"**{_fmt(run['ratio'], '.3f')}** | {_fmt(run['ratio_per_server_cpu_s'], '.3f')} | "
                f"{min(sl, default=0):.2f}-{max(sl, default=0):.2f} | {a['p99_ms']['median']:.1f} | "
                f"{b['p99_ms']['median']:.1f} | >= {run['target']}: {'met' if run['met'] else 'NOT met'} | "
                f"{'OK' if run['clicks_checked'] else 'FAILED'} |"
            )
    command = next((r["a"]["command"] for runs in pr["pairs"].values() for r in runs), "")
    lines += ["", _stated(result, command)]
    for name, runs in pr["pairs"].items():
        lines += _profile_lines(name, runs)
    return lines


def _profile_lines(name: str, runs: list[dict]) -> list[str]:
    """Where A's CPU a request goes beyond B's, from the perf profiles of the pair's runs."""
    profiled = [n for n, run in enumerate(runs, 1) if "profile" in run]
    errors = sorted({run["profile_error"] for run in runs if "profile_error" in run})
    if not profiled:
        return ["", f"No profile of {name}: {'; '.join(errors)}."] if errors else []
    a, b = runs[0]["a"], runs[0]["b"]
    lines = [
        "",
        f"### Profile of {name}: where {a['system']} {a['links']:,} links spends more CPU a request than "
        f"{b['system']} {b['links']:,} links",
        "",
        "perf (benchmarks/perfprofile.py) sampled both servers through run(s) "
        f"{', '.join(map(str, profiled))} at once with wrk; each side's CPU by C function is divided by "
        "the requests it answered. The interpreter loop is the Python code itself (py-spy names its "
        "lines: docs/performance.md).",
        *_comparison_tables(profile_of(runs)),
    ]
    if errors:
        lines += ["", f"Runs without a profile: {'; '.join(errors)}."]
    return lines


def _comparison_tables(compared: dict) -> list[str]:
    """A perfprofile.compare as two tables: by group, then the functions that differ most."""
    lines = ["", "| group | A µs a request | B µs a request | A - B |", "|---|---|---|---|"]
    lines += [f"| {g} | {x:.2f} | {y:.2f} | {x - y:+.2f} |" for g, x, y in compared["groups"]]
    lines.append(f"| **all** | **{compared['a_us']:.2f}** | **{compared['b_us']:.2f}** | "
                 f"**{compared['a_us'] - compared['b_us']:+.2f}** |")  # fmt: skip
    lines += ["", "| function (shared object) | A µs | B µs | A - B |", "|---|---|---|---|"]
    for function, x, y in compared["functions"]:
        dso, _, symbol = function.partition(" ")
        lines.append(f"| `{symbol}` ({dso}) | {x:.2f} | {y:.2f} | {x - y:+.2f} |")
    return lines


def _open_loop_profile_lines(ol: dict) -> list[str]:
    """Where the worker's CPU a request at the target's share goes beyond its CPU at wrk's maximum."""
    runs = profiled_runs(ol)
    if runs is None:
        return []
    point, max_run, own = runs
    compared = perfprofile.compare_runs(point, max_run)
    if compared is None:
        return ["", f"No profile of the open loop: {'; '.join(perfprofile.errors(max_run, point))}."]
    which = (
        f"through wrk's run at the maximum (B) and the open-loop run at {TARGET_SHARE:.0%} (A) of the table "
        "above: those runs' own figures were taken under sampling"
        if own
        else "in two runs of its own after the ones above, one right after the other on fresh servers: wrk "
        f"at the maximum (B), then the open loop at {TARGET_SHARE:.0%} of the maximum measured above (A); no "
        "figure above was taken under sampling"
    )
    return [
        "",
        f"### Profile of the open loop: where the worker at {TARGET_SHARE:.0%} of its maximum spends more "
        "CPU a request than under wrk at the maximum",
        "",
        f"perf (benchmarks/perfprofile.py) sampled the worker {which}. Each run's CPU by C function is "
        "divided by the requests it answered. The two runs are not paired: this VM's speed can move between "
        "them (docs/performance.md repeats the comparison).",
        *_comparison_tables(compared),
    ]


def _open_loop_section(result: dict, img) -> list[str]:
    if "open_loop" not in result:
        return []
    ol = result["open_loop"]
    lines = [
        "",
        "## 2. Latency under a fixed offered rate (open loop)",
        "",
        f"clicktrail, 1 worker, {ol['links']:,} links; offered rates are shares of its maximum, measured "
        f"with wrk right before ({ol['max_requests_per_s']:,.0f} req/s, p99 "
        f"{ol.get('max_run', {}).get('latency_ms', {}).get('p99', 'n/a')} ms; section 1 had "
        f"{_fmt(ol.get('section_1_requests_per_s'))} req/s). benchmarks/openloop.py "
        f"({CLIENT_PROCS} processes) sends each request at its scheduled time over {ol['connections']} "
        "keep-alive connections whatever the answers do, and measures latency from that scheduled time, "
        "so a stall shows as the queue behind it. The client runs on the same 2 cores as the server and its "
        f"Redis (its cores are listed); its scheduler wakes at most every {TICK_S * 1000:g} ms (uvloop's "
        "timers count whole milliseconds), which the latency from the scheduled send includes; 'service' is "
        "from the actual send.",
        "",
        img("open-loop-latency.png"),
        "| offered/s | share | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | service p99 ms | "
        "max client queue | client cores | server cores | clicks |",
        "|" + "---|" * 13,
    ]
    for p in ol["points"]:
        lat = p["latency_ms"]
        lines.append(
            f"| {p['offered_rate_per_s']:,} | {p['share_of_max']:.0%} | {p['answered_per_s']:,.0f} | "
            f"{lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['p99.9']} | {lat['max']} | "
            f"{p['service_ms']['p99']} | {p['max_client_queue']} | {p['client_cores']} | "
            f"{p['cores_used'].get('server')} | {'OK' if p['check']['passed'] else 'FAILED'} |"
        )
    lines += _repeat_table(ol)
    lines += _stall_table(ol["points"])
    lines += _open_loop_profile_lines(ol)
    return [*lines, "", _stated(result, ol["points"][0]["command"] if ol["points"] else "")]


def _repeat_table(ol: dict) -> list[str]:
    """The target's share run again right after the four rates: the target is judged by every run."""
    points = target_points(ol)
    if len(points) < 2:
        return []
    lines = [
        "",
        f"The target's share ({TARGET_SHARE:.0%}) was run {len(points) - 1} more "
        f"time{'s' if len(points) > 2 else ''} right after, at the same offered rate on fresh servers (issue "
        "16's open-loop target is met only if every run's p99 is):",
        "",
        "| run | offered/s | p50 ms | p99 ms | max ms | service p99 ms | max client queue | client cores | "
        "server cores | server µs CPU/request | clicks |",
        "|" + "---|" * 11,
    ]
    for n, p in enumerate(points, start=1):
        lat, service = p.get("latency_ms", {}), p.get("service_ms", {})
        lines.append(
            f"| {n} | {p['offered_rate_per_s']:,} | {lat.get('p50', 'n/a')} | {lat.get('p99', 'n/a')} | "
            f"{lat.get('max', 'n/a')} | {service.get('p99', 'n/a')} | {p['max_client_queue']} | "
            f"{p['client_cores']} | {p['cores_used'].get('server')} | {_fmt(server_cpu_us(p), '.1f')} | "
            f"{'OK' if p['check']['passed'] else 'FAILED'} |"
        )
    return lines


def _stall_table(points: list[dict]) -> list[str]:
    """The server's own view of each run (redirector/stall.py, scraped before and after): how often and how
    long its event loop was held, its GC pauses, and how long it waited for a core it had no share of."""
    if not any(p.get("stalls") for p in points):
        return []
    lines = [
        "",
        "Server event loop over each run: a 10 ms timer's lateness (`clicktrail_event_loop_lag_seconds`; "
        "p99 and max are histogram bucket bounds), GC pauses by generation (`clicktrail_gc_pause_seconds`), "
        "clicks per recorder write, the share of the run the server's main thread was runnable but "
        "waiting for a core (/proc schedstat: the other processes on the 2 cores had them), and the server's "
        "CPU per answered request.",
        "",
        "| offered/s | share | lag >1 ms | >5 ms | >20 ms | lag p99 ≤ ms | lag max ≤ ms | lag total ms | "
        "GC gen0 / gen1 / gen2 (count, ms) | clicks per write | server run-queue wait | "
        "server µs CPU/request |",
        "|" + "---|" * 12,
    ]
    for p in points:
        st = p.get("stalls")
        if not st:
            continue
        gcs = " / ".join(f"{g['collections']}, {g['pause_total_ms']}" for g in st["gc"].values())
        wait = p.get("run_queue_wait", {}).get("server")
        lines.append(
            f"| {p['offered_rate_per_s']:,} | {p['share_of_max']:.0%} | {st['over_1ms']} | "
            f"{st['over_5ms']} | {st['over_20ms']} | {_fmt(st['lag_p99_le_ms'], 'g')} | "
            f"{_fmt(st['lag_max_le_ms'], 'g')} | "
            f"{st['lag_total_ms']} | {gcs} | {_fmt(st.get('clicks_per_write'), ',.1f')} | "
            f"{'n/a' if wait is None else f'{wait:.0%}'} | {_fmt(server_cpu_us(p), ',.1f')} |"
        )
    return lines


def _growth_section(result: dict, img) -> list[str]:
    lines = ["", "## 3. Cost growth: links, stream backlog, clicks table", "", img("cost-growth.png")]
    runs = [r for r in result.get("redirect", {}).get("runs", []) if "clicktrail" in r]
    if runs:
        lines += [
            f"**Links** (from section 1; the link cache holds {DEFAULT_CACHE_BYTES / 2**20:,.0f} MiB of "
            "packed links by default, about a million; each run starts with an empty cache, so over a 10 s "
            "run most of a million codes are first requests, read from Redis, whatever the cache's size; "
            "'hits' is the share served from the cache). Uniform: every code equally likely; zipf:1.1: "
            "code k-1 with probability proportional to k^-1.1, as real traffic is skewed:",
            "",
            "| links | workers | mix | clicktrail req/s | p50 ms | p99 ms | c/b | hits |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            c = r["clicktrail"]
            lines.append(
                f"| {r['links']:,} | {r['workers']} | {r.get('mix', 'uniform')} | "
                f"{c['requests_per_s']:,.0f} | "
                f"{c['latency_ms']['p50']} | {c['latency_ms']['p99']} | {r['ratios'].get('c/b')} | "
                f"{_fmt(c.get('server_metrics', {}).get('link_cache_hit_ratio'), '.1%')} |"
            )
    if "backlog" in result:
        b = result["backlog"]
        lines += [
            "",
            f"**Stream backlog**: the same wrk run against one worker, {b['links']:,} links, with an empty "
            f"click stream and with {b['backlog_clicks']:,} unconsumed clicks in it (written in entries of "
            "2,000 before the server starts: "
            f"{b['backlog']['backlog']['redis_used_memory_delta'] / 2**20:,.0f} "
            "MiB of Redis). The recorder only appends, so this should be flat.",
            "",
            "| stream | req/s | p50 ms | p99 ms | cores srv+redis | clicks |",
            "|---|---|---|---|---|---|",
        ]
        for name in ("empty", "backlog"):
            f = b[name]
            cores = f["cores_used"].get("server", 0) + f["cores_used"].get("redis", 0)
            lines.append(
                f"| {name} | {f['requests_per_s']:,.0f} | {f['latency_ms']['p50']} | "
                f"{f['latency_ms']['p99']} | "
                f"{cores:.2f} | {'OK' if f['check']['passed'] else 'FAILED'} |"
            )
    if "attribution" in result:
        lines += [
            "",
            "**Clicks table size**: benchmarks/attribution.py (one `Attributor.run_once`) at two sizes of "
            "the clicks table, each next to a bare ClickHouse join of the same tables: the fastest of three "
            "joins, timed once ClickHouse has finished merging the load (a join timed during those merges "
            "ran up to 2.2 x slower). 'bare joins s' lists the three; a load that did not settle in time is "
            "marked.",
            "",
            "| clicks | workers | orders | with a code | load s | bare joins s | bare join s | attributor s "
            "| orders/s | x bare join |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["attribution"]["runs"]:
            lines.append(
                f"| {r['clicks']:,} | {workers_of(r)} | {r['orders']:,} | {r.get('code_share', 0):.0%} | "
                f"{r['load_s']} | {' / '.join(str(s) for s in r.get('bare_join_runs_s', []))}"
                f"{'' if r.get('settled', True) else ' (merges still running)'} | "
                f"{r['bare_join_s']} | {r['attributor_s']} | {r['orders_per_s']:,} | "
                f"{r['ratio_to_bare_join']} |"
            )
        lines += _attribution_stages(result["attribution"]["runs"])
    return [*lines, "", _stated(result)]


WAITS_SHOWN = 4


def _or_dash(value: float | None) -> str:
    return "–" if value is None else str(value)


def _run_label(run: dict) -> str:
    """An attribution run's size, and its workers when it ran in lanes (attribution/lanes.py)."""
    workers = workers_of(run)
    return f"{run['clicks']:,} clicks" + (f", {workers} workers" if workers > 1 else "")


def _attribution_stages(runs: list[dict]) -> list[str]:
    """Where each run's seconds went (benchmarks/attribution.py `Stages`): wall and this process's CPU of
    each step, and the steps' sum next to three times the bare join (the issue's target)."""
    runs = [r for r in runs if "stages" in r]
    if not runs:
        return []
    names = list(runs[0]["stages"])
    lines = [
        "",
        "Where the attributor's seconds go, per step (benchmarks/attribution.py `Stages`). A run overlaps "
        "a chunk's rules with the next chunk's reads and the writes of the chunks before, so a step's wall "
        "is the sum of its own spans and the steps' walls add up to more than the run. CPU: of the step's "
        "own thread for the pure steps and the insert, none for the overlapped reads and waits; the last "
        "rows split the run's process CPU by thread:",
        "",
        "| step | " + " | ".join(f"{_run_label(r)}: wall / CPU s" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for name in names:
        cells = [" / ".join(_or_dash(r["stages"][name][k]) for k in ("wall_s", "cpu_s")) for r in runs]
        what = runs[0]["stages"][name].get("what", name)
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    lines.append("| 3 x bare join | " + " | ".join(f"{3 * r['bare_join_s']:.3f}" for r in runs) + " |")
    collected = [r for r in runs if "gc" in r]
    if collected:
        lines += [
            "",
            "Garbage collector passes during the run (count, summed pause; full passes are held off while a "
            "run holds its working set, attribution/collector.py, and one is made at its end):",
            "",
            "| clicks | young (gen 0) | middle (gen 1) | full (gen 2) |",
            "|---|---|---|---|",
        ]
        for r in collected:
            cells = [f"{r['gc'][g]['count']:,}, {r['gc'][g]['s']} s" for g in ("0", "1", "2")]
            lines.append(f"| {_run_label(r)} | " + " | ".join(cells) + " |")
    return lines + _attribution_waits(runs)


def _attribution_waits(runs: list[dict]) -> list[str]:
    """When the event loop had nothing to run, what it waited on: its idle seconds by the steps in flight
    (benchmarks/attribution.py `Stages.watch`), the largest first."""
    runs = [r for r in runs if r.get("waits")]
    if not runs:
        return []
    lines = [
        "",
        "The event loop's idle seconds (no Python to run), by the steps in flight meanwhile, largest first; "
        "the rest of the run it ran Python or waited for the GIL:",
        "",
        "| clicks | idle s in all | the largest: steps in flight, s |",
        "|---|---|---|",
    ]
    for r in runs:
        largest = "; ".join(f"{label} {idle_s}" for label, idle_s in list(r["waits"].items())[:WAITS_SHOWN])
        lines.append(f"| {_run_label(r)} | {sum(r['waits'].values()):.2f} | {largest} |")
    return lines


def _memory_section(result: dict, img) -> list[str]:
    if "memory" not in result:
        return []
    m = result["memory"]
    w = m["warm_wrk"]
    return [
        "",
        "## 4. Memory",
        "",
        img("memory.png"),
        f"One redirect worker with `CLICKTRAIL_LINK_CACHE_BYTES={m.get('link_cache_bytes', 'n/a')}` and "
        f"{m['links']:,} links; "
        f"wrk requested every code in turn ({w['requests']:,} requests in {w['duration_s']} s), after which "
        f"the cache held {_fmt(m['cache_entries'])} links (`clicktrail_link_cache_entries`).",
        "",
        f"- VmRSS: {m['rss_kb_empty_cache']['max']:,} kB with an empty cache, "
        f"{m['rss_kb_full_cache']['max']:,} kB "
        f"full: **{m['rss_bytes_per_cached_link']:,.0f} bytes per cached link** (/proc/<pid>/status).",
        f"- Redis: used_memory grew by {m['redis_used_memory_delta']:,} bytes over {m['clicks_buffered']:,} "
        f"recorded clicks: **{m['redis_bytes_per_buffered_click']} bytes per buffered click** "
        f"(MEMORY USAGE of the stream: {m['redis_stream_memory_usage_per_click']} B per click). "
        "Click check of "
        f"the warm-up run and the runs below: {'OK' if w['check']['passed'] else 'FAILED'}.",
        *_warm_lines(result),
        "",
        _stated(result, w["command"]),
    ]


def _warm_lines(result: dict) -> list[str]:
    """The same worker with every link cached, next to section 1's 1-worker runs of the fewest links."""
    warm = result["memory"].get("warm_cache_runs", {})
    if not warm:
        return []
    small = min(result["mode"]["links"])
    lines = [
        "",
        f"Then wrk as in section 1 against that worker, its cache full (what a worker serves once it has "
        f"run a while), next to section 1's {small:,}-link run of the same code mix:",
        "",
        "| code mix | req/s, cache full | p99 ms | cores srv+redis | req/s, " + f"{small:,} links | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for mix, fig in warm.items():
        base = _redirect_run(result, small, 1, mix)
        base_rps = base["clicktrail"]["requests_per_s"] if base and "clicktrail" in base else None
        cores = fig.get("cores_used", {})
        lines.append(
            f"| {mix} | {fig['requests_per_s']:,.0f} | {fig['latency_ms']['p99']} | "
            f"{cores.get('server', 0) + cores.get('redis', 0):.2f} | {_fmt(base_rps)} | "
            f"{_fmt(fig['requests_per_s'] / base_rps if base_rps else None, '.2f')} |"
        )
    return lines


def _ingest_section(result: dict) -> list[str]:
    if "ingest" not in result:
        return []
    t, lag = result["ingest"]["throughput"], result["ingest"]["lag"]
    paired = ""
    if "ingest_s_runs" in t:
        paired = (
            " The ingester and the raw insert each ran twice, in the order ingest, raw, raw, ingest (the "
            "second ingest drains fresh clicks), and the ratio is of their summed times: ingest "
            f"{' / '.join(map(str, t['ingest_s_runs']))} s, "
            f"raw {' / '.join(map(str, t['raw_tsv_s_runs']))} s."
        )
    lines = [
        "",
        "## 5. Ingest (stream to ClickHouse)",
        "",
        f"benchmarks/ingest.py: {t['clicks']:,} clicks pre-filled in a private Redis, drained by one "
        "ingester into a throw-away database, next to the same rows inserted as TSV by clickhouse-client."
        + paired,
        "",
        "| figure | value |",
        "|---|---|",
        f"| ingester | {t['ingest_clicks_per_s']:,} clicks/s ({t['ingest_s']} s), "
        f"{t['ingest_cpu_us_per_click']} µs CPU per click |",
        f"| raw clickhouse-client insert | {t['raw_clicks_per_s']:,} clicks/s ({t['raw_tsv_s']} s) |",
        f"| ratio to raw (table order / arrival order) | {t['ratio_to_raw']} / "
        f"{t['ratio_to_raw_arrival_order']} |",
        "| machine CPU per click (every process): ingest / raw insert | "
        f"{t['ingest_machine_cpu_us_per_click']} / {t['raw_machine_cpu_us_per_click']} µs |",
    ]
    two = result["ingest"].get("two_ingesters")
    if two:
        lines.append(
            f"| two ingesters | {two['ingest_clicks_per_s']:,} clicks/s, {two['ratio_to_raw']} x raw "
            f"({two['raw_clicks_per_s']:,}/s in the same run); machine CPU per click "
            f"{two['ingest_machine_cpu_us_per_click']} µs: {_busy_cores(two)} of {two['cores']} cores busy |"
        )
    lines += [
        "| Redis bytes per buffered click (MEMORY USAGE, synthetic clicks) | "
        f"{t['redis_bytes_per_buffered_click']} |",
        f"| lag at {lag['rate_clicks_per_s']:,} clicks/s for {result['ingest']['lag_seconds']:g} s | "
        f"p50 {lag['lag_p50_s']} s, p99 {lag['lag_p99_s']} s, max {lag['lag_max_s']} s |",
        f"| drain rate / load rate | {result['ingest']['drain_vs_load']} |",
    ]
    lines += _ingest_stages(result["ingest"])
    lines += ["", _stated(result)]
    return lines


def _ingest_stages(figures: dict) -> list[str]:
    """The ingester's profile, stage by stage, and what 0.5 x the raw insert allows (the target's row)."""
    stages, budget = figures.get("stages"), ingest_budget(figures)
    if not stages or not budget:
        return []
    t, spent = figures["throughput"], stages["stages_us_per_click"]
    lines = [
        "",
        f"Where an ingested click's CPU goes (benchmarks/ingest_stages.py, same run): {stages['clicks']:,} "
        f"clicks in batches of {stages['batch_size']:,}, each stage alone, CPU of its thread a click "
        "(median of the rounds); the unique flag's Redis script and the insert are measured apart.",
        "",
        "| stage | µs a click |",
        "|---|---|",
    ]
    lines += [f"| {STAGE_NAMES.get(name, name)} | {us} |" for name, us in spent.items()]
    lines += [
        f"| **the stages' sum (Python under one GIL)** | **{budget['stages_us']}** |",
        f"| the ingester's CPU in the drain above (every thread) | {t['ingest_cpu_us_per_click']} |",
        f"| Redis's CPU in the drain above (the unique-flag script, reads, acks) | "
        f"{t['ingest_redis_cpu_us_per_click']} |",
        "",
        "The insert alone (the built columns, nothing else running in the client), wall µs a click: "
        + ", ".join(
            f"{name.replace('_', ' ')} {us}" for name, us in stages["insert_wall_us_per_click"].items()
        )
        + ".",
        "",
        f"**Budget.** 0.5 x the raw insert allows {budget['one_wall_us']} µs of wall a click (twice the raw "
        "insert's). One ingester's threads share one GIL, so it cannot go below the Python of its stages, "
        f"{budget['stages_us']} µs a click (the largest: "
        f"{STAGE_NAMES.get(budget['largest_stage'], budget['largest_stage'])}): "
        f"{allowance_word(budget['stages_us'], budget['one_wall_us'])}; in the drain it used "
        f"{t['ingest_cpu_us_per_click']} µs of CPU a click.",
    ]
    if "machine_us" in budget:
        two = figures["two_ingesters"]
        lines[-1] += (
            f" Ingesters in several processes share the machine's {two['cores']} cores with Redis and "
            f"ClickHouse: 0.5 allows {budget['machine_us']} µs of machine CPU a click, and two ingesters "
            f"spent {budget['two_machine_us']} µs a click "
            f"({allowance_word(budget['two_machine_us'], budget['machine_us'])}; "
            f"{_busy_cores(two)} of {two['cores']} cores busy)."
        )
    return lines
