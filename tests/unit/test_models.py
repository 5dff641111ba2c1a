"""Every model family: the forward shape on any input shape, a falling loss on real data, user factories."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainables.data import Dataset, input_scaling, to_device
from trainables.models import MODELS, ModelError, build_model, check_model_name, count_parameters, make_spec
from trainables.optimizers import OPTIMIZERS, build_optimizer
from trainables.schema import MAX_PARAMETERS

SMALL = {
    "mlp": {"hidden": [32]},
    "cnn": {"channels": [4, 8], "hidden": 16},
    "lstm": {"hidden_size": 16},
    "gru": {"hidden_size": 16, "bidirectional": True},
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 8, 12)])
def test_forward_shape_on_any_image(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(make_spec(name, SMALL[name], shape, 7))
    assert model(torch.rand(5, *shape)).shape == (5, 7)


@pytest.mark.parametrize("name", ["mlp", "lstm", "gru"])
def test_flat_features(name: str) -> None:
    model = build_model(make_spec(name, SMALL[name], (64,), 3))
    assert model(torch.rand(4, 64)).shape == (4, 3)


def test_cnn_needs_images_and_enough_pixels_for_its_blocks() -> None:
    with pytest.raises(ModelError, match="cnn needs images"):
        build_model(make_spec("cnn", {}, (64,), 3))
    with pytest.raises(ModelError, match="3 blocks halve a 4x4 image"):
        build_model(make_spec("cnn", {"channels": [4, 4, 4]}, (1, 4, 4), 3))


def test_a_spec_saved_before_shapes_were_recorded_is_a_fashion_model() -> None:
    model = build_model({"name": "mlp", "hidden": []})
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear"] and model[1].in_features == 784


@pytest.mark.parametrize("name", list(MODELS))
def test_a_few_steps_lower_the_loss(name: str, fashion: Dataset) -> None:
    torch.manual_seed(0)
    split = to_device(fashion.train, torch.device("cpu"))
    images, labels = split.images[:512], split.labels[:512]
    scale = input_scaling("unit", fashion.mean, fashion.std)
    model = build_model(make_spec(name, SMALL[name], fashion.input_shape, fashion.num_classes))
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
    with pytest.raises(ValueError, match=r"unknown model 'vit' \(valid: mlp, cnn, lstm, gru, or a factory"):
        check_model_name("vit")


def test_a_huge_model_is_refused_before_it_is_allocated() -> None:
    spec = make_spec("mlp", {"hidden": [60_000, 60_000]}, (1, 28, 28), 10)
    assert count_parameters(spec) > MAX_PARAMETERS
    with pytest.raises(ModelError, match="above the cap"):
        build_model(spec)


@pytest.fixture
def forget_usernets() -> Iterator[None]:
    """The test's package is forgotten afterwards, pass or fail: a later test may write its own `usernets`."""
    yield
    for name in [n for n in sys.modules if n == "usernets" or n.startswith("usernets.")]:
        del sys.modules[name]


def test_a_user_factory_is_imported_and_called_with_shape_classes_and_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_usernets: None
) -> None:
    package = tmp_path / "usernets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "import math\nfrom torch import nn\n\n"
        "def build(input_shape, num_classes, width=8):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),\n"
        "                         nn.Linear(width, num_classes))\n\n"
        "def broken(input_shape, num_classes):\n    raise RuntimeError('no GPU here')\n\n"
        "def not_a_module(input_shape, num_classes):\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model(make_spec("usernets.nets:build", {"width": 5}, (3, 4, 4), 6))
    assert model(torch.rand(2, 3, 4, 4)).shape == (2, 6) and model[1].out_features == 5
    with pytest.raises(ModelError, match=r"raised RuntimeError: no GPU here"):
        build_model(make_spec("usernets.nets:broken", {}, (3, 4, 4), 6))
    with pytest.raises(ModelError, match="returned int, not a torch.nn.Module"):
        build_model(make_spec("usernets.nets:not_a_module", {}, (3, 4, 4), 6))
    with pytest.raises(ModelError, match="cannot import 'nowhere_pkg.nets'"):
        build_model(make_spec("nowhere_pkg.nets:build", {}, (3, 4, 4), 6))
    with pytest.raises(ModelError, match="no function 'missing'"):
        build_model(make_spec("usernets.nets:missing", {}, (3, 4, 4), 6))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_builds(name: str) -> None:
    model = build_model(make_spec("mlp", {"hidden": []}, (1, 28, 28), 10))
    assert build_optimizer(name, model, 0.01, 0.0).param_groups[0]["lr"] == 0.01
