"""Every registered model: the forward shape, and a few steps on real data lower the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainables.data import Dataset, input_scaling, to_device
from trainables.models import MODELS, build_model, spec_class
from trainables.optimizers import OPTIMIZERS, build_optimizer

SMALL = {
    "mlp": {"hidden": [32]},
    "cnn": {"channels": [4, 8], "hidden": 16},
    "lstm": {"hidden_size": 16},
    "gru": {"hidden_size": 16, "bidirectional": True},
}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shape(name: str) -> None:
    model = build_model({"name": name, **SMALL[name]})
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)


def test_logistic_regression_has_no_hidden_layer() -> None:
    model = build_model({"name": "mlp", "hidden": []})
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear"]


@pytest.mark.parametrize("name", list(MODELS))
def test_a_few_steps_lower_the_loss(name: str, dataset: Dataset) -> None:
    torch.manual_seed(0)
    split = to_device(dataset.train, torch.device("cpu"))
    images, labels = split.images[:512], split.labels[:512]
    scale = input_scaling("unit", dataset.mean, dataset.std)
    model = build_model({"name": name, **SMALL[name]})
    optimizer = build_optimizer("adam", model, 1e-2, 0.0)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(scale(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'vit' \(valid: mlp, cnn, lstm, gru\)"):
        spec_class("vit")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_builds(name: str) -> None:
    model = build_model({"name": "mlp", "hidden": []})
    assert build_optimizer(name, model, 0.01, 0.0).param_groups[0]["lr"] == 0.01
