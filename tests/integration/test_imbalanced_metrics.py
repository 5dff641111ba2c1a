"""Balanced accuracy and macro-F1 on imbalanced data, through the real CLI and real Ray: reported per epoch,
cut by (`asha.metric`), selected by (`selection.metric`), and the exported model's scores equal
scikit-learn's on its test split.

    python -m pytest tests/integration/test_imbalanced_metrics.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import cli
from sklearn.metrics import balanced_accuracy_score, f1_score

SHARES = (0.8, 0.15, 0.05)  # three classes, 16:3:1


def _images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 6, 6) uint8 noise with a faint class-dependent stripe; labels drawn 16:3:1."""
    labels = rng.choice(len(SHARES), n, p=SHARES)
    images = rng.integers(0, 160, (n, 1, 6, 6))
    for k in range(len(SHARES)):
        images[labels == k, 0, 2 * k : 2 * k + 2, :] += 70
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("imbalanced")
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = _images(1200, rng), _images(400, rng)
    data = root / "imbalanced.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = {
        "name": "imbalanced",
        "storage_path": str(root / "runs"),
        "data": {"source": "npz", "path": str(data), "val_size": 0.25},
        "trial": {"model": "mlp", "mlp": {"hidden": [16]}, "batch_size": 32, "epochs": 2},
        "search": {"space": {"lr": {"grid": [3.0e-2, 3.0e-3, 3.0e-4, 1.0e-5]}}},
        "resources": {"cpu": 1},
        "asha": {"grace_period": 1, "reduction_factor": 2, "metric": "val_macro_f1"},
        "selection": {"metric": "test_balanced_accuracy"},
        "tensorboard": {"histogram_every": 0},
    }
    path = root / "imbalanced.yaml"
    path.write_text(yaml.safe_dump(config))
    done = cli("launch", str(path), cwd=root, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return root / "runs" / "imbalanced", data, done.stdout


def test_early_stopping_cuts_by_validation_macro_f1(sweep: tuple[Path, Path, str]) -> None:
    experiment, _, _ = sweep
    history = pd.read_parquet(experiment / "history.parquet")
    first = history[history["epoch"] == 1].set_index("trial_name")
    went_on = set(history.loc[history["epoch"] == 2, "trial_name"])
    assert len(went_on) == 2 and len(first) == 4
    stopped = first.drop(index=list(went_on))
    assert stopped["val_macro_f1"].max() <= first.loc[list(went_on), "val_macro_f1"].min()
    assert (
        "ASHA: deterministic (synchronous rungs) on val_macro_f1"
        in cli("launch", str(experiment.parent.parent / "imbalanced.yaml"), "--dry-run").stdout
    )


def test_every_table_has_the_class_balanced_scores(sweep: tuple[Path, Path, str]) -> None:
    experiment, _, stdout = sweep
    history = pd.read_parquet(experiment / "history.parquet")
    results = pd.read_parquet(experiment / "results.parquet")
    for split in ("val", "test"):
        for score in ("balanced_accuracy", "macro_f1"):
            name = f"{split}_{score}"
            assert history[name].between(0, 1).all()
            by_trial = history.groupby("trial_name")[name]
            best = results.set_index("trial_name")[f"best_{name}"]
            assert (best == by_trial.max().reindex(best.index)).all()
            assert (results.set_index("trial_name")[f"final_{name}"] == by_trial.last().reindex(best.index)).all()
    assert (history["lr"] == history["lr_last"]).all()  # no schedule: the lr is constant within an epoch
    header = next(line for line in stdout.splitlines() if line.startswith("#  "))
    columns = header.split()
    start = columns.index("val_acc")  # the costs follow the scores
    assert columns[start : start + 6] == ["val_acc", "val_bacc", "val_f1", "test_acc", "test_bacc", "test_f1"]


def test_the_selected_model_scores_what_scikit_learn_says(sweep: tuple[Path, Path, str]) -> None:
    from orchestrator.review.evaluation import load_model, predict

    experiment, data, _ = sweep
    manifest = json.loads((experiment / "best" / "manifest.json").read_text())
    history = pd.read_parquet(experiment / "history.parquet")
    assert manifest["selection_metric"] == "test_balanced_accuracy"
    assert manifest["test_balanced_accuracy"] == history["test_balanced_accuracy"].max()
    arrays = np.load(data)
    loaded = load_model(str(experiment / "best"))
    predicted = predict(loaded, torch.from_numpy(arrays["x_test"])).argmax(1).numpy()
    truth = arrays["y_test"]
    assert manifest["test_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted), abs=1e-9)
    assert manifest["test_macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=0), abs=1e-9
    )
    assert manifest["test_accuracy"] == pytest.approx(float((predicted == truth).mean()), abs=1e-6)
