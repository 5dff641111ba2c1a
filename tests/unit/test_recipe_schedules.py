"""LR schedules act on a real optimizer: plateau cuts, time-based curves, warm-up, and state that survives
a checkpoint round trip (torch.save / weights_only load)."""

from __future__ import annotations

import io

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainables.recipe import TrialConfig
from trainables.schedules import Schedule, ScheduleSpec, lr_factor

SEEDS_PLATEAU = {
    "name": "plateau",
    "plateau": {"factor": 0.5, "patience": 0, "threshold": 0.001, "threshold_mode": "abs", "min_lr": 1e-5},
}


def _optimizer(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr)


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def test_plateau_defaults_are_the_seeds_setting() -> None:
    assert ScheduleSpec(name="plateau") == ScheduleSpec.model_validate(SEEDS_PLATEAU)


def test_plateau_halves_the_lr_after_a_plateau_and_stops_at_min_lr() -> None:
    optimizer = _optimizer(1e-3)
    schedule = Schedule(optimizer, ScheduleSpec.model_validate(SEEDS_PLATEAU), steps_per_epoch=10, epochs=20)
    assert schedule.after_step is None  # plateau moves once per epoch, never per step
    schedule.after_epoch(1.0)
    schedule.after_epoch(0.9)  # improved by more than 0.001: lr kept
    assert _lr(optimizer) == pytest.approx(1e-3)
    schedule.after_epoch(0.8995)  # improved by less than the absolute threshold: a plateau, patience 0
    assert _lr(optimizer) == pytest.approx(5e-4)
    for _ in range(10):
        schedule.after_epoch(0.8995)
    assert _lr(optimizer) == pytest.approx(1e-5)  # min_lr


def test_relative_threshold_mode_differs_from_absolute() -> None:
    optimizer = _optimizer(1e-3)
    spec = ScheduleSpec.model_validate({"name": "plateau", "plateau": {"threshold": 0.001, "threshold_mode": "rel"}})
    schedule = Schedule(optimizer, spec, steps_per_epoch=1, epochs=5)
    schedule.after_epoch(100.0)
    schedule.after_epoch(99.95)  # 0.05 below: an improvement in abs mode, a plateau in rel mode (< 0.1%)
    assert _lr(optimizer) == pytest.approx(5e-4)


def _run_steps(spec: ScheduleSpec, steps_per_epoch: int, epochs: int) -> list[float]:
    optimizer = _optimizer(0.1)
    schedule = Schedule(optimizer, spec, steps_per_epoch, epochs)
    lrs = []
    for _ in range(steps_per_epoch * epochs):
        lrs.append(_lr(optimizer))
        optimizer.step()
        schedule.after_step()
    return lrs


def test_cosine_falls_from_lr_to_its_floor() -> None:
    lrs = _run_steps(ScheduleSpec.model_validate({"name": "cosine", "cosine": {"min_factor": 0.1}}), 10, 4)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[20] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # halfway: the cosine's midpoint
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] > 0.01 and lr_factor(ScheduleSpec(name="cosine"), 4.0, 4) == pytest.approx(0.0)


def test_step_cuts_by_gamma_every_step_epochs() -> None:
    lrs = _run_steps(ScheduleSpec.model_validate({"name": "step", "step": {"step_epochs": 2, "gamma": 0.5}}), 5, 6)
    assert [lrs[i] for i in (0, 9, 10, 20, 29)] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.025])


def test_onecycle_rises_to_lr_then_anneals_far_below() -> None:
    lrs = _run_steps(ScheduleSpec(name="onecycle"), 10, 10)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert peak == 30 and lrs[peak] == pytest.approx(0.1)  # pct_start 0.3 of 100 steps
    assert lrs[-1] < 1e-4


def test_linear_warmup_then_constant() -> None:
    lrs = _run_steps(ScheduleSpec(warmup_epochs=2, warmup_start=0.1), 10, 4)
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[10] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert lrs[20:] == pytest.approx([0.1] * 20)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21], strict=True))


def test_constant_schedule_touches_nothing() -> None:
    schedule = Schedule(_optimizer(), ScheduleSpec(), steps_per_epoch=10, epochs=3)
    assert schedule.after_step is None and schedule.state_dict() == {"plateau": None, "stepwise": None}


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("spec", [SEEDS_PLATEAU, {"name": "cosine", "warmup_epochs": 1}])
def test_state_survives_a_checkpoint_and_the_curve_continues(spec: dict) -> None:
    parsed = ScheduleSpec.model_validate(spec)
    first = _optimizer(0.1)
    schedule = Schedule(first, parsed, steps_per_epoch=4, epochs=6)
    losses = [1.0, 1.0, 0.5, 0.5, 0.5, 0.4]
    for epoch in range(6):
        if epoch == 3:
            state = _round_trip({"optimizer": first.state_dict(), "scheduler": schedule.state_dict()})
            second = _optimizer(0.1)
            resumed = Schedule(second, parsed, steps_per_epoch=4, epochs=6)
            second.load_state_dict(state["optimizer"])
            resumed.load_state_dict(state["scheduler"])
        for run_schedule, opt in ((schedule, first),) + (((resumed, second),) if epoch >= 3 else ()):
            for _ in range(4):
                opt.step()
                if run_schedule.after_step:
                    run_schedule.after_step()
            run_schedule.after_epoch(losses[epoch])
        if epoch >= 3:
            assert _lr(second) == pytest.approx(_lr(first))
    assert _lr(first) < 0.1


def test_warmup_with_plateau_or_longer_than_training_is_refused() -> None:
    with pytest.raises(ValidationError, match="warmup_epochs combines with"):
        ScheduleSpec(name="plateau", warmup_epochs=1)
    with pytest.raises(ValidationError, match="shorter than epochs"):
        TrialConfig.model_validate({"epochs": 2, "schedule": {"name": "cosine", "warmup_epochs": 2}})
