"""Real sweeps for the review tests, run once per pytest session and shared by the test modules.

Each is the real CLI in a subprocess (real Ray Tune, real data, real files). The result is cached
under pytest's session temp directory, so whichever module asks first pays for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"


@dataclass(frozen=True)
class Sweep:
    experiment: Path  # <storage>/<name>
    stdout: str


def run_module(module: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)  # a local Ray of its own, never a cluster this shell points at
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def cached_sweep(factory: pytest.TempPathFactory, name: str, *overrides: str) -> Sweep:
    storage = factory.getbasetemp() / f"review-{name}"
    log = storage / "launch.log"
    experiment = storage / name
    if not log.is_file():
        storage.mkdir(parents=True, exist_ok=True)
        sets = [item for pair in (("--set", o) for o in (f"name={name}", *overrides)) for item in pair]
        done = run_module("orchestrator.launch", str(SMOKE), *sets, "--storage-path", str(storage))
        if done.returncode != 0:
            pytest.fail(f"sweep {name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        log.write_text(done.stdout)
    return Sweep(experiment, log.read_text())


def smoke_sweep(factory: pytest.TempPathFactory) -> Sweep:
    """configs/smoke.yaml on 5k samples: 4 trials (mlp/cnn x two learning rates), ASHA stops some."""
    return cached_sweep(factory, "smoke", "data.train_limit=5000")


def good_model(factory: pytest.TempPathFactory) -> Sweep:
    """One mlp trial, 2 epochs on 20k samples: good enough (~85% test accuracy) to check predictions."""
    return cached_sweep(factory, "good", "search.space={}", "trial.model=mlp", "trial.epochs=2",
                        "data.train_limit=20000", "trial.mlp.hidden=[128]")
