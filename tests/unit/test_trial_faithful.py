"""What a trial does is what was asked, and a config that would fail every trial fails before Ray starts:
init knobs reach every layer they claim (or are refused), a last batch of one never crashes batch norm,
and the launch check trains the model the way its trials will (channels_last, autocast, batch of one)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.trial_check import check_like_a_trial
from orchestrator.errors import ConfigError
from trainables.assemble import steps_per_epoch
from trainables.data import DeviceSplit
from trainables.initialization import InitError, InitSpec, initialize
from trainables.loop import train_one_epoch

MODULE = "trial_faithful_models"
SOURCE = """\
import torch
from torch import nn


class Mixed(nn.Module):
    '''Every layer type the init schemes claim beyond Linear/Conv2d/LSTM/GRU.'''

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 4, 3)
        self.conv3 = nn.Conv3d(1, 2, 2)
        self.deconv = nn.ConvTranspose2d(2, 2, 2)
        self.rnn = nn.RNN(4, 4)
        self.cell = nn.GRUCell(4, 4)
        self.embed = nn.Embedding(10, 4, padding_idx=0)
        self.attn = nn.MultiheadAttention(4, 2, add_bias_kv=True)
        self.bilinear = nn.Bilinear(4, 4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(__import__("math").prod(input_shape), num_classes)

    def forward(self, x):
        return self.head(x.flatten(1))


class Scaled(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(__import__("math").prod(input_shape), num_classes)
        self.gain = nn.Parameter(torch.ones(num_classes))

    def forward(self, x):
        return self.head(x.flatten(1)) * self.gain


class Viewing(nn.Module):
    '''A CNN that .view()s its conv output: fine contiguous, fails in channels_last.'''

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 4, 3, padding=1)
        self.head = nn.Linear(4 * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        h = self.conv(x)
        return self.head(h.view(h.size(0), -1))


class Fp32Only(nn.Module):
    '''A model that relies on fp32 activations: fails under autocast.'''

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.head = nn.Linear(__import__("math").prod(input_shape), num_classes)

    def forward(self, x):
        h = self.head(x.flatten(1))
        if h.dtype != torch.float32:
            raise TypeError(f"expected float32 activations, got {h.dtype}")
        return h


def mixed(input_shape, num_classes):
    return Mixed(input_shape, num_classes)


def scaled(input_shape, num_classes):
    return Scaled(input_shape, num_classes)


def viewing(input_shape, num_classes):
    return Viewing(input_shape, num_classes)


def fp32_only(input_shape, num_classes):
    return Fp32Only(input_shape, num_classes)
"""


@pytest.fixture(autouse=True)
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(MODULE, None)


def _model(name: str) -> nn.Module:
    module = __import__(MODULE)
    return getattr(module, name)((1, 4, 4), 3)


def _claimed(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith("norm.")}


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "uniform"])
def test_every_layer_type_gets_the_init_it_claims(scheme: str) -> None:
    torch.manual_seed(0)
    model = _model("mixed")
    before = _claimed(model)
    norm = {name: p.detach().clone() for name, p in model.norm.named_parameters()}
    initialize(model, InitSpec(scheme=scheme, bound=0.01))  # type: ignore[arg-type]
    after = _claimed(model)
    for name, value in after.items():
        weight = name.rsplit(".", 1)[-1].startswith("weight") or name.endswith("_weight")
        if scheme == "uniform":
            assert value.abs().max() <= 0.01 and not torch.equal(value, before[name]), name
        elif weight:
            assert not torch.equal(value, before[name]), f"{name} kept PyTorch's init under {scheme}"
        else:
            assert not value.any(), f"{name}: a bias not zeroed under {scheme}"
    assert not model.embed.weight[0].any()  # the padding row stays zero
    for name, value in model.norm.named_parameters():  # normalization keeps scale 1 and shift 0
        assert torch.equal(value, norm[name])
    if scheme == "xavier":  # the conv1d kernel has Glorot's spread: fan_in 2*3, fan_out 4*3
        bound = (6 / (6 + 12)) ** 0.5
        assert model.conv1.weight.abs().max() <= bound and model.conv1.weight.std() > bound / 3


def test_a_parameter_no_scheme_claims_is_refused_naming_its_layer() -> None:
    model = _model("scaled")
    with pytest.raises(InitError) as info:
        initialize(model, InitSpec(scheme="xavier"))
    assert "layer type Scaled" in str(info.value) and "'gain'" in str(info.value)
    assert "\n" not in str(info.value)
    assert initialize(_model("scaled"), InitSpec()) is not None  # default: PyTorch's init, nothing refused


def _batchnorm_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_a_last_batch_of_one_is_not_trained_and_batch_norm_does_not_crash() -> None:
    torch.manual_seed(0)
    model = _batchnorm_mlp()
    split = DeviceSplit(torch.rand(33, 4), torch.arange(33) % 2)  # 33 % 8 == 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps: list[int] = []
    optimizer.register_step_pre_hook(lambda *_: steps.append(1))
    fit = train_one_epoch(model, optimizer, split, 8, lambda x: x, torch.Generator().manual_seed(0))
    assert len(steps) == steps_per_epoch(33, 8) == 4 and fit.samples == 32
    assert steps_per_epoch(34, 8) == 5 and steps_per_epoch(32, 8) == 4 and steps_per_epoch(5, 1) == 5


def _cfg(trial: dict[str, Any], **sections: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": "x", "trial": trial, **sections})


def _check(trial: dict[str, Any], shape: tuple[int, ...] = (1, 6, 6), **sections: Any) -> None:
    cfg = _cfg(trial, **sections)
    check_like_a_trial(cfg, cfg.trial, cfg.trial.model_spec(shape, 3))


def test_a_model_that_views_after_a_conv_is_refused_where_a_gpu_trial_would_use_channels_last() -> None:
    viewing = {"model": f"{MODULE}:viewing"}
    _check(viewing)  # CPU trials (resources.gpu 0): no channels_last, nothing to refuse
    _check(viewing, resources={"gpu": 1}, runtime={"channels_last": False})
    for resources in ({"gpu": 1}, {"gpu": "auto"}):
        with pytest.raises(ConfigError) as info:
            _check(viewing, resources=resources)
        assert info.value.field == "runtime.channels_last" and ".reshape()" in str(info.value)
    _check({"model": "cnn"}, resources={"gpu": 1})  # the built-in CNN trains in channels_last


def test_a_model_that_fails_under_autocast_is_refused_where_a_trial_would_autocast() -> None:
    fp32 = {"model": f"{MODULE}:fp32_only"}
    _check(fp32, resources={"gpu": 1})  # `auto` autocasts the built-in mlp and cnn only
    with pytest.raises(ConfigError) as info:
        _check(fp32, runtime={"precision": "bf16"})
    assert info.value.field == "runtime.precision" and "TypeError: expected float32" in str(info.value)
    _check({"model": "mlp", "mlp": {"batch_norm": True}}, resources={"gpu": 1})


def test_batch_norm_with_batches_of_one_is_refused_and_an_unclaimed_layer_too() -> None:
    with pytest.raises(ConfigError) as info:
        _check({"model": "mlp", "mlp": {"batch_norm": True}, "batch_size": 1})
    assert info.value.field == "trial.batch_size" and "batch norm" in str(info.value)
    _check({"model": "mlp", "mlp": {"batch_norm": True}, "batch_size": 2})
    with pytest.raises(ConfigError) as info:
        _check({"model": f"{MODULE}:scaled", "init": {"scheme": "kaiming"}})
    assert info.value.field == "trial.init.scheme" and "layer type Scaled" in str(info.value)
    _check({"model": f"{MODULE}:mixed", "init": {"scheme": "kaiming"}}, shape=(1, 4, 4))


def test_evaluate_states_its_tolerance_and_scores_in_the_trials_precision(tmp_path: Path) -> None:
    from orchestrator.commands.evaluate import BF16_TOLERANCE, evaluation_text, tolerance
    from orchestrator.review.evaluation import load_model
    from trainables.accel import Accelerated
    from trainables.models import build_model, make_spec

    assert tolerance({"device": "cpu", "autocast": None}, 10_000)[0] == 0.5 / 10_000
    assert tolerance(None, 10_000)[0] == 0.5 / 10_000
    allowed, how = tolerance({"device": "cuda", "autocast": "bfloat16"}, 10_000)
    assert allowed == BF16_TOLERANCE and "bf16 autocast on cuda" in how and f"±{allowed:.4f}" in how
    spec = make_spec("mlp", {"hidden": [8]}, (1, 4, 4), 2)
    for runtime, wrapped in (({"device": "cuda", "autocast": "bfloat16"}, True), (None, False)):
        state = {"state_dict": build_model(spec).state_dict(), "model_spec": spec, "input_scale": "unit"}
        if runtime:
            state["runtime"] = runtime
        torch.save(state, tmp_path / "model.pt")
        loaded = load_model(str(tmp_path / "model.pt"))
        assert isinstance(loaded.model, Accelerated) == wrapped and loaded.runtime == runtime
        if wrapped:
            assert loaded.model.autocast == torch.bfloat16
            assert loaded.model(torch.rand(2, 1, 4, 4)).dtype == torch.float32
        matrix = torch.tensor([[4999, 1], [0, 5000]])  # 0.9999: one image in 10,000 from the recorded 1.0
        loaded.manifest = {"test_accuracy": 1.0, "trial_name": "t", "epoch": 1}
        text, result = evaluation_text(matrix, loaded, "test split")
        assert result["manifest_matches"] == wrapped and result["manifest_tolerance"] == tolerance(runtime, 10_000)[0]
        assert ("matches best/manifest.json" in text) == wrapped and ("DIFFERS" in text) != wrapped
