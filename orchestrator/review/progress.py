"""What a person watching a sweep sees: a line per trial event and per epoch, with elapsed time and ETA.

    [00:41] mlp-lr1e-5-00001  epoch 1/3  val_acc 0.1669  | 1 of 4 trials ended, 6 of ~9 trial-epochs, ETA ~01:02
    [00:41] ended   mlp-lr1e-5-00001  stopped early after epoch 1 (val_acc 0.1669)

On a terminal, a live table (rich) sits under those lines, redrawn in place: the running trials and the
best ended ones, with only the searched knobs as columns. In a log file or CI, where redrawing makes a
mess, the same table is printed as plain lines at most every `every_s` seconds instead. The ETA counts
the trial-epochs the early-stopping plan still has to train, at the pace measured so far in this run.
No Ray here: the observer sees plain `TrialRecord`s.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from orchestrator.config.rungs import rungs
from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import lookup, searched_fields
from orchestrator.outputs.tables import cell
from orchestrator.records import Observer, TrialRecord
from trainables import metrics as m

LIVE_EVERY_S = 1.0  # the live table's redraws
COUNT_EVERY_S = 2.0  # the ETA's counts over every trial
ENDINGS = {
    "stopped": "stopped early after epoch {epoch}",
    "completed": "completed {epoch} epochs",
    "diverged": "diverged at epoch {epoch}",
    "error": "failed after epoch {epoch}",
}


def planned_epochs(trials: int, epochs: int, grace: int, factor: float, brackets: int) -> int:
    """Trial-epochs the sweep trains if early stopping keeps 1/factor of the trials at every rung."""
    total = 0
    for bracket in range(brackets):
        alive = len(range(bracket, trials, brackets))
        done = 0
        for rung in [r for r in rungs(grace, factor, epochs, bracket) if r < epochs]:
            total += alive * (rung - done)
            done, alive = rung, max(1, math.floor(alive / factor)) if alive else 0
        total += alive * (epochs - done)
    return total


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


class Progress(Observer):
    def __init__(
        self,
        cfg: ExperimentConfig,
        out: TextIO | None = None,
        live: bool | None = None,
        every_s: float = 30.0,
        max_rows: int = 12,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.knobs = searched_fields(cfg.search.space)
        self.epochs, self.trials = cfg.trial.epochs, cfg.trial_count
        self.planned = (
            cfg.trial_count * cfg.trial.epochs  # a population trains every member to the end
            if cfg.population is not None
            else planned_epochs(
                cfg.trial_count, cfg.trial.epochs, cfg.asha.grace_period, cfg.asha.reduction_factor, cfg.asha.brackets
            )
        )
        self.out, self.every_s, self.max_rows, self.clock = out, every_s, max_rows, clock
        stream = out or sys.stdout
        self.live = stream.isatty() if live is None else live
        self.start = self.last_table = clock()
        self.trained_here = 0  # trial-epochs trained by this run of the driver: the pace for the ETA
        self.records: list[TrialRecord] = []
        self._live: Any = None
        self._live_at = -math.inf  # when the live table was last redrawn
        self._counts: tuple[float, int, int] | None = None  # (when, trial-epochs done, trials ended)

    # ------------------------------------------------------------------ output

    def _stream(self) -> TextIO:
        return self.out or sys.stdout

    def _print(self, text: str) -> None:
        line = f"[{_clock(self.clock() - self.start)}] {text}"
        if self._live is not None:
            self._live.console.print(line, highlight=False, markup=False)
        else:
            print(line, file=self._stream(), flush=True)

    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        self.start = self.last_table = self.clock()
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._rich_table([]), console=Console(file=self._stream()), refresh_per_second=2, transient=False
            )
            self._live.start()

    def sweep_ended(self, records: list[TrialRecord], interrupted: bool) -> None:
        self.records = records
        if self._live is not None:
            self._live.update(self._rich_table(records))
            self._live.stop()
            self._live = None
        else:
            self._print(self.summary_line(records))
            print(self.table(records), file=self._stream(), flush=True)

    # ------------------------------------------------------------------ events

    def _knob_text(self, record: TrialRecord) -> str:
        values = record.config.model_dump(mode="json")
        return " ".join(f"{k}={cell(lookup(values, k))}" for k in self.knobs)

    def trial_started(self, record: TrialRecord) -> None:
        again = f" (from epoch {record.epochs_run + 1})" if record.epochs_run else ""
        self._print(f"started {record.name}{again}  {self._knob_text(record)}".rstrip())

    def trial_reported(self, record: TrialRecord) -> None:
        self.trained_here += 1
        last = record.last
        self._print(
            f"{record.name}  epoch {last.get(m.EPOCH)}/{self.epochs}  val_acc {cell(last.get(m.VAL_ACCURACY))}"
            f"  | {self.eta_text()}"
        )

    def trial_ended(self, record: TrialRecord) -> None:
        how = ENDINGS.get(record.status, "ended after epoch {epoch}").format(epoch=record.epochs_run)
        self._print(f"ended   {record.name}  {how} (val_acc {cell(record.last.get(m.VAL_ACCURACY))})")

    def heartbeat(self, records: list[TrialRecord]) -> None:
        self.records = records
        if self._live is not None:
            if self.clock() - self._live_at >= LIVE_EVERY_S:  # the table reads every record: not every step
                self._live_at = self.clock()
                self._live.update(self._rich_table(records))
            return
        if self.clock() - self.last_table < self.every_s:
            return
        self.last_table = self.clock()
        self._print(self.summary_line(records))
        if any(r.status != "pending" for r in records):
            print(self.table(records), file=self._stream(), flush=True)

    # ------------------------------------------------------------------ text

    def _done_and_ended(self) -> tuple[int, int]:
        """Trial-epochs trained and trials ended, over every record: counted at most every COUNT_EVERY_S
        (each event line shows them, and a sweep can hold ten thousand trials)."""
        now = self.clock()
        if self._counts is None or now - self._counts[0] >= COUNT_EVERY_S:
            self._counts = (now, sum(r.epochs_run for r in self.records), sum(r.ended for r in self.records))
        return self._counts[1], self._counts[2]

    def eta_text(self) -> str:
        done, ended = self._done_and_ended()
        elapsed = self.clock() - self.start
        remaining = max(self.planned - done, 0)
        pace = self.trained_here / elapsed if elapsed > 0 and self.trained_here else 0.0
        eta = _clock(remaining / pace) if pace else "--:--"
        return f"{ended} of {self.trials} trials ended, {done} of ~{self.planned} trial-epochs, ETA ~{eta}"

    def summary_line(self, records: list[TrialRecord]) -> str:
        counts: dict[str, int] = {}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        order = ("running", "paused", "pending", "stopped", "completed", "diverged", "error")
        names = {"stopped": "stopped early", "error": "failed", "paused": "waiting at a rung"}
        parts = [f"{counts.get(s, 0)} {names.get(s, s)}" for s in order if counts.get(s) or s in order[:5]]
        line = f"{len(records)} trials: " + ", ".join(parts)
        best = max(records, key=lambda r: r.best(m.VAL_ACCURACY) or -1.0, default=None)
        if best is not None and best.best(m.VAL_ACCURACY) is not None:
            line += f" | best so far: {best.name} val_acc {best.best(m.VAL_ACCURACY):.4f}"
        return line

    def _rows(self, records: list[TrialRecord]) -> tuple[list[str], list[list[str]], int]:
        active = [r for r in records if r.status in ("running", "paused")]
        others = sorted(
            (r for r in records if r.status not in ("running", "paused", "pending")),
            key=lambda r: -(r.best(m.VAL_ACCURACY) or -1.0),
        )
        shown = (active + others)[: self.max_rows]
        header = ["trial", *self.knobs, "status", "epoch", "val_acc", "best_val", "test_acc"]
        body = [
            [
                r.name,
                *[cell(lookup(r.config.model_dump(mode="json"), k)) for k in self.knobs],
                r.status,
                cell(r.last.get(m.EPOCH)),
                cell(r.last.get(m.VAL_ACCURACY)),
                cell(r.best(m.VAL_ACCURACY)),
                cell(r.last.get(m.TEST_ACCURACY)),
            ]
            for r in shown
        ]
        return header, body, len(records) - len(shown)

    def table(self, records: list[TrialRecord]) -> str:
        header, body, hidden = self._rows(records)
        rows = [header, *body]
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        lines = ["  " + "  ".join(text.ljust(w) for text, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        if hidden:
            lines.append(f"  ... {hidden} more (pending or lower on the board)")
        return "\n".join(lines)

    def _rich_table(self, records: list[TrialRecord]) -> Any:
        from rich import box
        from rich.table import Table

        header, body, hidden = self._rows(records)
        table = Table(
            title=f"{self.summary_line(records)}\n{self.eta_text()}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for column in header:  # numbers keep their width; on a narrow terminal a trial name folds instead
            if column == "trial":
                table.add_column(column, overflow="fold", min_width=min(max(len(r[0]) for r in [header, *body]), 24))
            else:
                table.add_column(column, no_wrap=True, min_width=len(column))
        for row in body:
            table.add_row(*row)
        if hidden:
            table.caption = f"... {hidden} more (pending or lower on the board)"
        return table
