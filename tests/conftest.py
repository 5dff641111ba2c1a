"""Shared by both tiers: the one CLI runner, the real dataset, and the one cached smoke experiment.

    python -m pytest tests/unit          # the fast tier: pure functions, config, models, records (< 60 s)
    python -m pytest                     # both tiers, the fast one first

`cli(...)` runs the real command (`python -m orchestrator ...`) in a subprocess with a private local
Ray (RAY_ADDRESS removed); `smoke_experiment` is configs/smoke.yaml on 5,000 training samples, run once
per test session through that runner and shared read-only by every test that reviews a finished sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("RAY_ADDRESS", None)  # a private local Ray, never a cluster this shell points at
    return env


def cli(
    *args: str,
    cwd: Path = REPO,
    timeout: float = 900,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess: `cli("launch", "configs/smoke.yaml", "--dry-run")`."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The real command in its own session (so a test can signal it, or clean up all it started)."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@dataclass(frozen=True)
class Sweep:
    experiment: Path  # <storage>/<name>
    stdout: str
    stderr: str


def cached_sweep(factory: pytest.TempPathFactory, name: str, *overrides: str, config: Path = SMOKE) -> Sweep:
    """A sweep run once per test session (whichever test asks first pays for it), then shared read-only."""
    storage = factory.getbasetemp() / f"sweep-{name}"
    logs = storage / "launch.out", storage / "launch.err"
    if not logs[0].is_file():
        storage.mkdir(parents=True, exist_ok=True)
        sets = [item for pair in (("--set", o) for o in (f"name={name}", *overrides)) for item in pair]
        done = cli("launch", str(config), *sets, "--storage-path", str(storage))
        if done.returncode != 0:
            pytest.fail(f"sweep {name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        logs[0].write_text(done.stdout)
        logs[1].write_text(done.stderr)
    return Sweep(storage / name, logs[0].read_text(), logs[1].read_text())


@pytest.fixture(scope="session")
def smoke_experiment(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """configs/smoke.yaml on 5k samples: 4 trials (mlp/cnn x two learning rates); early stopping cuts some."""
    return cached_sweep(tmp_path_factory, "smoke", "data.train_limit=5000")


@pytest.fixture(scope="session")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """One mlp trial, 2 epochs on 20k samples: good enough (~85% test accuracy) to check predictions."""
    return cached_sweep(
        tmp_path_factory,
        "good",
        "search.space={}",
        "trial.model=mlp",
        "trial.epochs=2",
        "data.train_limit=20000",
        "trial.mlp.hidden=[128]",
    )


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test (a measurement, or a result that depends on reduction order),
    and back to what it was afterwards, pass or fail: later tests do not inherit it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fashion():  # noqa: ANN201 - a trainables.data.Dataset
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist), read once per test session."""
    from trainables.data_sources import DataConfig, load_dataset

    return load_dataset(DataConfig(), seed=0)
