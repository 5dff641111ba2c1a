"""A rerun does not retrain the trials the driver recorded as errored (unless --retry-errored).

Tune resumes a trial by the status in its newest saved experiment state, and that snapshot (taken every
few seconds) can predate a trial's final failure: Tune would then resume the trial as unfinished and
train it again. The driver records every failure the moment Tune reports it (status.json), so before a
resume the trials it recorded as errored are marked ERROR in that snapshot, with the error files Tune
wrote when they failed, and Tune keeps them as they ended. No Ray here: Tune's state is plain JSON.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from orchestrator.location import Location
from orchestrator.outputs.status import read_status

STATE_FILES = "experiment_state-*.json"  # Tune's TuneController.CKPT_FILE_TMPL; it restores the newest
ERROR_FILES = {"error_filename": "error.txt", "pickled_error_filename": "error.pkl"}


def recorded_errors(location: Location) -> set[str]:
    """The trials (by directory name) whose last ending the driver recorded as an error."""
    trials = read_status(location)["trials"]
    return {name for name, ended in trials.items() if isinstance(ended, dict) and ended.get("status") == "error"}


def keep_errored(location: Location) -> list[str]:
    """Marks the recorded errored trials ERROR in Tune's newest saved state; returns the ones it changed."""
    errored = recorded_errors(location)
    states = sorted(info.base_name for info in location.children() if fnmatch.fnmatch(info.base_name, STATE_FILES))
    if not errored or not states:
        return []
    state = location.read_json(states[-1])
    changed: list[str] = []
    rows: list[list[str]] = []
    for trial_json, runtime_json in state.get("trial_data", []):
        trial: dict[str, Any] = json.loads(trial_json)
        name = trial.get("relative_logdir")
        if name in errored and trial.get("status") != "ERROR":
            trial["status"] = "ERROR"
            runtime: dict[str, Any] = json.loads(runtime_json)
            for key, filename in ERROR_FILES.items():  # what the result grid reads the error back from
                if not runtime.get(key) and location.is_file(name, filename):
                    runtime[key] = filename
            trial_json, runtime_json = json.dumps(trial), json.dumps(runtime)
            changed.append(name)
        rows.append([trial_json, runtime_json])
    if changed:
        state["trial_data"] = rows
        location.write_bytes(json.dumps(state).encode(), states[-1])
    return changed
