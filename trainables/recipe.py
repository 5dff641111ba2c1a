"""The per-trial recipe: a typed, frozen `TrialConfig` that every trial builds on its first line.

The experiment YAML's `trial:` section gives the fixed values; Tune samples the searched ones; a trial
merges the two (`TrialConfig.resolve`) and nothing downstream indexes a raw dict. Model-specific
fields live in a section named after the model (`mlp:`, `cnn:`, ...), so a `cnn` trial only ever uses
its `cnn:` section: searching `mlp.hidden` never reaches a CNN. The same holds one level down for the
optimizer families (`optim.adam.betas` reaches only adam trials) and the schedules
(`schedule.plateau.factor` only plateau trials). The training-recipe sections (`init`, `optim`, `loss`,
`clip`, `schedule`, `augment`) are defined next to the code that applies them; configs/README.md
documents every field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainables.augment import AugmentSpec
from trainables.initialization import InitSpec
from trainables.models import MODELS, CNNSpec, MLPSpec, RNNSpec
from trainables.objective import ClipSpec, LossSpec
from trainables.optimizers import OptimSpec
from trainables.schedules import ScheduleSpec

Optimizer = Literal["sgd", "momentum", "rmsprop", "adam", "adamw", "adagrad", "adadelta"]
InputScale = Literal["raw", "unit", "tiny", "standard"]


class TrialConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="mlp", description="registry name of the model family")
    mlp: MLPSpec = MLPSpec()
    cnn: CNNSpec = CNNSpec()
    lstm: RNNSpec = RNNSpec()
    gru: RNNSpec = RNNSpec()
    optimizer: Optimizer = Field(default="adam", description="optimizer family; momentum = SGD with 0.9")
    lr: float = Field(default=1e-3, gt=0, description="learning rate")
    batch_size: int = Field(default=128, gt=0, description="samples per step; up to the whole training split")
    epochs: int = Field(default=10, gt=0, description="epochs per trial; also ASHA's max_t")
    weight_decay: float = Field(default=0.0, ge=0, description="decoupled (adamw) or L2-style weight decay")
    seed: int = Field(default=0, ge=0, description="seeds model init and batch order")
    input_scale: InputScale = Field(default="unit", description="pixel scaling: raw, unit (/255), tiny, standard")
    init: InitSpec = InitSpec()
    optim: OptimSpec = OptimSpec()
    loss: LossSpec = LossSpec()
    clip: ClipSpec = ClipSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    augment: AugmentSpec = AugmentSpec()

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} (valid: {', '.join(MODELS)})")
        return name

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrialConfig:
        if self.schedule.warmup_epochs >= self.epochs:
            raise ValueError(f"schedule.warmup_epochs ({self.schedule.warmup_epochs:g}) must be shorter than "
                             f"epochs ({self.epochs})")
        return self

    @classmethod
    def resolve(cls, fixed: dict[str, Any], sampled: dict[str, Any]) -> TrialConfig:
        """Fixed values overlaid with the values Tune sampled for this trial."""
        return cls.model_validate(deep_merge(fixed, sampled))

    def model_spec(self) -> dict[str, Any]:
        """What `build_model` needs, and all a checkpoint needs to rebuild the network."""
        return {"name": self.model, **getattr(self, self.model).model_dump(mode="json")}

    def knobs(self) -> dict[str, Any]:
        """Flat dotted view of the fields this trial uses: other models', optimizers' and schedules'
        sections left out (a cnn trial has no `mlp.*`, an sgd trial no `optim.adam.*`)."""
        chosen = {"": self.model, "optim": self.optimizer, "schedule": self.schedule.name}
        return _flatten("", self.model_dump(mode="json"), chosen)


# Sections named after a choice: the top level's model sections, optim's families, schedule's kinds.
_CHOICES = {"": set(MODELS), "optim": set(OptimSpec.model_fields),
            "schedule": set(ScheduleSpec.model_fields) - {"name", "warmup_epochs", "warmup_start"}}


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
