"""A trial's training pieces from its TrialConfig: the initialized model, optimizer, lr schedule, step hooks.

One place that turns the recipe sections (`init`, `optim`, `loss`, `clip`, `schedule`, `augment`) into
objects, so trial.py stays an adapter and the same assembly is testable without Ray:

    cfg = TrialConfig()
    training = assemble(cfg, cfg.model_spec((1, 28, 28), 10), torch.device("cpu"), steps_per_epoch=391)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainables.augment import build_augment
from trainables.initialization import initialize
from trainables.loop import StepHooks
from trainables.models import build_model
from trainables.objective import build_clip, build_objective
from trainables.optimizers import build_optimizer
from trainables.recipe import TrialConfig
from trainables.schedules import Schedule


@dataclass(frozen=True)
class Training:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    hooks: StepHooks


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Optimizer steps in an epoch: a last batch of one sample is not trained (trainables.loop)."""
    full, rest = divmod(train_size, batch_size)
    return full + (rest > 1 or full == 0)


def assemble(cfg: TrialConfig, spec: dict[str, Any], device: torch.device, steps_per_epoch: int) -> Training:
    """Call after seeding torch: the init draws from the global RNG. `spec` is `cfg.model_spec(shape, classes)`."""
    model = initialize(build_model(spec), cfg.init).to(device)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, cfg.optim)
    schedule = Schedule(optimizer, cfg.schedule, steps_per_epoch, cfg.epochs)
    hooks = StepHooks(
        loss_fn=build_objective(model, cfg.loss),
        augment=build_augment(cfg.augment),
        clip=build_clip(model, cfg.clip),
        after_step=schedule.after_step,
    )
    return Training(model, optimizer, schedule, hooks)
