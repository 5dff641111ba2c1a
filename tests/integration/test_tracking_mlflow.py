"""MLflow tracking against a real `mlflow server` (sqlite backend, proxied local artifacts) on 127.0.0.1.

    python -m pytest tests/integration/test_tracking_mlflow.py -x -q

One smoke sweep (4 trials, 2,000 training samples) runs through the real CLI with `tracking.mlflow` set;
everything is then checked through the server's REST API, against the experiment's own results.parquet,
history.parquet and best/. The refusals run in-process: an unreachable server and an unknown URI scheme
stop the launch before Ray starts, with one line and nothing written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import REPO, cli, cli_env

from orchestrator.review.tracking import EPOCH_METRICS

SMOKE = REPO / "configs" / "smoke.yaml"
NAME = "tracked"
REGISTERED = "fashion-best"
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true"}  # no usage reports from the server or the driver
# The server's background job runner (a pool of consumer processes) is not needed to track runs.
SERVER_ENV = {**QUIET, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
STARTUP_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str

    def get(self, endpoint: str, **query: Any) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30) as reply:
            return json.loads(reply.read())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`mlflow server` in its own process group (one worker), up once /health answers; stopped at the end."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (home / "server.log").open("w")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{home}/mlflow.db",
               "--serve-artifacts", "--artifacts-destination", str(home / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=home,
        env={**os.environ, **SERVER_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except (OSError, urllib.error.URLError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not come up:\n{(home / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield Server(url)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError):  # its uvicorn worker, should it outlive the server
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@dataclass(frozen=True)
class Tracked:
    experiment: Path
    results: pd.DataFrame
    history: pd.DataFrame
    parent: dict[str, Any]
    children: list[dict[str, Any]]


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


def params(run: dict[str, Any]) -> dict[str, str]:
    return {param["key"]: param["value"] for param in run["data"].get("params", [])}


@pytest.fixture(scope="module")
def tracked(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    """The smoke sweep on 2,000 samples, tracked; its runs as the server has them."""
    storage = tmp_path_factory.mktemp("tracked-sweep")
    done = cli("launch", str(SMOKE), "--storage-path", str(storage), "--set", f"name={NAME}",
               "--set", "data.train_limit=2000", "--set", f"tracking.mlflow.tracking_uri={server.url}",
               "--set", f"tracking.mlflow.registered_model={REGISTERED}",
               env=cli_env(**QUIET), timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "MLflow tracking off" not in done.stderr
    experiment = storage / NAME
    exp_id = server.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=NAME)["experiment"]["experiment_id"]
    runs = server.post("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 100})["runs"]
    parents = [run for run in runs if "mlflow.parentRunId" not in tags(run)]
    assert len(parents) == 1, [run["info"]["run_name"] for run in parents]
    children = [run for run in runs if "mlflow.parentRunId" in tags(run)]
    return Tracked(
        experiment,
        pd.read_parquet(experiment / "results.parquet"),
        pd.read_parquet(experiment / "history.parquet"),
        parents[0],
        children,
    )


def test_one_parent_and_a_child_per_trial(tracked: Tracked) -> None:
    parent_id = tracked.parent["info"]["run_id"]
    assert len(tracked.children) == len(tracked.results) == 4
    assert {tags(run)["mlflow.parentRunId"] for run in tracked.children} == {parent_id}
    assert sorted(run["info"]["run_name"] for run in tracked.children) == sorted(tracked.results["trial_name"])
    state = json.loads((tracked.experiment / "mlflow.json").read_text())  # what a resumed sweep reuses
    assert state["parent_run_id"] == parent_id
    assert state["children"] == {run["info"]["run_name"]: run["info"]["run_id"] for run in tracked.children}
    parent_params = params(tracked.parent)
    assert parent_params["name"] == NAME and parent_params["seed"] == "0"
    assert json.loads(parent_params["search.space.model.grid"]) == ["mlp", "cnn"]
    assert parent_params["asha.mode"] == "deterministic" and parent_params["data.train_limit"] == "2000"
    assert len(tags(tracked.parent)["config_sha256"]) == 64


def test_children_carry_params_epochs_and_outcome(tracked: Tracked, server: Server) -> None:
    results = tracked.results.set_index("trial_name")
    for run in tracked.children:
        row = results.loc[run["info"]["run_name"]]
        given, told = params(run), tags(run)
        assert given["model"] == row["config.model"]
        assert float(given["lr"]) == pytest.approx(row["config.lr"])
        assert told["outcome"] == row["status"]
        assert told["epochs_run"] == str(row["epochs_run"])
        assert told["stopped_early"] == ("true" if row["status"] == "stopped" else "false")
        assert run["info"]["status"] == ("FINISHED" if row["status"] in ("completed", "stopped") else "FAILED")
        for key in EPOCH_METRICS:  # every epoch once in every metric's history, never the last one twice
            points = server.get("/api/2.0/mlflow/metrics/get-history", run_id=run["info"]["run_id"], metric_key=key)
            steps = sorted(point["step"] for point in points["metrics"])
            assert steps == list(range(1, int(row["epochs_run"]) + 1)), (key, steps)
        history = server.get(
            "/api/2.0/mlflow/metrics/get-history", run_id=run["info"]["run_id"], metric_key="val_accuracy"
        )["metrics"]
        epochs = tracked.history[tracked.history["trial_name"] == run["info"]["run_name"]].set_index("epoch")
        for point in history:
            assert point["value"] == pytest.approx(epochs.loc[point["step"], "val_accuracy"])
        logged = {metric["key"] for metric in run["data"]["metrics"]}
        assert {"train_loss", "test_accuracy", "lr", "samples_per_second", "best_val_accuracy"} <= logged
    assert "stopped" in set(tracked.results["status"])  # early stopping cut at least one trial


def test_parent_holds_the_best_model(tracked: Tracked, server: Server) -> None:
    manifest = json.loads((tracked.experiment / "best" / "manifest.json").read_text())
    assert tracked.parent["info"]["status"] == "FINISHED"
    assert tags(tracked.parent)["best_trial"] == manifest["trial_name"]
    listed = server.get("/api/2.0/mlflow/artifacts/list", run_id=tracked.parent["info"]["run_id"], path="best")
    sizes = {item["path"]: int(item["file_size"]) for item in listed["files"]}
    for name in ("model.pt", "manifest.json"):
        assert sizes[f"best/{name}"] == (tracked.experiment / "best" / name).stat().st_size
    selected = [run["info"]["run_name"] for run in tracked.children if tags(run).get("selected") == "true"]
    assert selected == [manifest["trial_name"]]


def test_the_best_model_is_an_mlflow_model_registered_by_name(tracked: Tracked, server: Server, fashion) -> None:  # noqa: ANN001
    """A real consumer: MLflow's own loader, by registered name, on the test split, against the checkpoint."""
    import mlflow
    import numpy as np
    import torch

    from orchestrator.review.evaluation import load_model, predict

    registered = server.get("/api/2.0/mlflow/registered-models/get", name=REGISTERED)["registered_model"]
    versions = registered["latest_versions"]
    assert [v["run_id"] for v in versions] == [tracked.parent["info"]["run_id"]]
    mlflow.set_tracking_uri(server.url)
    uri = f"models:/{REGISTERED}/{versions[0]['version']}"
    info = mlflow.models.get_model_info(uri)
    assert "pytorch" in info.flavors
    files = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tracked.experiment.parent / "m")))
    assert (files / "data" / "model.pt2").is_file(), "the torch.export program, not a pickle"
    inputs = info.signature.inputs.to_dict()[0]["tensor-spec"]
    assert (inputs["dtype"], list(inputs["shape"])) == ("uint8", [-1, 1, 28, 28])
    images = np.array(fashion.test.images[:500])
    logits = mlflow.pyfunc.load_model(uri).predict(images)
    expected = predict(load_model(str(tracked.experiment / "best")), torch.from_numpy(images.copy()))
    assert np.array_equal(np.asarray(logits).argmax(1), expected.argmax(1).numpy())


