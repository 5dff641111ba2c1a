"""Selection under budgets: who meets `selection.constraints`, the closest miss, and the parameter budget
refused before Ray starts only when no model of the space can meet it."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config.data_fit import check_fits
from orchestrator.config.schema import ConstraintsConfig, ExperimentConfig
from orchestrator.errors import ConfigError
from orchestrator.outputs.constraints import closest_miss, meets, misses
from orchestrator.records import CheckpointRef, TrialRecord, rank_checkpoints
from trainables import metrics as m
from trainables.data import Dataset, Split
from trainables.recipe import TrialConfig


def _record(name: str, accuracy: float, **costs: float) -> TrialRecord:
    record = TrialRecord(name, name, TrialConfig(epochs=1))
    row = {m.EPOCH: 1, m.VAL_ACCURACY: accuracy, m.TEST_ACCURACY: accuracy, m.DIVERGED: False, **costs}
    record.report(row)
    record.checkpoints.append(CheckpointRef(f"{name}/checkpoint_000000", row))
    record.state = "ended"
    return record


def test_misses_are_shares_of_each_limit_and_both_directions() -> None:
    budget = ConstraintsConfig(max_params=1000, max_latency_ms=2.0, min_throughput=100.0)
    assert misses({m.PARAMS: 1000, m.LATENCY_MS: 2.0, m.THROUGHPUT: 100.0}, budget) == {}
    assert misses({m.PARAMS: 1500, m.LATENCY_MS: 1.0, m.THROUGHPUT: 50.0}, budget) == {
        m.PARAMS: 0.5,
        m.THROUGHPUT: 0.5,
    }
    assert misses({m.PARAMS: 10}, budget)[m.LATENCY_MS] == float("inf"), "an unmeasured cost meets no budget"
    assert misses({}, ConstraintsConfig()) == {}, "no budget: every trial qualifies"


def test_the_best_within_budget_wins_not_the_best_overall() -> None:
    big, small, smaller = (
        _record("big", 0.9, params=50_000),
        _record("small", 0.8, params=9000),
        _record("tiny", 0.7, params=100),
    )
    budget = ConstraintsConfig(max_params=10_000)
    feasible = [r for r in (big, small, smaller) if meets(r, budget)]
    assert [r.name for r, _ in rank_checkpoints(feasible, m.TEST_ACCURACY)][:1] == ["small"]


def test_closest_miss_names_the_trial_and_by_how_much() -> None:
    budget = ConstraintsConfig(max_params=1000, max_latency_ms=1.0)
    records = [
        _record("far", 0.9, params=5000, latency_ms=3.0),
        _record("near", 0.5, params=1200, latency_ms=0.5),
    ]
    line = closest_miss(records, budget)
    assert line == (
        "no trial meets selection.constraints; the closest is near: params 1,200 > max_params 1,000 by 20.0%"
    )
    unmeasured = closest_miss([_record("old", 0.5)], ConstraintsConfig(max_latency_ms=1.0))
    assert "old: latency ms not measured > max_latency_ms 1" in unmeasured


def _dataset() -> Dataset:
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8), np.arange(64) % 10)
    classes = tuple(str(i) for i in range(10))
    return Dataset(split, split, split, "test", classes, (0.5,), (0.25,))


def _config(space: dict[str, object], max_params: int) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "x",
            "trial": {"model": "mlp", "mlp": {"hidden": [64]}, "batch_size": 8, "epochs": 1},
            "search": {"space": space},
            "selection": {"constraints": {"max_params": max_params}},
        }
    )


def test_a_budget_some_listed_model_meets_is_accepted() -> None:
    check_fits(_config({"mlp.hidden": {"grid": [[64], [2]]}}, 2000), _dataset())  # [2]: 1,600 parameters
    with pytest.raises(ConfigError, match="smallest model has 1,600 parameters"):
        check_fits(_config({"mlp.hidden": {"grid": [[64], [2]]}}, 1000), _dataset())


def test_a_sampled_range_is_never_refused_on_its_top_alone() -> None:
    """A range is checked at its top (the largest model); its bottom may fit the budget."""
    cnn = ExperimentConfig.model_validate(
        {
            "name": "x",
            "trial": {"model": "cnn", "cnn": {"channels": [4]}, "batch_size": 8, "epochs": 1},
            "search": {"space": {"cnn.hidden": {"randint": [1, 512]}}},
            "selection": {"constraints": {"max_params": 1000}},
        }
    )
    check_fits(cnn, _dataset())  # hidden 511 has far more than 1,000 parameters; hidden 1 has 845


def test_the_plan_names_the_budgets_the_objectives_and_the_exports() -> None:
    from orchestrator.config.plan import describe

    plan = describe(_config({"mlp.hidden": {"grid": [[64], [2]]}}, 2000), "runs/x")
    assert "  among trials within: params <= 2000" in plan
    assert "exports: best/model.pt, model.pt2, model.onnx" in plan
