"""The real CLI on the shipped smoke config: a real local Ray, real Tune + ASHA, real data and files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch

from trainables.checkpoint import CHECKPOINT_FILE
from trainables.data import input_scaling, to_device
from trainables.loop import evaluate
from trainables.models import build_model


def test_best_model_loads_weights_only_and_reproduces_test_accuracy(smoke_sweep: Path, dataset) -> None:  # noqa: ANN001
    manifest = json.loads((smoke_sweep / "best" / "manifest.json").read_text())
    saved = torch.load(smoke_sweep / "best" / "model.pt", weights_only=True)
    model = build_model(saved["model_spec"])  # no trial config needed
    model.load_state_dict(saved["state_dict"])
    scaling = input_scaling(saved["input_scale"], saved["scaling"]["mean"], saved["scaling"]["std"])
    _, accuracy = evaluate(model, to_device(dataset.test, torch.device("cpu")), scaling)
    assert abs(accuracy - manifest["test_accuracy"]) < 1e-6
    assert Path(manifest["source_checkpoint"], CHECKPOINT_FILE).is_file()


def test_results_have_one_row_per_trial_and_asha_stopped_some(smoke_sweep: Path) -> None:
    results = pq.read_table(smoke_sweep / "results.parquet").to_pandas()
    trial_dirs = [p for p in smoke_sweep.iterdir() if (p / "params.json").is_file()]
    assert len(results) == len(trial_dirs) == 4
    assert results["stopped_early"].sum() >= 1
    assert (results.loc[results["stopped_early"], "epochs_run"] < 3).all()
    assert set(results["status"]) <= {"completed", "stopped"}


def test_best_is_best_among_all_reported_checkpoints(smoke_sweep: Path) -> None:
    manifest = json.loads((smoke_sweep / "best" / "manifest.json").read_text())
    reported = pd.concat(pd.read_csv(p / "progress.csv").assign(trial=p.name)
                         for p in smoke_sweep.iterdir() if (p / "progress.csv").is_file())
    top = reported.sort_values(["test_accuracy", "val_accuracy", "epoch"], ascending=[False, False, True]).iloc[0]
    assert (manifest["trial_name"], manifest["epoch"]) == (top["trial"], int(top["epoch"]))
    assert manifest["test_accuracy"] == top["test_accuracy"]


def test_each_trial_wrote_tensorboard_scalars(smoke_sweep: Path) -> None:
    for trial in (p for p in smoke_sweep.iterdir() if (p / "params.json").is_file()):
        assert list(trial.glob("events.out.tfevents.*")), trial
