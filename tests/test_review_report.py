"""results.parquet, history.parquet, the progress output and `python -m orchestrator.report`, on a real sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from review_support import Sweep, run_module, smoke_sweep

from orchestrator.experiment import HISTORY_COLUMNS, open_experiment
from trainables import metrics as m

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("learning_curves.png", "knobs.png", "asha.png")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return smoke_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def results(sweep: Sweep) -> pd.DataFrame:
    return pd.read_parquet(sweep.experiment / "results.parquet")


def test_results_keep_every_models_knobs(results: pd.DataFrame) -> None:
    cnn = results[results["config.model"] == "cnn"]
    mlp = results[results["config.model"] == "mlp"]
    assert len(cnn) and len(mlp)
    assert cnn["config.cnn.channels"].map(list).tolist() == [[8]] * len(cnn)
    assert mlp["config.cnn.channels"].isna().all() and cnn["config.mlp.hidden"].isna().all()


def test_history_has_one_row_per_trial_per_epoch(sweep: Sweep, results: pd.DataFrame) -> None:
    history = pd.read_parquet(sweep.experiment / "history.parquet")
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert len(history) == results["epochs_run"].sum()
    for row in results.itertuples():
        epochs = history[history["trial_name"] == row.trial_name]
        assert sorted(epochs[m.EPOCH]) == list(range(1, row.epochs_run + 1))
        assert epochs[m.VAL_ACCURACY].max() == pytest.approx(row.best_val_accuracy)
        assert set(epochs["trial_id"]) == {row.trial_id}


def test_progress_shows_searched_knobs_and_asha_stops(sweep: Sweep, results: pd.DataFrame) -> None:
    out = sweep.stdout
    stopped = results[results["status"] == "stopped"]["trial_name"]
    assert len(stopped)
    for name in stopped:
        assert f"ended   {name}  stopped by ASHA after epoch" in out
    headers = [line.split() for line in out.splitlines() if line.strip().startswith("trial  ")]
    assert headers, "at least the final progress table"
    assert all(h[:4] == ["trial", "model", "lr", "status"] and "batch_size" not in h for h in headers)
    assert f"{len(results)} trials: 0 running, 0 pending, {len(stopped)} stopped by ASHA" in out
    assert "Trial status:" not in out, "Ray's own wide status tables stay off"


def _leaderboard_lines(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#  trial"))
    return [line.split() for line in lines[start + 1:] if line[:1].isdigit()]


def _check_pngs(directory: Path) -> None:
    for name in PLOTS:
        data = (directory / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
        with Image.open(directory / name) as image:
            image.verify()
    with Image.open(directory / "learning_curves.png") as image:
        assert image.size[0] >= 800


def test_report_prints_the_leaderboard_of_results_parquet_and_draws(sweep: Sweep, results: pd.DataFrame,
                                                                   tmp_path: Path) -> None:
    done = run_module("orchestrator.report", str(sweep.experiment), "--out", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    expected = results.sort_values("best_test_accuracy", ascending=False, kind="stable")
    printed = _leaderboard_lines(done.stdout)
    assert [row[1] for row in printed] == expected["trial_name"].tolist()
    for row, truth in zip(printed, expected.itertuples(), strict=True):
        assert row[-4:] == [str(truth.epochs_run), truth.status, f"{truth.best_val_accuracy:.4f}",
                            f"{truth.best_test_accuracy:.4f}"]
    _check_pngs(tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    manifest = json.loads((sweep.experiment / "best" / "manifest.json").read_text())
    assert f"Trial **{manifest['trial_name']}**, epoch {manifest['epoch']}" in text
    assert all(f"({name})" in text for name in PLOTS)


def test_report_works_while_the_sweep_is_still_running(sweep: Sweep, results: pd.DataFrame, tmp_path: Path) -> None:
    # What a running sweep has on disk: Ray's per-trial files, no tables or best/ yet.
    live = tmp_path / "live"
    shutil.copytree(sweep.experiment, live, ignore=shutil.ignore_patterns("*.parquet", "best", "report"))
    done = run_module("orchestrator.report", str(live))
    assert done.returncode == 0, done.stderr
    assert "still running" in done.stdout
    printed = _leaderboard_lines(done.stdout)
    expected = results.sort_values("best_test_accuracy", ascending=False, kind="stable")
    assert [row[1] for row in printed] == expected["trial_name"].tolist()
    _check_pngs(live / "report")
    rebuilt = open_experiment(live).results.set_index("trial_name").loc[expected["trial_name"]]
    for column in ("epochs_run", "status", "best_val_accuracy", "best_test_accuracy", "best_epoch"):
        assert rebuilt[column].tolist() == expected[column].tolist(), column


@pytest.mark.parametrize("make", ["missing", "empty", "corrupt"])
def test_report_refuses_a_directory_that_is_not_an_experiment(tmp_path: Path, make: str) -> None:
    target = tmp_path / "not-an-experiment"
    if make != "missing":
        target.mkdir()
    if make == "corrupt":
        (target / "results.parquet").write_text("not parquet")
    done = run_module("orchestrator.report", str(target))
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("data error: ")
    assert not (target / "report").exists()
