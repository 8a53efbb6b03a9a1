"""The server's CPU a request over an open-loop or a wrk run (benchmarks/openloop.py `server_cpu_us`), and
the CPU seconds the meter keeps for it (benchmarks/procs.py `CpuMeter`)."""

from __future__ import annotations

import os
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


def test_the_meter_keeps_cpu_seconds_beside_cores() -> None:
    meter = CpuMeter({"self": os.getpgid(0)})
    meter.start()
    began = time.monotonic()
    end = began + 0.4
    while time.monotonic() < end:
        sum(range(1000))
    cores = meter.stop()
    wall_s = time.monotonic() - began
    # The busy loop ran on this process (in this process group) for most of the window.
    assert 0.2 <= meter.cpu_s["self"] <= wall_s + 0.05, meter.cpu_s
    assert cores["self"] == pytest.approx(meter.cpu_s["self"] / wall_s, abs=0.05)
