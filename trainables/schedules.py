"""Learning-rate schedules: ReduceLROnPlateau on the validation loss, or a per-step factor curve.

    schedule:
      name: plateau          # none | plateau | cosine | step | onecycle
      plateau: {factor: 0.5, patience: 0, threshold: 0.001, threshold_mode: abs, min_lr: 1.0e-5}
      warmup_epochs: 0       # linear warm-up (with none, cosine or step)

`plateau` is stepped once per epoch on the validation loss; its defaults are the seeds' exact setting.
cosine, step, onecycle and the warm-up are one multiplier of the configured `lr`, recomputed after every
optimizer step from the fractional epoch, so their shape does not depend on the batch size. The
schedule's state travels in the checkpoint (`state_dict`), so a resumed trial continues its curve.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from trainables.lazy import lazy
from trainables.schema import MAX_EPOCHS, Section

if TYPE_CHECKING:
    import torch
    from torch.optim import lr_scheduler
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")
    lr_scheduler = lazy("torch.optim.lr_scheduler")


class PlateauParams(Section):
    factor: float = Field(default=0.5, gt=0, lt=1, description="lr *= factor on a plateau")
    patience: int = Field(
        default=0, ge=0, le=MAX_EPOCHS, description="epochs without improvement tolerated before a cut"
    )
    threshold: float = Field(default=0.001, ge=0, description="smallest validation-loss drop that counts")
    threshold_mode: Literal["abs", "rel"] = Field(default="abs", description="threshold in loss units or relative")
    min_lr: float = Field(default=1e-5, ge=0, description="the lr is never cut below this")
    cooldown: int = Field(default=0, ge=0, le=MAX_EPOCHS, description="epochs after a cut before plateaus count again")


class CosineParams(Section):
    min_factor: float = Field(default=0.0, ge=0, lt=1, description="final lr as a fraction of lr")


class StepParams(Section):
    step_epochs: float = Field(default=1.0, gt=0, description="epochs between cuts")
    gamma: float = Field(default=0.1, gt=0, lt=1, description="lr *= gamma at every cut")


class OneCycleParams(Section):
    pct_start: float = Field(default=0.3, gt=0, lt=1, description="fraction of training spent rising to lr")
    div_factor: float = Field(default=25.0, ge=1, description="starting lr = lr / div_factor")
    final_div_factor: float = Field(default=1e4, ge=1, description="final lr = lr / div_factor / final_div_factor")


class ScheduleSpec(Section):
    name: Literal["none", "plateau", "cosine", "step", "onecycle"] = Field(
        default="none", description="none (constant lr), plateau, cosine, step, onecycle"
    )
    warmup_epochs: float = Field(default=0.0, ge=0, description="linear warm-up length in epochs; 0 = none")
    warmup_start: float = Field(default=0.1, gt=0, le=1, description="warm-up starts at lr * warmup_start")
    plateau: PlateauParams = PlateauParams()
    cosine: CosineParams = CosineParams()
    step: StepParams = StepParams()
    onecycle: OneCycleParams = OneCycleParams()

    @model_validator(mode="after")
    def _warmup_composes(self) -> ScheduleSpec:
        if self.warmup_epochs and self.name in ("plateau", "onecycle"):
            raise ValueError(
                f"warmup_epochs combines with none, cosine or step, not {self.name} "
                "(onecycle warms up itself; plateau sets the lr from the validation loss)"
            )
        return self


def _cosine(progress: float, low: float, high: float) -> float:
    """From high (progress 0) to low (progress 1) along half a cosine."""
    return low + (high - low) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lr_factor(spec: ScheduleSpec, epoch: float, epochs: int) -> float:
    """Multiplier of the configured lr at a fractional epoch (time-based schedules and warm-up)."""
    if epoch < spec.warmup_epochs:
        return spec.warmup_start + (1 - spec.warmup_start) * epoch / spec.warmup_epochs
    after = epoch - spec.warmup_epochs
    span = max(epochs - spec.warmup_epochs, 1e-9)
    if spec.name == "cosine":
        return _cosine(after / span, spec.cosine.min_factor, 1.0)
    if spec.name == "step":
        return spec.step.gamma ** math.floor(after / spec.step.step_epochs + 1e-9)
    if spec.name == "onecycle":
        p = spec.onecycle
        start, end = 1 / p.div_factor, 1 / (p.div_factor * p.final_div_factor)
        if epoch < p.pct_start * epochs:
            return _cosine(epoch / (p.pct_start * epochs), 1.0, start)
        return _cosine((epoch - p.pct_start * epochs) / ((1 - p.pct_start) * epochs), end, 1.0)
    return 1.0


class Schedule:
    """Owns the optimizer's lr: `after_step` per batch (time-based), `after_epoch` per epoch (plateau)."""

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec, steps_per_epoch: int, epochs: int) -> None:
        self.plateau: lr_scheduler.ReduceLROnPlateau | None = None
        self.stepwise: lr_scheduler.LambdaLR | None = None
        if spec.name == "plateau":
            p = spec.plateau
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=p.factor,
                patience=p.patience,
                threshold=p.threshold,
                threshold_mode=p.threshold_mode,
                min_lr=p.min_lr,
                cooldown=p.cooldown,
            )
        elif spec.name != "none" or spec.warmup_epochs:
            # A plain function (not a callable object): LambdaLR then keeps it out of state_dict.
            def factor(step: int) -> float:
                return lr_factor(spec, step / steps_per_epoch, epochs)

            self.stepwise = lr_scheduler.LambdaLR(optimizer, factor)

    @property
    def after_step(self) -> Any:
        """Callable for the loop to run after each optimizer step, or None."""
        return self.stepwise.step if self.stepwise is not None else None

    def after_epoch(self, val_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "stepwise": self.stepwise.state_dict() if self.stepwise else None,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])
        if self.stepwise is not None and state.get("stepwise"):
            self.stepwise.load_state_dict(state["stepwise"])
