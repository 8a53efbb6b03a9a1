"""The perf profile of a paired run (benchmarks/perfprofile.py): reading `perf report`'s text, grouping C
functions, and comparing two servers' CPU a request, from hand-made figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import perfprofile
from benchmarks.paired import profile_of
from benchmarks.perfprofile import (
    OTHER,
    OTHER_GROUP,
    Recording,
    Sampled,
    combined,
    compare,
    group_of,
    kept,
    parse,
    side_profile,
)
from benchmarks.report_md import _open_loop_profile_lines, _profile_lines, click_checks
from benchmarks.report_targets import _target_rows

KERNEL = "kernel: system calls, network, page faults, scheduling"
DICTS = "dict and set operations"
MARKS = "bytearray reads and writes (the link cache's marks and slots)"
MEMORY = "memory: allocating and freeing objects"

# As `perf report --stdio --no-children -F period,sample,dso,sym` prints it (a kernel function, an
# unresolved address, a symbol with spaces, the same function twice).
REPORT = """\
# Samples: 11K of event 'cpu-clock'
# Event count (approx.): 23464929672
#
#       Period       Samples  Shared Object                               Symbol
# ............  ............  ..........................................  ..............
#
    6244488928          3116  libpython3.11.so.1.0                        [.] _PyEval_EvalFrameDefault
     501002000           250  [kernel.kallsyms]                           [k] _raw_spin_unlock_irqrestore
       4008000             2  [unknown]                                   [.] 0x00007f97f8e00000
       2004000             1  libfoo.so                                   [.] operator new(unsigned long)
       2004000             1  libpython3.11.so.1.0                        [.] _PyEval_EvalFrameDefault

