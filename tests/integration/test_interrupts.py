"""Interrupts are honest: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM stop
a real sweep with exit 130 / 143 and one line saying how far it got, export nothing, record no trial as
stopped early, leave `report` saying UNFINISHED, and a rerun of the same command finishes the sweep."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, cli_env
from support import (
    SLOW_EPOCH,
    finish,
    kill_session,
    results,
    saved_statuses,
    start,
    table,
    trial_dirs,
    wait_for,
    write_config,
)

EPOCHS = 4
EXTRA = "search: {space: {lr: {grid: [1.0e-3, 2.0e-3, 3.0e-3]}}, max_concurrent_trials: 1}\n"


STOPPING = "stopping the trials and saving the experiment state"
ALREADY = "already stopping; the experiment stays resumable (a third signal stops at once)"
AT_ONCE = "stopping now without a last save"
FINAL = "interrupted: 1 of 3 trials finished; rerun the same command to resume"


def _start_logged(config: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`launch CONFIG` in its own session, its output in files the test reads while it runs."""
    out, err = cwd / "launch.out", cwd / "launch.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "launch", str(config)],
            cwd=cwd,
            env=cli_env(),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    return proc, out, err


def _release(held: list[int]) -> None:
    while held:
        with contextlib.suppress(ProcessLookupError):
            os.kill(held.pop(), signal.SIGCONT)


@pytest.mark.parametrize(
    ("signum", "code", "group", "count"),
    [
        (signal.SIGINT, 130, True, 1),  # Ctrl-C in a terminal: every process of the group gets it
        (signal.SIGTERM, 143, False, 2),  # a scheduler's stop, sent again while the sweep is stopping
        (signal.SIGTERM, 143, False, 3),  # ... and a third time: stop at once
    ],
    ids=["ctrl-c", "sigterm-twice", "sigterm-three-times"],
)
def test_an_interrupted_sweep_says_so_exports_nothing_and_resumes(
    tmp_path: Path, signum: int, code: int, group: bool, count: int
) -> None:
    # Epochs of several seconds: the signal lands while the second trial still has most of its epochs to go.
    config = write_config(tmp_path, "stop", EPOCHS, EXTRA, train_limit=5 * SLOW_EPOCH)
    experiment = tmp_path / "runs" / "stop"
    proc, out_file, err_file = _start_logged(config, tmp_path)
    held: list[int] = []
    try:

        def second_trial_mid_run() -> Path | None:
            """One trial finished, and saved as finished in Tune's state (what even a stop at once leaves to
            resume from), and the next one mid-run. The next one is held (SIGSTOP) after its first epoch until
            the state on disk has caught up, however fast this machine is, then goes on before the signal."""
            done = [t for t in trial_dirs(experiment) if len(results(t)) == EPOCHS]
            running = [t for t in trial_dirs(experiment) if 1 <= len(results(t)) < EPOCHS]
            if not done or not running:
                return None
            if not held and len(results(running[0])) == 1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(results(running[0])[-1]["pid"]), signal.SIGSTOP)
                    held.append(int(results(running[0])[-1]["pid"]))
            if saved_statuses(experiment).get(done[0].name) != "TERMINATED":
                return None
            _release(held)
            return running[0]

        def said(text: str) -> bool:
            return text in err_file.read_text(errors="replace")

        wait_for(second_trial_mid_run, proc, what="one trial finished and the next one mid-run")
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        wait_for(lambda: said(STOPPING), proc, what="the sweep saying it is stopping")
        # Each further signal is sent once the sweep has said it took the previous one, while it is stopping.
        for answer in (ALREADY, AT_ONCE)[: count - 1]:
            os.kill(proc.pid, signum)
            wait_for(lambda answer=answer: said(answer), proc, what=f"the sweep answering {answer!r}")
        returncode = proc.wait(timeout=300)
    except BaseException:
        kill_session(proc)
        raise
    finally:
        _release(held)
        kill_session(proc)
    err = err_file.read_text(errors="replace")
    assert returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert sum(STOPPING in line for line in lines) == 1, err[-2000:]  # the first signal is taken once
    assert sum(ALREADY in line for line in lines) == (count >= 2), err[-2000:]
    if count < 3:
        assert lines[-1] == FINAL, err[-2000:]
    else:  # gone at once: no closing line, no last save
        assert AT_ONCE in lines[-1] and FINAL not in err, err[-2000:]
    # Nothing written as if the sweep had finished.
    assert not (experiment / "best").exists() and not (experiment / "results.parquet").exists()
    status = json.loads((experiment / "status.json").read_text())
    if count < 3:
        assert status["state"] == "interrupted"
        assert [entry["status"] for entry in status["trials"].values()] == ["completed"]  # nothing "stopped early"
    else:  # the driver never got to record the interrupt: the record still says the sweep is running
        assert status["state"] in {"running", "interrupted"} and status["state"] != "finished"
        assert [entry["status"] for entry in status["trials"].values()] == ["completed"]
    report = cli("report", str(experiment), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert "UNFINISHED: interrupted" in report.stdout  # no launch holds it: "running" is read as interrupted
    lines = report.stdout.splitlines()
    header = next(line.split() for line in lines if line.startswith("#  "))
    rows = [line.split() for line in lines if line[:1].isdigit() and len(line.split()) == len(header)]
    statuses = {row[header.index("status")] for row in rows}
    assert statuses and "stopped" not in statuses, report.stdout
    finished_first = {
        t.name: (t / "result.json").read_bytes() for t in trial_dirs(experiment) if len(results(t)) == EPOCHS
    }
    assert len(finished_first) == 1

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
