"""Reads an experiment directory, finished or still running, into plain tables. No Ray.

    from orchestrator.experiment import open_experiment
    exp = open_experiment("runs/smoke"); exp.results, exp.history   # pandas DataFrames

A finished sweep has `results.parquet` and `history.parquet` (written by the driver at the end). While
it runs they do not exist yet, so the same tables are rebuilt from what Ray writes as trials report:
each trial directory's `result.json` (one JSON line per epoch), `params.json` (the sampled values),
its `checkpoint_*` folders and `error.txt`; the fixed part of the recipe comes from
`_summary/experiment.json`, which the driver writes before the first trial starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.errors import ConfigError
from orchestrator.selection import RESULTS_FILE, TrialOutcome, trial_rows
from trainables import metrics as m
from trainables.recipe import TrialConfig

HISTORY_FILE = "history.parquet"
SUMMARY_RUN = "_summary"
EXPERIMENT_FILE = "experiment.json"  # under SUMMARY_RUN: the validated config, as JSON
RESULT_JSON, PARAMS_JSON, PROGRESS_CSV, ERROR_TXT = "result.json", "params.json", "progress.csv", "error.txt"
# One row per trial per epoch: identity, the reported metrics, and Ray's clock.
HISTORY_COLUMNS = (
    "trial_id", "trial_name", m.EPOCH, m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.VAL_LOSS, m.VAL_ACCURACY,
    m.TEST_LOSS, m.TEST_ACCURACY, m.LR, m.EPOCH_SECONDS, m.SAMPLES_PER_SECOND, m.DIVERGED, m.NODE_ID,
    "time_total_s", "timestamp",
)


@dataclass(frozen=True)
class LocalCheckpoint:
    """A checkpoint folder on this machine (what selection needs: a `.path`)."""

    path: str


@dataclass
class Experiment:
    path: Path
    config: dict[str, Any]  # the experiment config as JSON ({} when the driver never wrote it)
    results: pd.DataFrame  # one row per trial: the columns of results.parquet
    history: pd.DataFrame  # one row per trial per epoch: HISTORY_COLUMNS
    finished: bool  # results.parquet exists: the driver has ranked the trials

    @property
    def metric(self) -> str:
        return self.config.get("selection", {}).get("metric", m.TEST_ACCURACY)

    @property
    def epochs(self) -> int | None:
        return self.config.get("trial", {}).get("epochs")

    @property
    def searched(self) -> list[str]:
        return list(self.config.get("search", {}).get("space", {}))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain Python: NaN -> None, numpy arrays (list knobs) -> lists."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def history_rows(outcomes: list[TrialOutcome]) -> list[dict[str, Any]]:
    """history.parquet rows: every reported epoch of every trial."""
    rows = []
    for outcome in outcomes:
        # A retried trial may report an epoch twice; the later report is the one it continued from.
        by_epoch = {record.get(m.EPOCH): record for record in outcome.history}
        for record in by_epoch.values():
            row = {key: record.get(key) for key in HISTORY_COLUMNS}
            row.update(trial_id=outcome.trial_id, trial_name=outcome.name)
            rows.append(row)
    return rows


def _history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    return frame.sort_values(["trial_name", m.EPOCH], kind="stable").reset_index(drop=True)


def is_trial_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith((".", "_")) and (path / PARAMS_JSON).is_file()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Ray's result.json: one JSON object per line; a line being written right now is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def trial_history(trial_dir: Path) -> list[dict[str, Any]]:
    """The reported epochs of one trial (result.json, else progress.csv); a retried epoch counts once."""
    if (trial_dir / RESULT_JSON).is_file():
        records = read_jsonl(trial_dir / RESULT_JSON)
    elif (trial_dir / PROGRESS_CSV).is_file() and (trial_dir / PROGRESS_CSV).stat().st_size:
        records = pd.read_csv(trial_dir / PROGRESS_CSV).to_dict("records")
    else:
        records = []
    by_epoch = {int(r[m.EPOCH]): r for r in records if _finite(r.get(m.EPOCH))}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trial_outcome(trial_dir: Path, fixed: dict[str, Any], max_failures: int | None = None) -> TrialOutcome:
    """A TrialOutcome rebuilt from a trial directory, as `tuning` builds it from Ray's result grid."""
    history = trial_history(trial_dir)
    sampled = json.loads((trial_dir / PARAMS_JSON).read_text())
    checkpoints = [(LocalCheckpoint(str(trial_dir / r["checkpoint_dir_name"])), r) for r in history
                   if r.get("checkpoint_dir_name") and (trial_dir / r["checkpoint_dir_name"]).is_dir()]
    failures = _failures(trial_dir)
    error = f"{failures} failure(s), see {trial_dir / ERROR_TXT}" if failures and (
        max_failures is None or failures > max_failures) else None
    trial_id = str(history[-1].get("trial_id")) if history else trial_dir.name.rsplit("-", 1)[-1]
    return TrialOutcome(trial_id=trial_id, name=trial_dir.name, config=TrialConfig.resolve(fixed, sampled),
                        history=history, checkpoints=checkpoints, error=error)


def _failures(trial_dir: Path) -> int:
    path = trial_dir / ERROR_TXT
    if not path.is_file():
        return 0
    return sum(line.startswith("Failure #") for line in path.read_text(errors="replace").splitlines())


def live_status(outcome: TrialOutcome) -> str:
    """While a sweep runs, a trial that has not ended is running (or pending), not 'stopped'."""
    ended = outcome.error or outcome.diverged or outcome.epochs_run >= outcome.config.epochs or (
        outcome.history and outcome.history[-1].get("done"))
    if ended:
        return outcome.status
    return "running" if outcome.history else "pending"


def live_rows(outcomes: list[TrialOutcome], metric: str) -> list[dict[str, Any]]:
    rows = trial_rows(outcomes, metric)
    for row, outcome in zip(rows, outcomes, strict=True):
        row["status"] = live_status(outcome)
        row["stopped_early"] = row["status"] == "stopped"
    return rows


def open_experiment(path: str | Path) -> Experiment:
    """Raises ConfigError (one line for the CLI) when `path` is not an experiment directory."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(str(path), "not a directory")
    config = read_config(path)
    trial_dirs = sorted(p for p in path.iterdir() if is_trial_dir(p))
    if (path / RESULTS_FILE).is_file():
        results = pd.read_parquet(path / RESULTS_FILE)
        history = (pd.read_parquet(path / HISTORY_FILE) if (path / HISTORY_FILE).is_file()
                   else _history_frame(history_rows(_outcomes(trial_dirs, config))))
        return Experiment(path, config, results, history, finished=True)
    if not trial_dirs and not config:
        raise ConfigError(str(path), "not an experiment directory (no results.parquet, no trial folders)")
    outcomes = _outcomes(trial_dirs, config)
    metric = config.get("selection", {}).get("metric", m.TEST_ACCURACY)
    results = pd.DataFrame(live_rows(outcomes, metric))
    return Experiment(path, config, results, _history_frame(history_rows(outcomes)), finished=False)


def _outcomes(trial_dirs: list[Path], config: dict[str, Any]) -> list[TrialOutcome]:
    fixed = config.get("trial", {})
    retries = config.get("failure", {}).get("max_retries")
    return [trial_outcome(d, fixed, retries) for d in trial_dirs]


def read_config(path: Path) -> dict[str, Any]:
    file = path / SUMMARY_RUN / EXPERIMENT_FILE
    if not file.is_file():
        return {}
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(str(file), f"unreadable experiment record ({exc})") from None
    return config if isinstance(config, dict) else {}
