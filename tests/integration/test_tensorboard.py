"""The real TensorBoard server, asked through its HTTP API: on the finished smoke sweep, and during a sweep.

    python -m pytest tests/integration/test_tensorboard.py -q

The finished sweep (the shared, read-only `smoke_experiment`) must show what its Parquet tables say; a
running sweep must be right at every moment: a trial that has ended shows its final record while another
still trains, and a trial early stopping cut shows as stopped before the sweep ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import finish, kill_session, results, start, wait_for, write_config

from orchestrator.location import SUMMARY_RUN
from orchestrator.outputs.tables import ordered
from trainables import hparams
from trainables import metrics as m
from trainables.models import build_model
from trainables.recipe import TrialConfig
from trainables.tensorboard_log import BALANCED, SPLITS, parameter_tags

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Board:
    """A TensorBoard server on `logdir` (reloading every second), and its HTTP API."""

    def __init__(self, logdir: Path) -> None:
        executable = shutil.which("tensorboard")
        assert executable, "the tensorboard command is part of the environment"
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.server = subprocess.Popen(
            [executable, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()

    def get(self, path: str, **query: str) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def runs(self) -> list[str]:
        return self.get("/data/runs")

    def scalars(self, run: str, tag: str) -> list[tuple[float, int, float]]:
        return [(w, s, v) for w, s, v in self.get("/data/plugin/scalars/scalars", run=run, tag=tag)]

    def experiment(self) -> dict[str, Any]:
        return self.post("/data/plugin/hparams/experiment", {"experimentName": ""})

    def sessions(self) -> dict[str, dict[str, Any]]:
        """Each trial's HParams session: its knobs, `status` (the session end's, STATUS_UNKNOWN while it
        has none) and `metrics` (tag -> value)."""
        body = {"experimentName": "", "allowedStatuses": STATUSES, "startIndex": 0, "sliceSize": 1000}
        groups = self.post("/data/plugin/hparams/session_groups", body).get("sessionGroups", [])
        return {
            g["name"]: {
                "hparams": g["hparams"],
                "status": g["sessions"][0].get("status", "STATUS_UNKNOWN"),
                "metrics": {v["name"]["tag"]: v["value"] for v in g.get("metricValues", [])},
            }
            for g in groups
        }

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        """Polls until `condition()` is truthy (the server loads new events in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except OSError:  # not serving yet
                value = None
            if value:
                return value
            assert time.monotonic() < deadline, f"TensorBoard did not show {what} within {timeout:.0f} s"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def experiment(smoke_experiment: Any) -> Path:
    return smoke_experiment.experiment


@pytest.fixture(scope="module")
def table(experiment: Path) -> pd.DataFrame:
    return pd.read_parquet(experiment / "results.parquet")


@pytest.fixture(scope="module")
def history(experiment: Path) -> pd.DataFrame:
    return pd.read_parquet(experiment / "history.parquet")


@pytest.fixture(scope="module")
def board(experiment: Path, table: pd.DataFrame) -> Iterator[Board]:
    server = Board(experiment)
    try:
        names = set(table["trial_name"])
        server.wait(
            lambda: (
                set(server.runs()) >= names | {SUMMARY_RUN}
                and set(server.sessions()) == names
                and all(s["status"] != "STATUS_UNKNOWN" for s in server.sessions().values())
            ),
            "every trial of the finished sweep",
            timeout=120,
        )
        yield server
    finally:
        server.close()


def test_one_run_per_trial_with_its_train_val_test_runs_and_the_summary(
    board: Board, experiment: Path, table: pd.DataFrame
) -> None:
    trial_dirs = {p.name for p in experiment.iterdir() if (p / "params.json").is_file()}
    assert set(table["trial_name"]) == trial_dirs
    expected = {f"{name}{split}" for name in trial_dirs for split in ("", "/train", "/val", "/test")}
    assert sorted(board.runs()) == sorted(expected | {SUMMARY_RUN})


def test_learning_curves_match_history_per_split(board: Board, history: pd.DataFrame) -> None:
    for name, rows in history.groupby("trial_name"):
        rows = rows.sort_values(m.EPOCH)
        for split, (loss, accuracy) in SPLITS.items():
            for tag, column in (("loss", loss), ("accuracy", accuracy)):
                series = board.scalars(f"{name}/{split}", tag)
                assert [s for _, s, _ in series] == rows[m.EPOCH].tolist(), (name, split, tag)
                assert [v for _, _, v in series] == pytest.approx(rows[column].tolist(), rel=1e-6), (name, split, tag)
            for tag, column in BALANCED.get(split, {}).items():  # val and test: balanced accuracy, macro-F1
                series = board.scalars(f"{name}/{split}", tag)
                assert [v for _, _, v in series] == pytest.approx(rows[column].tolist(), rel=1e-6), (name, split, tag)


def test_learning_curves_come_first_and_no_bookkeeping_groups(board: Board, table: pd.DataFrame) -> None:
    tags = board.get("/data/plugin/scalars/tags")
    for name in table["trial_name"]:
        for split in SPLITS:
            assert sorted(tags[f"{name}/{split}"]) == sorted(["accuracy", "loss", *BALANCED.get(split, {})])
        run_tags = {"lr", "lr_last", "speed/epoch_seconds", "speed/samples_per_second", *hparams.METRICS}
        assert set(tags[name]) == run_tags
    groups = sorted({tag.split("/")[0] for run_tags in tags.values() for tag in run_tags})
    learning = ["accuracy", "balanced_accuracy", "loss", "lr", "lr_last", "macro_f1"]
    assert groups == [*learning, "speed", "trial"], "learning curves first, bookkeeping last"
    assert not tags.get(SUMMARY_RUN), "the driver's run holds no scalars (no `asha` or `hparams` groups)"


def test_every_layer_has_weight_histograms_from_the_init_on(
    board: Board, experiment: Path, table: pd.DataFrame
) -> None:
    config = json.loads((experiment / "experiment.json").read_text())["config"]
    tags = board.get("/data/plugin/histograms/tags")
    assert config["tensorboard"]["histogram_every"] == 1
    for row in table.to_dict("records"):
        name = row["trial_name"]
        sampled = json.loads((experiment / name / "params.json").read_text())
        spec = TrialConfig.resolve(config["trial"], sampled).model_spec((1, 28, 28), 10)
        expected = set(parameter_tags(build_model(spec)).values())
        assert set(tags[name]) == expected, name
        assert any(t.endswith("/weight") for t in expected) and any(t.endswith("/bias") for t in expected)
        for tag in expected:
            series = board.get("/data/plugin/histograms/histograms", run=name, tag=tag)
            assert [step for _, step, _ in series] == list(range(int(row["epochs_run"]) + 1)), (name, tag)


def test_hparams_declares_the_searched_knobs_with_status_first(board: Board, experiment: Path) -> None:
    config = json.loads((experiment / "experiment.json").read_text())["config"]
    assert sorted(config["search"]["space"]) == ["lr", "model"]
    record = board.experiment()
    infos = {info["name"]: info for info in record["hparamInfos"]}
    assert sorted(infos) == ["lr", "model"], "exactly the searched knobs: the rest stay in the Parquet tables"
    assert all(info["differs"] for info in infos.values())
    assert sorted(infos["model"]["domainDiscrete"]) == ["cnn", "mlp"]
    assert sorted(infos["lr"]["domainDiscrete"]) == [1e-5, 3e-3]
    metrics = [info["name"]["tag"] for info in record["metricInfos"]]
    assert metrics == list(hparams.METRICS) and metrics[0] == hparams.STATUS


def test_every_session_has_the_final_state_of_results_parquet(board: Board, table: pd.DataFrame) -> None:
    sessions = board.sessions()
    assert set(sessions) == set(table["trial_name"])
    assert (table["status"] == "stopped").any() and (table["status"] == "completed").any(), (
        "the smoke sweep has trials early stopping cut and trials that completed"
    )
    for row in table.to_dict("records"):
        session = sessions[row["trial_name"]]
        assert session["hparams"]["model"] == row["config.model"]
        assert session["hparams"]["lr"] == pytest.approx(row["config.lr"])
        assert session["status"] == "STATUS_SUCCESS", row["trial_name"]
        assert session["metrics"] == pytest.approx(
            {
                hparams.STATUS: hparams.STATUS_CODES[row["status"]],
                hparams.EPOCHS_RUN: row["epochs_run"],
                hparams.STOPPED_EARLY: float(row["stopped_early"]),
                hparams.BEST_VAL: row["best_val_accuracy"],
                hparams.BEST_TEST: row["best_test_accuracy"],
                hparams.FINAL_VAL: row["final_val_accuracy"],
                **{hparams.PREFIX + f"best_{name}": row[f"best_{name}"] for name in m.CLASS_BALANCED},
                **{tag: row[key] for key, tag in hparams.COST_TAGS.items()},
            },
            rel=1e-6,
        ), row["trial_name"]


def test_trial_metrics_have_one_point_per_epoch_in_step_order(board: Board, table: pd.DataFrame) -> None:
    """Nothing was written at a step below an earlier one (TensorBoard would have dropped the later steps):
    every epoch is there, and the last point is the final status."""
    for row in table.to_dict("records"):
        for tag in hparams.METRICS:
            series = board.scalars(row["trial_name"], tag)
            assert [s for _, s, _ in series] == list(range(1, int(row["epochs_run"]) + 1)), (row["trial_name"], tag)
            walls = [w for w, _, _ in series]
            assert walls == sorted(walls), (row["trial_name"], tag)
        status = board.scalars(row["trial_name"], hparams.STATUS)
        assert status[-1][2] == hparams.STATUS_CODES[row["status"]]
        assert {v for _, _, v in status[:-1]} <= {hparams.STATUS_CODES["running"], hparams.STATUS_CODES["paused"]}


def _html_text(board: Board) -> str:
    entries = board.get("/data/plugin/text/text", run=SUMMARY_RUN, tag="summary")
    return max(entries, key=lambda e: e["step"])["text"]


def test_summary_card_opens_on_the_leaderboard_and_shows_best_as_a_table(
    board: Board, experiment: Path, table: pd.DataFrame
) -> None:
    assert board.get("/data/plugin/text/tags") == {SUMMARY_RUN: ["summary"]}, "one TEXT card"
    text = _html_text(board)
    assert text.lstrip().startswith("<h2>Leaderboard"), text[:200]
    leaderboard = text[: text.index("Best checkpoint")]
    positions = [leaderboard.index(f"<td>{name}</td>") for name in table["trial_name"]]
    best_first = [r["trial_name"] for r in ordered(table.to_dict("records"), "test_accuracy")]
    assert [name for _, name in sorted(zip(positions, table["trial_name"], strict=True))] == best_first
    manifest = json.loads((experiment / "best" / "manifest.json").read_text())
    best = text[text.index("Best checkpoint") : text.index("Early stopping")]
    assert "<table>" in best and manifest["trial_name"] in best
    for label, key in (("test accuracy", "test_accuracy"), ("validation accuracy", "val_accuracy")):
        assert re.search(rf"<td>{label}</td>\s*<td>{manifest[key]:.4f}</td>", best), label
    assert not re.search(r"\d\.\d{5,}", text), "figures are rounded for reading, never 16 digits"
    assert "Trials stopped early" in text


# --- while a sweep runs ----------------------------------------------------------------------------------


def _ended(experiment: Path) -> dict[str, dict[str, Any]]:
    """The driver's record of the trials that have ended (status.json), empty while it has none."""
    try:
        return json.loads((experiment / "status.json").read_text()).get("trials", {})
    except (OSError, ValueError):
        return {}


def _assert_final(board: Board, name: str, session: dict[str, Any], status: str, trial_dir: Path) -> None:
    """The session of an ended trial as the driver knows it: status, epochs and accuracies from its reports
    (result.json), and every epoch's point still there."""
    rows = results(trial_dir)
    epochs = max(int(row[m.EPOCH]) for row in rows)
    assert session["status"] == "STATUS_SUCCESS", (name, session)
    assert session["metrics"] == pytest.approx(
        {
            hparams.STATUS: hparams.STATUS_CODES[status],
            hparams.EPOCHS_RUN: epochs,
            hparams.STOPPED_EARLY: float(status == "stopped"),
            hparams.BEST_VAL: max(row[m.VAL_ACCURACY] for row in rows),
            hparams.BEST_TEST: max(row[m.TEST_ACCURACY] for row in rows),
            hparams.FINAL_VAL: rows[-1][m.VAL_ACCURACY],
            **{hparams.PREFIX + f"best_{key}": max(row[key] for row in rows) for key in m.CLASS_BALANCED},
            **{tag: rows[-1][key] for key, tag in hparams.COST_TAGS.items()},
        },
        rel=1e-6,
    ), name
    for run, tag in ((name, hparams.STATUS), (f"{name}/train", "loss"), (f"{name}/val", "loss")):
        assert [s for _, s, _ in board.scalars(run, tag)] == list(range(1, epochs + 1)), (run, tag)


@contextlib.contextmanager
def _held(trial_dir: Path, proc: subprocess.Popen[str], after: int = 0) -> Iterator[None]:
    """The trial's worker stopped (SIGSTOP) for the block: it cannot end while the test looks at the others,
    however fast this machine is. It goes on where it was afterwards (SIGCONT), pass or fail.

    The worker is the one that reported an epoch past `after`: a trial paused at a rung (deterministic
    halving) goes on in a new process, so the pid of a report from before the rung may be gone."""

    def stop() -> int | None:
        rows = results(trial_dir)
        if not rows or int(rows[-1][m.EPOCH]) <= after:
            return None
        pid = int(rows[-1]["pid"])
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return None  # that process has ended: the next report names the one that goes on
        return pid

    pid = wait_for(stop, proc, what=f"{trial_dir.name} training past epoch {after}")
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _trials(experiment: Path) -> dict[str, dict[str, Any]]:
    """Trial directory name -> its sampled knobs (params.json)."""
    return {p.parent.name: json.loads(p.read_text()) for p in experiment.glob("*/params.json")}


def test_a_finished_trial_is_final_while_another_still_trains(tmp_path: Path) -> None:
    """Two trials, no early stopping: a 16-unit mlp ends long before a 1024x1024 one; once it has ended,
    TensorBoard shows it completed with every epoch and its best accuracy, while the other shows running."""
    epochs = 4
    config = write_config(
        tmp_path,
        "live",
        epochs,
        train_limit=3000,
        extra="search:\n  space:\n    mlp.hidden: {grid: [[16], [1024, 1024]]}\n",
    )
    experiment = tmp_path / "runs" / "live"
    proc = start(config, cwd=tmp_path)
    board = None
    try:
        trials = wait_for(lambda: len(t := _trials(experiment)) == 2 and t, proc, what="both trials")
        fast = next(name for name, knobs in trials.items() if knobs["mlp"]["hidden"] == [16])
        slow = next(name for name in trials if name != fast)
        board = Board(experiment)
        wait_for(lambda: results(experiment / slow), proc, what="the large trial's first epoch")
        with _held(experiment / slow, proc):  # it stays mid-run until TensorBoard has been asked
            assert len(results(experiment / slow)) < epochs and slow not in _ended(experiment)
            wait_for(lambda: fast in _ended(experiment), proc, what="the small trial's end")
            assert _ended(experiment)[fast] == {"status": "completed", "epochs_run": epochs, "error": None}
            sessions = board.wait(
                lambda: (
                    (s := board.sessions()).get(fast, {}).get("status") == "STATUS_SUCCESS"
                    and hparams.STATUS in s.get(slow, {}).get("metrics", {})
                    and s
                ),
                "the small trial's end and the large one's first epoch",
            )
            assert slow not in _ended(experiment) and proc.poll() is None
        _assert_final(board, fast, sessions[fast], "completed", experiment / fast)
        assert sessions[slow]["status"] == "STATUS_UNKNOWN", "a running trial has no session end"
        assert sessions[slow]["metrics"][hparams.STATUS] == hparams.STATUS_CODES["running"]
        assert sessions[slow]["metrics"][hparams.STOPPED_EARLY] == 0
        code, out, err = finish(proc)
        assert code == 0, f"{out[-2000:]}\n{err[-2000:]}"
        final = board.wait(
            lambda: (s := board.sessions()).get(slow, {}).get("status") == "STATUS_SUCCESS" and s,
            "the large trial's end",
        )
        _assert_final(board, slow, final[slow], "completed", experiment / slow)
    finally:
        kill_session(proc)
        if board is not None:
            board.close()


def test_a_trial_early_stopping_cut_shows_as_stopped_while_the_sweep_runs(tmp_path: Path) -> None:
    """Two trials and a rung after epoch 1: the one that cannot learn (lr 1e-7) is cut there; while the other
    trains on, TensorBoard shows the cut one stopped early, with the epochs it ran and its best accuracy."""
    epochs = 6  # the other trial goes on past the rung long enough to be held there, however fast the machine
    config = write_config(
        tmp_path, "cut", epochs, train_limit=3000, extra="search:\n  space:\n    lr: {grid: [1.0e-7, 3.0e-3]}\n"
    )
    experiment = tmp_path / "runs" / "cut"
    proc = start(config, "--set", "asha.grace_period=1", "--set", "trial.mlp.hidden=[1024, 1024]", cwd=tmp_path)
    board = None
    try:
        trials = wait_for(lambda: len(t := _trials(experiment)) == 2 and t, proc, what="both trials")
        board = Board(experiment)
        cut = wait_for(
            lambda: next((n for n, t in _ended(experiment).items() if t["status"] == "stopped"), None),
            proc,
            what="a trial cut by early stopping",
        )
        assert _ended(experiment)[cut]["epochs_run"] < epochs
        other = next(name for name in trials if name != cut)
        with _held(experiment / other, proc, after=1):  # the sweep stays running until TensorBoard has been asked
            assert len(results(experiment / other)) < epochs and other not in _ended(experiment)
            sessions = board.wait(
                lambda: (s := board.sessions()).get(cut, {}).get("status") == "STATUS_SUCCESS" and s,
                "the cut trial's end",
            )
            assert proc.poll() is None
        _assert_final(board, cut, sessions[cut], "stopped", experiment / cut)
        code, out, err = finish(proc)
        assert code == 0, f"{out[-2000:]}\n{err[-2000:]}"
    finally:
        kill_session(proc)
        if board is not None:
            board.close()
