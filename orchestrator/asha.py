"""ASHA that remembers its rungs across a driver restart.

Ray pickles the scheduler with the Tuner before the sweep starts and does not save its state after,
so a plain ASHAScheduler comes back from `Tuner.restore` with empty rungs: the first trial to reach a
rung after a resume would see no competitors and always continue, and later ones would be judged
against only the trials that reported since the resume. Here every trial the restored experiment
adds back (finished, stopped, errored or unfinished) replays its recorded results (`result.json` in
its trial directory) into its bracket first, so the rungs hold what they held before the crash and
the cut-offs after a resume are the ones an uninterrupted run would have used. Decisions already
taken stay taken: finished and stopped trials are not restarted.

This module imports Ray, like `tuning.py`: it is scheduler code, and `tuning.py` is its only user.
"""

from __future__ import annotations

import json
from typing import Any

from ray.tune.schedulers import ASHAScheduler

RESULT_FILE = "result.json"  # Ray's JsonLoggerCallback: one JSON object per reported result


class ResumableASHA(ASHAScheduler):
    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        bracket = self._trial_info[trial.trial_id]
        for result in _recorded_results(trial):
            if self._time_attr in result and self._metric in result:
                bracket.on_result(trial, result[self._time_attr], self._metric_op * result[self._metric])


def _recorded_results(trial: Any) -> list[dict[str, Any]]:
    """What the trial reported before the driver stopped; nothing for a trial that never ran."""
    storage = getattr(trial, "storage", None)
    if storage is None or getattr(storage, "trial_dir_name", None) is None:
        return []
    try:
        with storage.storage_filesystem.open_input_stream(f"{storage.trial_fs_path}/{RESULT_FILE}") as f:
            text = f.read().decode()
    except (OSError, ValueError):
        return []
    results = []
    for line in text.splitlines():
        try:
            results.append(json.loads(line))
        except ValueError:  # a line cut short by the crash
            continue
    return results
