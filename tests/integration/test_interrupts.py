"""Interrupts are honest: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM stop
a real sweep with exit 130 / 143 and one line saying how far it got, export nothing, record no trial as
stopped early, leave `report` saying UNFINISHED, and a rerun of the same command finishes the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, cli_env
from support import SLOW_EPOCH, finish, kill_session, results, start, table, trial_dirs, wait_for, write_config

EPOCHS = 4
EXTRA = "search: {space: {lr: {grid: [1.0e-3, 2.0e-3, 3.0e-3]}}, max_concurrent_trials: 1}\n"


@pytest.mark.parametrize(
    ("signum", "code", "group", "twice"),
    [
        (signal.SIGINT, 130, True, False),  # Ctrl-C in a terminal: every process of the group gets it
        (signal.SIGTERM, 143, False, True),  # a scheduler's stop, sent again while the sweep is stopping
    ],
    ids=["ctrl-c", "sigterm-twice"],
)
def test_an_interrupted_sweep_says_so_exports_nothing_and_resumes(
    tmp_path: Path, signum: int, code: int, group: bool, twice: bool
) -> None:
    config = write_config(tmp_path, "stop", EPOCHS, EXTRA, train_limit=SLOW_EPOCH)
    experiment = tmp_path / "runs" / "stop"
    proc = start(config, cwd=tmp_path)
    try:

        def second_trial_mid_run() -> Path | None:
            done = [t for t in trial_dirs(experiment) if len(results(t)) == EPOCHS]
            running = [t for t in trial_dirs(experiment) if 1 <= len(results(t)) < EPOCHS]
            return running[0] if done and running else None

        wait_for(second_trial_mid_run, proc, what="one trial finished and the next one mid-run")
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        if twice:
            time.sleep(0.3)
            os.kill(proc.pid, signum)
        returncode, out, err = finish(proc, timeout=300)
    except BaseException:
        kill_session(proc)
        raise
    assert returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == ("interrupted: 1 of 3 trials finished; rerun the same command to resume"), (
        err[-2000:]
    )
    # Nothing written as if the sweep had finished.
    assert not (experiment / "best").exists() and not (experiment / "results.parquet").exists()
    status = json.loads((experiment / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert [entry["status"] for entry in status["trials"].values()] == ["completed"]  # nothing "stopped early"
    report = cli("report", str(experiment), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert "UNFINISHED: interrupted" in report.stdout
    assert "stopped" not in {line.split()[-3] for line in report.stdout.splitlines()[2:] if line[:1].isdigit()}
    finished_first = {
        t.name: (t / "result.json").read_bytes() for t in trial_dirs(experiment) if len(results(t)) == EPOCHS
    }

    again, out, err = finish(start(config, cwd=tmp_path))
    assert again == 0, err[-3000:]
    assert "resumed the experiment" in out
    rows = table(experiment)
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"completed"}
    assert all(r["epochs_run"] == EPOCHS for r in rows.values())
    for name, before in finished_first.items():  # the trial that had finished was not trained again
        assert (experiment / name / "result.json").read_bytes() == before
    assert (experiment / "best" / "manifest.json").is_file()
    assert json.loads((experiment / "status.json").read_text())["state"] == "finished"


# Run in its own interpreter: starting Ray in the test process would leave Ray's settings in its environment
# for every later command the tests start.
_STOP_RAY_THEN_CHECK = """
import signal
from pathlib import Path
from orchestrator.tune import cluster, tuner

cluster.start(None, dashboard=False, on_timeout=lambda: None)
try:
    interrupt = tuner.Interrupt().__enter__()
finally:
    cluster.stop()
# The OS-level record: Python's own (signal.getsignal) cannot show a handler reset underneath it.
status = Path("/proc/self/status").read_text().splitlines()
caught = next(line.split()[1] for line in status if line.startswith("SigCgt:"))
print(signal.getsignal(signal.SIGTERM) == interrupt._handle, bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1))
"""


def test_stopping_ray_leaves_the_sigterm_handler_in_place() -> None:
    """A second SIGTERM while the sweep shuts Ray down still reaches the handler that reports the interrupt."""
    done = subprocess.run(
        [sys.executable, "-c", _STOP_RAY_THEN_CHECK], env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["True", "True"], done.stdout
