"""A multi-objective sweep through the real CLI: Optuna's NSGA-II via Ray's OptunaSearch maximises validation
accuracy and minimises parameters; the ended trials' Pareto front is marked in results.parquet and drawn in
the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import cli

from orchestrator.outputs.pareto import front

pytest.importorskip("optuna", reason="search.algorithm: optuna needs the optuna extra")

CONFIG = """\
name: front
storage_path: {storage}
data: {{train_limit: 1500, val_size: 500}}
trial: {{model: mlp, mlp: {{hidden: [16]}}, optimizer: adam, lr: 1.0e-3, batch_size: 32, epochs: 1}}
search:
  algorithm: optuna
  objectives: [val_accuracy, params]
  num_samples: 4
  max_concurrent_trials: 2
  space: {{mlp.hidden: {{choice: [[2], [8], [32], [64]]}}, lr: {{loguniform: [1.0e-3, 1.0e-2]}}}}
resources: {{cpu: 1}}
export: {{formats: []}}
"""


def test_a_multi_objective_sweep_marks_and_draws_its_pareto_front(tmp_path: Path) -> None:
    config = tmp_path / "front.yaml"
    config.write_text(CONFIG.format(storage=tmp_path / "runs"))
    done = cli("launch", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = tmp_path / "runs" / "front"
    results = pd.read_parquet(experiment / "results.parquet")
    assert len(results) == 4 and results["params"].notna().all()
    rows = results.to_dict("records")
    assert results["pareto"].tolist() == front(rows, ("val_accuracy", "params"))
    on_front = results[results["pareto"]]
    assert 1 <= len(on_front) <= 4
    smallest = results.loc[results["params"].idxmin()]
    assert smallest["pareto"] or (results["params"] == smallest["params"]).sum() > 1, "the smallest is never beaten"
    for row in results[~results["pareto"]].to_dict("records"):  # each one off the front is beaten by a member
        assert any(
            m["best_val_accuracy"] >= row["best_val_accuracy"] and m["params"] <= row["params"]
            for m in on_front.to_dict("records")
        )
    report = cli("report", str(experiment))
    assert report.returncode == 0, report.stderr
    text = (experiment / "report" / "report.md").read_text()
    assert "The Pareto front over val_accuracy (max), params (min)" in text
    assert (experiment / "report" / "pareto.png").stat().st_size > 10_000
    for name in on_front["trial_name"]:
        assert f"| {name[:37]}" in text
