"""The sweep's progress printout: searched knobs only, statuses a person can follow, and no flooding."""

from __future__ import annotations

import io

from orchestrator.progress import Progress, TrialView


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _views() -> list[TrialView]:
    config = {"model": "mlp", "lr": 0.003, "mlp": {"hidden": [64]}}
    return [
        TrialView("a", "RUNNING", config, {"epoch": 2, "val_accuracy": 0.81, "test_accuracy": 0.80}),
        TrialView("b", "TERMINATED", {**config, "lr": 1e-5}, {"epoch": 1, "val_accuracy": 0.17}),
        TrialView("c", "TERMINATED", {**config, "model": "cnn"}, {"epoch": 3, "val_accuracy": 0.85}),
        TrialView("d", "PENDING", config),
        TrialView("e", "ERROR", config, {"epoch": 1, "val_accuracy": 0.5}),
    ]


def test_table_has_the_searched_knobs_and_each_trials_state() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(epochs=3, knobs=["model", "lr", "mlp.hidden"], out=out, clock=clock)
    views = _views()
    for view in views:
        progress.result(view, view.last)
    progress.tick(views, force=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("[00:00] 5 trials: 1 running, 1 pending, 1 stopped by ASHA, 1 completed, 1 failed"
                        " | best so far: c val_acc 0.8500")
    assert lines[1].split() == ["trial", "model", "lr", "mlp.hidden", "status", "epoch", "val_acc", "best_val",
                                "test_acc"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["a"][1:5] == ["mlp", "0.003", "[64]", "running"]
    assert rows["b"][4] == "stopped" and rows["c"][4] == "completed" and rows["e"][4] == "failed"
    assert "d" not in rows and "1 more" in lines[-1]  # pending trials are counted, not listed


def test_tables_are_rate_limited_and_events_are_one_line() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(epochs=3, knobs=["lr"], every_s=30, out=out, clock=clock)
    views = _views()
    for second in range(0, 95, 5):
        clock.now = float(second)
        progress.tick(views)
    assert out.getvalue().count("5 trials:") == 3  # at 30, 60 and 90 s, not every step
    out.truncate(0)
    out.seek(0)
    progress.ended(views[1], failed=False)
    assert out.getvalue() == "[01:30] ended   b  stopped by ASHA after epoch 1 (val_acc 0.1700)\n"


def test_max_rows_bounds_a_large_sweep() -> None:
    out = io.StringIO()
    progress = Progress(epochs=3, knobs=["lr"], max_rows=5, out=out, clock=Clock())
    views = [TrialView(f"t{i}", "TERMINATED", {"lr": i / 100}, {"epoch": 1, "val_accuracy": i / 100})
             for i in range(40)]
    for view in views:
        progress.result(view, view.last)
    progress.tick(views, force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 1 + 5 + 1
    assert [line.split()[0] for line in lines[2:7]] == ["t39", "t38", "t37", "t36", "t35"]
