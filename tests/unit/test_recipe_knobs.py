"""Each recipe knob takes effect on real tensors: penalties, smoothing, batch norm, dropout, init, clipping,
optimizer parameters. Plain PyTorch, no Ray."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from trainables.assemble import assemble
from trainables.initialization import InitSpec, initialize
from trainables.models import build_model
from trainables.objective import ClipSpec, LossSpec, build_clip, build_objective
from trainables.optimizers import OptimSpec, build_optimizer
from trainables.recipe import TrialConfig


def _mlp(hidden: tuple[int, ...] = (16,), **fields: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model({"name": "mlp", "hidden": list(hidden), **fields})


def _max_abs(tensor: torch.Tensor) -> float:
    return float(tensor.detach().abs().max())


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_l1_adds_exactly_its_coefficient_times_the_weight_magnitudes() -> None:
    model = _mlp()
    images, labels = _batch()
    logits = model(images)
    plain = F.cross_entropy(logits, labels)
    weights = [p for p in model.parameters() if p.ndim >= 2]
    l1 = build_objective(model, LossSpec(l1=1e-3))(logits, labels)
    assert torch.allclose(l1 - plain, 1e-3 * sum(w.abs().sum() for w in weights))
    everything = build_objective(model, LossSpec(l1=1e-3, penalize_bias=True))(logits, labels)
    assert torch.allclose(everything - plain, 1e-3 * sum(p.abs().sum() for p in model.parameters()))
    assert everything > l1 > plain  # biases are non-zero, so including them adds more


def test_l2_squared_and_the_seeds_norm_form() -> None:
    model = _mlp()
    images, labels = _batch()
    logits = model(images)
    plain = F.cross_entropy(logits, labels)
    weights = [p for p in model.parameters() if p.ndim >= 2]
    squared = build_objective(model, LossSpec(l2=1e-2))(logits, labels)
    assert torch.allclose(squared - plain, 1e-2 * sum((w**2).sum() for w in weights))
    norm = build_objective(model, LossSpec(l2=1e-2, l2_form="norm", penalize_bias=True))(logits, labels)
    assert torch.allclose(norm - plain, 1e-2 * sum(torch.norm(p, 2) for p in model.parameters()))


def test_penalty_gradient_reaches_the_weights() -> None:
    model = _mlp()
    images, labels = _batch()
    objective = build_objective(model, LossSpec(l1=0.5))
    objective(model(images), labels).backward()
    with_l1 = model[1].weight.grad.clone()
    model.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    # d/dw of 0.5 * |w| is 0.5 * sign(w)
    assert torch.allclose(with_l1 - model[1].weight.grad, 0.5 * model[1].weight.sign(), atol=1e-6)


def test_label_smoothing_is_cross_entropy_with_smoothing() -> None:
    model = _mlp()
    images, labels = _batch()
    logits = model(images)
    smoothed = build_objective(model, LossSpec(label_smoothing=0.2))(logits, labels)
    assert torch.allclose(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.2))
    assert not torch.allclose(smoothed, F.cross_entropy(logits, labels))


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "mlp", "hidden": [16, 8], "batch_norm": True},
        {"name": "cnn", "channels": [4], "hidden": 8, "batch_norm": True},
    ],
)
def test_batch_norm_layers_exist_and_update_running_stats(spec: dict) -> None:
    torch.manual_seed(0)
    model = build_model(spec)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    assert len(norms) == (2 if spec["name"] == "mlp" else 1)
    before = [m.running_mean.clone() for m in norms]
    images, labels = _batch(16)
    model.train()
    F.cross_entropy(model(images), labels).backward()
    assert all(not torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
    assert all(int(m.num_batches_tracked) == 1 for m in norms)


def test_dropout_on_input_and_hidden_layers() -> None:
    model = _mlp((32,), dropout=0.25, input_dropout=0.5)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.5, 0.25]
    images, _ = _batch(4)
    model.train()
    assert not torch.equal(model(images), model(images))  # stochastic in training
    model.eval()
    assert torch.equal(model(images), model(images))


def _linear_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


def test_xavier_uniform_bounds_weights_and_zeroes_biases() -> None:
    model = initialize(_mlp((256,)), InitSpec(scheme="xavier"))
    first = model[1]
    bound = math.sqrt(6 / (784 + 256))
    assert _max_abs(first.weight) <= bound
    assert _max_abs(first.weight) > 0.9 * bound  # fills the range, unlike PyTorch's 1/sqrt(784)
    assert all(_max_abs(m.bias) == 0.0 for m in model.modules() if isinstance(m, nn.Linear))


def test_kaiming_normal_has_he_variance() -> None:
    model = initialize(_mlp((512,)), InitSpec(scheme="kaiming", distribution="normal"))
    std = float(model[1].weight.detach().std())
    assert std == pytest.approx(math.sqrt(2 / 784), rel=0.03)


def test_uniform_init_covers_weights_and_biases_and_spares_batch_norm() -> None:
    model = initialize(_mlp((64,), batch_norm=True), InitSpec(scheme="uniform", bound=0.01))
    for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
        assert _max_abs(layer.weight) <= 0.01 and _max_abs(layer.bias) <= 0.01
    assert _max_abs(layer.weight) > 0.009
    norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))


def test_default_init_is_pytorchs_and_init_also_reaches_rnn_and_cnn() -> None:
    default = initialize(_mlp(), InitSpec())
    assert torch.equal(default[1].weight, _mlp()[1].weight)
    torch.manual_seed(0)
    lstm = initialize(build_model({"name": "lstm", "hidden_size": 64}), InitSpec(scheme="uniform", bound=0.3))
    assert _max_abs(lstm.rnn.weight_hh_l0) > 1 / math.sqrt(64)  # beyond PyTorch's own bound
    torch.manual_seed(0)
    cnn = initialize(build_model({"name": "cnn", "channels": [4], "hidden": 8}), InitSpec(scheme="xavier"))
    assert _max_abs(next(m for m in cnn.modules() if isinstance(m, nn.Conv2d)).bias) == 0.0


def _grads_after_big_loss(model: nn.Module) -> None:
    images, labels = _batch()
    (1000 * F.cross_entropy(model(images), labels)).backward()


def test_clip_by_norm_bounds_the_global_grad_norm() -> None:
    model = _mlp()
    _grads_after_big_loss(model)
    grads = [p.grad for p in model.parameters()]
    assert float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) > 1.0
    build_clip(model, ClipSpec(by="norm", threshold=1.0))()
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert float(total) == pytest.approx(1.0, rel=1e-4)


def test_clip_by_value_bounds_every_entry_and_none_is_off() -> None:
    model = _mlp()
    _grads_after_big_loss(model)
    assert max(_max_abs(p.grad) for p in model.parameters()) > 0.01
    build_clip(model, ClipSpec(by="value", threshold=0.01))()
    assert max(_max_abs(p.grad) for p in model.parameters()) <= 0.01
    assert build_clip(model, ClipSpec()) is None


def test_optimizer_family_parameters_reach_torch() -> None:
    model = _mlp()
    optim = OptimSpec.model_validate(
        {
            "momentum": {"momentum": 0.8, "nesterov": True},
            "adam": {"betas": [0.8, 0.99], "eps": 1e-6},
            "rmsprop": {"alpha": 0.9, "eps": 1e-5},
        }
    )
    sgd = build_optimizer("momentum", model, 0.1, 0.0, optim).param_groups[0]
    assert (sgd["momentum"], sgd["nesterov"]) == (0.8, True)
    adam = build_optimizer("adam", model, 0.1, 0.0, optim).param_groups[0]
    assert (adam["betas"], adam["eps"]) == ((0.8, 0.99), 1e-6)
    rms = build_optimizer("rmsprop", model, 0.1, 0.0, optim).param_groups[0]
    assert (rms["alpha"], rms["eps"]) == (0.9, 1e-5)
    assert build_optimizer("sgd", model, 0.1, 0.0, optim).param_groups[0]["momentum"] == 0.0
    assert build_optimizer("momentum", model, 0.1, 0.0).param_groups[0]["momentum"] == 0.9  # the seeds' default


@pytest.mark.parametrize(
    "bad",
    [
        {"sgd": {"nesterov": True}},
        {"adam": {"betas": [0.9, 1.0]}},
        {"adam": {"beta": [0.9, 0.99]}},
        {"rmsprop": {"alpha": 1.5}},
    ],
)
def test_invalid_optimizer_parameters_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        OptimSpec.model_validate(bad)


def test_assemble_wires_every_section() -> None:
    cfg = TrialConfig.model_validate(
        {
            "mlp": {"hidden": [8]},
            "init": {"scheme": "uniform", "bound": 0.02},
            "loss": {"l1": 1e-4},
            "clip": {"by": "norm"},
            "schedule": {"name": "cosine"},
            "augment": {"flip": True},
            "epochs": 2,
        }
    )
    torch.manual_seed(0)
    training = assemble(cfg, cfg.model_spec((1, 28, 28), 10), torch.device("cpu"), steps_per_epoch=10)
    assert _max_abs(training.model[1].weight) <= 0.02
    hooks = training.hooks
    assert hooks.augment is not None and hooks.clip is not None and hooks.after_step is not None
    assert hooks.loss_fn is not F.cross_entropy
    plain = assemble(
        TrialConfig(), TrialConfig().model_spec((1, 28, 28), 10), torch.device("cpu"), steps_per_epoch=10
    ).hooks
    assert (plain.augment, plain.clip, plain.after_step, plain.loss_fn) == (None, None, None, F.cross_entropy)
