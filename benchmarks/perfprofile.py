"""Where a server's CPU goes, C function by C function, per request: the same-run profile behind a paired
ratio (benchmarks/paired.py `--profile`, and the report's section 1b) and behind the open-loop tail (the
worker at 75 % of its maximum against the same worker under wrk: `benchmarks.tail --profile`, section 2).

    .venv/bin/python -m benchmarks.paired --pairs many/few --repeat 1 --profile

Why perf and not py-spy: py-spy names the Python lines; a cost spread over the whole request path, such as
the memory a million cached links put between the CPU and everything else, shows up only underneath them,
in the interpreter loop, the dict lookups and the allocator. `perf record` (Debian's linux-perf) samples
each server of a pair while wrk drives the pair (the CPU clock, `SAMPLE_HZ` times a second; the samples'
periods are CPU nanoseconds), and the two profiles are divided by the requests each side answered, so they
compare as microseconds of CPU a request: what A spends and B does not, function by function and in
`GROUPS`.

What sampling costs, measured on this 2-core VM with a busy Python process sampled for 2 s and for 10 s:
perf's own process takes about 0.17 s of CPU to start and stop and 1.6 % of a core while it samples; what
the interrupts cost the sampled process could not be told from this machine's noise (its throughput
sampled against alone: 0.78, 1.15 and 0.94 in three 5 s pairs). Both sides of a pair pay it alike.

No perf (or a kernel that refuses it) is not an error of the benchmark: the run is kept and the profile is
replaced by the reason (`ProfileUnavailable`)."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procs

SAMPLE_HZ = 499  # not a multiple of common timer rates, so the samples do not beat with them
# A recorded block starts this long after perf does, so that perf has attached (measured: 2.30 s of CPU
# sampled in a 2.0 s block after this wait, so sampling starts well within it).
ATTACH_S = 0.5
STOP_TIMEOUT_S = 60.0
# A side's profile keeps the functions with at least this share of its CPU; the rest are summed into one
# row (`OTHER`), so the totals still add up and the JSON stays small.
KEEP_SHARE = 0.0002
OTHER = "(functions under 0.02 % each)"

# (group, test on the shared object and the function), the first that matches wins. The interpreter's
# shared object is libpython, or the python binary itself when it is linked statically.
_PYTHON = r"^(lib)?python\d"
GROUPS: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (name, re.compile(dso), re.compile(symbol))
    for name, dso, symbol in (
        ("kernel: system calls, network, page faults, scheduling", r"^\[kernel", r""),
        ("interpreter loop (running Python bytecode)", _PYTHON, r"^_PyEval_EvalFrameDefault$"),
        # Lookups mostly, but also a dict's or set's insertion, resizing and freeing.
        ("dict and set operations", _PYTHON, r"(?i)dict|unicodekeys|lookkey|^set_"),
        ("bytearray reads and writes (the link cache's marks and slots)", _PYTHON, r"^bytearray_"),
        (
            "memory: allocating and freeing objects",
            r"^((lib)?python\d|libc\.)",
            r"dealloc|[Mm]alloc|[Cc]alloc|Alloc$|_Free$|^free$|^cfree$|^_int_|^_Py_NewReference$|GC_Del$"
            r"|GC_New|^tuple_alloc$|^unlink_chunk|^tcache",
        ),
        ("msgspec: encoding, decoding, structs", r"^_core\.", r""),
        ("BLAKE2b (click-id MAC, address hash)", r"^_blake2\.", r""),
        ("event loop (uvloop)", r"^loop\.", r""),
        ("HTTP parsing (httptools)", r"^(parser|url_parser)\.", r""),
        ("Redis protocol (hiredis)", r"^hiredis\.", r""),
        ("other interpreter C code", _PYTHON, r""),
        ("C library", r"^libc\.", r""),
    )
)
OTHER_GROUP = "other"

# One line of `perf report --stdio -F period,sample,dso,sym`: "  6244488928   3116  libpython3.11.so.1.0
# [.] _PyEval_EvalFrameDefault" (the symbol may hold spaces; an unresolved one is an address).
_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*?)\s*$")


class ProfileUnavailable(Exception):
    """perf is not installed, or could not record or read a profile here."""


def group_of(function: str) -> str:
    """The group (`GROUPS`) of a function as `parse` names it: "<shared object> <symbol>"."""
    dso, _, symbol = function.partition(" ")
    for name, dso_re, symbol_re in GROUPS:
        if dso_re.search(dso) and symbol_re.search(symbol):
            return name
    return OTHER_GROUP


def parse(report: str) -> dict[str, int]:
    """CPU nanoseconds by "<shared object> <symbol>" from the text `perf report` printed."""
    functions: dict[str, int] = {}
    for line in report.splitlines():
        match = _LINE.match(line)
        if match:
            period, _, dso, symbol = match.groups()
            key = f"{dso} {symbol}"
            functions[key] = functions.get(key, 0) + int(period)
    return functions


def kept(functions: dict[str, int], share: float = KEEP_SHARE) -> dict[str, int]:
    """`functions` with those under `share` of the total summed into `OTHER`."""
    floor = sum(functions.values()) * share
    out = {name: ns for name, ns in functions.items() if ns >= floor}
    rest = sum(ns for name, ns in functions.items() if ns < floor)
    if rest:
        out[OTHER] = out.get(OTHER, 0) + rest
    return out


# What a recording or reading that went wrong raises, besides perf's own refusals.
_FAILURES = (OSError, subprocess.SubprocessError, ValueError)
# `perf report` reads a few MB; a debuginfod lookup (DEBUGINFOD_URLS) could wait on the network instead.
REPORT_TIMEOUT_S = 300


def _perf() -> str:
    try:
        return procs.binary("perf", "linux-perf")
    except procs.MissingTool as exc:
        raise ProfileUnavailable(str(exc)) from exc


@dataclass
class Recording:
    """What `recording` yields: each name's perf.data (complete once the block has left), and the names
    whose perf ended before the block did (its process exited, or perf died): their profiles cover only
    part of the block, so they must not be divided by the block's requests."""

    paths: dict[str, Path]
    ended_early: list[str] = field(default_factory=list)

    def read(self) -> dict[str, dict[str, int]]:
        """CPU nanoseconds by function of each name (`read`); ProfileUnavailable for a partial one."""
        if self.ended_early:
            raise ProfileUnavailable(
                f"perf of {', '.join(self.ended_early)} ended before the run did (a partial profile is no "
                "figure a request)"
            )
        return {name: read(path) for name, path in self.paths.items()}


