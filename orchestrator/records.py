"""One trial's record: its status, per-epoch history, best and final metrics, kept checkpoints.

    record.status            # pending | running | paused | completed | stopped | diverged | error | unfinished
    record.row(metric)       # its results.parquet row;  record.history_rows()  # its history.parquet rows

Built once per trial and used by everything that shows a trial: selection, the progress lines, TensorBoard,
the report, MLflow and the Parquet writers. Live trials (built by the Tune adapter from what Ray holds in
memory) and finished ones (read back from the experiment's files by `read_trial`) go through the same
code, so a status or a best accuracy is computed in exactly one place. No Ray here.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator import storage_guard
from orchestrator.location import ERROR_TXT, PARAMS_JSON, REPORTS, RESULT_JSON, Location
from trainables import metrics as m
from trainables.metrics import finite
from trainables.recipe import TrialConfig

State = Literal["pending", "running", "paused", "ended"]
ENDED_STATUSES = ("completed", "stopped", "diverged", "error")
STATUSES = ("pending", "running", "paused", *ENDED_STATUSES, "unfinished")
# history.parquet: identity, the reported metrics, and Ray's clock.
HISTORY_COLUMNS = (
    "trial_id", "trial_name", m.EPOCH, m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.VAL_LOSS, m.VAL_ACCURACY,
    m.TEST_LOSS, m.TEST_ACCURACY, *m.CLASS_BALANCED, m.LR, m.LR_LAST, m.EPOCH_SECONDS, m.SAMPLES_PER_SECOND,
    m.DIVERGED, m.NODE_ID, "time_total_s", "timestamp",
)  # fmt: skip
LINEAGE = "pbt."  # a population member's generation, parent and knob values per epoch (trainables.exploit)


@dataclass(frozen=True)
class CheckpointRef:
    """A kept checkpoint: its directory relative to the experiment (`<trial>/checkpoint_000003`, so a moved
    experiment still finds it) and the report it came with."""

    path: str
    metrics: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.metrics[m.EPOCH])


@dataclass
class TrialRecord:
    trial_id: str
    name: str
    config: TrialConfig
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch, in order
    checkpoints: list[CheckpointRef] = field(default_factory=list)
    error: str | None = None  # set when the trial failed past its retries
    state: State = "pending"
    live: bool = True  # its sweep is running now; a record read from an interrupted sweep is not

    def report(self, row: dict[str, Any]) -> None:
        """A new report: an epoch re-run after a restart replaces the row of the timeline that was lost."""
        self.history = merge_history([*self.history, row])
        if self.state == "pending":
            self.state = "running"

    @property
    def epochs_run(self) -> int:
        return max((int(row[m.EPOCH]) for row in self.history if finite(row.get(m.EPOCH))), default=0)

    @property
    def diverged(self) -> bool:
        """Its last epoch diverged. (A trial ends at a divergence; only a population member goes on after
        one, as a copy of another member, and is judged by what it did after.)"""
        return bool(self.history and self.history[-1].get(m.DIVERGED))

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.diverged:
            return "diverged"
        if self.epochs_run >= self.config.epochs:
            return "completed"
        if self.state == "ended":
            return "stopped"
        return self.state if self.live else "unfinished"

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    def best(self, key: str) -> float | None:
        values = [row[key] for row in self.history if finite(row.get(key))]
        return max(values, default=None)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    @property
    def costs(self) -> dict[str, Any]:
        """What the trial's model costs (trainables.costs), as its latest report measured it; None if unknown."""
        last = self.last
        return {key: last.get(key) if finite(last.get(key)) else None for key in m.COSTS}

    def best_checkpoint(self, metric: str) -> CheckpointRef | None:
        ranked = rank_checkpoints([self], metric)
        return ranked[0][1] if ranked else None

    def row(self, metric: str) -> dict[str, Any]:
        """The results.parquet row: status, final and best metrics, best checkpoint, every knob (config.*)."""
        last, best = self.last, self.best_checkpoint(metric)
        row: dict[str, Any] = {
            "trial_id": self.trial_id, "trial_name": self.name, "status": self.status,
            "stopped_early": self.status == "stopped", "epochs_run": self.epochs_run, "error": self.error,
            "final_train_loss": last.get(m.TRAIN_LOSS), "final_train_accuracy": last.get(m.TRAIN_ACCURACY),
            "final_val_loss": last.get(m.VAL_LOSS), "final_val_accuracy": last.get(m.VAL_ACCURACY),
            "final_test_accuracy": last.get(m.TEST_ACCURACY),
            "best_val_accuracy": self.best(m.VAL_ACCURACY), "best_test_accuracy": self.best(m.TEST_ACCURACY),
            **{f"final_{k}": last.get(k) for k in m.CLASS_BALANCED},
            **{f"best_{k}": self.best(k) for k in m.CLASS_BALANCED},
            "best_epoch": best.epoch if best else None,
            "best_checkpoint": best.path if best else None,
            "wall_seconds": last.get("time_total_s"),
        }  # fmt: skip
        row.update(self.costs)
        row.update({f"config.{k}": v for k, v in self.config.knobs().items()})
        return row

    def history_rows(self) -> list[dict[str, Any]]:
        return [
            {
                **{key: row.get(key) for key in HISTORY_COLUMNS},
                **{k: v for k, v in row.items() if k.startswith(LINEAGE)},
                "trial_id": self.trial_id,
                "trial_name": self.name,
            }
            for row in self.history
        ]


