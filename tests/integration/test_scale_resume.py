"""A large sweep of tiny trials: trials are created as slots free up (not all at the start), a SIGKILL and
rerun does not retrain what had finished, and deterministic halving cuts exactly as an uninterrupted run
would (checked against the rule itself: the best half by epoch-1 accuracy, ties to the lower number)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
from support import finish, kill_session, results, start, table, trial_dirs, wait_for, write_config

TRIALS = 150


def saved_ended(experiment: Path) -> set[str]:
    """The trials the newest experiment-state snapshot holds as ended (what a rerun restores)."""
    for path in sorted(experiment.glob("experiment_state-*.json"))[-1:]:
        try:
            state = json.loads(path.read_text())
        except ValueError:  # being rewritten right now
            return set()
        trials = [json.loads(trial_json) for trial_json, _ in state["trial_data"]]
        return {t["relative_logdir"] for t in trials if t["status"] == "TERMINATED"}
    return set()


def test_a_large_sweep_killed_and_rerun_keeps_its_finished_trials_and_its_cuts(tmp_path: Path) -> None:
    extra = f"search: {{num_samples: {TRIALS}, space: {{lr: {{loguniform: [1.0e-4, 1.0e-1]}}}}}}\n"
    config = write_config(tmp_path, "many", 2, extra, train_limit=256)
    config.write_text(config.read_text().replace("asha: {grace_period: 2,", "asha: {grace_period: 1,"))
    experiment = tmp_path / "runs" / "many"
    status_file = experiment / "status.json"

    def ended() -> dict[str, dict]:
        try:
            return json.loads(status_file.read_text())["trials"]
        except (OSError, ValueError, KeyError):
            return {}

    proc = start(config, cwd=tmp_path)
    try:
        reported = wait_for(
            lambda: len([t for t in trial_dirs(experiment) if results(t)]) >= 20 and trial_dirs(experiment),
            proc,
            what="twenty trials reported",
        )
        created = len(reported)
        # The rung at epoch 1 waits for all 150, then cuts half at once; then some of the rest complete. A
        # rerun restores the newest experiment-state snapshot: what it holds as ended must not train again.
        finished = wait_for(
            lambda: (
                len(ended()) >= TRIALS // 2 + 10
                and len(saved := saved_ended(experiment) & set(ended())) >= 10
                and saved
            ),
            proc,
            what="the rung cut and ten trials completed, in the saved state",
        )
        kill_session(proc)  # SIGKILL: the driver and its Ray
        proc.wait(timeout=60)
    except BaseException:
        kill_session(proc)
        raise
    # Trials are created as slots free up, not all at the first step (nor their directories).
    assert created < TRIALS // 2, created
    before = {name: (experiment / name / "reports.jsonl").read_bytes() for name in finished}

    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    assert "resumed the experiment" in out
    for name, reports in before.items():  # a trial that had ended was not trained again
        assert (experiment / name / "reports.jsonl").read_bytes() == reports, name

    rows = table(experiment)
    assert len(rows) == TRIALS
    numbers = sorted(int(str(r["trial_id"]).rsplit("_", 1)[-1]) for r in rows.values())
    assert numbers == list(range(TRIALS))  # each trial created once, none skipped, across the restart
    assert all(len(results(experiment / name)) >= 1 for name in rows)
    # The rung at epoch 1 kept the best floor(150 / 2) by validation accuracy, ties to the lower number.
    history = pq.read_table(experiment / "history.parquet").to_pylist()
    first = {(row["trial_name"]): row["val_accuracy"] for row in history if row["epoch"] == 1}
    index = {name: int(str(r["trial_id"]).rsplit("_", 1)[-1]) for name, r in rows.items()}
    ranked = sorted(first, key=lambda name: (-first[name], index[name]))
    kept = {name for name, r in rows.items() if r["epochs_run"] == 2}
    assert kept == set(ranked[: math.floor(TRIALS / 2)])
    assert {r["status"] for name, r in rows.items() if name not in kept} == {"stopped"}
