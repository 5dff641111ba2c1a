"""Search algorithms: a seeded TPE proposes the same trials twice, grids are refused for TPE with one line,
the random searcher enforces the concurrency cap, and a real Optuna + ASHA sweep runs through the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import cli

from orchestrator.config import validate
from trainables import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "optimizer": {"choice": ["sgd", "adam", "momentum"]},
    "mlp.hidden": {"choice": [[64], [128, 64]]},
    "schedule.name": {"choice": ["none", "plateau"]},
    "schedule.plateau.factor": {"uniform": [0.1, 0.9]},
}


def _first_suggestions(seed: int, count: int = 4) -> list[dict]:
    pytest.importorskip("optuna")
    from orchestrator.tune.searchers import build_search_alg, param_space
    from trainables import metrics as m

    cfg = validate(
        {"name": "t", "seed": seed, "trial": {"epochs": 2}, "search": {"algorithm": "optuna", "space": SPACE}}
    )
    searcher = build_search_alg(cfg)
    assert searcher.set_search_properties(m.ASHA_METRIC, "max", param_space(cfg))
    return [searcher.suggest(f"trial_{i}") for i in range(count)]


def test_seeded_optuna_proposes_the_same_first_trials_twice() -> None:
    first, again = _first_suggestions(seed=7), _first_suggestions(seed=7)
    assert first == again
    assert len({s["lr"] for s in first}) == len(first)  # really sampled, not one point repeated
    assert _first_suggestions(seed=8) != first


def test_optuna_concurrency_cap_is_the_searchers() -> None:
    pytest.importorskip("optuna")
    from ray.tune.search import ConcurrencyLimiter

    from orchestrator.tune.searchers import build_search_alg

    cfg = validate(
        {
            "name": "t",
            "trial": {"epochs": 2},
            "search": {"algorithm": "optuna", "max_concurrent_trials": 2, "space": SPACE},
        }
    )
    searcher = build_search_alg(cfg)
    assert isinstance(searcher, ConcurrencyLimiter) and searcher.max_concurrent == 2


def test_random_search_is_seeded_and_capped() -> None:
    from orchestrator.tune.searchers import build_search_alg
    from orchestrator.tune.tuner import _scheduler

    search = {"max_concurrent_trials": 3, "space": SPACE}
    cfg = validate({"name": "t", "trial": {"epochs": 2}, "search": search, "asha": {"mode": "async"}})
    assert build_search_alg(cfg).max_concurrent == 3  # Tune would ignore TuneConfig.max_concurrent_trials for it
    # Deterministic mode: the scheduler caps (the generator would count trials paused at a rung as running).
    cfg = validate({"name": "t", "trial": {"epochs": 2}, "search": search})
    assert build_search_alg(cfg).max_concurrent == 0 and _scheduler(cfg).max_concurrent == 3


def _launch(args: list[str]) -> subprocess.CompletedProcess[str]:
    return cli("launch", *args)


def test_a_grid_under_optuna_is_one_line_and_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    proc = _launch(
        [str(ROOT / "configs" / "smoke.yaml"), "--set", "search.algorithm=optuna", "--storage-path", str(tmp_path)]
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "config error: search.space.model: grid is not searchable by optuna (TPE samples distributions): "
        "write choice, or use search.algorithm: random (got {'grid': ['mlp', 'cnn']})"
    ]
    assert list(tmp_path.iterdir()) == []


def test_optuna_with_asha_and_the_recipe_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    config = tmp_path / "bo.yaml"
    config.write_text(f"""
name: bo
storage_path: {tmp_path / "runs"}
seed: 3
data: {{train_limit: 1000}}
trial:
  model: mlp
  mlp: {{hidden: [32]}}
  epochs: 2
  schedule: {{name: plateau}}
  augment: {{crop_padding: 1, flip: true}}
  loss: {{l1: 1.0e-5, label_smoothing: 0.1}}
  clip: {{by: norm, threshold: 5.0}}
  init: {{scheme: kaiming}}
search:
  algorithm: optuna
  num_samples: 3
  max_concurrent_trials: 2
  space:
    lr: {{loguniform: [1.0e-4, 1.0e-2]}}
    optimizer: {{choice: [adam, momentum]}}
resources: {{cpu: 1}}
asha: {{grace_period: 1, reduction_factor: 2}}
""")
    proc = _launch([str(config)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "search algorithm: optuna TPE, seed 3" in proc.stdout
    table = pq.read_table(tmp_path / "runs" / "bo" / "results.parquet").to_pylist()
    assert len(table) == 3 and len({row["config.lr"] for row in table}) == 3
    assert all(row["config.schedule.name"] == "plateau" and row["config.augment.flip"] for row in table)
    best = next(row for row in table if row["best_checkpoint"])
    state = ckpt.load(tmp_path / "runs" / "bo" / best["best_checkpoint"] / ckpt.CHECKPOINT_FILE)  # relative
    assert state["scheduler"]["plateau"]["best"] < float("inf")  # the plateau scheduler saw a validation loss
    assert isinstance(state["optimizer"], dict) and torch.is_tensor(next(iter(state["model"].values())))
