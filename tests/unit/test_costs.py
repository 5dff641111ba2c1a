"""Every trial's costs: parameters, checkpoint size, latency and throughput, measured on the model itself,
and carried into the results row, the leaderboard and TensorBoard's HParams metrics."""

from __future__ import annotations

import io

import torch

from orchestrator.outputs.tables import leaderboard
from orchestrator.records import TrialRecord
from trainables import costs, hparams
from trainables import metrics as m
from trainables.data import input_scaling
from trainables.models import build_model, make_spec
from trainables.recipe import TrialConfig


def _mlp(hidden: list[int]) -> torch.nn.Module:
    return build_model(make_spec("mlp", {"hidden": hidden}, (1, 28, 28), 10))


def test_costs_are_the_models_own() -> None:
    model = _mlp([16])
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    measured = costs.measure_costs(model.train(), input_scaling("unit", [0.0], [1.0]), images, torch.device("cpu"))
    assert measured[m.PARAMS] == 784 * 16 + 16 + 16 * 10 + 10
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert measured[m.CHECKPOINT_MB] == buffer.getbuffer().nbytes / 1e6
    assert 0 < measured[m.LATENCY_MS] < 1000 and measured[m.THROUGHPUT] > 0
    assert model.training, "the model's mode is restored"


def test_a_bigger_model_costs_more() -> None:
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)  # fewer than a batch: cycled to fill it
    scaling = input_scaling("unit", [0.0], [1.0])
    small = costs.measure_costs(_mlp([8]), scaling, images, torch.device("cpu"))
    big = costs.measure_costs(_mlp([2048, 2048]), scaling, images, torch.device("cpu"))
    assert big[m.PARAMS] > 100 * small[m.PARAMS] and big[m.CHECKPOINT_MB] > 100 * small[m.CHECKPOINT_MB]
    assert big[m.THROUGHPUT] < small[m.THROUGHPUT]


def test_float_inputs_are_not_scaled_in_place() -> None:
    images = torch.full((4, 1, 28, 28), 0.5)
    costs.measure_costs(_mlp([8]), input_scaling("standard", [0.25], [0.5], 1.0), images, torch.device("cpu"))
    assert torch.equal(images, torch.full((4, 1, 28, 28), 0.5))


def _record(cost: dict[str, float]) -> TrialRecord:
    record = TrialRecord("a", "t-a", TrialConfig(epochs=1))
    record.report({m.EPOCH: 1, m.VAL_ACCURACY: 0.5, m.TEST_ACCURACY: 0.5, m.DIVERGED: False, **cost})
    return record


COSTS = {m.PARAMS: 12730, m.CHECKPOINT_MB: 0.0531, m.LATENCY_MS: 0.031, m.THROUGHPUT: 1.5e6, m.TRAIN_SECONDS: 2.5}


def test_costs_reach_the_row_the_leaderboard_and_hparams() -> None:
    record = _record(COSTS)
    row = record.row(m.TEST_ACCURACY)
    assert {k: row[k] for k in m.COSTS} == COSTS
    header, line = leaderboard([row], m.TEST_ACCURACY).splitlines()
    assert header.split()[-5:] == ["params", "MB", "ms@1", "samples/s", "train_s"]
    assert line.split()[-5:] == ["12,730", "0.0531", "0.031", "1.5e+06", "2.5"]
    values = hparams.metric_values(record.history, "completed")
    expected = {hparams.COST_TAGS[k]: v for k, v in COSTS.items()}
    assert {tag: values[tag] for tag in hparams.COST_TAGS.values()} == expected
    assert set(hparams.COST_TAGS.values()) <= set(hparams.METRICS)


def test_unmeasured_costs_are_empty_cells() -> None:
    row = _record({}).row(m.TEST_ACCURACY)
    assert all(row[k] is None for k in m.COSTS)
    assert leaderboard([row], m.TEST_ACCURACY).splitlines()[1].split()[-5:] == ["-"] * 5
