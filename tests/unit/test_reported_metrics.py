"""What a trial reports is what it used: the lr its epoch trained with (per-step schedules included), and
class-balanced scores that agree with scikit-learn's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch import nn

from trainables import metrics as m
from trainables.data import DeviceSplit
from trainables.loop import StepHooks, score, train_one_epoch
from trainables.schedules import Schedule, ScheduleSpec

SCHEDULES = {
    "step": {"name": "step", "step": {"step_epochs": 1.0, "gamma": 0.1}},
    "cosine": {"name": "cosine"},
    "onecycle": {"name": "onecycle"},
    "warmup": {"name": "none", "warmup_epochs": 1.0},
    "warmup+step": {"name": "step", "warmup_epochs": 0.5},
}


def _split(n: int, classes: int = 3, seed: int = 0) -> DeviceSplit:
    g = torch.Generator().manual_seed(seed)
    return DeviceSplit(torch.rand(n, 4, generator=g), torch.randint(0, classes, (n,), generator=g))


@pytest.mark.parametrize("name", SCHEDULES)
def test_lr_is_what_the_epochs_steps_trained_with(name: str) -> None:
    """`lr` = the lr of the epoch's first optimizer step, `lr_last` = of its last, read where the optimizer
    used them (a pre-step hook), never the lr the schedule set for the next epoch."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    split, batch, epochs = _split(40), 10, 3
    schedule = Schedule(optimizer, ScheduleSpec.model_validate(SCHEDULES[name]), len(split) // batch, epochs)
    used: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        used.clear()
        fit = train_one_epoch(
            model, optimizer, split, batch, lambda x: x, generator, StepHooks(after_step=schedule.after_step)
        )
        assert len(used) == 4
        assert fit.lr == used[0] and fit.lr_last == used[-1], (epoch, fit, used)
        if name != "warmup" or epoch == 0:  # (after its warm-up, `warmup` holds the lr constant)
            assert fit.lr != optimizer.param_groups[0]["lr"]  # the next epoch's lr is not this one's
    if name == "step":  # the case: epoch 1 trained at 0.1, reported as such (not 0.01)
        assert fit.lr == pytest.approx(0.1 * 0.1**2)


def test_lr_under_a_step_schedule_is_the_trained_one_in_epoch_one() -> None:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = Schedule(optimizer, ScheduleSpec.model_validate(SCHEDULES["step"]), 4, 2)
    fit = train_one_epoch(
        model, optimizer, _split(40), 10, lambda x: x, torch.Generator(), StepHooks(after_step=schedule.after_step)
    )
    assert fit.lr == fit.lr_last == pytest.approx(0.1)


def _cases() -> list[tuple[np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(0)
    cases = []
    for n, classes in ((50, 2), (200, 5), (97, 10)):
        truth = rng.choice(classes, n, p=np.linspace(1, 3, classes) / np.linspace(1, 3, classes).sum())
        noisy = np.where(rng.random(n) < 0.6, truth, rng.integers(0, classes, n))
        cases.append((truth, noisy, classes))
    truth = np.array([0, 0, 0, 0, 1, 1, 2])  # class 3 never true and never predicted; class 2 never predicted
    cases.append((truth, np.array([0, 0, 1, 1, 1, 0, 0]), 4))
    cases.append((np.array([0, 0, 1, 1]), np.array([0, 3, 1, 3]), 4))  # a predicted class with no true sample
    cases.append((np.zeros(10, dtype=int), np.zeros(10, dtype=int), 10))  # one class only, all right
    return cases


@pytest.mark.parametrize("case", range(len(_cases())))
def test_balanced_accuracy_and_macro_f1_match_scikit_learn(case: int) -> None:
    truth, predicted, classes = _cases()[case]
    counts = m.confusion(torch.from_numpy(truth), torch.from_numpy(predicted), classes)
    with warnings.catch_warnings():  # scikit-learn warns of the classes absent from one side
        warnings.simplefilter("ignore")
        expected_bacc = balanced_accuracy_score(truth, predicted)
        expected_f1 = f1_score(truth, predicted, average="macro", zero_division=0)
    assert m.balanced_accuracy(counts) == pytest.approx(expected_bacc, abs=1e-12)
    assert m.macro_f1(counts) == pytest.approx(expected_f1, abs=1e-12)


def test_score_of_an_imbalanced_split_matches_scikit_learn() -> None:
    """A model that always says the majority class: accuracy 0.9, balanced accuracy 0.5, macro-F1 ~0.47."""
    labels = torch.tensor([0] * 90 + [1] * 10)
    split = DeviceSplit(torch.zeros(100, 2), labels)
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))
    scores = score(model, split, lambda x: x, 2)
    predicted = np.zeros(100, dtype=int)
    assert scores.accuracy == pytest.approx(0.9)
    assert scores.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels.numpy(), predicted)) == 0.5
    assert scores.macro_f1 == pytest.approx(f1_score(labels.numpy(), predicted, average="macro", zero_division=0))


def test_the_config_offers_the_metrics_the_trial_reports() -> None:
    from typing import get_args

    from orchestrator.config.schema import AshaConfig, SelectionConfig

    assert set(get_args(SelectionConfig.model_fields["metric"].annotation)) == set(m.SELECTABLE)
    assert set(get_args(AshaConfig.model_fields["metric"].annotation)) == set(m.EARLY_STOPPING)


def test_selection_by_a_class_balanced_score_is_one_rule_for_ranking_and_rows() -> None:
    from orchestrator.outputs.tables import leaderboard, ordered
    from orchestrator.records import CheckpointRef, TrialRecord, rank_checkpoints
    from trainables.recipe import TrialConfig

    records = []
    for trial_id, f1s in (("a", [0.5, 0.7, 0.6]), ("b", [0.65, 0.66, 0.4])):
        record = TrialRecord(trial_id, f"t-{trial_id}", TrialConfig(epochs=3))
        for epoch, f1 in enumerate(f1s, 1):  # accuracy runs the other way: the majority class wins it
            row = {m.EPOCH: epoch, m.VAL_ACCURACY: 0.9 - f1 / 10, m.TEST_ACCURACY: 0.9, m.VAL_MACRO_F1: f1}
            row[m.SELECTION_SCORE] = m.selection_score(row, m.VAL_MACRO_F1)
            record.report(row)
            record.checkpoints.append(CheckpointRef(f"t-{trial_id}/checkpoint_{epoch:06d}", row))
        records.append(record)
    best, ref = rank_checkpoints(records, m.VAL_MACRO_F1)[0]
    assert (best.trial_id, ref.epoch) == ("a", 2)
    rows = [record.row(m.VAL_MACRO_F1) for record in records]
    assert rows[0]["best_val_macro_f1"] == 0.7 and rows[0]["final_val_macro_f1"] == 0.6
    assert [row["trial_id"] for row in ordered(rows, m.VAL_MACRO_F1)] == ["a", "b"]
    board = leaderboard(rows, m.VAL_MACRO_F1).splitlines()
    header = board[0].split()
    start = header.index("val_acc")
    assert header[start : start + 6] == ["val_acc", "val_bacc", "val_f1", "test_acc", "test_bacc", "test_f1"]
    assert board[1].split()[1] == "t-a" and board[1].split()[start + 2] == "0.7000"
