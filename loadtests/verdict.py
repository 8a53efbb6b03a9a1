"""A scenario's verdict: named checks (pass/fail with the counts behind them) and the figures measured."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    enforced: bool = True  # False: measured and shown, not part of the verdict (timings in smoke runs)


@dataclass
class Verdict:
    scenario: str
    mode: str  # "smoke" or "full"
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    error: str | None = None  # the scenario could not run to its end

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok or not c.enforced for c in self.checks)

    def check(self, name: str, ok: bool, detail: str, enforced: bool = True) -> bool:
        self.checks.append(Check(name, bool(ok), detail, enforced))
        return bool(ok)

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "passed": self.passed,
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "checks": [c.__dict__ for c in self.checks],
            "figures": self.figures,
        }

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.scenario}-{self.mode}.json"
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path

    def render(self) -> str:
        head = f"[{'PASS' if self.passed else 'FAIL'}] {self.scenario} ({self.mode}, {self.seconds:.0f} s)"
        lines = [head]
        if self.error:
            lines.append(f"    error: {self.error}")
        for c in self.checks:
            mark = "ok  " if c.ok else ("FAIL" if c.enforced else "info")
            note = "" if c.enforced else " [timing: not enforced in smoke runs]"
            lines.append(f"    {mark} {c.name}: {c.detail}{note}")
        return "\n".join(lines)


def check_exactly_once(
    verdict: Verdict,
    answered: list[str],
    stored: dict[str, int],
    total: int,
    distinct: int,
    *,
    extra_allowed: bool = False,
) -> None:
    """Every click id a client got in a 302 is in `clicks` exactly once; rows nobody was answered for are
    allowed only where a process died between the durable write and the response (`extra_allowed`)."""
    answered_set = set(answered)
    missing = [cid for cid in answered_set if cid not in stored]
    duplicated = [cid for cid, rows in stored.items() if rows > 1]
    extra = len(set(stored) - answered_set)
    verdict.figures.update(
        answered=len(answered),
        answered_distinct=len(answered_set),
        stored_rows=total,
        stored_distinct=distinct,
        missing=len(missing),
        duplicated=len(duplicated),
        stored_not_answered=extra,
    )
    verdict.check(
        "answered ids distinct",
        len(answered_set) == len(answered),
        f"{len(answered)} answered, {len(answered_set)} distinct",
    )
    verdict.check(
        "every answered click stored",
        not missing,
        f"{len(answered_set) - len(missing)}/{len(answered_set)} stored, {len(missing)} missing"
        + (f" (e.g. {missing[:3]})" if missing else ""),
    )
    verdict.check(
        "no click stored twice",
        not duplicated and total == distinct,
        f"count()={total}, count(DISTINCT click_id)={distinct}, ids with >1 row: {len(duplicated)}",
    )
    if extra_allowed:
        verdict.check("rows without an answer (process died before replying)", True, f"{extra}")
    else:
        verdict.check("no row without an answered request", extra == 0, f"{extra} stored but never answered")
