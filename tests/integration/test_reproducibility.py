"""The same command gives the same answer: one small sweep with early stopping run twice, and once more with
the driver SIGKILLed mid-sweep and resumed, gives the same trials, cuts, per-epoch metrics (timings aside)
and exported weights. Deterministic early stopping decides on complete rungs, so timing cannot change it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import torch
from support import finish, kill_session, results, start, trial_dirs, wait_for, write_config

# Four trials, rungs at epochs 1 and 2 (grace 1, factor 2): two are cut at 1, one more at 2.
EXTRA = "search: {space: {lr: {grid: [3.0e-3, 1.0e-3, 3.0e-4, 1.0e-4]}}}\n"
SETS = ("--set", "asha.grace_period=1", "--set", "asha.mode=deterministic")
EPOCHS = 4
# Measured times (a trial's costs include its inference latency, throughput and training time) vary by run.
TIMINGS = ["wall_seconds", "time_total_s", "timestamp", "epoch_seconds", "samples_per_second", "node_id"]
TIMINGS += ["latency_ms", "throughput", "train_seconds"]


def _index(name: str) -> str:
    """Trial names end in Tune's id, `<experiment hash>_<number>`; the hash differs between experiments."""
    return name.rsplit("_", 1)[-1]


def _tables(experiment: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = []
    for name in ("results.parquet", "history.parquet"):
        frame = pd.read_parquet(experiment / name).drop(columns=TIMINGS + ["trial_id"], errors="ignore")
        frame["trial_name"] = frame["trial_name"].map(_index)
        if "best_checkpoint" in frame:
            frame["best_checkpoint"] = frame["best_checkpoint"].map(lambda p: p and p.rsplit("/", 1)[-1])
        keys = ["trial_name", "epoch"] if "epoch" in frame else ["trial_name"]
        out.append(frame.sort_values(keys).reset_index(drop=True))
    return out[0], out[1]


def _best(experiment: Path) -> tuple[dict, dict]:
    manifest = json.loads((experiment / "best" / "manifest.json").read_text())
    weights = torch.load(experiment / "best" / "model.pt", weights_only=True)["state_dict"]
    return manifest, weights


def _same(a: Path, b: Path) -> None:
    results_a, history_a = _tables(a)
    results_b, history_b = _tables(b)
    pd.testing.assert_frame_equal(results_a, results_b, check_exact=True)
    pd.testing.assert_frame_equal(history_a, history_b, check_exact=True)
    (manifest_a, weights_a), (manifest_b, weights_b) = _best(a), _best(b)
    assert _index(manifest_a["trial_name"]) == _index(manifest_b["trial_name"])
    assert (manifest_a["epoch"], manifest_a["test_accuracy"]) == (manifest_b["epoch"], manifest_b["test_accuracy"])
    assert manifest_a["config_sha256"] == manifest_b["config_sha256"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_two_runs_and_a_killed_and_resumed_run_give_the_same_sweep(tmp_path: Path) -> None:
    runs = {}
    for name in ("first", "second"):
        config = write_config(tmp_path, name, EPOCHS, EXTRA, train_limit=3000)
        code, out, err = finish(start(config, *SETS, cwd=tmp_path))
        assert code == 0, err[-3000:]
        runs[name] = tmp_path / "runs" / name
    cut = _tables(runs["first"])[0]
    assert sorted(cut["epochs_run"]) == [1, 1, 2, 4] and list(cut["status"]).count("stopped") == 3
    _same(runs["first"], runs["second"])

    config = write_config(tmp_path, "killed", EPOCHS, EXTRA, train_limit=3000)
    experiment = tmp_path / "runs" / "killed"
    proc = start(config, *SETS, cwd=tmp_path)
    try:
        # Past the first rung's decision: a trial trains its second epoch.
        wait_for(lambda: any(len(results(t)) >= 2 for t in trial_dirs(experiment)), proc, what="a second epoch")
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_session(proc)
    assert not (experiment / "results.parquet").exists()
    code, out, err = finish(start(config, *SETS, cwd=tmp_path))
    assert code == 0, err[-3000:]
    assert "resumed the experiment" in out
    _same(runs["first"], experiment)
