"""Population-based training's settings and their rules: which knobs may mutate, and how.

    population:
      interval: 2                 # epochs between exploits
      fraction: 0.25              # the bottom quarter copies the top quarter
      mutate: [lr, weight_decay]  # searched knobs that change mid-training
      perturb: [0.8, 1.2]         # a perturbed knob is multiplied by one of these
      resample_probability: 0.25  # or drawn afresh from its search domain

A sweep is either early-stopped (`asha:`) or a population (`population:`), never both: the population is
the sweep's trials, all trained to `trial.epochs`. A mutating knob must be searched (its domain bounds
every new value) and must be one that can change mid-training; an architecture knob (`mlp.hidden`,
`cnn.channels`), the model, the optimizer family or the schedule would need other weights or another
optimizer state, and is refused by name. No Ray here.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from orchestrator.config.space import parse_dimension
from orchestrator.errors import ConfigError
from trainables.schema import MAX_EPOCHS, Section

# The knobs a copy can take up mid-training: read again when a trial (re)starts, with no shape of their own.
MUTABLE = (
    r"lr", r"weight_decay", r"batch_size",
    r"optim\.\w+\.(momentum|betas|eps|dampening|alpha|rho)",
    r"loss\.(l1|l2|label_smoothing)", r"clip\.threshold",
    r"(mlp|cnn|lstm|gru)\.dropout", r"mlp\.input_dropout",
    r"augment\.(crop_padding|rotate|translate|scale|erase_prob)",
)  # fmt: skip
_MUTABLE = re.compile("|".join(f"(?:{pattern})" for pattern in MUTABLE))
MUTABLE_TEXT = (
    "lr, weight_decay, batch_size, optim.<family>.momentum/betas/eps/dampening/alpha/rho, loss.l1/l2/"
    "label_smoothing, clip.threshold, <model>.dropout, mlp.input_dropout, augment.crop_padding/rotate/"
    "translate/scale/erase_prob"
)


class PopulationConfig(Section):
    interval: int = Field(ge=1, le=MAX_EPOCHS, description="epochs between exploits (below trial.epochs)")
    fraction: float = Field(
        default=0.25, gt=0, le=0.5, description="share of the population replaced each interval (and copied from)"
    )
    mutate: tuple[str, ...] = Field(min_length=1, description="searched knobs that mutate on a copy")
    perturb: tuple[float, float] = Field(
        default=(0.8, 1.2), description="factors a perturbed knob is multiplied by (one drawn per knob)"
    )
    resample_probability: float = Field(
        default=0.25, ge=0, le=1, description="chance a mutating knob is drawn afresh from its domain"
    )

    @field_validator("perturb")
    @classmethod
    def _factors(cls, factors: tuple[float, float]) -> tuple[float, float]:
        if not all(0 < f <= 100 for f in factors) or factors[0] == factors[1]:
            raise ValueError("must be two different factors above 0 (at most 100), such as [0.8, 1.2]")
        return factors

    @field_validator("mutate")
    @classmethod
    def _mutable(cls, knobs: tuple[str, ...]) -> tuple[str, ...]:
        for knob in knobs:
            if not _MUTABLE.fullmatch(knob):
                raise ConfigError(
                    "population.mutate",
                    f"{knob} cannot change mid-training (an architecture or set-up knob); mutable: {MUTABLE_TEXT}",
                    knob,
                )
        if len(set(knobs)) != len(knobs):
            raise ValueError("lists a knob twice")
        return knobs


def validate_population(
    population: PopulationConfig, space: dict[str, Any], epochs: int, members: int, algorithm: str
) -> None:
    """The rules that need the rest of the config; raises ConfigError naming the field."""
    if algorithm != "random":
        raise ConfigError(
            "search.algorithm",
            "a population exploits its own members; it cannot take trials from a search algorithm "
            "(use search.algorithm: random with population:)",
            algorithm,
        )
    if population.interval >= epochs:
        raise ConfigError(
            "population.interval",
            f"must be below trial.epochs ({epochs}), or no exploit ever happens",
            population.interval,
        )
    if members < 2 or population.fraction * members < 1:
        raise ConfigError(
            "population.fraction",
            f"replaces no member of a population of {members} (fraction x trials must be at least 1; "
            "raise search.num_samples or the fraction)",
            population.fraction,
        )
    for knob in population.mutate:
        if knob not in space:
            raise ConfigError(
                "population.mutate",
                f"{knob} is not searched: add it to search.space (its domain bounds every mutated value)",
                knob,
            )
        kind, args = parse_dimension(knob, space[knob])
        if any(isinstance(value, dict) for value in args):
            raise ConfigError("population.mutate", f"{knob} searches whole sections; mutate single fields", knob)
