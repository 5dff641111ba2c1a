"""The data contract under real Ray: trials sharing the object store never write to it, and a real sweep on
raw-scale tabular data exports a best model that scores what plain PyTorch scores.

- Two Ray tasks at once read every kind of dataset zero-copy from one object in the store (read-only views,
  as `tune.with_parameters` hands them to trials) and train and evaluate on it with every scale and
  augmentation; the object's bytes are hashed before and after.
- The headline bug: scikit-learn's wine (13 raw-scale float features, sorted by class) as a .npz with
  `input_scale: standard`, two identical trials running at once in one real sweep. Both trials' every epoch
  equals a plain-PyTorch loop of the same recipe (StandardScaler, same seed), and the exported best scores the
  oracle's best, far above the majority class the old code was stuck at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import REPO, cli

pytest.importorskip("sklearn", reason="the digits and wine ship with scikit-learn")
from oracle import Recipe, assert_same_numbers, digest, oracle, train_from_the_store  # noqa: E402
from sklearn.datasets import load_digits, load_wine  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from trainables.data import Split  # noqa: E402
from trainables.data_sources import DataConfig, load_dataset  # noqa: E402
from trainables.subsets import carve  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
RECIPE = Recipe(hidden=16, lr=1e-2, batch_size=16, epochs=8, seed=0)


def _datasets(directory: Path) -> dict[str, Any]:
    digits, wine = load_digits(), load_wine()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    rgb = np.stack([pixels, 255 - pixels, pixels // 2], axis=-1)  # (N, 8, 8, 3): channels last
    kinds = {
        "uint8-grey": ({"x_train": pixels}, {}),
        "uint8-rgb-channels-last": ({"x_train": rgb}, {}),
        "float32": ({"x_train": pixels.astype(np.float32) / 255}, {}),
        "float32-0-255": ({"x_train": pixels.astype(np.float32)}, {"value_range": [0, 255]}),
        "float64-flat": ({"x_train": wine.data, "y_train": wine.target}, {}),
    }
    out = {}
    for name, (arrays, section) in kinds.items():
        path = directory / f"{name}.npz"
        np.savez(path, **{"y_train": digits.target, **arrays})
        config = DataConfig.model_validate({"source": "npz", "path": str(path), "val_size": 0.2, **section})
        out[name] = load_dataset(config, seed=0)
    return out


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS)])  # the workers import tests/oracle.py
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def test_two_trials_sharing_the_object_store_never_write_to_it(local_ray: Any, tmp_path: Path) -> None:
    train = local_ray.remote(num_cpus=1)(train_from_the_store)
    for name, data in _datasets(tmp_path).items():
        before = digest(data)
        ref = local_ray.put(data)
        images = len(data.input_shape) == 3
        augment = {"flip": True, "crop_padding": 1, "rotate": 10, "erase_prob": 0.5} if images else {}
        scales = ["standard", "raw"] if data.value_range is None else ["unit", "standard"]
        for scale in scales:
            twins = local_ray.get([train.remote([ref], scale, augment) for _ in range(2)])
            assert twins[0] == twins[1], (name, scale)  # neither saw the other's doing
        assert digest(local_ray.get(ref)) == before, name  # the object in the store
        assert digest(data) == before, name  # and the driver's own arrays


# ------------------------------------------------------------------ the headline: a real sweep on raw-scale features


def _oracle_history(wine: dict[str, np.ndarray]) -> tuple[list[dict[str, float]], int, int]:
    """The plain-PyTorch loop on the sweep's splits (the seeded stratified carve of seed 0, by sample number)."""
    index, labels = np.arange(len(wine["y_train"])), wine["y_train"]
    rest, test = carve(index, labels, round(0.2 * len(labels)), 0)
    train, val = carve(rest.images, rest.labels, round(0.2 * len(rest)), 0)
    scaler = StandardScaler().fit(wine["x_train"][train.images])

    def split(part: Split) -> tuple[torch.Tensor, torch.Tensor]:
        x = scaler.transform(wine["x_train"][part.images]).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(part.labels.astype(np.int64))

    history, _ = oracle(split(train), {"val": split(val), "test": split(test)}, 3, RECIPE)
    return history, len(val), len(test)


def test_raw_scale_tabular_sweep_exports_a_best_that_scores_like_plain_pytorch(tmp_path: Path) -> None:
    data = load_wine()
    wine = {"x_train": data.data, "y_train": data.target}  # float64, 0.13 to 1680, sorted by class
    np.savez(tmp_path / "wine.npz", **wine)
    config = {
        "name": "wine",
        "storage_path": str(tmp_path / "runs"),
        "data": {"source": "npz", "path": str(tmp_path / "wine.npz"), "val_size": 0.2},
        "trial": {
            "model": "mlp",
            "mlp": {"hidden": [RECIPE.hidden]},
            "optimizer": "adam",
            "lr": RECIPE.lr,
            "batch_size": RECIPE.batch_size,
            "epochs": RECIPE.epochs,
            "seed": RECIPE.seed,
            "input_scale": "standard",
        },
        "search": {"num_samples": 2},  # two identical trials at once, one dataset object in the store
        "resources": {"cpu": 1},
        "asha": {"grace_period": RECIPE.epochs},
    }
    (tmp_path / "wine.yaml").write_text(yaml.safe_dump(config))
    done = cli("launch", str(tmp_path / "wine.yaml"), cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    experiment = tmp_path / "runs" / "wine"

    want, val_size, test_size = _oracle_history(wine)
    history = pq.read_table(experiment / "history.parquet").to_pandas().sort_values(["trial_name", "epoch"])
    assert history["trial_name"].nunique() == 2
    for _, rows in history.groupby("trial_name"):
        got = rows[["val_loss", "val_accuracy", "test_loss", "test_accuracy"]].to_dict("records")
        assert_same_numbers(got, want, {"val": val_size, "test": test_size})

    best = json.loads((experiment / "best" / "manifest.json").read_text())
    oracle_best = max(row["test_accuracy"] for row in want)
    majority = np.bincount(wine["y_train"]).max() / len(wine["y_train"])
    assert abs(best["test_accuracy"] - oracle_best) <= 1 / test_size + 1e-9
    assert best["test_accuracy"] > 0.9 > majority + 0.4
    scored = cli("evaluate", str(experiment / "best"), cwd=tmp_path)
    assert scored.returncode == 0 and "matches best/manifest.json" in scored.stdout, scored.stdout + scored.stderr
