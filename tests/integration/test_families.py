"""The recurrent families (LSTM and GRU: the main job trains four GRUs) trained end to end through the real
CLI and real Ray, on real Fashion-MNIST stored as float32 on the unit scale; the best of them exported,
evaluated, and asked to `--predict` PNG files (bytes, which a float-trained model must see as 0..1).
Tiny budget: 2,000 samples, hidden size 32, 2 epochs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FASHION_DIR, cli
from PIL import Image
from support import table

from orchestrator.review.evaluation import evaluation_data, load_model, predict
from trainables.data_readers import FASHION_CLASSES, find_idx_dir, read_idx

pytestmark = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")

CONFIG = """\
name: families
storage_path: {storage}
data: {{source: npz, path: {npz}, val_size: 300}}
trial: {{model: lstm, lstm: {{hidden_size: 32}}, gru: {{hidden_size: 32}}, optimizer: adam, lr: 3.0e-3,
         batch_size: 32, epochs: 2}}
search: {{space: {{model: {{grid: [lstm, gru]}}}}}}
resources: {{cpu: 1}}
asha: {{grace_period: 2}}
tensorboard: {{histogram_every: 0}}
"""


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep, run once: its experiment directory."""
    root = tmp_path_factory.mktemp("families")
    found = find_idx_dir(FASHION_DIR)
    arrays = {}
    for split, n in (("train", 2000), ("t10k", 500)):
        images = read_idx(found / f"{split}-images-idx3-ubyte.gz")[:n]
        labels = read_idx(found / f"{split}-labels-idx1-ubyte.gz")[:n].astype(np.int64)
        key = "train" if split == "train" else "test"
        arrays[f"x_{key}"] = (images.astype(np.float32) / 255.0)[:, None]  # floats on the unit scale, (N, 1, H, W)
        arrays[f"y_{key}"] = labels
    np.savez(root / "fashion-float.npz", **arrays, classes=np.array(FASHION_CLASSES))
    config = root / "families.yaml"
    config.write_text(CONFIG.format(storage=root / "runs", npz=root / "fashion-float.npz"))
    done = cli("launch", str(config), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "families"


def test_lstm_and_gru_train_end_to_end(families: Path) -> None:
    rows = table(families)
    assert sorted(row["config.model"] for row in rows.values()) == ["gru", "lstm"]
    for name, row in rows.items():
        assert row["status"] == "completed" and row["epochs_run"] == 2, row
        assert row["best_test_accuracy"] > 0.4, (name, row["best_test_accuracy"])  # chance is 0.1
        assert list((families / name).glob("checkpoint_*")), name
    manifest = json.loads((families / "best" / "manifest.json").read_text())
    assert manifest["trial_name"].startswith(("lstm-", "gru-")), manifest["trial_name"]
    done = cli("evaluate", str(families / "best"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["test_accuracy"] == pytest.approx(manifest["test_accuracy"], abs=1e-4)


def test_predict_on_a_float_trained_model_reads_png_bytes_on_its_scale(families: Path, tmp_path: Path) -> None:
    """PNG pixels are bytes; the model learnt from floats in 0..1. Each image is one the model classifies
    right and confidently from its float array; its PNG (the same values, exactly: k/255) must get the same
    answer. Fed 0..255 instead, a model trained on 0..1 answers otherwise."""
    loaded = load_model(str(families / "best"))
    test = evaluation_data(loaded, None).test
    assert test.images.dtype == np.float32
    images, labels = torch.tensor(test.images), torch.tensor(test.labels)
    confidence, predicted = predict(loaded, images).max(dim=1)
    chosen = [i for i in range(len(labels)) if predicted[i] == labels[i] and confidence[i] > 0.6][:6]
    assert len(chosen) >= 3, "the model is meant to be good enough to pick confident images"
    paths = []
    for i in chosen:
        path = tmp_path / f"test{i}.png"
        Image.fromarray(np.rint(test.images[i, 0] * 255).astype(np.uint8)).save(path)
        paths.append(path)
    done = cli("evaluate", str(families / "best"), "--predict", *map(str, paths), "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert len(results) == len(chosen)
    for result, i in zip(results, chosen, strict=True):
        top = result["predictions"][0]
        assert top["class"] == FASHION_CLASSES[int(labels[i])], (i, result)
        assert top["probability"] == pytest.approx(float(confidence[i]), abs=0.02), (i, result)
