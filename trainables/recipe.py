"""The per-trial recipe: a typed, frozen `TrialConfig` that every trial builds on its first line.

The experiment YAML's `trial:` section gives the fixed values; Tune samples the searched ones; a trial
merges the two (`TrialConfig.resolve`) and nothing downstream indexes a raw dict. Model-specific
fields live in a section named after the model (`mlp:`, `cnn:`, ...), so a `cnn` trial only ever uses
its `cnn:` section: searching `mlp.hidden` never reaches a CNN. The same holds one level down for the
optimizer families (`optim.adam.betas` reaches only adam trials) and the schedules
(`schedule.plateau.factor` only plateau trials). The training-recipe sections (`init`, `optim`, `loss`,
`clip`, `schedule`, `augment`) are defined next to the code that applies them; configs/README.md
documents every field. A user's model (`model: package.module:function`) takes its arguments from
`model_args`, a free-form mapping searched like any other section (`model_args.width`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trainables.augment import AugmentSpec
from trainables.initialization import InitSpec
from trainables.models import MODELS, CNNSpec, MLPSpec, RNNSpec, check_model_name, make_spec
from trainables.objective import ClipSpec, LossSpec
from trainables.optimizers import OptimSpec
from trainables.schedules import ScheduleSpec
from trainables.schema import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SEED, Section, strict_validate

Optimizer = Literal["sgd", "momentum", "rmsprop", "adam", "adamw", "adagrad", "adadelta"]
InputScale = Literal["raw", "unit", "tiny", "standard"]
FREE_FORM = ("model_args",)  # sections whose keys belong to a user's factory, not to this schema


class TrialConfig(Section):
    model: str = Field(default="mlp", description="mlp | cnn | lstm | gru, or a factory as package.module:function")
    model_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of a user's factory")
    mlp: MLPSpec = MLPSpec()
    cnn: CNNSpec = CNNSpec()
    lstm: RNNSpec = RNNSpec()
    gru: RNNSpec = RNNSpec()
    optimizer: Optimizer = Field(default="adam", description="optimizer family; momentum = SGD with 0.9")
    lr: float = Field(default=1e-3, gt=0, le=1e3, description="learning rate")
    batch_size: int = Field(
        default=128, gt=0, le=MAX_BATCH_SIZE, description="samples per step; up to the whole training split"
    )
    epochs: int = Field(default=10, gt=0, le=MAX_EPOCHS, description="epochs per trial; also early stopping's max_t")
    weight_decay: float = Field(default=0.0, ge=0, le=1e3, description="decoupled (adamw) or L2-style weight decay")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="seeds model init and batch order")
    input_scale: InputScale = Field(
        default="unit",
        description="input scaling: raw, unit (/255 for bytes), tiny, "
        "standard (channel mean/std of the training split)",
    )
    init: InitSpec = InitSpec()
    optim: OptimSpec = OptimSpec()
    loss: LossSpec = LossSpec()
    clip: ClipSpec = ClipSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    augment: AugmentSpec = AugmentSpec()

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        return check_model_name(name)

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if self.schedule.warmup_epochs >= self.epochs:
            raise ValueError(
                f"schedule.warmup_epochs ({self.schedule.warmup_epochs:g}) must be shorter than epochs ({self.epochs})"
            )
        return self

    @classmethod
    def resolve(cls, fixed: dict[str, Any], sampled: dict[str, Any]) -> TrialConfig:
        """Fixed values overlaid with the values Tune sampled for this trial, validated strictly."""
        return strict_validate(cls, deep_merge(fixed, sampled))

    @property
    def user_model(self) -> bool:
        return self.model not in MODELS

    def model_args_used(self) -> dict[str, Any]:
        """A built-in family's own section, or a user factory's model_args."""
        if self.user_model:
            return dict(self.model_args)
        return getattr(self, self.model).model_dump(mode="json")

    def model_spec(self, input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
        """What `build_model` needs, and all a checkpoint needs to rebuild the network."""
        return make_spec(self.model, self.model_args_used(), input_shape, num_classes)

    def knobs(self) -> dict[str, Any]:
        """Flat dotted view of the fields this trial uses: other models', optimizers' and schedules'
        sections left out (a cnn trial has no `mlp.*`, an sgd trial no `optim.adam.*`; a built-in
        family has no `model_args.*`)."""
        chosen = {"": self.model, "optim": self.optimizer, "schedule": self.schedule.name}
        values = self.model_dump(mode="json")
        if not self.user_model:
            values.pop("model_args")
        return _flatten("", values, chosen)


# Sections named after a choice: the top level's model sections, optim's families, schedule's kinds.
_CHOICES = {
    "": set(MODELS),
    "optim": set(OptimSpec.model_fields),
    "schedule": set(ScheduleSpec.model_fields) - {"name", "warmup_epochs", "warmup_start"},
}


def _flatten(prefix: str, values: dict[str, Any], chosen: dict[str, str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in _CHOICES.get(prefix, ()) and key != chosen[prefix]:
            continue
        if isinstance(value, dict):
            flat.update(_flatten(path, value, chosen))
        else:
            flat[path] = value
    return flat


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
