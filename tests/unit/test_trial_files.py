"""Ray's files of each trial, written by the driver straight into the trial's directory on storage, in Ray's
formats (result.json lines, progress.csv with one header, params.json / params.pkl), instead of staged and
re-uploaded at every snapshot by Ray's logger callbacks."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import pandas as pd

from orchestrator.location import Location
from orchestrator.tune.trial_files import TrialFiles


def _location(tmp_path: Path) -> Location:
    return Location.parse(str(tmp_path), "exp")


def _result(epoch: int, **extra: object) -> dict[str, object]:
    return {"epoch": epoch, "val_accuracy": 0.5 + epoch / 100, "config": {"lr": 0.01}, "info": {"a": 1}, **extra}


def test_results_are_appended_in_rays_formats(tmp_path: Path) -> None:
    files = TrialFiles(_location(tmp_path))
    files.started("t1", {"lr": 0.01, "mlp": {"hidden": [16]}})
    for epoch in (1, 2, 3):
        files.reported("id1", "t1", _result(epoch))
    trial = tmp_path / "exp" / "t1"
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[0]["config"] == {"lr": 0.01}  # result.json keeps the whole result, as Ray's does
    frame = pd.read_csv(trial / "progress.csv")
    assert list(frame["epoch"]) == [1, 2, 3]
    assert "config" not in frame.columns and "config/lr" not in frame.columns  # Ray's CSV drops the config
    assert list(frame["info/a"]) == [1, 1, 1]  # nested values flattened with "/"
    assert json.loads((trial / "params.json").read_text()) == {"lr": 0.01, "mlp": {"hidden": [16]}}
    assert pickle.loads((trial / "params.pkl").read_bytes()) == {"lr": 0.01, "mlp": {"hidden": [16]}}


def test_a_resumed_trial_keeps_its_header_and_columns(tmp_path: Path) -> None:
    location = _location(tmp_path)
    TrialFiles(location).reported("id1", "t1", _result(1))
    # A new driver (a resume): the file's own header decides the columns; a new key is not a new column.
    again = TrialFiles(location)
    again.reported("id1", "t1", _result(2, extra_metric=7))
    again.reported("id1", "t1", {"epoch": 3})  # a row missing columns: empty cells
    rows = list(csv.reader((tmp_path / "exp" / "t1" / "progress.csv").read_text().splitlines()))
    assert rows[0] == ["epoch", "val_accuracy", "info/a"]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"] and rows[3] == ["3", "", ""]


def test_an_ended_trial_is_forgotten_and_its_empty_staging_directory_removed(tmp_path: Path) -> None:
    files = TrialFiles(_location(tmp_path))
    files.reported("id1", "t1", _result(1))
    staging, with_error = tmp_path / "staging" / "t1", tmp_path / "staging" / "t2"
    staging.mkdir(parents=True)
    with_error.mkdir()
    (with_error / "error.txt").write_text("Traceback ...")
    files.ended("id1", str(staging))
    files.ended("id2", str(with_error))
    assert files.columns == {}
    assert not staging.exists()  # else every later snapshot would upload it again
    assert (with_error / "error.txt").is_file()  # Ray's error file stays, to reach storage
