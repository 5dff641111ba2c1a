"""Tune's trial events, relayed to the driver's observers as plain `TrialRecord`s.

Ray pickles the callbacks into the experiment and unpickles them on a resume, so the callback itself
(`Relay`) holds nothing: it finds the sweep's `LiveTrials` through `attach`, set by the tuner right
before `fit`. `LiveTrials` keeps one record per trial, built once and updated from what Tune holds in
memory (each result as it arrives), so what the observers see is right at the moment they see it. A
trial restored from an earlier run starts from what it recorded on storage.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel
from ray import tune

from orchestrator import storage_guard
from orchestrator.location import ERROR_TXT, REPORTS, Location
from orchestrator.records import Observer, State, TrialRecord, merge_history, read_reports
from orchestrator.tune.schedulers import recorded_results
from orchestrator.tune.trial_files import TrialFiles
from trainables import metrics as m
from trainables.recipe import TrialConfig

_CURRENT: LiveTrials | None = None
_FAULTS: Any = None  # the sweep's faults.TrialFaults: the trials' storage faults, polled from Tune's loop


class Interrupt(Protocol):
    def __call__(self) -> bool: ...

    def forward(self) -> None: ...


WARNINGS = "warnings"  # a report's list of warnings the trial wants the driver to show


def plain(value: Any) -> Any:
    """Ray's values as plain Python (numpy scalars and arrays from sampled configs and results)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class LiveTrials:
    """The sweep's trial records, keyed by Tune's trial id, and the observers told of every change."""

    def __init__(self, fixed: dict[str, Any], location: Location, observer: Observer, interrupt: Interrupt) -> None:
        self.fixed, self.location, self.observer, self.interrupted = fixed, location, observer, interrupt
        self.records: dict[str, TrialRecord] = {}
        self.sections: dict[tuple[str, str], BaseModel] = {}
        # Tune's list of trials only grows: the records in its order, extended by the trials new since the
        # last step, and the trials that may be running (the only ones a step can pause). No step scans them all.
        self.in_order: list[TrialRecord] = []
        self.active: dict[str, tuple[Any, TrialRecord]] = {}
        self.files = TrialFiles(location)

    def record(self, trial: Any) -> TrialRecord:
        record = self.records.get(trial.trial_id)
        directory = getattr(trial.storage, "trial_dir_name", None)  # set once Tune names the trial
        if record is not None and directory and record.name != directory:
            record.name = directory
        if record is None:
            config = self._shared(TrialConfig.resolve(self.fixed, plain(trial.config or {})))
            record = TrialRecord(str(trial.trial_id), str(directory or trial), config)
            for row in recorded_results(trial) if directory else []:  # a trial restored from an earlier run
                record.report(row)
            status = str(trial.status)
            states: dict[str, State] = {
                "TERMINATED": "ended",
                "ERROR": "ended",
                "PAUSED": "paused",
                "RUNNING": "running",
            }
            record.state = states.get(status, "pending" if not record.history else "paused")
            if status == "ERROR":
                record.error = error_text(trial)
            self.records[trial.trial_id] = record
        return record

    def _shared(self, config: TrialConfig) -> TrialConfig:
        """The config with each section that equals another trial's being that trial's (sections are
        frozen): most sections are the same in every trial, and a full config is about 18 kB."""
        for name, value in config.__dict__.items():
            if isinstance(value, BaseModel):
                shared = self.sections.setdefault((name, value.model_dump_json()), value)
                if shared is not value:
                    config.__dict__[name] = shared
        return config

    def record_from_result(self, name: str, result: Any) -> TrialRecord:
        """A trial the loop never showed (one restored as finished, when the driver was killed after the last
        epoch): from what it recorded on storage, as for any restored trial. Ray's own table of it is not
        enough: the result.json of a killed driver can lack rows that the driver's log has."""
        config = TrialConfig.resolve(self.fixed, plain(result.config or {}))
        record = TrialRecord(str(result.metrics.get("trial_id", name.rsplit("-", 1)[-1])), name, config, state="ended")
        frame = result.metrics_dataframe
        rows = [plain(row) for row in frame.to_dict("records")] if frame is not None else []
        rows += read_reports(self.location, name)
        replays = [row for row in rows if row.get(m.REPLAYED)]  # first, so that an epoch's own report wins
        for row in merge_history(replays + [row for row in rows if not row.get(m.REPLAYED)]):
            record.report({key: value for key, value in row.items() if key != m.REPLAYED})
        return record

    def started(self, trial: Any) -> None:
        record = self.record(trial)
        record.state = "running"
        self.active[trial.trial_id] = (trial, record)
        self.files.started(record.name, plain(trial.config or {}))
        self.observer.trial_started(record)

    def reported(self, trial: Any, result: dict[str, Any]) -> None:
        record = self.record(trial)
        self.files.reported(trial.trial_id, record.name, result)  # every result, as Ray's loggers wrote them
        row = {sys.intern(key): value for key, value in plain(result).items()}  # one copy of each key name
        for text in row.pop(WARNINGS, None) or []:
            print(f"warning: {record.name}: {text}", file=sys.stderr, flush=True)
        if row.pop(m.REPLAYED, False) and any(r.get(m.EPOCH) == row.get(m.EPOCH) for r in record.history):
            return  # a restored trial's checkpoint epoch, already recorded: nothing new to log or show
        record.report(row)
        self.location.append_line(json.dumps(row, default=str), record.name, REPORTS)
        self.observer.trial_reported(record)

    def ended(self, trial: Any, error: str | None) -> None:
        if self.interrupted():  # Tune stopping its trials on an interrupt is not an ending
            return
        record = self.record(trial)
        record.state, record.error = "ended", error
        self.active.pop(trial.trial_id, None)
        self.files.ended(trial.trial_id, getattr(trial, "local_path", None))
        release(trial)
        self.observer.trial_ended(record)

    def heartbeat(self, trials: list[Any]) -> None:
        self.interrupted.forward()  # an interrupt that came before Tune's loop could take it
        for trial in trials[len(self.in_order) :]:
            record = self.record(trial)
            self.in_order.append(record)
            if record.state == "paused" and record.history:  # restored waiting at a rung
                self.observer.trial_paused(record)
        for trial_id, (trial, record) in list(self.active.items()):
            status = str(trial.status)
            if status == "PAUSED" and record.state == "running":
                record.state = "paused"
                self.observer.trial_paused(record)
            if status not in ("RUNNING", "PENDING"):
                del self.active[trial_id]
        self.observer.heartbeat(self.in_order)