"""


def test_parse_sums_nanoseconds_by_shared_object_and_symbol() -> None:
    assert parse(REPORT) == {
        "libpython3.11.so.1.0 _PyEval_EvalFrameDefault": 6_246_492_928,
        "[kernel.kallsyms] _raw_spin_unlock_irqrestore": 501_002_000,
        "[unknown] 0x00007f97f8e00000": 4_008_000,
        "libfoo.so operator new(unsigned long)": 2_004_000,
    }


def test_parse_of_no_samples_is_empty() -> None:
    assert parse("# Samples: 0\n#\n") == {}


@pytest.mark.parametrize(
    ("function", "group"),
    [
        ("libpython3.11.so.1.0 _PyEval_EvalFrameDefault", "interpreter loop (running Python bytecode)"),
        ("[kernel.kallsyms] tcp_sendmsg_locked", KERNEL),
        ("[kernel.kallsyms] exc_page_fault", KERNEL),
        ("libpython3.11.so.1.0 unicodekeys_lookup_unicode", DICTS),
        ("libpython3.11.so.1.0 _Py_dict_lookup", DICTS),
        ("libpython3.11.so.1.0 PyDict_GetItemWithError", DICTS),
        ("libpython3.11.so.1.0 _PyDict_LoadGlobal", DICTS),
        ("libpython3.11.so.1.0 dict_dealloc", DICTS),  # a dict's own freeing counts with dicts
        ("libpython3.11.so.1.0 set_lookkey", DICTS),
        ("libpython3.11.so.1.0 bytearray_subscript", MARKS),
        # A Python linked statically: its binary is the interpreter's shared object.
        ("python3.11 _PyEval_EvalFrameDefault", "interpreter loop (running Python bytecode)"),
        ("python3.11 _PyObject_Malloc", MEMORY),
        ("libpython3.11.so.1.0 PyObject_GC_Del", MEMORY),
        ("libpython3.11.so.1.0 PyObject_Free", MEMORY),
        ("libpython3.11.so.1.0 PyType_GenericAlloc", MEMORY),
        ("libc.so.6 free", MEMORY),
        ("libc.so.6 unlink_chunk.constprop.0", MEMORY),
        # Names that only look like memory work.
        ("libpython3.11.so.1.0 gc_freeze", "other interpreter C code"),
        ("libpython3.11.so.1.0 code_getfreevars", "other interpreter C code"),
        ("libpython3.11.so.1.0 PyThread_allocate_lock", "other interpreter C code"),
        ("libpython3.11.so.1.0 _PyObject_Malloc", MEMORY),
        ("libpython3.11.so.1.0 tupledealloc", MEMORY),
        ("libc.so.6 _int_malloc", MEMORY),
        ("libc.so.6 cfree", MEMORY),
        ("libc.so.6 __memchr_evex", "C library"),
        ("_core.cpython-311-x86_64-linux-gnu.so mpack_encode", "msgspec: encoding, decoding, structs"),
        (
            "_blake2.cpython-311-x86_64-linux-gnu.so PyBlake2_blake2b_compress.isra.0",
            "BLAKE2b (click-id MAC, address hash)",
        ),
        ("loop.cpython-311-x86_64-linux-gnu.so uv__io_poll", "event loop (uvloop)"),
        ("parser.cpython-311-x86_64-linux-gnu.so llhttp__on_reset", "HTTP parsing (httptools)"),
        ("url_parser.cpython-311-x86_64-linux-gnu.so http_parser_parse_url", "HTTP parsing (httptools)"),
        ("hiredis.cpython-311-x86_64-linux-gnu.so Reader_feed", "Redis protocol (hiredis)"),
        ("libpython3.11.so.1.0 _PyType_Lookup", "other interpreter C code"),
        ("[vdso] __vdso_clock_gettime", OTHER_GROUP),
        ("[unknown] 0x00007f97f8e00000", OTHER_GROUP),
        # A dict-like name outside the interpreter is not the interpreter's lookup.
        ("libfoo.so dict_get", OTHER_GROUP),
    ],
)
def test_group_of(function: str, group: str) -> None:
    assert group_of(function) == group


def test_kept_sums_the_small_functions_into_one_row_and_keeps_the_total() -> None:
    functions = {"x big": 9_000, "x mid": 990, "x small": 5, "x tiny": 5}
    out = kept(functions, share=0.001)  # the floor: 10 ns
    assert out == {"x big": 9_000, "x mid": 990, OTHER: 10}
    assert sum(out.values()) == sum(functions.values())
    assert kept({"x a": 1}) == {"x a": 1}


def test_compare_divides_each_side_by_its_own_requests() -> None:
    # A: 2,000 requests in 10 ms of interpreter and 2 ms of kernel; B: 4,000 requests in 12 ms and 8 ms.
    a = side_profile(
        {
            "libpython3.11.so.1.0 _PyEval_EvalFrameDefault": 10_000_000,
            "[kernel.kallsyms] tcp_ack": 2_000_000,
            OTHER: 200_000,
        },
        2_000,
    )
    b = side_profile(
        {"libpython3.11.so.1.0 _PyEval_EvalFrameDefault": 12_000_000, "[kernel.kallsyms] tcp_ack": 8_000_000},
        4_000,
    )
    out = compare(a, b)
    assert out["a_us"] == pytest.approx(6.1) and out["b_us"] == pytest.approx(5.0)
    # Largest difference first: the interpreter (5 against 3 µs), the remainder row, then the kernel (1
    # against 2).
    assert [(g, round(x, 3), round(y, 3)) for g, x, y in out["groups"]] == [
        ("interpreter loop (running Python bytecode)", 5.0, 3.0),
        (OTHER_GROUP, 0.1, 0.0),
        (KERNEL, 1.0, 2.0),
    ]
    # The remainder row is no function.
    assert [name for name, _, _ in out["functions"]] == [
        "libpython3.11.so.1.0 _PyEval_EvalFrameDefault",
        "[kernel.kallsyms] tcp_ack",
    ]
    assert perfprofile.summary(out, groups=1) == (
        "+1.1 µs of CPU a request (6.1 against 5.0): interpreter loop (running Python bytecode) +2.0"
    )


def test_a_side_without_requests_has_no_cost_a_request() -> None:
    out = compare(side_profile({"x a": 5}, 0), side_profile({"x a": 5}, 5))
    assert out["a_us"] == 0 and out["b_us"] == pytest.approx(0.001)


def test_runs_combine_by_summing_cpu_and_requests() -> None:
    one = side_profile({"x a": 1_000_000, "x b": 1_000_000}, 1_000)
    two = side_profile({"x a": 3_000_000}, 1_000)
    both = combined([one, two])
    assert both == {"requests": 2_000, "functions": {"x a": 4_000_000, "x b": 1_000_000}}


def _run(ratio: float, profiled: bool) -> dict:
    run = {
        "ratio": ratio,
        "ratio_per_server_cpu_s": ratio,
        "met": ratio >= 0.85,
        "clicks_checked": True,
        "a": {"system": "clicktrail", "links": 1_000_000, "requests": 1_000},
        "b": {"system": "clicktrail", "links": 1_000, "requests": 1_250},
    }
    if profiled:
        run["profile"] = {
            "a": side_profile(
                {
                    "libpython3.11.so.1.0 bytearray_subscript": 1_000_000,
                    "libpython3.11.so.1.0 _PyEval_EvalFrameDefault": 9_000_000,
                },
                1_000,
            ),
            "b": side_profile({"libpython3.11.so.1.0 _PyEval_EvalFrameDefault": 10_000_000}, 1_250),
        }
    else:
        run["profile_error"] = "perf is not installed (Debian: linux-perf)"
    return run


def test_the_report_shows_the_profile_of_the_profiled_runs_and_why_the_others_have_none() -> None:
    runs = [_run(0.80, True), _run(0.84, False), _run(0.86, True)]
    assert profile_of(runs)["a_us"] == pytest.approx(10.0)  # 20 ms over 2,000 requests
    text = "\n".join(_profile_lines("many/few", runs))
    assert "### Profile of many/few: where clicktrail 1,000,000 links spends more CPU" in text
    assert "run(s) 1, 3" in text
    assert f"| {MARKS} | 1.00 | 0.00 | +1.00 |" in text
    assert "| interpreter loop (running Python bytecode) | 9.00 | 8.00 | +1.00 |" in text
    assert "| **all** | **10.00** | **8.00** | **+2.00** |" in text
    assert "| `bytearray_subscript` (libpython3.11.so.1.0) | 1.00 | 0.00 | +1.00 |" in text
    assert "Runs without a profile: perf is not installed (Debian: linux-perf)." in text
    (row,) = [r for r in _target_rows({"paired": {"pairs": {"many/few": runs}}}) if r]
    assert "perf profile (section 1b): A +2.0 µs of CPU a request (10.0 against 8.0)" in row[3]


def test_no_profile_at_all_says_why_and_the_targets_row_names_none() -> None:
    runs = [_run(0.86, False)]
    assert _profile_lines("c/b", runs) == [
        "",
        "No profile of c/b: perf is not installed (Debian: linux-perf).",
    ]
    assert _profile_lines("c/b", [{k: v for k, v in runs[0].items() if k != "profile_error"}]) == []
    (row,) = [r for r in _target_rows({"paired": {"pairs": {"many/few": runs}}}) if r]
    assert "perf profile" not in row[3]


def test_a_run_whose_recording_failed_keeps_its_figures_and_says_why() -> None:
    requests = {"a": 1, "b": 1}
    failed = Sampled(None, "perf record of a ended at once: Permission denied")
    assert failed.result(requests) == {"profile_error": "perf record of a ended at once: Permission denied"}
    missing = Sampled(Recording({"a": Path("/nonexistent/perf-a.data")}))
    assert missing.result(requests) == {"profile_error": "no profile was written to perf-a.data"}
    # A side whose perf ended before the run did covers only part of it: no figure a request.
    partial = Sampled(Recording({"a": Path("/nonexistent/perf-a.data")}, ended_early=["a"]))
    assert partial.result(requests)["profile_error"].startswith("perf of a ended before the run did")
    assert Sampled().result(requests) == {"profile_error": "not recorded"}


def test_without_perf_a_sampled_block_still_runs_and_its_result_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    ran = False
    with perfprofile.sampling({"server": 1}, tmp_path) as sampled:
        ran = True
    assert ran
    result = sampled.result({"server": 10})
    assert list(result) == ["profile_error"]
    assert result["profile_error"].startswith("perf is not installed"), result


def test_an_error_in_a_sampled_block_is_not_swallowed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(perfprofile.ProfileUnavailable, match="raised by the block"),
        perfprofile.sampling({"server": 1}, tmp_path),
    ):
        raise perfprofile.ProfileUnavailable("raised by the block")
    with pytest.raises(ZeroDivisionError), perfprofile.sampling_if(True, {"server": 1}, tmp_path):
        _ = 1 / 0


def test_sampling_not_wanted_yields_nothing_and_runs_no_perf(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(perfprofile, "recording", lambda *args: pytest.fail("perf was started"))
    with perfprofile.sampling_if(False, {"server": 1}, tmp_path) as sampled:
        assert sampled is None


def test_a_recording_read_gives_each_side_its_own_requests(monkeypatch) -> None:
    recorded = Recording({"a": Path("a.data"), "b": Path("b.data")})
    monkeypatch.setattr(perfprofile, "read", lambda path: {f"python {path.stem}": 1000})
    assert Sampled(recorded).result({"a": 4, "b": 2}) == {
        "profile": {
            "a": {"requests": 4, "functions": {"python a": 1000}},
            "b": {"requests": 2, "functions": {"python b": 1000}},
        }
    }


REFUSED = "perf record of server ended at once: Permission denied"
NO_SAMPLES = "perf report found no samples in perf-server.data"
INTERPRETER = "libpython3.11.so.1.0 _PyEval_EvalFrameDefault"


def _max_run(profiled: bool | None) -> dict:
    """wrk's run at the maximum: sampled (True), sampling failed (False), or not sampled (None)."""
    run = {"requests": 2_000, "cores_used": {"server": 1.0}, "check": {"passed": True}}
    if profiled:
        run["profile"] = {"server": side_profile({INTERPRETER: 60_000_000}, 2_000)}
    elif profiled is False:
        run["profile_error"] = REFUSED
    return run


