"""What a person watching a sweep sees: one line per trial event, and a compact table now and then.

    [00:41] ended   mlp-adam-lr1e-5-bs128-8de64_00001  stopped by ASHA after epoch 1 (val_acc 0.1669)
    [01:00] 4 trials: 1 running, 1 pending, 1 stopped by ASHA, 1 completed, 0 failed | best so far: ...
      trial                              model  lr      status     epoch  val_acc  best_val  test_acc

The table's knob columns are the searched keys only (what differs between trials), not every config
key; it shows the running trials and the best ended ones, at most `max_rows`, and is printed at most
every `every_s` seconds, so a long sweep does not flood the terminal. Ray's own progress output is
off (`verbose=0`): its new output engine ignores `progress_reporter`, and its tables list every
reported metric. No Ray here: `tuning` turns Tune's trial objects into `TrialView`s.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from orchestrator.summaries import cell
from trainables import metrics as m


@dataclass(frozen=True)
class TrialView:
    name: str
    state: str  # Tune's: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    config: dict[str, Any]  # the sampled values, nested as in the search space
    last: dict[str, Any] = field(default_factory=dict)  # the last reported metrics


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Progress:
    def __init__(self, epochs: int, knobs: list[str], every_s: float = 30.0, max_rows: int = 12,
                 out: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.epochs, self.knobs, self.every_s, self.max_rows = epochs, knobs, every_s, max_rows
        self.out, self.clock = out, clock  # stdout is looked up when printing: Tune pickles callbacks
        self.restart()
        self.best_val: dict[str, float] = {}
        self.ended_as: dict[str, str] = {}

    def restart(self) -> None:
        """The clock starts again when a resumed sweep starts (Tune restores this object from disk)."""
        self.start = self.last_table = self.clock()

    def _print(self, text: str) -> None:
        elapsed = int(self.clock() - self.start)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}", file=self.out or sys.stdout, flush=True)

    def _knob_text(self, view: TrialView) -> str:
        return " ".join(f"{k}={cell(lookup(view.config, k))}" for k in self.knobs)

    def started(self, view: TrialView) -> None:
        self._print(f"started {view.name}  {self._knob_text(view)}".rstrip())

    def result(self, view: TrialView, result: dict[str, Any]) -> None:
        if _finite(result.get(m.VAL_ACCURACY)):
            self.best_val[view.name] = max(self.best_val.get(view.name, -1.0), result[m.VAL_ACCURACY])

    def category(self, view: TrialView) -> str:
        if view.name in self.ended_as:
            return self.ended_as[view.name]
        return {"PENDING": "pending", "ERROR": "failed", "TERMINATED": self._ended_kind(view)}.get(
            view.state, "running")

    def _ended_kind(self, view: TrialView) -> str:
        if view.last.get(m.DIVERGED):
            return "diverged"
        epoch = view.last.get(m.EPOCH)
        return "completed" if _finite(epoch) and epoch >= self.epochs else "stopped"

    def ended(self, view: TrialView, failed: bool) -> None:
        kind = "failed" if failed else self._ended_kind(view)
        self.ended_as[view.name] = kind
        epoch, val = view.last.get(m.EPOCH, 0), view.last.get(m.VAL_ACCURACY)
        how = {"stopped": f"stopped by ASHA after epoch {epoch}", "completed": f"completed {epoch} epochs",
               "diverged": f"diverged at epoch {epoch}", "failed": f"failed after epoch {epoch}"}[kind]
        self._print(f"ended   {view.name}  {how} (val_acc {cell(val)})")

    def tick(self, views: list[TrialView], force: bool = False) -> None:
        if not force and self.clock() - self.last_table < self.every_s:
            return
        self.last_table = self.clock()
        self._print(self.summary_line(views))
        if any(self.category(v) != "pending" for v in views):
            print(self.table(views), file=self.out or sys.stdout, flush=True)

    def summary_line(self, views: list[TrialView]) -> str:
        counts = {k: 0 for k in ("running", "pending", "stopped", "completed", "diverged", "failed")}
        for view in views:
            counts[self.category(view)] += 1
        parts = [f"{counts['running']} running", f"{counts['pending']} pending",
                 f"{counts['stopped']} stopped by ASHA", f"{counts['completed']} completed"]
        parts += [f"{counts[k]} {k}" for k in ("diverged", "failed") if counts[k]]
        line = f"{len(views)} trials: " + ", ".join(parts)
        if self.best_val:
            name = max(self.best_val, key=self.best_val.__getitem__)
            line += f" | best so far: {name} val_acc {self.best_val[name]:.4f}"
        return line

    def table(self, views: list[TrialView]) -> str:
        running = [v for v in views if self.category(v) == "running"]
        others = sorted((v for v in views if self.category(v) not in ("running", "pending")),
                        key=lambda v: -self.best_val.get(v.name, -1.0))
        shown = (running + others)[: self.max_rows]
        header = ["trial", *self.knobs, "status", "epoch", "val_acc", "best_val", "test_acc"]
        rows = [header] + [
            [v.name, *[cell(lookup(v.config, k)) for k in self.knobs], self.category(v),
             cell(v.last.get(m.EPOCH)), cell(v.last.get(m.VAL_ACCURACY)), cell(self.best_val.get(v.name)),
             cell(v.last.get(m.TEST_ACCURACY))]
            for v in shown
        ]
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        lines = ["  " + "  ".join(text.ljust(w) for text, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        hidden = len(views) - len(shown)
        if hidden:
            lines.append(f"  ... {hidden} more (pending or lower on the board)")
        return "\n".join(lines)
