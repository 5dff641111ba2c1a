"""Shared by the integration tests that act on a running sweep: a tiny config, the real CLI in its own
session (the one runner in tests/conftest.py), and what the trials reported (Ray's per-trial
result.json) read while the sweep runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from conftest import REPO, start_cli  # noqa: F401 - REPO is shared with the fault tests

# No runtime exports (best/model.pt2, .onnx): they cost seconds per sweep; test_budgets_and_exports.py has them.
TINY = """\
name: {name}
storage_path: {storage}
data: {{train_limit: {train_limit}, val_size: 500}}
trial: {{model: mlp, mlp: {{hidden: [16]}}, optimizer: adam, lr: 1.0e-3, batch_size: 16, epochs: {epochs}}}
resources: {{cpu: 1}}
asha: {{grace_period: {epochs}, reduction_factor: 2}}
export: {{formats: []}}
"""

# Fault tests act while a trial is mid-run: an epoch must last long enough (about a second on an idle
# machine) that a trial cannot finish between the test seeing a report and its kill landing.
SLOW_EPOCH = 6000


def write_config(tmp_path: Path, name: str, epochs: int, extra: str = "", train_limit: int = 1500) -> Path:
    path = tmp_path / f"{name}.yaml"
    text = TINY.format(name=name, storage=tmp_path / "runs", epochs=epochs, train_limit=train_limit)
    path.write_text(text + extra)
    return path


def start(config: Path, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """`launch CONFIG ...` in its own session, so the test can signal it and clean up all it started."""
    return start_cli("launch", str(config), *args, cwd=cwd)


def finish(proc: subprocess.Popen[str], timeout: float = 900) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_session(proc)
    return proc.returncode, out, err


def kill_session(proc: subprocess.Popen[str]) -> None:
    """Ends whatever is left of the session this test started (Ray processes included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def results(trial_dir: Path) -> list[dict[str, Any]]:
    """Every report the driver recorded for the trial (its reports.jsonl), in order (a torn last line is
    skipped). A restored trial's replay of an epoch the driver already had is not in it."""
    path = trial_dir / "reports.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if (p / "params.json").is_file()) if experiment.is_dir() else []


def wait_for(
    condition: Callable[[], Any], proc: subprocess.Popen[str], timeout: float = 600, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            out, err = (text or "" for text in proc.communicate())  # None: its output went to files
            raise AssertionError(f"the sweep ended (rc {proc.returncode}) before {what}:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def epochs(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["epoch"]) for r in rows]


def surviving_epochs(rows: list[dict[str, Any]]) -> list[int]:
    """Epochs after re-runs replaced the lost timeline (what results.parquet keeps)."""
    return sorted({int(r["epoch"]) for r in rows})


def table(experiment: Path) -> dict[str, dict[str, Any]]:
    return {row["trial_name"]: row for row in pq.read_table(experiment / "results.parquet").to_pylist()}


def best_trial(experiment: Path) -> str:
    return json.loads((experiment / "best" / "manifest.json").read_text())["trial_name"]


def state_checkpoints(experiment: Path) -> dict[str, str]:
    """Per trial, the checkpoint of the last result the newest saved experiment state holds. A rerun restores
    that one, or the one before it: Tune saves a result a moment before it registers its checkpoint."""
    named = {}
    for path in sorted(experiment.glob("experiment_state-*.json"))[-1:]:
        try:
            state = json.loads(path.read_text())
        except ValueError:  # being rewritten right now
            return {}
        for trial_json, runtime_json in state["trial_data"]:
            trial, runtime = json.loads(trial_json), json.loads(runtime_json)
            directory = (runtime.get("last_result") or {}).get("checkpoint_dir_name")
            if directory:
                named[trial["relative_logdir"]] = directory
    return named


def saved_statuses(experiment: Path) -> dict[str, str]:
    """Per trial, its status in Tune's newest saved experiment state (what a rerun resumes from); empty
    while there is none, or while it is being rewritten."""
    statuses = {}
    for path in sorted(experiment.glob("experiment_state-*.json"))[-1:]:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        for trial_json, _ in state["trial_data"]:
            trial = json.loads(trial_json)
            statuses[str(trial["relative_logdir"])] = str(trial["status"])
    return statuses
