"""Conditional search spaces: a model's, optimizer family's or schedule's fields reach only its own trials;
dotted paths are checked against the schema before Ray starts."""

from __future__ import annotations

import pytest
import torch

from orchestrator.config import validate
from orchestrator.errors import ConfigError
from trainables.optimizers import build_optimizer
from trainables.recipe import TrialConfig

FIXED = TrialConfig().model_dump(mode="json")


def _experiment(space: dict, trial: dict | None = None, **search: object) -> dict:
    return {"name": "t", "trial": trial or {"epochs": 2}, "search": {"space": space, **search}}


def test_model_fields_never_reach_another_model() -> None:
    cnn = TrialConfig.resolve(FIXED, {"model": "cnn", "mlp": {"hidden": [7]}, "lstm": {"hidden_size": 5}})
    assert (
        "hidden" in cnn.model_spec((1, 28, 28), 10)["args"] and cnn.model_spec((1, 28, 28), 10)["args"]["hidden"] == 128
    )  # the cnn's own `hidden`
    assert not any(k.startswith(("mlp.", "lstm.", "gru.")) for k in cnn.knobs())
    mlp = TrialConfig.resolve(FIXED, {"model": "mlp", "mlp": {"hidden": [7]}})
    assert mlp.model_spec((1, 28, 28), 10)["args"]["hidden"] == [7]


def test_optimizer_parameters_reach_only_their_family() -> None:
    sgd = TrialConfig.resolve(FIXED, {"optimizer": "sgd", "optim": {"adam": {"betas": [0.5, 0.6]}}})
    group = build_optimizer(sgd.optimizer, torch.nn.Linear(2, 2), sgd.lr, 0.0, sgd.optim).param_groups[0]
    assert "betas" not in group
    assert not any(k.startswith("optim.adam") for k in sgd.knobs())
    adam = TrialConfig.resolve(FIXED, {"optimizer": "adam", "optim": {"adam": {"betas": [0.5, 0.6]}}})
    assert adam.knobs()["optim.adam.betas"] == [0.5, 0.6]


def test_schedule_parameters_reach_only_their_kind() -> None:
    cosine = TrialConfig.resolve(FIXED, {"schedule": {"name": "cosine", "plateau": {"factor": 0.9}}})
    assert "schedule.cosine.min_factor" in cosine.knobs()
    assert not any(k.startswith("schedule.plateau") for k in cosine.knobs())


def test_nested_search_paths_validate() -> None:
    cfg = validate(
        _experiment(
            {
                "optimizer": {"grid": ["sgd", "adam"]},
                "optim.adam.betas": {"choice": [[0.9, 0.999], [0.8, 0.99]]},
                "schedule.name": {"grid": ["none", "plateau"]},
                "schedule.plateau.factor": {"uniform": [0.1, 0.9]},
                "augment.flip": {"grid": [False, True]},
                "loss": {"grid": [{}, {"l1": 1e-4}]},
                "mlp": {"grid": [{}, {"dropout": 0.25}]},
            }
        )
    )
    assert len(cfg.search.space) == 7


@pytest.mark.parametrize(
    ("space", "field", "problem"),
    [
        ({"optim.adam.beta": {"grid": [[0.9, 0.9]]}}, "search.space.optim.adam.beta", "not a optim.adam field"),
        ({"lr.low": {"grid": [1]}}, "search.space.lr.low", "lr has no sub-fields"),
        ({"optim.adam.betas": {"grid": [[0.9, 1.5]]}}, "search.space.optim.adam.betas", "betas must each be in"),
        ({"schedule.plateau.factor": {"grid": [2.0]}}, "search.space.schedule.plateau.factor", "less than 1"),
        ({"loss": {"grid": [{"l3": 1.0}]}}, "search.space.loss", "Extra inputs"),
        ({"clip.by": {"choice": ["sometimes"]}}, "search.space.clip.by", "'none', 'norm' or 'value'"),
        ({"loss": {"grid": [{}]}, "loss.l1": {"grid": [0.1]}}, "search.space.loss", "also loss.l1 inside it"),
    ],
)
def test_bad_nested_entries_name_the_field(space: dict, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(_experiment(space))
    assert caught.value.field == field and problem in str(caught.value)


def test_fixed_recipe_sections_are_validated_with_their_path() -> None:
    with pytest.raises(ConfigError) as caught:
        validate(_experiment({}, trial={"epochs": 2, "optim": {"momentum": {"nesterov": True, "dampening": 0.5}}}))
    assert caught.value.field == "trial.optim.momentum"
    with pytest.raises(ConfigError) as caught:
        validate(_experiment({}, trial={"epochs": 2, "augment": {"flipp": True}}))
    assert str(caught.value) == "trial.augment.flipp: unknown key (did you mean 'flip'?)"
