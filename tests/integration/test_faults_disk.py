"""A full disk mid-sweep, for real: storage on a small tmpfs that fills at different moments of the sweep.
The launch must stop as an interrupt stops it (exit 75, one line naming the path and saying the disk is
full, no traceback), and after room is made the same command must resume and end with every trial and the
tables an uninterrupted run gives. Mounting needs root (as here and in CI); elsewhere these tests skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli
from support import TINY, finish, results, start, table, trial_dirs, wait_for

EPOCHS = 3
# A wide MLP: about 4.9 MiB a checkpoint (weights + Adam's two moments), so a 48 MiB disk fills in a few epochs.
EXTRA = "trial: {model: mlp, mlp: {hidden: [512]}, optimizer: adam, lr: 1.0e-3, batch_size: 32, epochs: 3}\n"
SPACE = "search: {space: {lr: {grid: [1.0e-3, 2.0e-3, 3.0e-3]}}}\nselection: {keep_checkpoints: 1}\n"
MIB = 2**20


def _config(tmp_path: Path, storage: Path, name: str = "disk") -> Path:
    path = tmp_path / f"{name}.yaml"
    text = TINY.format(name=name, storage=storage, epochs=EPOCHS, train_limit=300)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("trial:"))
    path.write_text(text + "\n" + EXTRA + SPACE)
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.decode()}")
        pytest.skip(f"mounting a tmpfs needs root: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave_mib: float) -> Path:
    """Ballast leaving `leave_mib` free."""
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(ballast, "wb") as out:
        out.write(b"\0" * max(0, int(free - leave_mib * MIB)))
    return ballast


def _comparable(rows: dict[str, dict]) -> dict[str, tuple]:
    """Per trial (its knobs and number, not Tune's per-experiment id): how it ended and what it scored."""
    keys = ("status", "epochs_run", "best_epoch", "best_val_accuracy", "best_test_accuracy", "final_val_loss")
    out = {}
    for name, row in rows.items():
        knobs, _, number = name.rpartition("-")
        out[f"{knobs}-{number.split('_')[-1]}"] = tuple(row[k] for k in keys)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    tmp = tmp_path_factory.mktemp("reference")
    done = cli("launch", str(_config(tmp, tmp / "runs")), cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return _comparable(table(tmp / "runs" / "disk"))


@pytest.mark.parametrize("leave_mib", [7, 22], ids=["fills-at-the-first-checkpoints", "fills-mid-sweep"])
def test_full_disk_stops_resumably_and_the_rerun_gives_the_uninterrupted_result(
    small_disk: Path, tmp_path: Path, uninterrupted: dict[str, tuple], leave_mib: float
) -> None:
    config = _config(tmp_path, small_disk / "runs")
    ballast = _fill(small_disk, leave_mib)
    first = cli("launch", str(config), cwd=tmp_path)
    assert first.returncode == 75, (first.returncode, first.stderr[-3000:])
    assert "warning: the checkpoints this sweep keeps need about" in first.stderr  # said before Ray started
    lines = [line for line in first.stderr.splitlines() if line.startswith("storage error:")]
    assert len(lines) == 1 and "the disk is full" in lines[0] and str(small_disk) in lines[0], first.stderr[-3000:]
    assert "Traceback" not in first.stderr + first.stdout, first.stderr[-5000:]
    experiment = small_disk / "runs" / "disk"
    assert not (experiment / "best").exists() and not (experiment / "results.parquet").exists()

    ballast.unlink()  # room made: the same command resumes
    subprocess.run(["mount", "-o", "remount,size=160m", str(small_disk)], check=True)
    second = cli("launch", str(config), cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed the experiment" in second.stdout
    assert "Traceback" not in second.stderr, second.stderr[-5000:]
    assert _comparable(table(experiment)) == uninterrupted


def test_a_resume_whose_state_lost_trials_refuses_in_one_line_and_exports_nothing(tmp_path: Path) -> None:
    """An experiment state that lists fewer trials than planned (damaged, or from an older run) beside a
    searcher that has created them all: resuming would be a smaller sweep, exported as if whole."""
    config = _config(tmp_path, tmp_path / "runs", name="shrunk")
    experiment = tmp_path / "runs" / "shrunk"
    launch = start(config, cwd=tmp_path)
    wait_for(lambda: any(results(d) for d in trial_dirs(experiment)), launch, what="a first report")
    os.killpg(launch.pid, signal.SIGINT)  # as a terminal sends it
    code, _, err = finish(launch)
    assert code == 130, err[-3000:]
    state = max(experiment.glob("experiment_state-*.json"))
    saved = json.loads(state.read_text())
    assert len(saved["trial_data"]) == 3
    saved["trial_data"] = saved["trial_data"][:1]
    state.write_text(json.dumps(saved))

    rerun = cli("launch", str(config), cwd=tmp_path)
    assert rerun.returncode == 1, rerun.stderr[-3000:]
    lines = [line for line in rerun.stderr.splitlines() if line.startswith("resume error:")]
    assert len(lines) == 1 and "knows 1 of the 3 trials" in lines[0], rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    assert not (experiment / "best").exists() and not (experiment / "results.parquet").exists()
