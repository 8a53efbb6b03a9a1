"""benchmarks/procs.py `binary`: the one way a benchmark finds a program it runs (wrk, nginx, redis-server,
perf), and says which Debian package brings a missing one."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import procs


def test_a_program_on_path_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert procs.binary("tool", "tool-package") == str(tool)


def test_a_program_off_path_is_found_where_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    sbin = tmp_path / "nginx"
    sbin.write_text("")
    assert procs.binary("nginx", "nginx-light", str(tmp_path / "absent"), str(sbin)) == str(sbin)


def test_a_missing_program_names_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(procs.MissingTool, match=r"perf is not installed \(Debian package `linux-perf`"):
        procs.binary("perf", "linux-perf", str(tmp_path / "absent"))
