"""The base of every config section, and strict validation of user input.

Every section refuses unknown keys, is frozen, and refuses NaN and infinities. User input (YAML,
`--set`, search-space values, sampled values) is validated as JSON in pydantic's strict mode, so
`batch_size: true` is not 1 and `lr: "0.1"` is not a number, while lists still fill tuple fields.
Every integer field is bounded: the caps below are the single source of the numbers the README states.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

# Caps on trial fields: far above any sensible value, low enough that every consumer accepts them.
MAX_SEED = 2**32 - 1  # numpy's legacy RandomState, Optuna's samplers and torch all take 32-bit seeds
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 10_000_000
MAX_WIDTH = 65_536  # a layer's width or channel count
MAX_PARAMETERS = 100_000_000  # a model's parameters (~400 MB of fp32 weights, 1.6 GB with Adam's state)
INT64_MAX = 2**63 - 1  # Parquet's and torch's integers

Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    """A config section: unknown keys are errors, values are frozen, floats are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def strict_validate(model: type[Model], data: Any) -> Model:
    """Validate plain data (what YAML or Tune produced) strictly, as JSON: no bool-as-int, no str-as-number."""
    return model.model_validate_json(json.dumps(data, allow_nan=True), strict=True)