def _point(share: float, profiled: bool | None) -> dict:
    point = {
        "share_of_max": share,
        "offered_rate_per_s": round(200 * share),
        "answered": 1_500,
        "answered_per_s": 150,
        "latency_ms": {"p99": 20.0},
        "service_ms": {"p99": 5.0},
        "cores_used": {"server": 0.006},
        "client_cores": 0.4,
        "check": {"passed": True},
    }
    if profiled:
        loop = "loop.cpython-311-x86_64-linux-gnu.so uv__io_poll"
        point["profile"] = {"server": side_profile({INTERPRETER: 54_000_000, loop: 6_000_000}, 1_500)}
    elif profiled is False:
        point["profile_error"] = NO_SAMPLES
    return point


def _open_loop(target_profiled: bool, max_profiled: bool, own_runs: bool = True) -> dict:
    """Section 2's figures as the report keeps them: wrk's run at the maximum, four open-loop runs and
    perf's own two runs (`own_runs`), or, as reports before them, the maximum and 75 % runs sampled."""
    shares = (0.25, 0.5, 0.75, 0.9)
    if own_runs:
        ol = {"max_run": _max_run(None), "points": [_point(share, None) for share in shares]}
        ol["profile_runs"] = {"max_run": _max_run(max_profiled), "point": _point(0.75, target_profiled)}
    else:
        points = [_point(share, target_profiled if share == 0.75 else None) for share in shares]
        ol = {"max_run": _max_run(max_profiled), "points": points}
    return ol | {"links": 1_000, "max_requests_per_s": 200}


