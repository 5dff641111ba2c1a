"""Driver-side TensorBoard: the `_summary` run, and each trial's HParams metrics and session end.

    tensorboard --logdir runs/smoke --host 127.0.0.1

Trials write their own runs while they train (`trainables.tensorboard_log`): learning curves, lr, speed,
weight histograms and the session start. The HParams metrics (`trial/...`) are written here, from the
records the driver holds in memory (every result Tune has handed over, never a file a trial or Ray may
still be writing), so each is right when it is written, and the trial's run has one writer of them:
- before the first trial: the HParams experiment (the searched knobs are the columns, the status metric
  first) and the plan, the first entry of the `summary` card;
- each report: status running, epochs run, best and final accuracies so far;
- when a trial is paused at a rung or ends: its status and final metrics, and, once it has ended, the
  session end. Always at the trial's own last step: a record at an earlier step would make TensorBoard
  drop the later ones;
- when the sweep ends: the `summary` card's last entry: the leaderboard, the best checkpoint as a table,
  what early stopping cut, and the plan.
Event files are named to be read after those already in the run (`EventWriter`). On object-store storage
the same files are written to a local mirror and uploaded as they change.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import dimensions
from orchestrator.location import SUMMARY_RUN, Location
from orchestrator.records import Observer, TrialRecord
from orchestrator.review.summaries import summary_markdown
from trainables import hparams
from trainables.tensorboard_log import EventWriter

SUMMARY_TAG = "summary"  # the one TEXT card


def hparam_domains(cfg: ExperimentConfig) -> dict[str, list[Any] | tuple[float, float]]:
    """The HParams columns: every searched knob (a searched section's fields), with its values or range."""
    domains: dict[str, list[Any] | tuple[float, float]] = {}
    for path, (kind, args) in dimensions(cfg.search.space).items():
        if kind not in ("grid", "choice"):
            domains[path] = (float(args[0]), float(args[1]))
        elif all(isinstance(v, dict) for v in args):  # a whole section, as partial values
            for value in args:
                for key, field_value in value.items():
                    values = domains.setdefault(f"{path}.{key}", [])
                    if isinstance(values, list) and field_value not in values:
                        values.append(field_value)
        else:
            domains[path] = list(args)
    return domains


def _pre(text: str) -> str:
    """A Markdown code block: keeps the plan's alignment in TensorBoard's text tab."""
    return "\n".join("    " + line for line in text.splitlines())


class DriverBoard(Observer):
    def __init__(self, cfg: ExperimentConfig, location: Location, plan: str) -> None:
        self.cfg, self.location, self.plan = cfg, location, plan
        self.mirror = location.local_dir or Path(tempfile.mkdtemp(prefix="board-"))
        self.open: dict[str, EventWriter] = {}  # trial name -> its event file while the trial runs
        self.written: dict[str, str] = {}  # trial name -> the status last written for it

    def _sync(self, run: str) -> None:
        if self.location.local_dir is None:  # object store: upload what this run's writers produced
            self.location.upload(self.mirror / run, run)

    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        """The HParams columns, and the plan as the first entry of the `summary` card (until the sweep ends)."""
        experiment = hparams.experiment(hparam_domains(self.cfg), f"sweep {self.cfg.name}")
        plan = f"## Plan\n\nThe sweep is running: the leaderboard appears here when it has ended.\n\n{_pre(self.plan)}"
        with EventWriter(self.mirror / SUMMARY_RUN) as writer:
            writer.summary(experiment, 0)
            writer.text(SUMMARY_TAG, plan, 0)
        self._sync(SUMMARY_RUN)

    def _write_status(self, record: TrialRecord, status: str, end: bool) -> None:
        """The trial's HParams metrics from the driver's record of it (every result Tune has handed over),
        at its last step: a record at an earlier step would make TensorBoard drop the later ones, and one
        at the same step replaces the one written before. The trial's event file stays open while it runs
        (one file per stretch of training) and is closed when it pauses at a rung or ends."""
        if record.epochs_run == 0 or self.written.get(record.name) == status:
            return
        self.written[record.name] = status
        writer = self.open.get(record.name)
        if writer is None:
            writer = self.open[record.name] = EventWriter(self.mirror / record.name)
        writer.scalars(hparams.metric_values(record.history, status), record.epochs_run)
        if end and status != "error":  # an errored trial may be retried later (--retry-errored)
            writer.summary(hparams.session_end(status), record.epochs_run)
        if status != "running":
            self.open.pop(record.name).close()
        self._sync(record.name)

    def trial_reported(self, record: TrialRecord) -> None:
        """Running, whatever the epoch: whether it was the last (completed), or early stopping cuts the trial
        here, is known when Tune has ended it."""
        self.written.pop(record.name, None)
        self._write_status(record, "running", end=False)

    def trial_paused(self, record: TrialRecord) -> None:
        if record.history:
            self._write_status(record, "paused", end=False)

    def trial_ended(self, record: TrialRecord) -> None:
        self._write_status(record, record.status, end=True)

    def sweep_ended(self, records: list[TrialRecord], interrupted: bool) -> None:
        for name in list(self.open):  # an interrupt leaves trials running: their last word stays `running`
            self.open.pop(name).close()

    def finish(self, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
        """After the outputs: the summary card, at a step that grows with every resume that trains more."""
        step = sum(int(r["epochs_run"] or 0) for r in rows)
        with EventWriter(self.mirror / SUMMARY_RUN) as writer:
            writer.text(SUMMARY_TAG, summary_markdown(self.cfg, rows, best, self.plan), step)
        self._sync(SUMMARY_RUN)