def launch_in_process(capsys: pytest.CaptureFixture[str], storage: Path, uri: str) -> tuple[int, list[str]]:
    from orchestrator.commands.main import main

    code = main(["launch", str(SMOKE), "--storage-path", str(storage), "--set", f"tracking.mlflow.tracking_uri={uri}"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_unreachable_server_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    storage = tmp_path / "never"
    code, err = launch_in_process(capsys, storage, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert code == 2
    assert len(err) == 1 and err[0].startswith("config error: tracking.mlflow.tracking_uri: "), err
    assert not storage.exists()


def test_unknown_scheme_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    storage = tmp_path / "never"
    code, err = launch_in_process(capsys, storage, "ftp://127.0.0.1/mlflow")
    assert code == 2
    assert len(err) == 1 and err[0].startswith("config error: tracking.mlflow.tracking_uri: must be an http"), err
    assert not storage.exists()


def test_a_server_down_turns_tracking_off_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from orchestrator.config import load_config
    from orchestrator.location import Location
    from orchestrator.records import Observers, TrialRecord
    from orchestrator.review.tracking import MlflowTracker
    from trainables.recipe import TrialConfig

    for name, value in {**QUIET, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(name, value)  # also keeps the tracker's client defaults out of this process
    cfg = load_config(SMOKE, [f"tracking.mlflow.tracking_uri=http://127.0.0.1:{free_port()}"])
    location = Location.parse(str(tmp_path), cfg.name)
    location.makedirs()
    record = TrialRecord("00000", "mlp-00000", TrialConfig())
    record.report({"epoch": 1, "val_accuracy": 0.5})
    observers = Observers([MlflowTracker(cfg, location)])
    observers.sweep_started([], False)
    observers.trial_started(record)
    observers.trial_reported(record)
    observers.trial_ended(record)
    observers.sweep_ended([record], False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: MLflow tracking off for the rest of the sweep"), err


def test_every_epoch_is_logged_once_whatever_the_path(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A child created late (backfilled), an epoch reported again after a restart (new time, new value), a
    resumed sweep's replay of a checkpoint epoch: the server holds each epoch once, in every metric."""
    from orchestrator.config import load_config
    from orchestrator.location import Location
    from orchestrator.records import TrialRecord
    from orchestrator.review.tracking import MlflowTracker
    from trainables.recipe import TrialConfig

    for name, value in QUIET.items():
        monkeypatch.setenv(name, value)
    cfg = load_config(SMOKE, [f"tracking.mlflow.tracking_uri={server.url}", "name=once"])
    location = Location.parse(str(tmp_path), cfg.name)
    location.makedirs()

    def row(epoch: int, value: float) -> dict[str, Any]:
        return {"epoch": epoch, "val_accuracy": value, "lr": 0.1, "timestamp": 1_700_000_000 + 10 * epoch + value}

    record = TrialRecord("00000", "mlp-00000", TrialConfig())
    tracker = MlflowTracker(cfg, location)
    tracker.sweep_started([], False)
    record.report(row(1, 0.5))
    record.report(row(2, 0.6))
    tracker.trial_reported(record)  # no trial_started first: the child is created here, with epochs 1-2
    record.report(row(3, 0.7))
    tracker.trial_reported(record)
    record.report(row(3, 0.71))  # epoch 3 trained again after a restart
    tracker.trial_reported(record)
    tracker.sweep_ended([record], True)  # interrupted

    resumed = MlflowTracker(cfg, location)  # a rerun of the driver resumes into the same runs
    resumed.sweep_started([record], True)
    resumed.trial_started(record)
    resumed.trial_reported(record)  # the restored trial's checkpoint epoch, reported once more
    record.report(row(4, 0.8))
    resumed.trial_reported(record)
    resumed.trial_ended(record)
    assert not tracker.off and not resumed.off
    run_id = json.loads((tmp_path / "once" / "mlflow.json").read_text())["children"]["mlp-00000"]
    for key in ("val_accuracy", "lr"):
        points = server.get("/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
        assert sorted(point["step"] for point in points) == [1, 2, 3, 4], (key, points)
