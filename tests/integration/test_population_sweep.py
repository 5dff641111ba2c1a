"""Population-based training end to end (real Ray, the real CLI): a tiny population whose weaker members
copy the best one each epoch with a perturbed lr, and two members that diverge every epoch (an absurd L2
penalty) and are replaced, never copied. Run twice it gives the same lineage, tables and exported weights;
with the driver SIGKILLed after the first exploit and the same command rerun, it gives the same again."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from conftest import REPO, start_cli
from support import finish, kill_session, results, start, trial_dirs, wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_object_store import BUCKET, s3_env  # noqa: F401 - the moto server fixture
from test_reproducibility import TIMINGS, _best, _index

from trainables.checkpoint import CHECKPOINT_FILE
from trainables.exploit import parent_file

CONFIG = """\
name: {name}
storage_path: {storage}
data: {{train_limit: 1500, val_size: 500}}
trial: {{model: mlp, mlp: {{hidden: [16]}}, optimizer: momentum, batch_size: 16, epochs: 3}}
resources: {{cpu: 1}}
search: {{num_samples: 2, space: {{lr: {{loguniform: [1.0e-3, 1.0e-1]}}, loss.l2: {{grid: [0.0, 1000.0]}}}}}}
population: {{interval: 1, fraction: 0.25, mutate: [lr]}}
"""


def _config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name, storage=tmp_path / "runs"))
    return path


def _decisions(experiment: Path) -> dict[int, dict[int, dict[str, Any]]]:
    """Every decision; the parent's checkpoint as `<trial number>/checkpoint_<n>` (Tune's ids differ per run)."""
    decisions: dict[int, dict[int, dict[str, Any]]] = {}
    for path in sorted((experiment / "population").glob("epoch_*.json")):
        exploits = json.loads(path.read_text())["exploits"]
        for exploit in exploits.values():
            trial, checkpoint = exploit["checkpoint"].split("/")
            exploit["checkpoint"] = f"{trial.rsplit('_', 1)[-1]}/{checkpoint}"
        decisions[int(path.stem.rsplit("_", 1)[-1])] = {int(k): v for k, v in exploits.items()}
    return decisions


def _content(experiment: Path, path: Any) -> str | None:
    """A checkpoint by what it holds (its epoch and weights), not by its folder: Tune names a resumed trial's
    checkpoints by its own count, which a member that restarts straight into a copy does not advance."""
    if not isinstance(path, str):
        return None
    directory = Path(path) if Path(path).is_absolute() else experiment / path
    state = torch.load(directory / CHECKPOINT_FILE, weights_only=True)
    digest = hashlib.sha256()
    for key, tensor in sorted(state["model"].items()):
        digest.update(key.encode() + tensor.cpu().contiguous().numpy().tobytes())
    return f"epoch {state['epoch']} {digest.hexdigest()[:16]}"


def _tables(experiment: Path) -> list[pd.DataFrame]:
    """results.parquet and history.parquet, timings aside, trials by number (a diverged member has no best)."""
    out = []
    for name in ("results.parquet", "history.parquet"):
        frame = pd.read_parquet(experiment / name).drop(columns=TIMINGS + ["trial_id"], errors="ignore")
        frame["trial_name"] = frame["trial_name"].map(_index)
        if "best_checkpoint" in frame:
            frame["best_checkpoint"] = frame["best_checkpoint"].map(lambda p: _content(experiment, p))
        keys = ["trial_name", "epoch"] if "epoch" in frame else ["trial_name"]
        out.append(frame.sort_values(keys).reset_index(drop=True))
    return out


def _same(a: Path, b: Path) -> None:
    for table_a, table_b in zip(_tables(a), _tables(b), strict=True):
        pd.testing.assert_frame_equal(table_a, table_b, check_exact=True)
    (manifest_a, weights_a), (manifest_b, weights_b) = _best(a), _best(b)
    assert _index(manifest_a["trial_name"]) == _index(manifest_b["trial_name"])
    assert manifest_a["population"] == manifest_b["population"]
    assert (manifest_a["epoch"], manifest_a["test_accuracy"]) == (manifest_b["epoch"], manifest_b["test_accuracy"])
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert _decisions(a) == _decisions(b)


def _check_lineage(experiment: Path) -> None:
    history = pd.read_parquet(experiment / "history.parquet")
    member = history["trial_name"].map(lambda name: int(name.rsplit("_", 1)[-1]))
    params = {
        int(t.name.rsplit("_", 1)[-1]): json.loads((t / "params.json").read_text()) for t in trial_dirs(experiment)
    }
    broken = {i for i, p in params.items() if p["loss"]["l2"] > 0}
    assert len(broken) == 2
    decisions = _decisions(experiment)
    assert sorted(decisions) == [1, 2]
    for epoch, exploits in decisions.items():
        assert broken <= set(exploits)  # a diverged member is always replaced ...
        assert not {e["parent"] for e in exploits.values()} & broken  # ... and never copied
        for child, exploit in exploits.items():
            after = history[(member == child) & (history["epoch"] == epoch + 1)].iloc[0]
            assert after["pbt.parent"] == exploit["parent"] and after["pbt.generation"] == exploit["generation"]
            # The lr the optimizer used (the `lr` column) is the mutated one, inside the search domain.
            assert math.isclose(after["lr"], exploit["values"]["lr"]) and 1e-3 <= after["lr"] <= 1e-1
            assert exploit["checkpoint"].startswith(f"{exploit['parent']:05d}/checkpoint_")
    epoch, child = next((e, c) for e, exploits in decisions.items() for c in exploits if c not in broken)
    lrs = history[member == child].set_index("epoch")["lr"]
    assert lrs[epoch] != lrs[epoch + 1]  # its lr changed where it copied
    # TensorBoard: the member is one run, its knob a scalar over every epoch, the copy an event.
    run = next(t for t in trial_dirs(experiment) if t.name.endswith(f"_{child:05d}"))
    board = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    board.Reload()
    assert [e.step for e in board.Scalars("population/lr")] == [1, 2, 3]
    assert math.isclose(board.Scalars("population/lr")[epoch].value, lrs[epoch + 1], rel_tol=1e-6)
    assert [e.step for e in board.Tensors("population/exploit")] == [epoch]
    assert set(history[member.isin(broken) & history["epoch"].eq(3)]["diverged"]) == {True}


def test_a_population_reruns_and_resumes_identically(tmp_path: Path) -> None:
    runs = {}
    for name in ("first", "second"):
        code, out, err = finish(start(_config(tmp_path, name), cwd=tmp_path))
        assert code == 0, err[-3000:]
        runs[name] = tmp_path / "runs" / name
    _check_lineage(runs["first"])
    assert _decisions(runs["first"]) == _decisions(runs["second"])
    _same(runs["first"], runs["second"])

    config = _config(tmp_path, "killed")
    experiment = tmp_path / "runs" / "killed"
    proc = start(config, cwd=tmp_path)
    try:
        # Past the first exploit: a member trains its second epoch.
        wait_for(lambda: any(len(results(t)) >= 2 for t in trial_dirs(experiment)), proc, what="a second epoch")
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_session(proc)
    assert (experiment / "population" / "epoch_000001.json").is_file()
    code, out, err = finish(start(config, cwd=tmp_path))
    assert code == 0, err[-3000:]
    assert _decisions(experiment) == _decisions(runs["first"])
    _same(runs["first"], experiment)


# A user's model that raises in one training step of its line (counted in a buffer, so a restart from its
# checkpoint raises again there, and a copy of another member's weights, further on, does not).
FLAKY = """\
import torch
from torch import nn


