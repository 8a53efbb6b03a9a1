"""The server's CPU a request over an open-loop or a wrk run (benchmarks/openloop.py `server_cpu_us`), and
the CPU seconds the meter keeps for it (benchmarks/procs.py `CpuMeter`)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from benchmarks.openloop import server_cpu_us
from benchmarks.procs import CpuMeter

# The meter's figures of the 10:13 report's 75 % run: its window was about 10.45 s, the answers' 10.0 s.
METER = {"cores_used": {"server": 0.87}, "answered_per_s": 21_928}


@pytest.mark.parametrize(
    ("point", "us"),
    [
        # the server's CPU seconds over the requests answered: 9.09 s over 219,280
        ({"server_cpu_s": 9.09, "answered": 219_280, **METER}, 41.5),
        # a run from before the seconds were kept: the meter's cores over the answered rate
        ({"answered": 219_280, **METER}, 39.7),
        # wrk's run at the maximum (the same report): its cores over the requests' rate
        ({"cores_used": {"server": 0.97}, "requests_per_s": 29_385}, 33.0),
        ({"server_cpu_s": 0.0, "answered": 0, "cores_used": {}, "answered_per_s": 0}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_cpu_a_request_prefers_the_servers_cpu_seconds(point: dict, us: float | None) -> None:
    assert server_cpu_us(point) == us


# A child in its own process group burns a fixed amount of its own CPU time, between two lines on its stdin:
# the meter's seconds must be that amount however busy the machine is (a wall-clock busy loop is not, on a
# loaded CI machine).
BURN = """
import sys, time
sys.stdin.readline()
t0 = time.process_time()
while time.process_time() - t0 < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.readline()
"""


def test_the_meter_keeps_cpu_seconds_beside_cores() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        meter = CpuMeter({"child": child.pid})
        outer_began = time.monotonic()
        meter.start()
        inner_began = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burnt\n"
        inner_s = time.monotonic() - inner_began
        cores = meter.stop()
        outer_s = time.monotonic() - outer_began
        child.stdin.write("bye\n")
        child.stdin.flush()
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
    assert 0.29 <= meter.cpu_s["child"] <= 0.4, meter.cpu_s
    # The cores are those seconds over the meter's window, which lies between the two clocks taken here
    # (reading /proc at start and stop takes a few milliseconds); rounded to two places.
    seconds = meter.cpu_s["child"]
    assert seconds / outer_s - 0.006 <= cores["child"] <= seconds / inner_s + 0.006, (cores, inner_s, outer_s)