@contextlib.contextmanager
def recording(pids: dict[str, int], work: Path) -> Iterator[Recording]:
    """Samples each process of `pids` (name -> pid) while the block runs."""
    perf = _perf()
    made = Recording({name: work / f"perf-{name}.data" for name in pids})
    procs: dict[str, subprocess.Popen] = {}
    try:
        try:
            work.mkdir(parents=True, exist_ok=True)
            for name, pid in pids.items():
                command = [perf, "record", "-q", "-F", str(SAMPLE_HZ), "-e", "cpu-clock", "-p", str(pid),
                           "-o", str(made.paths[name])]  # fmt: skip
                # perf's messages go to a file: a pipe nobody reads while it runs could fill and block it.
                with open(work / f"perf-{name}.err", "wb") as err:
                    procs[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        except _FAILURES as exc:
            raise ProfileUnavailable(f"perf record could not start: {exc}") from exc
        time.sleep(ATTACH_S)
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise ProfileUnavailable(f"perf record of {name} ended at once: {_stderr(work, name, proc)}")
        yield made
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # perf writes its data and exits
            else:
                made.ended_early.append(name)
        for proc in procs.values():
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Sampled:
    """What `sampling` yields: the recording, or why there is none."""

    recorded: Recording | None = None
    error: str = ""

    def result(self, requests: dict[str, int]) -> dict:
        """`{"profile": {name: side_profile}}` with each name's requests answered meanwhile, or
        `{"profile_error": why}`: a run whose profile could not be taken keeps its figures."""
        try:
            if self.recorded is None:
                raise ProfileUnavailable(self.error or "not recorded")
            functions = self.recorded.read()
            return {"profile": {name: side_profile(functions[name], requests[name]) for name in functions}}
        except ProfileUnavailable as exc:
            return {"profile_error": str(exc)}


@contextlib.contextmanager
def sampling(pids: dict[str, int], work: Path) -> Iterator[Sampled]:
    """`recording` for a benchmark that must run whether or not perf can sample: the block runs either
    way, and `Sampled.result` says which."""
    sampled = Sampled()
    with contextlib.ExitStack() as stack:
        try:
            sampled.recorded = stack.enter_context(recording(pids, work))
        except ProfileUnavailable as exc:
            sampled.error = str(exc)
        yield sampled


def sampling_if(
    wanted: bool, pids: dict[str, int], work: Path
) -> contextlib.AbstractContextManager[Sampled | None]:
    """`sampling` when `wanted`, else a block that yields None (the benchmarks' `--profile` options)."""
    return sampling(pids, work) if wanted else contextlib.nullcontext()


def errors(*runs: dict) -> list[str]:
    """Why each of these runs has no profile, in order (runs without `profile_error` say nothing)."""
    return [run["profile_error"] for run in runs if "profile_error" in run]


def compare_runs(a: dict, b: dict) -> dict | None:
    """`compare` of two runs of one sampled server each (their `profile`'s "server" side: a wrk run, an
    open-loop run); None if either has no profile."""
    if "profile" not in a or "profile" not in b:
        return None
    return compare(a["profile"]["server"], b["profile"]["server"])


def _stderr(work: Path, name: str, proc: subprocess.Popen) -> str:
    try:
        err = (work / f"perf-{name}.err").read_bytes().decode(errors="replace")
    except OSError:
        err = ""
    return " ".join(err.split())[:300] or f"exit status {proc.returncode}"


def read(path: Path) -> dict[str, int]:
    """CPU nanoseconds by function of one recording (`kept`)."""
    if not path.exists() or path.stat().st_size == 0:
        raise ProfileUnavailable(f"no profile was written to {path.name}")
    try:
        out = subprocess.run(
            [_perf(), "report", "-i", str(path), "--stdio", "--no-children", "-F", "period,sample,dso,sym"],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            timeout=REPORT_TIMEOUT_S,
        )
    except _FAILURES as exc:
        raise ProfileUnavailable(f"perf report could not read {path.name}: {exc}") from exc
    functions = parse(out.stdout)
    if out.returncode != 0 or not functions:
        raise ProfileUnavailable(f"perf report found no samples in {path.name}: {out.stderr.strip()[:300]}")
    return kept(functions)


def side_profile(functions: dict[str, int], requests: int) -> dict:
    """What a run keeps of one side: its functions' CPU and the requests it answered meanwhile."""
    return {"requests": requests, "functions": functions}


def combined(profiles: list[dict]) -> dict:
    """One side's profiles of several runs as one (their CPU and requests summed)."""
    functions: dict[str, int] = {}
    for profile in profiles:
        for name, ns in profile["functions"].items():
            functions[name] = functions.get(name, 0) + ns
    return side_profile(functions, sum(p["requests"] for p in profiles))


def per_request_us(profile: dict) -> dict[str, float]:
    """Microseconds of CPU a request, by function."""
    requests = profile["requests"]
    if not requests:
        return {}
    return {name: ns / requests / 1000 for name, ns in profile["functions"].items()}


def _by_group(us: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for name, value in us.items():
        group = OTHER_GROUP if name == OTHER else group_of(name)
        groups[group] = groups.get(group, 0.0) + value
    return groups


def compare(a: dict, b: dict, top: int = 10) -> dict:
    """A's CPU a request against B's: in all, by group (most more in A first) and the `top` functions
    in which A spends most more than B."""
    a_us, b_us = per_request_us(a), per_request_us(b)
    a_groups, b_groups = _by_group(a_us), _by_group(b_us)

    def rows(x: dict[str, float], y: dict[str, float]) -> list[tuple[str, float, float]]:
        return sorted(((k, x.get(k, 0.0), y.get(k, 0.0)) for k in x.keys() | y.keys()),
                      key=lambda row: (row[2] - row[1], row[0]))  # fmt: skip

    functions = [row for row in rows(a_us, b_us) if row[0] != OTHER]
    return {
        "a_us": sum(a_us.values()),
        "b_us": sum(b_us.values()),
        "groups": rows(a_groups, b_groups),
        "functions": functions[:top],
    }


def summary(comparison: dict, groups: int = 3) -> str:
    """One line: how much more CPU a request A takes, and the groups that take most of it."""
    extra = comparison["a_us"] - comparison["b_us"]
    largest = ", ".join(f"{name} {a - b:+.1f}" for name, a, b in comparison["groups"][:groups])
    a_us, b_us = comparison["a_us"], comparison["b_us"]
    return f"{extra:+.1f} µs of CPU a request ({a_us:.1f} against {b_us:.1f}): {largest}"
