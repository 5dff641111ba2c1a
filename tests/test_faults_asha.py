"""ASHA after a resume: rungs rebuilt from what the trials reported, so cut-offs match an uninterrupted run.

Real Ray Trial objects (stubs: no actor is started) with real result.json files in a storage directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from orchestrator.asha import ResumableASHA

KW = {"time_attr": "epoch", "max_t": 8, "grace_period": 1, "reduction_factor": 2, "metric": "val_accuracy",
      "mode": "max"}


def restored_trial(tmp_path: Path, trial_id: str, accuracies: list[float], torn_tail: bool = False) -> Trial:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=trial_id)
    trial = Trial("train", config={}, trial_id=trial_id, storage=storage, stub=True)
    directory = Path(storage.trial_fs_path)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"epoch": e, "val_accuracy": a}) for e, a in enumerate(accuracies, 1)]
    (directory / "result.json").write_text("\n".join(lines) + ("\n{\"epoch\": 9, \"val" if torn_tail else "\n"))
    return trial


def test_rungs_are_rebuilt_from_reported_results(tmp_path: Path) -> None:
    scheduler = ResumableASHA(**KW)
    scheduler.on_trial_add(None, restored_trial(tmp_path, "a", [0.5, 0.6, 0.7, 0.8], torn_tail=True))
    scheduler.on_trial_add(None, restored_trial(tmp_path, "b", [0.7, 0.75]))
    rungs = dict(scheduler._brackets[0]._rungs)
    assert rungs[1] == {"a": 0.5, "b": 0.7} and rungs[2] == {"a": 0.6, "b": 0.75} and rungs[4] == {"a": 0.8}


def test_a_resumed_trial_is_cut_as_it_would_have_been(tmp_path: Path) -> None:
    finished = [restored_trial(tmp_path, f"t{i}", [0.8 + i / 100] * 2) for i in range(3)]
    late = restored_trial(tmp_path, "late", [])
    resumed, plain = ResumableASHA(**KW), ASHAScheduler(**KW)
    for scheduler in (resumed, plain):
        for trial in [*finished, late]:
            scheduler.on_trial_add(None, trial)
    # The late trial's first epoch is poor: an uninterrupted run would stop it at the first rung.
    assert resumed.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.3}) == TrialScheduler.STOP
    # A plain ASHA forgot the rung after the restore and lets it run on.
    assert plain.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.3}) == TrialScheduler.CONTINUE


def test_a_trial_that_never_ran_adds_nothing(tmp_path: Path) -> None:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="new")
    scheduler = ResumableASHA(**KW)
    scheduler.on_trial_add(None, Trial("train", config={}, trial_id="new", storage=storage, stub=True))
    assert all(not recorded for _, recorded in scheduler._brackets[0]._rungs)
