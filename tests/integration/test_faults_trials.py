"""Trial faults through the real CLI and real Ray: a worker killed by pid mid-sweep, a trial killed
past its retries, and a trial whose loss goes NaN. Tiny budgets: MLP [16], 1.5k samples, 1 CPU each."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from support import (
    SLOW_EPOCH,
    best_trial,
    finish,
    kill_session,
    results,
    start,
    surviving_epochs,
    table,
    trial_dirs,
    wait_for,
)
from support import epochs as epochs_of
from support import write_config as tiny_config

EPOCHS = 8


def test_killed_worker_resumes_from_its_checkpoint_like_an_uninterrupted_twin(tmp_path: Path) -> None:
    # Two identical trials (same seed, same data): one is SIGKILLed, the other is the reference.
    config = tiny_config(
        tmp_path, "twins", EPOCHS, "search: {num_samples: 2}\nfailure: {max_retries: 2}\n", train_limit=SLOW_EPOCH
    )
    experiment = tmp_path / "runs" / "twins"
    proc = start(config, cwd=tmp_path)
    try:

        def reported_once() -> tuple[Path, int] | None:
            for trial in trial_dirs(experiment):
                rows = results(trial)
                if rows and int(rows[-1]["epoch"]) < EPOCHS - 1:
                    return trial, int(rows[-1]["pid"])
            return None

        victim, pid = wait_for(reported_once, proc, what="a trial's first epoch")
        os.kill(pid, signal.SIGKILL)
    except BaseException:
        kill_session(proc)
        raise
    code, out, err = finish(proc)
    assert code == 0, err[-3000:]
    rows = results(victim)
    epochs = epochs_of(rows)
    assert surviving_epochs(rows) == list(range(1, EPOCHS + 1)) and epochs == sorted(epochs), "none lost, in order"
    # Tune registers a checkpoint by asking the live worker for it after the report: a worker killed in between
    # trains that one epoch again, from the checkpoint before, to the same numbers. Nothing else is repeated.
    repeated = [epoch for epoch in set(epochs) if epochs.count(epoch) > 1]
    assert len(repeated) <= 1 and len(epochs) <= EPOCHS + 1, epochs
    for epoch in repeated:
        first, again = (row for row in rows if row["epoch"] == epoch)
        assert all(first[k] == again[k] for k in ("train_loss", "val_loss", "val_accuracy", "test_accuracy"))
    assert pid in {r["pid"] for r in rows} and len({r["pid"] for r in rows}) == 2, "a new worker took over"
    twin = next(t for t in trial_dirs(experiment) if t != victim)
    reference = results(twin)
    assert len({r["pid"] for r in reference}) == 1
    for key in ("train_loss", "val_loss", "val_accuracy", "test_accuracy"):
        # Model, optimizer and RNG state came back: the restarted trial ends where it would have.
        assert rows[-1][key] == reference[-1][key], key
    assert {row["status"] for row in table(experiment).values()} == {"completed"}


def test_trial_failing_past_its_retries_is_recorded_and_the_rest_still_selected(tmp_path: Path) -> None:
    extra = "search: {space: {lr: {grid: [1.0e-3, 2.0e-3]}}}\nfailure: {max_retries: 1}\n"
    config = tiny_config(tmp_path, "doomed", EPOCHS, extra, train_limit=SLOW_EPOCH)
    experiment = tmp_path / "runs" / "doomed"
    proc = start(config, cwd=tmp_path)
    killed: set[int] = set()
    try:

        def doomed_trial() -> Path | None:
            return next((t for t in trial_dirs(experiment) if "-lr2e-3-" in t.name), None)

        victim = wait_for(doomed_trial, proc, what="the doomed trial's directory")

        def new_pid() -> int | None:
            pids = [int(r["pid"]) for r in results(victim)]
            return next((p for p in pids if p not in killed), None)

        for _ in range(2):  # the first run, then its one retry
            pid = wait_for(new_pid, proc, what="a report from a fresh worker of the doomed trial")
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    except BaseException:
        kill_session(proc)
        raise
    code, out, err = finish(proc)
    assert code == 0, err[-3000:]
    rows = table(experiment)
    doomed = rows[victim.name]
    assert doomed["status"] == "error" and doomed["error"], doomed
    assert doomed["epochs_run"] < EPOCHS
    survivor = next(name for name in rows if name != victim.name)
    assert rows[survivor]["status"] == "completed" and rows[survivor]["error"] is None
    assert best_trial(experiment) == survivor
    assert f"failed: {victim.name} after {doomed['epochs_run']} epochs:" in err
    assert "leaderboard" in out and "error" in out

    # Rerunning the finished experiment trains nothing again, the errored trial included, even when Tune's
    # last saved state missed its final failure (a snapshot taken while it was still running, as Tune's
    # periodic save can leave it): the state is rewound to that here, so the rerun always meets it.
    reported = (victim / "reports.jsonl").read_bytes()
    _rewind_saved_status(experiment, victim.name, "PENDING")
    assert _saved_status(experiment, victim.name) == "PENDING"
    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    assert (victim / "reports.jsonl").read_bytes() == reported, "the errored trial was trained again"
    again = table(experiment)[victim.name]
    assert again["status"] == "error" and again["error"] and again["epochs_run"] == doomed["epochs_run"], again
    assert best_trial(experiment) == survivor
    # ... unless asked: --retry-errored continues it from its checkpoint, and it completes.
    code, out, err = finish(start(config, "--retry-errored", cwd=tmp_path))
    assert code == 0, err[-3000:]
    retried = table(experiment)[victim.name]
    assert retried["status"] == "completed" and retried["epochs_run"] == EPOCHS and retried["error"] is None


def test_nan_trial_ends_as_diverged_and_is_never_selected(tmp_path: Path) -> None:
    # An L2 penalty of 1e30 under plain SGD overflows to NaN in the first epoch (a learning rate alone, within
    # its cap of 1e3, stays finite on this model).
    extra = "search: {space: {loss.l2: {grid: [1.0e+30, 0.0]}}}\n"
    config = tiny_config(tmp_path, "nan", 2, extra)
    config.write_text(config.read_text().replace("optimizer: adam", "optimizer: sgd, input_scale: raw"))
    experiment = tmp_path / "runs" / "nan"
    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    rows = table(experiment)
    diverged = next(name for name in rows if "-l2_1e30-" in name)
    assert rows[diverged]["status"] == "diverged" and rows[diverged]["epochs_run"] == 1
    assert rows[diverged]["best_checkpoint"] is None
    assert not list((experiment / diverged).glob("checkpoint_*")), "a NaN model is never checkpointed"
    assert best_trial(experiment) != diverged
    assert surviving_epochs(results(experiment / best_trial(experiment))) == [1, 2]


def _rewind_saved_status(experiment: Path, name: str, status: str) -> None:
    """The trial's status in Tune's newest saved state set to `status`, as an earlier snapshot held it."""
    path = sorted(experiment.glob("experiment_state-*.json"))[-1]
    state = json.loads(path.read_text())
    for row in state["trial_data"]:
        trial = json.loads(row[0])
        if trial["relative_logdir"] == name:
            trial["status"] = status
            row[0] = json.dumps(trial)
    path.write_text(json.dumps(state))


def _saved_status(experiment: Path, name: str) -> str | None:
    """The trial's status in Tune's newest saved experiment state (what a rerun resumes from)."""
    for path in sorted(experiment.glob("experiment_state-*.json"))[-1:]:
        for trial_json, _ in json.loads(path.read_text())["trial_data"]:
            trial = json.loads(trial_json)
            if trial["relative_logdir"] == name:
                return str(trial["status"])
    return None