class Flaky(nn.Module):
    def __init__(self, features: int, classes: int, fail_at: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes))
        self.fail_at = fail_at
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.trained_steps += 1
            if int(self.trained_steps) == self.fail_at:
                raise RuntimeError(f"step {self.fail_at} of this line fails")
        return self.net(x)


def build(input_shape, num_classes, fail_at=0):
    features = 1
    for size in input_shape:
        features *= size
    return Flaky(features, num_classes, fail_at)
"""

# Four members: two raise in epoch 2 (step 140 of 94 a epoch), are replaced there and go on from a copy.
FLAKY_CONFIG = """\
name: {name}
storage_path: {storage}
data: {{train_limit: 1500, val_size: 500}}
trial: {{model: "flaky_nets:build", optimizer: momentum, batch_size: 16, epochs: 3}}
resources: {{cpu: 1}}
search: {{num_samples: 2, space: {{lr: {{loguniform: [1.0e-3, 1.0e-1]}}, model_args.fail_at: {{grid: [0, 140]}}}}}}
population: {{interval: 1, fraction: 0.25, mutate: [lr]}}
export: {{formats: []}}
"""


def test_a_population_on_an_object_store_replaces_a_member_that_errors(
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The decisions, and the parents' checkpoints a copy loads, go through the store (moto's S3 server); a
    member whose epoch raises is replaced at that interval like one that diverged, and never copied."""
    (tmp_path / "flaky_nets.py").write_text(FLAKY)
    config = tmp_path / "pbt.yaml"
    config.write_text(FLAKY_CONFIG.format(name="pbt", storage=f"s3://{BUCKET}/sweeps"))
    env = {**s3_env, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    code, out, err = finish(start_cli("launch", str(config), cwd=tmp_path, env=env))
    assert code == 0, err[-3000:]
    assert err.count("failed (RuntimeError: step 140 of this line fails); the population replaces") == 2, err[-3000:]
    store = pafs.FileSystem.from_uri(f"s3://{BUCKET}")[0]
    root = f"{BUCKET}/sweeps/pbt"
    decisions = {}
    for epoch in (1, 2):
        with store.open_input_stream(f"{root}/population/epoch_{epoch:06d}.json") as stream:
            decisions[epoch] = json.loads(stream.read())["exploits"]
        for exploit in decisions[epoch].values():  # the parent's checkpoint as the decision saw it
            assert store.get_file_info(f"{root}/{parent_file(epoch, exploit['parent'])}").size > 0
    frames = {}
    for name in ("history", "results"):
        with store.open_input_stream(f"{root}/{name}.parquet") as stream:
            frames[name] = pq.read_table(io.BytesIO(stream.read())).to_pandas()
    history, results = frames["history"], frames["results"]
    member = history["trial_name"].map(lambda name: int(name.rsplit("_", 1)[-1]))
    failing = results["config.model_args.fail_at"] == 140
    flaky = {int(name.rsplit("_", 1)[-1]) for name in results.loc[failing, "trial_name"]}
    assert len(flaky) == 2
    assert flaky <= {int(c) for c in decisions[2]}  # replaced where they failed ...
    assert not {e["parent"] for e in decisions[2].values()} & flaky  # ... never copied
    for child in flaky:
        rows = history[member == child].set_index("epoch")
        assert list(rows.index) == [1, 2, 3] and bool(rows.loc[2, "diverged"]) and not bool(rows.loc[3, "diverged"])
        assert rows.loc[3, "pbt.parent"] == decisions[2][str(child)]["parent"]
    assert set(results["status"]) == {"completed"} and results["error"].isna().all()
    for epoch, exploits in decisions.items():
        for child, exploit in exploits.items():
            after = history[(member == int(child)) & (history["epoch"] == epoch + 1)].iloc[0]
            assert after["pbt.parent"] == exploit["parent"] and math.isclose(after["lr"], exploit["values"]["lr"])
