"""Reads an experiment back, finished or not, local or on an object store, into plain tables. No Ray.

    exp = open_experiment("runs/smoke")        # or "s3://bucket/sweeps/smoke"
    exp.results, exp.history, exp.state        # DataFrames; finished | running | interrupted | failed

A finished sweep has results.parquet and history.parquet. Before that (running, interrupted, killed),
the same tables are rebuilt from the trials' own files with the same `TrialRecord` code the driver uses,
so the statuses agree; a trial the driver saw end is marked so in status.json, which is how an early
stop is told from an interrupt.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from orchestrator import claim as claims
from orchestrator.errors import ConfigError
from orchestrator.location import BEST, BEST_MANIFEST, HISTORY, RESULTS, Location, split_experiment
from orchestrator.outputs.status import FINISHED, read_status
from orchestrator.records import HISTORY_COLUMNS, read_trial, trial_dirs
from trainables import metrics as m


@dataclass
class Experiment:
    location: Location
    config: dict[str, Any]  # the recorded config ({} when the record is missing)
    results: pd.DataFrame  # one row per trial: the columns of results.parquet
    history: pd.DataFrame  # one row per trial per epoch: HISTORY_COLUMNS
    state: str  # finished | running | interrupted | failed | unknown
    manifest: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.state == FINISHED

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


def _table(location: Location, name: str) -> pd.DataFrame:
    try:
        return pq.read_table(io.BytesIO(location.read_bytes(name))).to_pandas()
    except (OSError, ValueError) as exc:  # truncated, or not Parquet at all
        raise ConfigError(
            location.uri(name),
            f"unreadable table ({str(exc).splitlines()[0][:120]}); rerun the launch command to rewrite it",
        ) from None


def _manifest(location: Location) -> dict[str, Any] | None:
    if not location.is_file(BEST, BEST_MANIFEST):
        return None
    try:
        manifest = location.read_json(BEST, BEST_MANIFEST)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "trial_name" in manifest else None


def open_experiment(path: str) -> Experiment:
    """Raises ConfigError (one line for the CLI) when `path` is not a readable experiment."""
    location = split_experiment(path)
    record = claims.read_record(location)
    config = record["config"] if record else {}
    status = read_status(location)
    names = trial_dirs(location)
    if record is None and not names:
        raise ConfigError(location.display, "not an experiment directory (no experiment.json, no trial folders)")
    if status.get("state") == FINISHED and location.is_file(RESULTS):
        results = _table(location, RESULTS)
        history = _table(location, HISTORY) if location.is_file(HISTORY) else pd.DataFrame(columns=HISTORY_COLUMNS)
        return Experiment(location, config, results, history, FINISHED, _manifest(location))
    live = claims.held(location)
    retries = config.get("failure", {}).get("max_retries")
    fixed = config.get("trial", {})
    trials = [read_trial(location, name, fixed, status["trials"].get(name), retries, live) for name in names]
    metric = config.get("selection", {}).get("metric", m.TEST_ACCURACY)
    results = pd.DataFrame([t.row(metric) for t in trials])
    history = pd.DataFrame([row for t in trials for row in t.history_rows()], columns=list(HISTORY_COLUMNS))
    state = "running" if live else (status.get("state") or "unknown")
    if state == "running" and not live:
        state = "interrupted"
    return Experiment(location, config, results, history, state, None)
