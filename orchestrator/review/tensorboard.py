"""Driver-side TensorBoard: the `_summary` run, and the last word on each trial's HParams session.

    tensorboard --logdir runs/smoke --host 127.0.0.1

Trials write their own runs while they train (`trainables.tensorboard_log`), and call themselves running
to the end. What only the driver knows is written here, from the records it holds in memory (Tune's
results as they arrived, never a file a trial may still be writing):
- before the first trial: the HParams experiment (the searched knobs are the columns, the status metric
  first) and the plan, the first entry of the `summary` card;
- when a trial is paused at a rung or ends: its status and final metrics, at its own last step (a record
  at an earlier step would make TensorBoard drop the later ones), and, once it has ended, the session end;
- when the sweep ends: the `summary` card's last entry: the leaderboard, the best checkpoint as a table,
  what early stopping cut, and the plan.
Each write is a new event file named to be read after those already in the run (`EventWriter`). On
object-store storage the same files are written to a local mirror and uploaded as they change.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
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
        self.written: dict[str, str] = {}  # trial name -> the status last written for it

    def _write(self, run: str, write: Callable[[EventWriter], None]) -> None:
        """One new event file in `run`, named to be read after the trial's own files (`EventWriter`)."""
        with EventWriter(self.mirror / run) as writer:
            write(writer)
        if self.location.local_dir is None:  # object store: upload what this writer produced
            self.location.upload(self.mirror / run, run)

    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        """The HParams columns, and the plan as the first entry of the `summary` card (until the sweep ends)."""
        experiment = hparams.experiment(hparam_domains(self.cfg), f"sweep {self.cfg.name}")
        plan = f"## Plan\n\nThe sweep is running: the leaderboard appears here when it has ended.\n\n{_pre(self.plan)}"

        def write(writer: EventWriter) -> None:
            writer.summary(experiment, 0)
            writer.text(SUMMARY_TAG, plan, 0)

        self._write(SUMMARY_RUN, write)

    def _write_status(self, record: TrialRecord, end: bool) -> None:
        """The trial's status and metrics from the driver's own record, at the trial's last step: the same
        step as the trial's last `running` point, which this one replaces (never an earlier step, which
        would make TensorBoard drop the later ones)."""
        status = record.status
        if self.written.get(record.name) == status or record.epochs_run == 0:
            return
        self.written[record.name] = status
        step, values = record.epochs_run, hparams.metric_values(record.history, status)

        def write(writer: EventWriter) -> None:
            writer.scalars(values, step)
            if end and status != "error":  # an errored trial may be retried later (--retry-errored)
                writer.summary(hparams.session_end(status), step)

        self._write(record.name, write)

    def heartbeat(self, records: list[TrialRecord]) -> None:
        for record in records:
            if record.state == "paused" and record.history:
                self._write_status(record, end=False)

    def trial_reported(self, record: TrialRecord) -> None:
        self.written.pop(record.name, None)  # the trial has written `running` at this new step itself

    def trial_ended(self, record: TrialRecord) -> None:
        self._write_status(record, end=True)

    def finish(self, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
        """After the outputs: the summary card, at a step that grows with every resume that trains more."""
        step = sum(int(r["epochs_run"] or 0) for r in rows)
        markdown = summary_markdown(self.cfg, rows, best, self.plan)
        self._write(SUMMARY_RUN, lambda writer: writer.text(SUMMARY_TAG, markdown, step))
