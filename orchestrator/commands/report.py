"""`report`: the leaderboard, and a report with plots (report.md and a self-contained report.html), of a
finished, running or interrupted experiment.

    python -m orchestrator report runs/smoke [--out DIR] [--top 5]
    python -m orchestrator report s3://bucket/sweeps/smoke --out smoke-report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.location import REPORT
from orchestrator.outputs.reader import open_experiment, records
from orchestrator.outputs.tables import leaderboard
from orchestrator.review.report import status_line, write_report

EXAMPLES = """\
examples:
  python -m orchestrator report runs/smoke                 # prints the leaderboard, writes runs/smoke/report/
                                                           # (report.md, report.html, the PNGs)
  python -m orchestrator report runs/smoke --top 8 --out /tmp/smoke-report
  python -m orchestrator report s3://bucket/sweeps/smoke   # reads the store; writes ./smoke-report/

exit codes: 0 written; 2 not an experiment, or unreadable tables (one line on stderr, nothing written)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment directory or URI (storage_path/name)")
    parser.add_argument("--out", help="report directory (default: <experiment>/report; for a URI, ./<name>-report)")
    parser.add_argument("--top", type=int, default=5, help="trials drawn in the learning curves (default 5)")


def run(args: argparse.Namespace) -> int:
    try:
        if not 1 <= args.top <= 1000:
            raise ConfigError("--top", "must be between 1 and 1000", args.top)
        exp = open_experiment(args.experiment)
    except ConfigError as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    rows = records(exp.results)
    print(status_line(exp, rows))
    print(leaderboard(rows, exp.metric, top=len(rows)) if rows else "no trial has reported yet")
    local = exp.location.local_dir
    out = Path(args.out) if args.out else (local / REPORT if local is not None else Path(f"{exp.location.name}-report"))
    report = write_report(exp, out, args.top)
    print(f"report: {report} (and {report.with_suffix('.html').name} beside it)")
    return 0
