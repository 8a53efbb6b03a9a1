"""`python -m loadtests [--scenario NAME]... [--smoke] [--keep]`: run the fault scenarios, print each verdict
with the counts behind it, write them as JSON to loadtests/out/, exit 1 if any failed."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from loadtests import SCENARIOS
from loadtests.common import Run
from loadtests.services import raise_fd_limit
from loadtests.verdict import Verdict

OUT_DIR = Path(__file__).resolve().parent / "out"


def run_one(name: str, smoke: bool, keep: bool, env: dict[str, str] | None = None) -> Verdict:
    root = Path(tempfile.mkdtemp(prefix=f"ct-load-{name}-"))
    started = time.monotonic()
    try:
        verdict = SCENARIOS[name](Run(smoke=smoke, root=root, env=env or {}))
    except Exception as exc:
        verdict = Verdict(name, "smoke" if smoke else "full", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    verdict.seconds = time.monotonic() - started
    if verdict.passed and not keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        verdict.figures["workdir"] = str(root)  # logs of every process are in <workdir>/logs
    return verdict


def _update_summary(path: Path, verdicts: list[Verdict]) -> None:
    """One entry per scenario, from its latest run (a run of one scenario updates only its entry)."""
    summary = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(summary, dict):
        summary = {}
    for v in verdicts:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.started))
        summary[v.scenario] = {"passed": v.passed, "seconds": round(v.seconds, 1), "at": when}
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="repeatable; default: all"
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds and small counts per scenario")
    parser.add_argument("--keep", action="store_true", help="keep every scenario's work dir (logs, data)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CLICKTRAIL_X=VALUE",
        help="extra setting for every clicktrail process (repeatable), e.g. to try a fix's tuning",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)  # refused connects while CH is down
    raise_fd_limit()
    env = dict(item.split("=", 1) for item in args.env)
    verdicts = []
    for name in args.scenario or list(SCENARIOS):
        print(f"--- {name} ({'smoke' if args.smoke else 'full'}) ...", flush=True)
        verdict = run_one(name, args.smoke, args.keep, env)
        if env:
            verdict.figures["extra_env"] = env
        verdict.write(args.out)
        print(verdict.render(), flush=True)
        verdicts.append(verdict)
    _update_summary(args.out / f"summary-{'smoke' if args.smoke else 'full'}.json", verdicts)
    print()
    for v in verdicts:
        print(f"{'PASS' if v.passed else 'FAIL'}  {v.scenario:<16} {v.seconds:6.0f} s")
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
