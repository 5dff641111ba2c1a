"""orchestrator/tune/errored.py: before a resume, the trials the driver recorded as errored are marked ERROR in
Tune's newest saved state (the end to end case, through real Tune: tests/integration/test_faults_trials.py)."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.location import Location
from orchestrator.tune.errored import keep_errored


def _state(trials: dict[str, str]) -> dict:
    runtime = {"error_filename": None, "pickled_error_filename": None, "num_failures": 2}
    return {
        "trial_data": [
            [json.dumps({"relative_logdir": n, "status": s}), json.dumps(runtime)] for n, s in trials.items()
        ],
        "runner_data": {"kept": True},
    }


def _experiment(tmp_path: Path, recorded: dict[str, str], saved: dict[str, str]) -> Location:
    location = Location._local(tmp_path / "runs", "exp")
    location.makedirs()
    status = {
        name: {"status": s, "epochs_run": 1, "error": "boom" if s == "error" else None} for name, s in recorded.items()
    }
    location.write_json({"state": "finished", "trials": status}, "status.json")
    location.write_json(_state({n: "RUNNING" for n in saved}), "experiment_state-2026-01-01_00-00-00.json")
    location.write_json(_state(saved), "experiment_state-2026-01-01_00-00-09.json")  # the newest: Tune reads this
    return location


def _saved(location: Location, name: str) -> tuple[dict, dict]:
    state = location.read_json("experiment_state-2026-01-01_00-00-09.json")
    trial, runtime = next(
        (json.loads(t), json.loads(r)) for t, r in state["trial_data"] if json.loads(t)["relative_logdir"] == name
    )
    return trial, runtime


def test_a_recorded_error_the_saved_state_missed_is_marked(tmp_path: Path) -> None:
    location = _experiment(tmp_path, {"a": "error", "b": "completed"}, {"a": "PENDING", "b": "TERMINATED"})
    (location.local_dir / "a").mkdir()  # type: ignore[operator]
    (location.local_dir / "a" / "error.txt").write_text("Failure # 2\n")  # type: ignore[operator]
    assert keep_errored(location) == ["a"]
    trial, runtime = _saved(location, "a")
    assert trial["status"] == "ERROR" and runtime["error_filename"] == "error.txt"
    assert runtime["pickled_error_filename"] is None  # Tune wrote none here: nothing invented
    assert _saved(location, "b")[0]["status"] == "TERMINATED"
    assert location.read_json("experiment_state-2026-01-01_00-00-09.json")["runner_data"] == {"kept": True}
    assert keep_errored(location) == []  # once is enough


def test_nothing_changes_without_a_recorded_error(tmp_path: Path) -> None:
    location = _experiment(tmp_path, {"a": "completed"}, {"a": "PENDING", "b": "PENDING"})
    before = location.read_bytes("experiment_state-2026-01-01_00-00-09.json")
    assert keep_errored(location) == []
    assert location.read_bytes("experiment_state-2026-01-01_00-00-09.json") == before


def test_a_trial_already_errored_or_a_missing_state_is_left_alone(tmp_path: Path) -> None:
    location = _experiment(tmp_path, {"a": "error"}, {"a": "ERROR"})
    assert keep_errored(location) == []
    empty = Location._local(tmp_path / "other", "exp")
    empty.makedirs()
    empty.write_json({"state": "running", "trials": {"a": {"status": "error"}}}, "status.json")
    assert keep_errored(empty) == []  # no saved state: nothing to resume, nothing to mark
