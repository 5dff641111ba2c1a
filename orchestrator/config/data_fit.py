"""Checks that need the loaded data: every trial the space can produce must fit it, before Ray starts.

    python -m orchestrator launch configs/smoke.yaml --set trial.batch_size=60000     # exit 2, one line

- the batch size (fixed, or any searched value) is at most the training split, after `train_limit`;
- augmentation is only asked of images (C x H x W), not of flat feature vectors;
- an input scale that assumes a pixel scale (`unit`, `tiny`: stored values low..high -> 0..1) is only
  asked of data that has one: uint8, floats within 0..1, or a declared `data.value_range`;
- every model the space can name builds for this data's input shape and class count, with at most
  MAX_PARAMETERS parameters (built on the meta device: nothing is allocated), and a user's factory
  imports and returns a module;
- a user's model maps a batch of this data's shape to one logit per class (one forward pass of zeros on
  the CPU), so a model that does not fit the data is refused here, not in every trial;
- every model trains one step as its trials will (init, batch of one, channels_last, autocast:
  `trial_check`).
- a parameter budget (`selection.constraints.max_params`) that no model of the space meets is refused.
No Ray here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from orchestrator.config.gpu_memory import MAX_COMBINATIONS, MEMORY_FIELDS, candidate_trials
from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import candidate_values, dimensions, searched_fields
from orchestrator.config.trial_check import check_like_a_trial
from orchestrator.errors import ConfigError
from trainables.data import Dataset
from trainables.models import MODELS, ModelError, build_model, count_parameters
from trainables.schema import MAX_PARAMETERS

PIXEL_SCALES = ("unit", "tiny")  # the input scales that map a known value range to 0..1


def check_fits(cfg: ExperimentConfig, dataset: Dataset) -> None:
    train = len(dataset.train)
    sizes = {"trial.batch_size": [cfg.trial.batch_size]}
    if "batch_size" in cfg.search.space:
        sizes = {"search.space.batch_size": candidate_values(cfg.search.space, "batch_size")}
    for field, values in sizes.items():
        too_big = [v for v in values if v > train]
        if too_big:
            raise ConfigError(field, f"batch size larger than the training split ({train} samples)", too_big[0])
    flat = len(dataset.input_shape) == 1
    forwarded: set[str] = set()
    _check_scales(cfg, dataset)
    trained: set[str] = set()
    smallest: tuple[int, str] | None = None  # the fewest parameters any trial of the space has, and its model
    for trial in candidate_trials(cfg, MEMORY_FIELDS | {"augment", "init"}):
        if flat and trial.augment.enabled:
            raise ConfigError(
                "trial.augment",
                "augmentation needs images (C x H x W); this data is flat features "
                f"of shape {list(dataset.input_shape)}",
            )
        spec = trial.model_spec(dataset.input_shape, dataset.num_classes)
        try:
            parameters = count_parameters(spec)
        except ModelError as exc:
            raise ConfigError("trial.model", str(exc).removeprefix("model: "), trial.model) from None
        if parameters > MAX_PARAMETERS:
            raise ConfigError(
                "trial.model",
                f"{parameters:,} parameters for {spec['name']} {spec['args']}, above the "
                f"cap of {MAX_PARAMETERS:,}; use a smaller model",
                trial.model,
            )
        if smallest is None or parameters < smallest[0]:
            knobs = trial.knobs()
            searched = {k: knobs[k] for k in searched_fields(cfg.search.space) if k in knobs}
            smallest = (parameters, ", ".join(f"{k}={json.dumps(v)}" for k, v in searched.items()) or trial.model)
        key = json.dumps(spec, sort_keys=True, default=str)
        if spec["name"] not in MODELS and key not in forwarded:  # the built-in families adapt to any input
            forwarded.add(key)
            _check_forward(spec)
        step = json.dumps([spec, trial.init.model_dump(), trial.batch_size == 1], sort_keys=True, default=str)
        if step not in trained:  # the model as its trials run it (trial_check)
            trained.add(step)
            check_like_a_trial(cfg, trial, spec)

    budget = cfg.selection.constraints.max_params
    if budget is not None and smallest is not None and smallest[0] > budget and _every_model_listed(cfg):
        raise ConfigError(
            "selection.constraints.max_params",
            f"no trial of the search space can meet it: the smallest model has {smallest[0]:,} parameters "
            f"({smallest[1]}); raise the budget or search smaller models",
            budget,
        )


def _every_model_listed(cfg: ExperimentConfig) -> bool:
    """Whether the models checked above are all the space can produce: a sampled range (checked at its top)
    or a product past the cap leaves smaller models unseen, and a budget is refused only when none can meet it."""
    dims = [d for p, d in dimensions(cfg.search.space).items() if p.split(".")[0] in MEMORY_FIELDS]
    listed = all(kind in ("grid", "choice") for kind, _ in dims)
    return listed and math.prod(len(args) for _, args in dims) <= MAX_COMBINATIONS


def _check_scales(cfg: ExperimentConfig, dataset: Dataset) -> None:
    """unit and tiny map the value range to 0..1: floats outside 0..1 need it declared, never assumed."""
    field, scales = "trial.input_scale", [cfg.trial.input_scale]
    if "input_scale" in cfg.search.space:
        field, scales = "search.space.input_scale", candidate_values(cfg.search.space, "input_scale")
    scale = next((s for s in scales if s in PIXEL_SCALES), None)
    if scale is None or dataset.value_range is not None:
        return
    low, high = dataset.observed
    raise ConfigError(
        field,
        f"{scale} assumes floats on 0..1, but the data holds {low:g}..{high:g}; for pixels stored as floats "
        "declare data.value_range (e.g. [0, 255]), for features on their own scales use input_scale standard "
        "(per feature) or raw",
        scale,
    )


def _check_forward(spec: dict[str, Any]) -> None:
    """A user's model on a batch of two zero samples: it must return (2, num_classes) logits."""
    shape, classes = tuple(spec["input_shape"]), spec["num_classes"]
    what = f"{spec['name']} {spec['args']}"
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the driver's RNG stays as it was
        try:
            model = build_model(spec).eval()
            logits = model(torch.zeros(2, *shape))
        except ModelError as exc:
            raise ConfigError("trial.model", str(exc).removeprefix("model: "), spec["name"]) from None
        except Exception as exc:  # the user's forward may raise anything
            raise ConfigError(
                "trial.model",
                f"{what} fails on a batch of this data's input shape {list(shape)} "
                f"({type(exc).__name__}: {_first_line(exc)})",
                spec["name"],
            ) from None
    got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if got != [2, classes]:
        raise ConfigError(
            "trial.model",
            f"{what} must return one logit per class, a tensor of shape [batch, "
            f"{classes}], for input shape {list(shape)}; it returned {got}",
            spec["name"],
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