def merge_history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch, the last one reported, in epoch order."""
    by_epoch = {int(row[m.EPOCH]): row for row in rows if finite(row.get(m.EPOCH))}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def rank_checkpoints(records: list[TrialRecord], metric: str) -> list[tuple[TrialRecord, CheckpointRef]]:
    """Every kept checkpoint with a finite score, best first; diverged and failed trials never qualify.

    The score is `trainables.metrics.selection_score`; an exact tie goes to the later epoch. Retention
    (`outputs.retention`) keeps each trial's checkpoints by this same ranking, so the checkpoint ranked
    first is never one that retention already deleted."""
    candidates = [
        (record, ref)
        for record in records
        if not record.diverged and not record.error
        for ref in record.checkpoints
        if finite(m.selection_score(ref.metrics, metric))
    ]
    return sorted(candidates, key=lambda c: (-m.selection_score(c[1].metrics, metric), -c[1].epoch, c[0].name))


def read_jsonl(text: str) -> list[dict[str, Any]]:
    """Ray's result.json: one JSON object per line; a line cut short (being written, or by a crash) is skipped."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_reports(location: Location, name: str) -> list[dict[str, Any]]:
    """What a trial reported: the driver's own log of it, and Ray's result.json (which a killed driver can
    leave a few rows short) for trials from before that log existed; both, merged by epoch, later wins."""
    rows = []
    for file in (RESULT_JSON, REPORTS):
        if location.is_file(name, file):
            rows += read_jsonl(location.read_bytes(name, file).decode(errors="replace"))
    return rows


def trial_dirs(location: Location) -> list[str]:
    """Names of the experiment's trial directories (those Ray wrote a params.json into), sorted."""
    names = [
        info.base_name
        for info in location.children()
        if info.type.name == "Directory" and not info.base_name.startswith((".", "_"))
    ]
    return sorted(name for name in names if location.is_file(name, PARAMS_JSON))


def read_trial(
    location: Location,
    name: str,
    fixed: dict[str, Any],
    ended: dict[str, Any] | None,
    max_failures: int | None,
    live: bool,
) -> TrialRecord:
    """A trial read back from its directory: Ray's result.json and params.json, its checkpoint folders, and
    how it ended as the driver recorded it in status.json (`ended`: None while it had not ended)."""
    history = merge_history(read_reports(location, name))
    sampled = location.read_json(name, PARAMS_JSON)
    folders = {info.base_name for info in location.children(name) if info.base_name.startswith("checkpoint_")}
    checkpoints = [
        CheckpointRef(f"{name}/{row['checkpoint_dir_name']}", row)
        for row in history
        if row.get("checkpoint_dir_name") in folders
    ]
    error = (ended or {}).get("error")
    if error is None and ended is None and max_failures is not None:
        failures = _failures(location, name)
        if failures > max_failures:
            error = f"{failures} failure(s), see {location.uri(name, ERROR_TXT)}"
    trial_id = str(history[-1].get("trial_id")) if history else name.rsplit("-", 1)[-1]
    record = TrialRecord(trial_id, name, TrialConfig.resolve(fixed, sampled), history, checkpoints, error, live=live)
    record.state = "ended" if ended is not None or error else ("running" if history else "pending")
    return record


def _failures(location: Location, name: str) -> int:
    if not location.is_file(name, ERROR_TXT):
        return 0
    text = location.read_bytes(name, ERROR_TXT).decode(errors="replace")
    return sum(line.startswith("Failure #") for line in text.splitlines())


class Observer:
    """Told of every trial as the sweep runs (plain records only). Every hook is optional."""

    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        """Before the first trial starts (or resumes)."""

    def trial_started(self, record: TrialRecord) -> None:
        """A trial started, or restarted after a failure, a pause or a resume."""

    def trial_reported(self, record: TrialRecord) -> None:
        """A trial reported an epoch; `record.last` is that report."""

    def trial_ended(self, record: TrialRecord) -> None:
        """A trial completed, was stopped early, diverged, or failed past its retries."""

    def trial_paused(self, record: TrialRecord) -> None:
        """A trial stopped to wait at a rung (or was restored waiting at one)."""

    def heartbeat(self, records: list[TrialRecord]) -> None:
        """After each step of Tune's loop (often: throttle yourself, and never scan `records` per step: a
        sweep can hold ten thousand trials). `records` is every trial so far, in Tune's order."""

    def sweep_ended(self, records: list[TrialRecord], interrupted: bool) -> None:
        """After the last trial ended, or after an interrupt stopped the sweep."""


class Observers(Observer):
    """Several observers as one; a failing review aid prints a warning and never ends a sweep."""

    def __init__(self, observers: list[Observer]) -> None:
        self.observers = observers

    def _each(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception as exc:  # noqa: BLE001 - a display or tracking problem must not stop training
                if storage_guard.declare(exc):  # a full disk or a store that stayed down: the sweep stops
                    continue
                print(
                    f"warning: {type(observer).__name__}.{hook} failed: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )

    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        self._each("sweep_started", records, resumed)

    def trial_started(self, record: TrialRecord) -> None:
        self._each("trial_started", record)

    def trial_reported(self, record: TrialRecord) -> None:
        self._each("trial_reported", record)

    def trial_ended(self, record: TrialRecord) -> None:
        self._each("trial_ended", record)

    def trial_paused(self, record: TrialRecord) -> None:
        self._each("trial_paused", record)

    def heartbeat(self, records: list[TrialRecord]) -> None:
        self._each("heartbeat", records)

    def sweep_ended(self, records: list[TrialRecord], interrupted: bool) -> None:
        self._each("sweep_ended", records, interrupted)
