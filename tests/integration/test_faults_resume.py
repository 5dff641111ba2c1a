"""Driver faults: SIGKILL the real CLI mid-sweep and rerun it; a second launch on the same directory;
a rerun with a changed config; --fresh. Plus the experiment-directory rules on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from support import (
    REPO,
    SLOW_EPOCH,
    finish,
    kill_session,
    results,
    saved_statuses,
    start,
    state_checkpoints,
    surviving_epochs,
    table,
    trial_dirs,
    wait_for,
    write_config,
)

from orchestrator import claim as claims
from orchestrator.commands.main import launch_main
from orchestrator.config import validate
from orchestrator.errors import ConfigError
from orchestrator.location import LOCK, RECORD, Location
from trainables import checkpoint as ckpt

EPOCHS = 8


# Ray's idle helper agents can outlive a SIGKILLed driver for a while (they hold no trial and write
# nothing); the next launch on this machine ends them. The processes that train or schedule (trial
# workers, raylet, GCS) share the driver's fate at once.
IDLE_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "dashboard/agent.py", "runtime_env/agent")


def session_processes(pgid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes of the session, with their command lines."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append((int(stat.parent.name), cmdline[:160]))
    return found


def working_processes(pgid: int) -> list[str]:
    return [cmd for _, cmd in session_processes(pgid) if not any(a in cmd for a in IDLE_AGENTS)]


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_driver_sigkill_then_rerun_resumes_without_rerunning_finished_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three checkpoints kept per trial: the cut below always leaves an older one to fall back to.
    extra = (
        "search: {space: {lr: {grid: [1.0e-3, 2.0e-3, 3.0e-3]}}, max_concurrent_trials: 1}\n"
        "selection: {keep_checkpoints: 3}\n"
    )
    config = write_config(tmp_path, "crash", EPOCHS, extra, train_limit=5 * SLOW_EPOCH)  # epochs > a snapshot period
    exp_dir = tmp_path / "runs" / "crash"
    proc = start(config, cwd=tmp_path)
    try:
        first_done = wait_for(
            lambda: next((t for t in trial_dirs(exp_dir) if len(results(t)) == EPOCHS), None),
            proc,
            what="a finished trial",
        )

        # A second launch on the same experiment while the first runs: refused, nothing started.
        assert launch_main([str(config)]) == 2
        refusal = capsys.readouterr().err.strip()
        assert refusal.startswith("config error: name: experiment ") and "in use by another launch" in refusal
        assert f"pid {proc.pid}" in refusal

        def interrupted_trial() -> Path | None:
            """A trial mid-run with a checkpoint on disk older than the two newest the saved state can name."""
            if saved_statuses(exp_dir).get(first_done.name) != "TERMINATED":
                return None  # the experiment state on disk has not caught up with the finished trial yet
            named = state_checkpoints(exp_dir)
            return next(
                (
                    t
                    for t in trial_dirs(exp_dir)
                    if len(results(t)) < EPOCHS - 1
                    and t.name in named
                    and any(f.name < _previous(named[t.name]) for f in t.glob("checkpoint_*"))
                ),
                None,
            )

        victim = wait_for(interrupted_trial, proc, what="a trial mid-run with two checkpoints in the saved state")
        os.kill(proc.pid, signal.SIGKILL)  # the driver only
        proc.wait(timeout=60)
        # The local Ray it started (GCS, raylet, trial workers) shares its fate: no orphan keeps training.
        assert wait_until(lambda: not working_processes(proc.pid), seconds=60), working_processes(proc.pid)
        leftovers = [pid for pid, _ in session_processes(proc.pid)]
        holder = json.loads((exp_dir / LOCK).read_text())
        assert holder["pid"] == proc.pid and holder["session"].startswith("/"), holder
    except BaseException:
        kill_session(proc)
        raise
    before = {t.name: (t / "result.json").read_bytes() for t in trial_dirs(exp_dir)}
    reported_before = len(results(victim))

    # Fault on top: the checkpoint a rerun restores for the victim (and any newer) is cut in half before the
    # rerun: the trial must fall back to an older one, and say so. Tune saves a result a moment before it
    # registers the result's checkpoint, so the state's last result may name one checkpoint past the one
    # Tune restores: both are cut.
    cut_from = _previous(state_checkpoints(exp_dir)[victim.name])
    for folder in sorted(victim.glob("checkpoint_*")):
        if folder.name >= cut_from:
            cut = folder / ckpt.CHECKPOINT_FILE
            cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    fallback = max(f for f in victim.glob("checkpoint_*") if f.name < cut_from)

    # The same command with a changed value is refused, naming the field.
    assert launch_main([str(config), "--set", "trial.lr=0.01"]) == 2
    assert capsys.readouterr().err.strip().startswith("config error: trial.lr: changed since the experiment at")

    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    assert "resumed the experiment" in out
    # The trial's own fallback from the cut checkpoint reaches the driver's output, not only its log.
    assert f"warning: {victim.name}: resuming from {fallback}" in err, err[-3000:]
    # The rerun ended what was left of the dead driver's Ray on this machine.
    assert not [pid for pid in leftovers if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"], leftovers
    assert (first_done / "result.json").read_bytes() == before[first_done.name], "a finished trial was rerun"
    rows = table(exp_dir)
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"completed"}
    assert {r["epochs_run"] for r in rows.values()} == {EPOCHS}
    victim_rows = results(victim)
    assert surviving_epochs(victim_rows) == list(range(1, EPOCHS + 1))
    restarted_at = int(victim_rows[reported_before]["epoch"])
    # A trial's checkpoint can reach storage just before the killed driver records that epoch's report,
    # so the resumed trial may start one epoch past what result.json showed; never at epoch 1.
    assert 2 <= restarted_at <= reported_before + 1, "resumed from a checkpoint, not from scratch"
    fresh = [trial for trial in trial_dirs(exp_dir) if trial.name not in before]
    assert fresh, "the crash came before the last trial started"
    for trial in fresh:  # never started before the crash: one clean run
        assert [int(r["epoch"]) for r in results(trial)] == list(range(1, EPOCHS + 1))


def _previous(checkpoint: str) -> str:
    """checkpoint_000005 -> checkpoint_000004 (checkpoint_000000 stays itself)."""
    index = int(checkpoint.rsplit("_", 1)[-1])
    return f"checkpoint_{max(index - 1, 0):06d}"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_fresh_starts_a_new_directory_and_keeps_the_old(tmp_path: Path) -> None:
    cfg = validate({"name": "exp", "storage_path": str(tmp_path)})
    location = Location.parse(str(tmp_path), "exp")
    with claims.claim(cfg, location):
        pass
    (tmp_path / "exp" / "keep.txt").write_text("old results")
    fresh = claims.fresh(location)
    assert fresh.name == "exp-2"
    with claims.claim(cfg.model_copy(update={"name": fresh.name}), fresh):
        assert (tmp_path / "exp-2" / RECORD).is_file()
    assert claims.fresh(location).name == "exp-3"
    assert (tmp_path / "exp" / "keep.txt").read_text() == "old results"


def test_fresh_through_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path, "again", 1)
    (tmp_path / "runs" / "again").mkdir(parents=True)
    (tmp_path / "runs" / "again" / "keep.txt").write_text("old")
    code, out, err = finish(start(config, "--fresh", cwd=tmp_path))
    assert code == 0, err[-3000:]
    assert "experiment: again-2 ->" in out
    assert (tmp_path / "runs" / "again-2" / "best" / "manifest.json").is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "again").iterdir()) == ["keep.txt"]


def test_a_rerun_after_the_last_epoch_keeps_every_epoch_that_rays_own_table_lost(tmp_path: Path) -> None:
    """A driver killed after the last epoch but before its outputs: the rerun restores every trial as
    finished (no trial event at all), and Ray's result.json and progress.csv of a killed driver can lack rows
    that the driver's own log kept. The rerun's tables still hold every epoch, as the first run's did."""
    config = write_config(tmp_path, "lost", 2, "search: {space: {lr: {grid: [1.0e-3, 3.0e-3]}}}\n")
    experiment = tmp_path / "runs" / "lost"
    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    before = pd.read_parquet(experiment / "history.parquet")
    assert sorted(before["epoch"]) == [1, 1, 2, 2]
    for trial in trial_dirs(experiment):
        for name, header in (("result.json", 0), ("progress.csv", 1)):  # each loses its first epoch's row
            lines = (trial / name).read_text().splitlines(keepends=True)
            (trial / name).write_text("".join(lines[:header] + lines[header + 1 :]))
    for name in ("history.parquet", "results.parquet"):
        (experiment / name).unlink()
    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    after = pd.read_parquet(experiment / "history.parquet")
    keys = ["trial_name", "epoch"]
    pd.testing.assert_frame_equal(
        before.sort_values(keys).reset_index(drop=True)[sorted(before.columns)],
        after.sort_values(keys).reset_index(drop=True)[sorted(after.columns)],
    )


