"""Shared fixtures: one real smoke sweep per test session, run through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped smoke config, end to end; returns the experiment directory."""
    storage = tmp_path_factory.mktemp("runs")
    proc = run_cli("orchestrator.launch", "configs/smoke.yaml", "--storage-path", str(storage))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "smoke"


@pytest.fixture(scope="session")
def dataset():  # noqa: ANN201 - a trainables.data.Dataset
    """The real Fashion-MNIST, read once per test session."""
    from trainables.data import load_fashion_mnist

    return load_fashion_mnist(ROOT / "data", download=False, val_size=10_000, seed=0)
