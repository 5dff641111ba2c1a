"""The GPU memory preflight: an impossible packing is refused before Ray starts (a dry run checks it too,
so a laptop without a GPU can check a cluster's plan); a sane one passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.config.gpu_memory import GIB, candidate_trials, check_gpu_packing, estimate
from orchestrator.errors import ConfigError
from trainables.recipe import TrialConfig

REPO = Path(__file__).resolve().parents[2]
MIXED = "search.space.batch_size={grid: [32, 256, 10000]}"
FASHION = ((1, 28, 28), 10, 70_000 * (784 + 8))  # input shape, classes, resident bytes


def launch(tmp_path: Path, *overrides: str, dry_run: bool = False) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        "-m",
        "orchestrator",
        "launch",
        str(REPO / "configs/smoke.yaml"),
        "--storage-path",
        str(tmp_path / "runs"),
        *[a for o in overrides for a in ("--set", o)],
    ]
    return subprocess.run(
        args + (["--dry-run"] if dry_run else []), capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_impossible_packing_is_refused_before_ray(tmp_path: Path) -> None:
    # 100 CNN trials of batch 10000 on one 16 GiB GPU: each needs a CUDA context and GiBs of activations.
    out = launch(tmp_path, "resources.gpu=0.01", "runtime.gpu_memory_gb=16", MIXED, "trial.model=cnn", dry_run=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: resources.gpu: 100 trials per GPU need"), out.stderr
    assert "batch_size 10000" in lines[0] and "16 GiB (runtime.gpu_memory_gb" in lines[0]
    assert lines[0].endswith("(got 0.01)")
    assert not (tmp_path / "runs").exists()  # nothing written, Ray never started


def test_sane_packing_is_accepted(tmp_path: Path) -> None:
    out = launch(tmp_path, "resources.gpu=0.125", "runtime.gpu_memory_gb=80", MIXED, dry_run=True)
    assert out.returncode == 0, out.stderr
    assert "resources per trial: 1 CPU, 0.125 GPU" in out.stdout


def test_cpu_sweeps_are_not_checked() -> None:
    cfg = load_config(REPO / "configs/smoke.yaml", ["runtime.gpu_memory_gb=0.001", MIXED])
    assert check_gpu_packing(cfg, *FASHION) is None


def test_the_worst_searched_trial_decides() -> None:
    cfg = load_config(
        REPO / "configs/smoke.yaml",
        ["resources.gpu=0.5", "runtime.gpu_memory_gb=80", MIXED, "search.space.optimizer={choice: [sgd, adam]}"],
    )
    trials = candidate_trials(cfg)
    assert {(t.model, t.batch_size, t.optimizer) for t in trials} >= {("cnn", 10000, "adam"), ("mlp", 32, "sgd")}
    worst = check_gpu_packing(cfg, *FASHION)
    assert worst is not None and "model cnn, batch_size 10000, optimizer adam" in worst.label


def test_estimate_grows_with_batch_model_and_optimizer_state() -> None:
    shape, classes, data = FASHION
    small = estimate(TrialConfig(model="mlp", batch_size=32, optimizer="sgd"), shape, classes, data)
    assert (
        estimate(TrialConfig(model="mlp", batch_size=10000, optimizer="sgd"), shape, classes, data).activations
        > small.activations
    )
    assert (
        estimate(TrialConfig(model="mlp", batch_size=32, optimizer="adam"), shape, classes, data).weights
        == 2 * small.weights
    )
    assert estimate(TrialConfig(model="cnn", batch_size=32), shape, classes, data).activations > small.activations
    assert 1 * GIB < small.total < 2 * GIB  # a CUDA context plus a few tens of MB


def test_range_dimensions_use_their_top() -> None:
    cfg = load_config(
        REPO / "configs/smoke.yaml",
        ["search.space.batch_size={randint: [16, 4097]}", "resources.gpu=1", "runtime.gpu_memory_gb=0.5"],
    )
    assert {t.batch_size for t in candidate_trials(cfg)} == {4096}
    with pytest.raises(ConfigError, match="resources.gpu: 1 trials per GPU need"):
        check_gpu_packing(cfg, *FASHION)


def test_auto_gpu_packing_is_checked() -> None:
    cfg = load_config(
        REPO / "configs/smoke.yaml",
        ["resources.gpu=auto", "resources.trials_per_gpu=16", "runtime.gpu_memory_gb=4", MIXED],
    )
    with pytest.raises(ConfigError, match=r"resources.trials_per_gpu: 16 trials per GPU need .*\(got 16\)"):
        check_gpu_packing(cfg, *FASHION)
