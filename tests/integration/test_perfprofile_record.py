"""perf sampling a real process (benchmarks/perfprofile.py), as the report's paired runs use it: the CPU of
a busy Python process is found in the interpreter, and a recording that cannot be made says why instead of
yielding an empty profile."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import perfprofile

# Bytecode, not one C call: `sum(range(1000))` spent so little in the eval loop that a second of samples
# could miss `_PyEval_EvalFrameDefault` altogether (CI, 2026-12-03: malloc, free and builtin_sum only).
BUSY = (
    "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end:\n"
    "    total = 0\n    for i in range(1000):\n        total += i\n"
)


@pytest.mark.timeout(60)
def test_a_busy_python_process_is_found_in_the_interpreter(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        started, began = time.process_time(), time.monotonic()
        with perfprofile.recording({"busy": proc.pid}, tmp_path) as made:
            time.sleep(1.0)
        wall_s = time.monotonic() - began  # perf started after `began` and had stopped by now
        assert made.ended_early == []
        functions = perfprofile.read(made.paths["busy"])
    finally:
        proc.kill()
        proc.wait()
    assert time.process_time() - started < 1.0  # the test's own process was not the one sampled
    total_s = sum(functions.values()) / 1e9
    # A one-thread process uses at most a core while perf watched it (the attach wait and the block, and
    # perf's stop), and on a loaded machine still some of it.
    assert 0.05 < total_s <= wall_s + 0.05, (total_s, wall_s)
    interpreter = sum(ns for name, ns in functions.items() if name.startswith("libpython"))
    assert interpreter > 0.5 * total_s * 1e9, functions
    assert any(name.endswith(" _PyEval_EvalFrameDefault") for name in functions), functions


def test_without_perf_the_recording_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(perfprofile.ProfileUnavailable, match="perf is not installed"),
        perfprofile.recording({"x": 1}, tmp_path),
    ):
        pass


@pytest.mark.timeout(60)
def test_a_process_that_is_gone_gives_no_profile(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is free now
    with (
        pytest.raises(perfprofile.ProfileUnavailable, match="perf record of gone ended at once"),
        perfprofile.recording({"gone": proc.pid}, tmp_path),
    ):
        pytest.fail("the block ran without a recording")


@pytest.mark.timeout(60)
def test_a_process_that_ends_during_the_block_is_named(tmp_path: Path) -> None:
    # Its profile covers only part of the block: the paired run must not divide it by the block's requests.
    proc = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(1.0)"])
    try:
        with perfprofile.recording({"short": proc.pid}, tmp_path) as made:
            proc.wait(timeout=30)
            time.sleep(0.5)  # perf notices its process is gone
    finally:
        proc.kill()
        proc.wait()
    assert made.ended_early == ["short"]