def release(trial: Any) -> None:
    """Drop what Tune keeps of an ended trial for its own best-trial helpers (nothing here uses them): running
    statistics of every reported metric, about 45 kB a trial in memory and 10 kB in every experiment-state
    snapshot; ten thousand trials' worth would be most of the driver (Ray's side: ray#64231). Assigned, not
    cleared, so that Tune re-serializes the trial."""
    metadata = getattr(trial, "run_metadata", None)
    if metadata is not None and hasattr(metadata, "metric_n_steps"):
        metadata.metric_analysis, metadata.metric_n_steps = {}, {}


def attach(live: LiveTrials | None, trial_faults: Any = None) -> None:
    global _CURRENT, _FAULTS
    _CURRENT, _FAULTS = live, trial_faults


@contextlib.contextmanager
def _storage_faults() -> Iterator[None]:
    """A storage fault while recording an event stops the sweep (through the hook), never Tune's loop."""
    try:
        yield
    except OSError as exc:
        if not storage_guard.declare(exc):
            raise


def error_text(trial: Any) -> str:
    """The trial's error in one line: its exception type and message."""
    path = getattr(trial, "error_file", None) or ""
    last = getattr(trial.run_metadata, "last_error", None) if hasattr(trial, "run_metadata") else None
    text = str(last or f"failed (see {path})").strip().splitlines()
    return (text[-1] if text else "failed")[:500]


class Relay(tune.Callback):
    """Stateless: every event goes to the LiveTrials attached for this run of the driver."""

    def _live(self) -> LiveTrials | None:
        return _CURRENT

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if (live := self._live()) is not None:
            if _FAULTS is not None:
                _FAULTS.poll()
            live.interrupted.forward()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (live := self._live()) is not None:
            with _storage_faults():
                live.started(trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        if (live := self._live()) is not None:
            with _storage_faults():
                live.reported(trial, result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (live := self._live()) is not None:
            with _storage_faults():
                live.ended(trial, None)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (live := self._live()) is not None and not live.interrupted():
            record = live.record(trial)
            print(
                f"retrying: {record.name} failed ({error_text(trial)}); it restarts from its last checkpoint "
                f"(traceback: {live.location.uri(record.name, ERROR_TXT)})",
                file=sys.stderr,
                flush=True,
            )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (live := self._live()) is not None:
            if not live.interrupted():
                name = live.record(trial).name
                print(
                    f"error: {name} failed past its retries ({error_text(trial)}; traceback: "
                    f"{live.location.uri(name, ERROR_TXT)})",
                    file=sys.stderr,
                    flush=True,
                )
            with _storage_faults():
                live.ended(trial, error_text(trial))

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if (live := self._live()) is not None:
            with _storage_faults():
                live.heartbeat(trials)
