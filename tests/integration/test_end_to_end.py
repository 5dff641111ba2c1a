"""The real CLI on the shipped smoke config: a real local Ray, real Tune and early stopping, real data and files."""

from __future__ import annotations

import json
import stat

import pandas as pd
import pyarrow.parquet as pq
import torch
from conftest import Sweep

from trainables.checkpoint import CHECKPOINT_FILE
from trainables.data import input_scaling, to_device
from trainables.loop import evaluate
from trainables.models import build_model


def test_best_model_loads_weights_only_and_reproduces_test_accuracy(smoke_experiment: Sweep, fashion) -> None:  # noqa: ANN001
    exp = smoke_experiment.experiment
    manifest = json.loads((exp / "best" / "manifest.json").read_text())
    saved = torch.load(exp / "best" / "model.pt", weights_only=True)
    model = build_model(saved["model_spec"])  # no trial config needed
    model.load_state_dict(saved["state_dict"])
    scaling = input_scaling(
        saved["input_scale"], saved["scaling"]["mean"], saved["scaling"]["std"], saved["scaling"]["pixel_max"]
    )
    _, accuracy = evaluate(model, to_device(fashion.test, torch.device("cpu")), scaling)
    assert abs(accuracy - manifest["test_accuracy"]) < 1e-6
    assert (exp / manifest["source_checkpoint"] / CHECKPOINT_FILE).is_file()  # relative to the experiment
    assert manifest["classes"][0] == "T-shirt/top" and manifest["model_spec"]["input_shape"] == [1, 28, 28]
    assert manifest["versions"]["torch"] == torch.__version__ and len(manifest["config_sha256"]) == 64


def test_results_have_one_row_per_trial_and_early_stopping_cut_some(smoke_experiment: Sweep) -> None:
    results = pq.read_table(smoke_experiment.experiment / "results.parquet").to_pandas()
    trial_dirs = [p for p in smoke_experiment.experiment.iterdir() if (p / "params.json").is_file()]
    assert len(results) == len(trial_dirs) == 4
    assert results["stopped_early"].sum() >= 1
    assert (results.loc[results["stopped_early"], "epochs_run"] < 3).all()
    assert set(results["status"]) <= {"completed", "stopped"}
    status = json.loads((smoke_experiment.experiment / "status.json").read_text())
    assert status["state"] == "finished"
    assert {name: entry["status"] for name, entry in status["trials"].items()} == dict(
        zip(results["trial_name"], results["status"], strict=True)
    )


def test_best_is_best_among_all_reported_checkpoints(smoke_experiment: Sweep) -> None:
    exp = smoke_experiment.experiment
    manifest = json.loads((exp / "best" / "manifest.json").read_text())
    reported = pd.concat(
        pd.read_csv(p / "progress.csv").assign(trial=p.name) for p in exp.iterdir() if (p / "progress.csv").is_file()
    )
    top = reported.sort_values(["test_accuracy", "val_accuracy", "epoch"], ascending=[False, False, False]).iloc[0]
    assert (manifest["trial_name"], manifest["epoch"]) == (top["trial"], int(top["epoch"]))
    assert manifest["test_accuracy"] == top["test_accuracy"]


def test_each_trial_wrote_tensorboard_events_and_its_output(smoke_experiment: Sweep) -> None:
    trials = [p for p in smoke_experiment.experiment.iterdir() if (p / "params.json").is_file()]
    assert len(trials) == 4
    for trial in trials:
        assert list(trial.glob("events.out.tfevents.*")), trial
        assert list((trial / "val").glob("events.out.tfevents.*")), trial
        assert (trial / "stdout").is_file() and (trial / "stderr").is_file(), trial  # the trial's own output


def test_outputs_honour_the_umask_and_no_staging_is_left(smoke_experiment: Sweep) -> None:
    exp = smoke_experiment.experiment
    for path in [
        exp / "results.parquet",
        exp / "best" / "model.pt",
        exp / "best" / "manifest.json",
        exp / "experiment.json",
        exp / "status.json",
    ]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IRGRP and not mode & (stat.S_IWGRP | stat.S_IWOTH), (path, oct(mode))
    assert not [p.name for p in exp.iterdir() if p.name.startswith(".best.")]


def test_the_launch_prints_the_leaderboard_and_where_to_review(smoke_experiment: Sweep) -> None:
    out = smoke_experiment.stdout
    assert "leaderboard (best checkpoint of each trial):" in out
    assert f"exported: {smoke_experiment.experiment / 'best'}" in out
    assert f"tensorboard --logdir {smoke_experiment.experiment} --host 127.0.0.1" in out
    assert "Configuration for experiment" not in out and "Trial status:" not in out  # Ray's own tables stay off
    assert "Started a local Ray instance" not in smoke_experiment.stderr
