"""The Pareto front of the ended trials, and the multi-objective search's config and searcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.schema import ExperimentConfig
from orchestrator.outputs.pareto import DEFAULT, front, objectives
from orchestrator.review.pareto_report import front_markdown, plot_front


def _row(name: str, acc: float | None, params: int | None, latency: float = 1.0, status: str = "completed") -> dict:
    return {
        "trial_name": name, "status": status, "best_val_accuracy": acc, "best_test_accuracy": acc,
        "params": params, "latency_ms": latency, "checkpoint_mb": None, "throughput": 100.0, "train_seconds": 1.0,
    }  # fmt: skip


ROWS = [
    _row("big", 0.90, 100_000),
    _row("mid", 0.85, 10_000),
    _row("worse-mid", 0.84, 20_000),  # beaten by mid on both
    _row("tiny", 0.60, 1_000),
    _row("equal-tiny", 0.60, 1_000),  # a tie beats neither: both stay on the front
    _row("diverged", 0.99, 10, status="diverged"),
    _row("unmeasured", 0.95, None),
]


def test_the_front_is_what_no_other_trial_beats_on_every_objective() -> None:
    flags = front(ROWS, ("val_accuracy", "params"))
    assert [r["trial_name"] for r, f in zip(ROWS, flags, strict=True) if f] == ["big", "mid", "tiny", "equal-tiny"]


def test_a_maximised_cost_and_three_objectives() -> None:
    rows = [_row("a", 0.9, 10, latency=5.0), _row("b", 0.9, 10, latency=1.0), _row("c", 0.5, 5, latency=9.0)]
    assert front(rows, ("val_accuracy", "params", "latency_ms")) == [False, True, True]
    rows[0]["throughput"] = 1e6
    assert front(rows, ("val_accuracy", "throughput")) == [True, False, False]


def test_objectives_come_from_the_search_or_the_default() -> None:
    assert objectives({"search": {"objectives": ["val_accuracy", "latency_ms"]}}) == ("val_accuracy", "latency_ms")
    assert objectives({"search": {}}) == objectives({}) == DEFAULT


def test_the_report_draws_and_tables_the_front(tmp_path: Path) -> None:
    assert plot_front(ROWS, ("val_accuracy", "params"), tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    text = front_markdown(ROWS, ("val_accuracy", "params"))
    assert "4 of 7 trials" in text and "| big |" in text and "worse-mid" not in text
    assert not plot_front([_row("x", None, None)], DEFAULT, tmp_path / "none.png")


def _config(search: dict[str, Any]) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": "x", "search": search})


def test_multi_objective_config_rules() -> None:
    space = {"lr": {"loguniform": [1e-4, 1e-2]}}
    cfg = _config({"algorithm": "optuna", "objectives": ["val_accuracy", "params"], "space": space})
    assert cfg.search.sampler == "nsga2" and cfg.asha.mode == "async"
    with pytest.raises(ValueError, match="search.objectives: several objectives need search.algorithm: optuna"):
        _config({"objectives": ["val_accuracy", "params"], "space": space})
    with pytest.raises(ValueError, match="search.sampler: chooses a multi-objective sampler"):
        _config({"algorithm": "optuna", "sampler": "tpe", "space": space})
    for bad in (["val_accuracy"], ["params", "params"], ["test_accuracy", "params"]):
        with pytest.raises(ValueError, match="objectives"):
            _config({"algorithm": "optuna", "objectives": bad, "space": space})


def test_the_searcher_keeps_its_objectives_when_tune_hands_it_the_space() -> None:
    pytest.importorskip("optuna")
    import optuna
    from ray import cloudpickle, tune

    from orchestrator.tune.searchers import build_search_alg

    for sampler, kind in (("nsga2", optuna.samplers.NSGAIISampler), ("tpe", optuna.samplers.TPESampler)):
        cfg = _config(
            {
                "algorithm": "optuna",
                "objectives": ["val_accuracy", "latency_ms"],
                "sampler": sampler,
                "space": {"lr": {"loguniform": [1e-4, 1e-2]}},
            }
        )
        searcher = build_search_alg(cfg)
        assert searcher.set_search_properties("val_accuracy", "max", {"lr": tune.loguniform(1e-4, 1e-2)})
        assert searcher.metric == ["val_accuracy", "latency_ms"] and searcher.mode == ["max", "min"]
        study = searcher._ot_study
        assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"] and isinstance(study.sampler, kind)
        restored = cloudpickle.loads(cloudpickle.dumps(searcher))  # Tune keeps it in the experiment state
        assert restored.metric == searcher.metric and restored.suggest("t1")["lr"] > 0
