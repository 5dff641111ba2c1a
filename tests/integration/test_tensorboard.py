"""The real TensorBoard server, started on a finished smoke sweep and asked through its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from review_support import Sweep, smoke_sweep

from orchestrator.experiment import SUMMARY_RUN
from trainables import hparams
from trainables.models import build_model
from trainables.tensorboard_log import SCALAR_TAGS, parameter_tags


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return smoke_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def results(sweep: Sweep) -> pd.DataFrame:
    return pd.read_parquet(sweep.experiment / "results.parquet")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Board:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def session_groups(self) -> list[dict[str, Any]]:
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        body = {"experimentName": "", "allowedStatuses": statuses, "startIndex": 0, "sliceSize": 1000}
        return self.post("/data/plugin/hparams/session_groups", body).get("sessionGroups", [])


@pytest.fixture(scope="module")
def board(sweep: Sweep, results: pd.DataFrame) -> Iterator[Board]:
    executable = shutil.which("tensorboard")
    assert executable, "the tensorboard command is part of the environment"
    port = _free_port()
    server = subprocess.Popen([executable, "--logdir", str(sweep.experiment), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Board(port)
    try:
        expected = set(results["trial_name"]) | {SUMMARY_RUN}
        deadline = time.monotonic() + 120
        while True:  # the server loads event files in the background
            try:
                if set(client.get("/data/runs")) >= expected and len(client.session_groups()) == len(results):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "TensorBoard did not load the sweep within 120 s"
            time.sleep(1)
        yield client
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_one_run_per_trial_plus_the_summary(board: Board, sweep: Sweep, results: pd.DataFrame) -> None:
    trial_dirs = {p.name for p in sweep.experiment.iterdir() if (p / "params.json").is_file()}
    assert set(results["trial_name"]) == trial_dirs
    assert sorted(board.get("/data/runs")) == sorted(trial_dirs | {SUMMARY_RUN})


def test_every_trial_has_the_namespaced_scalars(board: Board, results: pd.DataFrame) -> None:
    tags = board.get("/data/plugin/scalars/tags")
    for name in results["trial_name"]:
        assert set(SCALAR_TAGS.values()) | set(hparams.METRICS) <= set(tags[name]), name
    assert "asha/trials_reaching_epoch" in tags[SUMMARY_RUN]


def test_every_layer_has_weight_histograms_from_the_init_on(board: Board, results: pd.DataFrame,
                                                            sweep: Sweep) -> None:
    tags = board.get("/data/plugin/histograms/tags")
    for name, model in zip(results["trial_name"], results["config.model"], strict=True):
        spec = _spec(results, name, model)
        expected = set(parameter_tags(build_model(spec)).values())
        assert expected == set(tags[name]), name
        assert any(t.endswith("/weight") for t in expected) and any(t.endswith("/bias") for t in expected)
    best = results.sort_values("best_test_accuracy", ascending=False).iloc[0]
    tag = sorted(tags[best["trial_name"]])[0]
    series = board.get(f"/data/plugin/histograms/histograms?run={best['trial_name']}&tag={tag}")
    assert [step for _, step, _ in series] == list(range(0, int(best["epochs_run"]) + 1))


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _spec(results: pd.DataFrame, name: str, model: str) -> dict[str, Any]:
    row = results[results["trial_name"] == name].iloc[0]
    prefix = f"config.{model}."
    return {"name": model, **{k.removeprefix(prefix): _plain(row[k]) for k in results.columns if k.startswith(prefix)}}


def test_hparams_experiment_names_the_knobs_and_metrics(board: Board) -> None:
    experiment = board.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert {"model", "lr", "optimizer", "batch_size", "mlp.hidden", "cnn.channels"} <= set(infos)
    assert infos["model"]["differs"] and infos["lr"]["differs"] and not infos["batch_size"].get("differs")
    assert sorted(infos["model"]["domainDiscrete"]) == ["cnn", "mlp"]
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == set(hparams.METRICS)


def test_hparams_lists_every_trial_with_its_final_state(board: Board, results: pd.DataFrame) -> None:
    groups = {g["name"]: g for g in board.session_groups()}
    assert set(groups) == set(results["trial_name"])
    assert (results["status"] == "stopped").any(), "the smoke sweep is meant to have ASHA-stopped trials"
    for row in results.to_dict("records"):
        group = groups[row["trial_name"]]
        assert group["hparams"]["model"] == row["config.model"]
        assert group["hparams"]["lr"] == pytest.approx(row["config.lr"])
        metrics = {v["name"]["tag"]: v["value"] for v in group["metricValues"]}
        assert metrics[hparams.STOPPED_EARLY] == float(row["status"] == "stopped"), row["trial_name"]
        assert metrics[hparams.STATUS] == hparams.STATUS_CODES[row["status"]]
        assert metrics[hparams.EPOCHS_RUN] == row["epochs_run"]
        assert metrics[hparams.BEST_VAL] == pytest.approx(row["best_val_accuracy"])
        assert metrics[hparams.FINAL_VAL] == pytest.approx(row["final_val_accuracy"])
        assert metrics[hparams.BEST_TEST] == pytest.approx(row["best_test_accuracy"])
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"


def test_summary_run_has_the_leaderboard_and_the_asha_picture(board: Board, results: pd.DataFrame) -> None:
    # torch's SummaryWriter.add_text files text under "<tag>/text_summary"
    texts = {"plan", "leaderboard", "asha", "best"}
    assert {f"{t}/text_summary" for t in texts} <= set(board.get("/data/plugin/text/tags")[SUMMARY_RUN])
    leaderboard = board.get(f"/data/plugin/text/text?run={SUMMARY_RUN}&tag=leaderboard/text_summary")[-1]["text"]
    for name in results["trial_name"]:
        assert name in leaderboard
    reaching = board.get(f"/data/plugin/scalars/scalars?run={SUMMARY_RUN}&tag=asha/trials_reaching_epoch")
    counts = {int(step): value for _, step, value in reaching}
    assert counts == {e: int((results["epochs_run"] >= e).sum()) for e in range(1, 4)}
    assert counts[1] > counts[3], "ASHA cut some trials before the last epoch"
