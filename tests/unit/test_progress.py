"""What a person sees while a sweep runs: events with elapsed time and ETA, a table of the searched knobs."""

from __future__ import annotations

import io

from orchestrator.config import validate
from orchestrator.records import TrialRecord
from orchestrator.review.progress import Progress, planned_epochs
from trainables.recipe import TrialConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(
    name: str, state: str, epochs: list[float], model: str = "mlp", lr: float = 0.003, error: str | None = None
) -> TrialRecord:
    record = TrialRecord(name, name, TrialConfig(model=model, lr=lr, epochs=3, mlp={"hidden": [64]}), error=error)
    for epoch, val in enumerate(epochs, 1):
        record.report({"epoch": epoch, "val_accuracy": val, "test_accuracy": val - 0.01})
    record.state = state  # type: ignore[assignment]
    return record


def _records() -> list[TrialRecord]:
    return [
        _record("a", "running", [0.7, 0.81]),
        _record("b", "ended", [0.17], lr=1e-5),
        _record("c", "ended", [0.8, 0.84, 0.85], model="cnn"),
        _record("d", "pending", []),
        _record("e", "ended", [0.5], error="RuntimeError: boom"),
        _record("f", "paused", [0.6]),
    ]


CFG = validate(
    {
        "name": "t",
        "trial": {"epochs": 3},
        "search": {"space": {"model": {"grid": ["mlp", "cnn"]}, "lr": {"grid": [0.003, 1e-5, 0.1]}}},
    }
)


def test_summary_and_table_show_each_status_and_the_searched_knobs_only() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(CFG, out=out, live=False, clock=clock)
    progress.heartbeat([])
    clock.now = 31
    progress.heartbeat(_records())
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "[00:31] 6 trials: 1 running, 1 waiting at a rung, 1 pending, 1 stopped early, 1 completed, "
        "1 failed | best so far: c val_acc 0.8500"
    )
    assert lines[1].split() == ["trial", "model", "lr", "status", "epoch", "val_acc", "best_val", "test_acc"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["a"][1:4] == ["mlp", "0.003", "running"] and rows["f"][3] == "paused"
    assert rows["b"][3] == "stopped" and rows["c"][3] == "completed" and rows["e"][3] == "error"
    assert "d" not in rows and "1 more" in lines[-1]  # pending trials are counted, not listed


def test_tables_are_rate_limited_events_are_one_line_with_eta() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(CFG, out=out, live=False, every_s=30, clock=clock)
    records = _records()
    for second in range(0, 95, 5):
        clock.now = float(second)
        progress.heartbeat(records)
    assert out.getvalue().count("6 trials:") == 3  # at 30, 60 and 90 s, not every step
    out.truncate(0)
    out.seek(0)
    progress.trial_ended(records[1])
    assert out.getvalue() == "[01:30] ended   b  stopped early after epoch 1 (val_acc 0.1700)\n"
    out.truncate(0)
    out.seek(0)
    progress.trial_reported(records[0])  # one epoch trained in 90 s of this run
    line = out.getvalue()
    assert line.startswith("[01:30] a  epoch 2/3  val_acc 0.8100  | 3 of 6 trials ended, 8 of ~")
    done, planned = 8, planned_epochs(6, 3, 1, 2.0, 1)
    assert f"{done} of ~{planned} trial-epochs, ETA ~" in line
    remaining_seconds = (planned - done) * 90
    assert line.rstrip().endswith(f"{remaining_seconds // 60:02d}:{remaining_seconds % 60:02d}")


def test_the_plan_counts_the_epochs_early_stopping_leaves() -> None:
    assert planned_epochs(4, 3, 1, 2.0, 1) == 4 * 1 + 2 * 1 + 1 * 1  # rungs at 1 and 2: 4 -> 2 -> 1 trials
    assert planned_epochs(12, 5, 1, 3.0, 1) == 12 * 1 + 4 * 2 + 1 * 2  # rungs at 1 and 3
    assert planned_epochs(3, 5, 5, 2.0, 1) == 15  # no rung below max_t: every trial runs to the end
