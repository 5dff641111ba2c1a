"""Choosing on more than accuracy, and shipping the winner in formats anyone can run, through the real CLI:

- every trial's costs (parameters, checkpoint size, latency, throughput, training time) in results.parquet;
- `selection.constraints`: the best trial within the budget is exported, not the most accurate; a budget
  no trial meets ends the sweep with exit 1 and one line naming the closest trial;
- best/model.pt2 and best/model.onnx run in a fresh interpreter where neither this project nor the user's
  model module can be imported (torch alone; onnxruntime), on images exactly as the dataset stores them
  (uint8 (N, C, H, W) Fashion-MNIST; float flat digits with standard scaling), and agree with the checkpoint;
- `evaluate` scores with any of the three files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, cli, cli_env

from orchestrator.review.evaluation import load_model
from trainables.loop import predict_logits
from trainables.models import build_model, count_parameters

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install '.[onnx]'")

TINY = """\
name: {name}
storage_path: {storage}
data: {{train_limit: 1500, val_size: 500}}
trial: {{model: mlp, mlp: {{hidden: [16]}}, optimizer: adam, lr: 1.0e-3, batch_size: 16, epochs: 1}}
resources: {{cpu: 1}}
asha: {{grace_period: 1}}
"""

# The consumer: a fresh interpreter (-I: no PYTHONPATH, no user site) started in an empty directory, with
# every module of this project and of the user's model refused at import, even through the editable install.
CONSUMER = r"""
import importlib.abc, json, sys
BLOCKED = set(sys.argv[4].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not available to this consumer")
        return None

sys.meta_path.insert(0, Refuse())
import numpy as np
import onnxruntime
import torch

images = np.load(sys.argv[3])
program = torch.export.load(sys.argv[1]).module()
session = onnxruntime.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
out = {
    "pt2": program(torch.from_numpy(images)).tolist(),
    "pt2_one": program(torch.from_numpy(images[:1])).tolist(),
    "onnx": session.run(None, {"images": images})[0].tolist(),
    "onnx_one": session.run(None, {"images": images[:1]})[0].tolist(),
    "loaded": sorted({m.split(".")[0] for m in sys.modules} & BLOCKED),
}
print(json.dumps(out))
"""


def _launch(tmp_path: Path, name: str, extra: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(TINY.format(name=name, storage=tmp_path / "runs") + extra)
    return cli("launch", str(config), *args, cwd=tmp_path)


@pytest.fixture(scope="module")
def budget(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two MLPs, 3,190 and 25,450 parameters, under a 5,000-parameter budget."""
    tmp = tmp_path_factory.mktemp("budget")
    extra = "search: {space: {mlp.hidden: {grid: [[4], [32]]}}}\nselection: {constraints: {max_params: 5000}}\n"
    done = _launch(tmp, "budget", extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "runs" / "budget"


def _consume(experiment: Path, images: np.ndarray, blocked: list[str], tmp_path: Path) -> dict[str, list]:
    empty = tmp_path / "consumer"
    empty.mkdir()
    np.save(empty / "images.npy", images)
    (empty / "consumer.py").write_text(CONSUMER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-I", "consumer.py", str(experiment / "best" / "model.pt2"),
         str(experiment / "best" / "model.onnx"), "images.npy", ",".join(blocked)],
        cwd=empty, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == []
    return result


def _checkpoint_logits(experiment: Path, images: np.ndarray) -> torch.Tensor:
    loaded = load_model(str(experiment / "best"))
    return predict_logits(loaded.model, torch.from_numpy(images.copy()), loaded.scaling)


def _agree(reference: torch.Tensor, result: dict[str, list]) -> None:
    for key in ("pt2", "onnx"):
        logits = torch.tensor(result[key])
        assert logits.shape == reference.shape, key
        assert (logits - reference).abs().max() < 1e-4, key
        assert torch.tensor(result[f"{key}_one"]).shape == (1, reference.shape[1]), "the batch is dynamic"


def test_every_trial_reports_its_costs(budget: Path) -> None:
    results = pd.read_parquet(budget / "results.parquet").set_index("config.mlp.hidden", drop=False)
    assert len(results) == 2
    for row in results.to_dict("records"):
        spec = {"name": "mlp", "args": {"hidden": list(row["config.mlp.hidden"])}, "input_shape": [1, 28, 28],
                "num_classes": 10}  # fmt: skip
        assert row["params"] == count_parameters(spec)
        assert row["checkpoint_mb"] > row["params"] * 4 / 1e6  # fp32 weights, plus torch.save's framing
        assert row["latency_ms"] > 0 and row["throughput"] > 0 and row["train_seconds"] > 0


def test_the_best_within_the_budget_is_exported(budget: Path) -> None:
    results = pd.read_parquet(budget / "results.parquet")
    small = results[results["params"] <= 5000].iloc[0]
    large = results[results["params"] > 5000].iloc[0]
    assert large["best_test_accuracy"] > small["best_test_accuracy"], "the budget, not the accuracy, decides"
    assert small["meets_constraints"] and not large["meets_constraints"]
    manifest = json.loads((budget / "best" / "manifest.json").read_text())
    assert manifest["trial_name"] == small["trial_name"]
    assert manifest["constraints"] == {"params": 5000.0} and manifest["costs"]["params"] == small["params"]


def test_exports_agree_with_the_checkpoint_where_the_project_is_absent(budget: Path, fashion, tmp_path: Path) -> None:  # noqa: ANN001
    manifest = json.loads((budget / "best" / "manifest.json").read_text())
    export = manifest["export"]
    assert export["input"] == {"name": "images", "shape": ["batch", 1, 28, 28], "dtype": "uint8"}
    for name in ("model.pt2", "model.onnx"):
        parity = export["files"][name]
        assert parity["samples"] == 10_000 and parity["prediction_agreement"] == 1.0, name
        assert parity["max_abs_logit_diff"] < 1e-4, name
    images = np.array(fashion.test.images[:300])  # uint8 (N, 1, 28, 28), as the dataset stores them
    result = _consume(budget, images, ["orchestrator", "trainables"], tmp_path)
    _agree(_checkpoint_logits(budget, images), result)


def test_evaluate_scores_with_any_of_the_three_files(budget: Path) -> None:
    manifest = json.loads((budget / "best" / "manifest.json").read_text())
    scores = []
    for name in ("model.pt", "model.pt2", "model.onnx"):
        done = cli("evaluate", str(budget / "best" / name), "--json")
        assert done.returncode == 0, done.stderr
        scores.append(json.loads(done.stdout))
    assert scores[0]["test_accuracy"] == pytest.approx(manifest["test_accuracy"], abs=5e-5)  # the trial's float32
    assert scores[1]["confusion"] == scores[0]["confusion"] == scores[2]["confusion"]


def test_no_trial_within_the_budget_exits_1_naming_the_closest(tmp_path: Path) -> None:
    extra = "selection: {constraints: {max_latency_ms: 1.0e-9}}\nexport: {formats: []}\n"
    done = _launch(tmp_path, "tight", extra)
    assert done.returncode == 1, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("sweep failed: no trial meets selection.constraints; the closest is mlp-")
    assert "latency ms" in line and "> max_latency_ms 1e-09 by" in line
    assert not (tmp_path / "runs" / "tight" / "best").exists()
    assert not pd.read_parquet(tmp_path / "runs" / "tight" / "results.parquet")["meets_constraints"].any()


USER_NET = """\
from torch import nn


class UserNet(nn.Module):
    def __init__(self, features, classes):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, 24), nn.Tanh(), nn.Linear(24, classes))

    def forward(self, x):
        return self.body(x)


def build(input_shape, num_classes):
    return UserNet(input_shape[0], num_classes)
"""


def test_a_users_model_on_flat_float_data_runs_without_its_module(tmp_path: Path) -> None:
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    flat = (digits.data / 16).astype(np.float32)  # (N, 64) floats on the unit scale
    np.savez(tmp_path / "digits.npz", x_train=flat, y_train=digits.target)
    (tmp_path / "user_net_pkg.py").write_text(USER_NET)
    config = tmp_path / "user.yaml"
    config.write_text(
        f"name: user\nstorage_path: {tmp_path / 'runs'}\n"
        f"data: {{source: npz, path: {tmp_path / 'digits.npz'}, val_size: 300, test_size: 300}}\n"
        "trial: {model: 'user_net_pkg:build', input_scale: standard, batch_size: 32, epochs: 2}\n"
        "resources: {cpu: 1}\nasha: {grace_period: 2}\n"
    )
    done = cli("launch", str(config), cwd=tmp_path, env=cli_env(PYTHONPATH=f"{tmp_path}:{REPO}"))
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = tmp_path / "runs" / "user"
    manifest = json.loads((experiment / "best" / "manifest.json").read_text())
    assert manifest["export"]["input"] == {"name": "images", "shape": ["batch", 64], "dtype": "float32"}
    assert manifest["export"]["files"]["model.pt2"]["prediction_agreement"] == 1.0
    images = flat[:50].copy()
    before = images.copy()
    sys.path.insert(0, str(tmp_path))
    try:
        reference = _checkpoint_logits(experiment, images)
        assert isinstance(build_model(manifest["model_spec"]), torch.nn.Module)
    finally:
        sys.path.remove(str(tmp_path))
    result = _consume(experiment, images, ["orchestrator", "trainables", "user_net_pkg"], tmp_path)
    _agree(reference, result)
    assert np.array_equal(images, before)
