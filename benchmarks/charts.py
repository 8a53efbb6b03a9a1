"""The PNG charts of the performance report (report.py), drawn with matplotlib from the report's result
dict. Every chart carries a footer: the machine, the versions and the exact command that produced it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.report_md import machine_line

SYSTEM_LABELS = {"nginx": "a) nginx static 302", "bare": "b) bare ASGI 302", "clicktrail": "c) clicktrail"}
COLORS = {"nginx": "#7f7f7f", "bare": "#1f77b4", "clicktrail": "#d62728"}
DPI = 110


def footer(result: dict) -> str:
    machine = machine_line(result).replace("; Python", ";\nPython", 1)
    return f"{machine}\n$ {result['command']}"


def _save(fig, result: dict, path: Path) -> Path:
    fig.text(0.01, 0.005, footer(result), fontsize=6.5, color="#444444", va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _config(run: dict) -> str:
    mix = run.get("mix", "uniform")
    return f"{run['links']:,} links\n{run['workers']} worker{'s' if run['workers'] > 1 else ''}\n{mix}"


def redirect_charts(result: dict, out: Path) -> list[Path]:
    runs = result["redirect"]["runs"]
    systems = result["redirect"]["systems"]
    labels = [_config(r) for r in runs]
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(9, 5))
    for n, system in enumerate(systems):
        xs = [i + (n - (len(systems) - 1) / 2) * width for i in range(len(runs))]
        ys = [r.get(system, {}).get("requests_per_s", 0) for r in runs]
        bars = ax.bar(xs, ys, width, label=SYSTEM_LABELS[system], color=COLORS[system])
        ax.bar_label(bars, [f"{y / 1000:.1f}k" for y in ys], fontsize=7)
    ax.set_xticks(range(len(runs)), labels)
    ax.set_ylabel("requests/s (wrk, closed loop)")
    conns = result["redirect"]["options"]["connections"]
    ax.set_title(f"Redirect throughput per configuration ({conns} connections)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    ax.legend(loc="upper center", ncol=len(systems), fontsize=8)
    paths = [_save(fig, result, out / "redirect-throughput.png")]

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, pct in zip(axes, ("p50", "p99"), strict=True):
        for n, system in enumerate(systems):
            xs = [i + (n - (len(systems) - 1) / 2) * width for i in range(len(runs))]
            ys = [r.get(system, {}).get("latency_ms", {}).get(pct, 0) for r in runs]
            bars = ax.bar(xs, ys, width, label=SYSTEM_LABELS[system], color=COLORS[system])
            ax.bar_label(bars, [f"{y:.1f}" for y in ys], fontsize=7)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.2)
        ax.set_xticks(range(len(runs)), labels, fontsize=8)
        ax.set_ylabel(f"{pct} latency, ms")
        ax.set_title(f"{pct} latency at {conns} connections")
    axes[0].legend(loc="upper center", ncol=len(systems), fontsize=7)
    paths.append(_save(fig, result, out / "redirect-latency.png"))
    return paths


def open_loop_chart(result: dict, out: Path) -> Path:
    points = result["open_loop"]["points"]
    fig, ax = plt.subplots(figsize=(9, 5))
    xs = [p["offered_rate_per_s"] for p in points]
    for pct, style in (("p50", "o-"), ("p99", "s-"), ("p99.9", "^-")):
        ax.plot(xs, [p["latency_ms"].get(pct) for p in points], style, label=f"{pct} (from scheduled send)")
    ax.plot(
        xs, [p["service_ms"].get("p99") for p in points], "s:", color="#999999", label="p99 from actual send"
    )
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{p['offered_rate_per_s']:,.0f}/s\n{p['share_of_max']:.0%} of max" for p in points])
    ax.set_ylabel("latency, ms (log)")
    ax.set_title(
        f"clicktrail, 1 worker, {result['open_loop']['links']:,} links: latency at a fixed offered rate "
        f"(open loop; max = {result['open_loop']['max_requests_per_s']:,.0f} req/s)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, result, out / "open-loop-latency.png")


def growth_chart(result: dict, out: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 5))
    links_runs = [r for r in result["redirect"]["runs"] if r["workers"] == 1 and "clicktrail" in r]
    _pair(
        axes[0],
        [f"{r['links']:,} links\n{r.get('mix', 'uniform')}" for r in links_runs],
        [r["clicktrail"] for r in links_runs],
        "Number of links (1 worker)",
    )
    if "backlog" in result:
        b = result["backlog"]
        _pair(
            axes[1],
            ["empty stream", f"{b['backlog_clicks']:,} clicks\nunconsumed"],
            [b["empty"], b["backlog"]],
            "Stream backlog (1 worker)",
        )
    if result.get("attribution"):
        runs = result["attribution"]["runs"]
        labels = [
            f"{r['clicks'] / 1e6:g}M clicks" + (f"\n{w} workers" if (w := r.get("workers", 1)) > 1 else "")
            for r in runs
        ]
        ax = axes[2]
        xs = range(len(runs))
        bars = ax.bar(
            [x - 0.2 for x in xs],
            [r["attributor_s"] for r in runs],
            0.4,
            label="attributor",
            color=COLORS["clicktrail"],
        )
        ax.bar_label(bars, [f"{r['attributor_s']:.1f}s" for r in runs], fontsize=7)
        bars = ax.bar(
            [x + 0.2 for x in xs],
            [r["bare_join_s"] for r in runs],
            0.4,
            label="bare ClickHouse join",
            color=COLORS["nginx"],
        )
        ax.bar_label(bars, [f"{r['bare_join_s']:.2f}s" for r in runs], fontsize=7)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("seconds")
        ax.set_title(f"Clicks table size ({runs[0]['orders']:,} orders)", fontsize=10)
        ax.legend(fontsize=8)
    return _save(fig, result, out / "cost-growth.png")


def _pair(ax, labels: list[str], figs: list[dict], title: str) -> None:
    xs = range(len(figs))
    bars = ax.bar(xs, [f["requests_per_s"] for f in figs], 0.5, color=COLORS["clicktrail"])
    ax.bar_label(
        bars,
        [f"{f['requests_per_s'] / 1000:.1f}k/s\np99 {f['latency_ms']['p99']:.1f} ms" for f in figs],
        fontsize=7,
    )
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("clicktrail requests/s (wrk)")
    ax.set_ylim(0, max(f["requests_per_s"] for f in figs) * 1.25)
    ax.set_title(title, fontsize=10)


def memory_chart(result: dict, out: Path) -> Path:
    m = result["memory"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ys = [m["rss_kb_empty_cache"]["max"] / 1024, m["rss_kb_full_cache"]["max"] / 1024]
    bars = ax.bar(
        ["empty link cache", f"{m['cache_entries'] or 0:,.0f} links cached"],
        ys,
        0.5,
        color=[COLORS["bare"], COLORS["clicktrail"]],
    )
    ax.bar_label(bars, [f"{y:,.0f} MiB" for y in ys], fontsize=8)
    ax.set_ylabel("VmRSS of the redirect worker, MiB")
    ax.set_title(
        f"One redirect worker, {m['links']:,} links: {m['rss_bytes_per_cached_link']:,.0f} B per "
        "cached link; "
        f"Redis {m['redis_bytes_per_buffered_click']} B per buffered click",
        fontsize=9,
    )
    return _save(fig, result, out / "memory.png")
