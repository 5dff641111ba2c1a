"""Checkpoints: atomic writes, fallback from a corrupt latest one, and no code from a malicious pickle.

Real files written by the real save path; the faults are real bytes on disk (a truncated file, a
pickle whose loading would create a file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainables import checkpoint as ckpt
from trainables import resume
from trainables.models import build_model
from trainables.optimizers import build_optimizer

SPEC = {"name": "mlp", "hidden": [8]}


def trained_state(epoch: int) -> dict:
    torch.manual_seed(epoch)
    model = build_model(SPEC)
    optimizer = build_optimizer("adam", model, 1e-3, 0.0)
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(epoch)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None,
        "epoch": epoch,
        "rng": ckpt.rng_state(generator),
        "model_spec": SPEC,
    }


def trial_dir_with_checkpoints(tmp_path: Path, epochs: int = 3) -> Path:
    trial = tmp_path / "trial"
    for epoch in range(1, epochs + 1):
        ckpt.save_atomic(trained_state(epoch), trial / f"checkpoint_{epoch - 1:06d}" / ckpt.CHECKPOINT_FILE)
    return trial


class WritesAFile:
    """Unpickling this runs `touch marker`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "c" / ckpt.CHECKPOINT_FILE
    ckpt.save_atomic(trained_state(1), path)
    ckpt.save_atomic(trained_state(2), path)
    assert sorted(p.name for p in path.parent.iterdir()) == [ckpt.CHECKPOINT_FILE]
    assert ckpt.load(path)["epoch"] == 2


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / ckpt.CHECKPOINT_FILE
    ckpt.save_atomic(trained_state(1), path)
    with pytest.raises(Exception):  # noqa: B017 - any pickling failure; the point is what stays on disk
        ckpt.save_atomic({"epoch": 2, "bad": lambda: None}, path)
    assert ckpt.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.CHECKPOINT_FILE]


def test_truncated_latest_falls_back_to_previous_with_warning(tmp_path: Path) -> None:
    trial = trial_dir_with_checkpoints(tmp_path)
    latest = trial / "checkpoint_000002"
    data = (latest / ckpt.CHECKPOINT_FILE).read_bytes()
    (latest / ckpt.CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="checkpoint_000002 is unusable"):
        state = resume.load_state(latest, search_siblings=True)
    assert state["epoch"] == 2
    expected = trained_state(2)
    for key, tensor in expected["model"].items():
        assert torch.equal(state["model"][key], tensor)


def test_resumed_state_is_put_back(tmp_path: Path) -> None:
    trial = trial_dir_with_checkpoints(tmp_path, epochs=2)
    state = resume.load_state(trial / "checkpoint_000001", search_siblings=True)
    model = build_model(SPEC)
    optimizer = build_optimizer("adam", model, 1e-3, 0.0)
    generator = torch.Generator()
    assert resume.apply_state(state, model, optimizer, generator) == 2
    assert torch.equal(generator.get_state(), state["rng"]["batch_order"])
    assert optimizer.state_dict()["state"][0]["step"] == state["optimizer"]["state"][0]["step"]


def test_malicious_pickle_never_executes(tmp_path: Path) -> None:
    trial = trial_dir_with_checkpoints(tmp_path, epochs=2)
    marker = tmp_path / "pwned"
    latest = trial / "checkpoint_000001" / ckpt.CHECKPOINT_FILE
    torch.save({"model": WritesAFile(marker), "epoch": 99}, latest)
    with pytest.warns(RuntimeWarning, match="unusable"):
        state = resume.load_state(latest.parent, search_siblings=True)
    assert state["epoch"] == 1
    assert not marker.exists()
    # The payload is live: a plain pickle load (what weights_only=True forbids) does run it.
    code = f"import torch; torch.load({str(latest)!r}, weights_only=False)"
    subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    assert marker.exists()


def test_no_usable_checkpoint_fails_instead_of_starting_over(tmp_path: Path) -> None:
    trial = trial_dir_with_checkpoints(tmp_path, epochs=2)
    for directory in trial.iterdir():
        (directory / ckpt.CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.warns(RuntimeWarning), pytest.raises(resume.CheckpointUnusableError, match="checkpoint_000000"):
        resume.load_state(trial / "checkpoint_000001", search_siblings=True)


def test_siblings_only_when_storage_is_local(tmp_path: Path) -> None:
    trial = trial_dir_with_checkpoints(tmp_path)
    assert resume.candidates(trial / "checkpoint_000002", search_siblings=False) == [trial / "checkpoint_000002"]
    assert [p.name for p in resume.candidates(trial / "checkpoint_000001", search_siblings=True)] == [
        "checkpoint_000001",
        "checkpoint_000000",
    ]