@pytest.mark.parametrize("own_runs", [True, False])
def test_the_open_loop_profile_compares_the_target_share_with_the_maximum(own_runs: bool) -> None:
    ol = _open_loop(True, True, own_runs)
    text = "\n".join(_open_loop_profile_lines(ol))
    assert "### Profile of the open loop: where the worker at 75% of its maximum" in text
    said = "no figure above was taken under sampling" if own_runs else "taken under sampling"
    assert said in text
    assert ("in two runs of its own" in text) is own_runs
    # 60 ms over 1,500 requests against 60 ms over 2,000
    assert "| **all** | **40.00** | **30.00** | **+10.00** |" in text
    assert "| event loop (uvloop) | 4.00 | 0.00 | +4.00 |" in text
    assert "| interpreter loop (running Python bytecode) | 36.00 | 30.00 | +6.00 |" in text
    (row,) = [r for r in _target_rows({"open_loop": ol}) if r]
    assert row[0] == "open-loop p99 <= 15 ms at 75 % of the maximum" and not row[2]
    assert "perf profile (section 2), the worker at 75 % against at the maximum: +10.0 µs" in row[3]
    perfs_runs = [name for name, _ in click_checks({"open_loop": ol}) if "perf's runs" in name]
    assert perfs_runs == (
        ["open loop, perf's runs: maximum (wrk)", "open loop, perf's runs: 150/s"] if own_runs else []
    )


@pytest.mark.parametrize(
    ("target_profiled", "max_profiled", "said"),
    [
        (False, True, f"No profile of the open loop: {NO_SAMPLES}."),
        (True, False, f"No profile of the open loop: {REFUSED}."),
        (False, False, f"No profile of the open loop: {REFUSED}; {NO_SAMPLES}."),
    ],
)
def test_an_open_loop_without_both_profiles_says_why_and_its_row_names_none(
    target_profiled: bool, max_profiled: bool, said: str
) -> None:
    ol = _open_loop(target_profiled, max_profiled)
    assert _open_loop_profile_lines(ol) == ["", said]
    (row,) = [r for r in _target_rows({"open_loop": ol}) if r]
    assert "perf profile" not in row[3]


def test_an_open_loop_never_sampled_shows_no_profile_section() -> None:
    ol = _open_loop(True, True)
    del ol["profile_runs"]
    assert _open_loop_profile_lines(ol) == []
    (row,) = [r for r in _target_rows({"open_loop": ol}) if r]
    assert "perf profile" not in row[3]