def test_changed_config_names_every_changed_field(tmp_path: Path) -> None:
    cfg = validate({"name": "exp", "trial": {"lr": 1e-3}, "search": {"space": {"model": {"grid": ["mlp"]}}}})
    location = Location.parse(str(tmp_path), "exp")
    with claims.claim(cfg, location):
        pass
    (tmp_path / "exp" / claims.TUNE_STATE).write_bytes(b"")  # the experiment has started
    changed = validate({"name": "exp", "trial": {"lr": 2e-3}, "search": {"space": {"model": {"grid": ["cnn"]}}}})
    with pytest.raises(ConfigError, match=r"^search\.space\.model\.grid, trial\.lr: changed since"):
        claims.claim(changed, location)
    # Where it runs is not what it computes: another storage path or cluster address still resumes.
    moved = validate(
        {
            "name": "exp",
            "trial": {"lr": 1e-3},
            "search": {"space": {"model": {"grid": ["mlp"]}}},
            "ray": {"address": "ray://head:10001"},
            "storage_path": "/elsewhere",
        }
    )
    with claims.claim(moved, location):
        pass


def test_a_launch_that_never_trained_does_not_hold_its_config_against_the_next(tmp_path: Path) -> None:
    """A launch that failed after its claim (Ray would not start, the cluster refused it) leaves a record; the
    corrected config replaces it, because nothing was computed under the old one."""
    location = Location.parse(str(tmp_path), "exp")
    with claims.claim(validate({"name": "exp", "trial": {"lr": 1e-3}}), location):
        pass
    with claims.claim(validate({"name": "exp", "trial": {"lr": 2e-3}}), location):
        pass
    assert json.loads((tmp_path / "exp" / RECORD).read_text())["config"]["trial"]["lr"] == 2e-3


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    cfg = validate({"name": "exp"})
    code = (
        "import sys, time; from orchestrator import claim; from orchestrator.config import validate;"
        "from orchestrator.location import Location;"
        f"c = claim.claim(validate({{'name': 'exp'}}), Location.parse({str(tmp_path)!r}, 'exp'));"
        "print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True
    )
    location = Location.parse(str(tmp_path), "exp")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert claims.held(location)
        with pytest.raises(ConfigError, match=f"in use by another launch \\(pid {holder.pid}\\)"):
            claims.claim(cfg, location)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not claims.held(location)
    with claims.claim(cfg, location):  # no stale lock after a SIGKILL
        pass


def test_abandoned_claim_leaves_nothing(tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    claim = claims.claim(validate({"name": "exp"}), Location.parse(str(storage), "exp"))
    claim.abandon()
    assert not (storage / "exp").exists()


def test_resume_refuses_state_other_users_could_have_written(tmp_path: Path) -> None:
    cfg = validate({"name": "exp"})
    location = Location.parse(str(tmp_path), "exp")
    with claims.claim(cfg, location):
        pass
    state = tmp_path / "exp" / claims.TUNE_STATE
    state.write_bytes(b"")
    state.chmod(0o666)
    with pytest.raises(ConfigError, match=r"storage_path: .*tuner.pkl is writable by other users \(mode 666\)"):
        claims.claim(cfg, location)
    state.chmod(0o644)
    (tmp_path / "exp").chmod(0o777)
    with pytest.raises(ConfigError, match="writable by other users"):
        claims.claim(cfg, location)
    (tmp_path / "exp").chmod(0o755)
    with claims.claim(cfg, location):
        pass
