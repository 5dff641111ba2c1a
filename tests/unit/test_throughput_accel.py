"""The GPU speed-ups' code paths (bf16 autocast, channels_last, compile) run on a CPU and predict the same."""

from __future__ import annotations

import pytest
import torch
from conftest import SMOKE

from orchestrator.config import load_config
from orchestrator.errors import ConfigError
from trainables.accel import Accelerated, Plan, RuntimeConfig, accelerate, resolve
from trainables.data import input_scaling, to_device
from trainables.data_sources import DataConfig, load_dataset
from trainables.loop import evaluate, predict_logits, train_one_epoch
from trainables.models import build_model

CPU = torch.device("cpu")
CNN = {"name": "cnn", "channels": [8], "hidden": 32}


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return load_dataset(DataConfig(train_limit=2000), seed=0)


def trained_cnn(data, plan: Plan):  # noqa: ANN001, ANN201
    torch.manual_seed(0)
    model = build_model(CNN)
    net = accelerate(model, CPU, plan)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scaling = input_scaling("unit", data.mean, data.std)
    train_one_epoch(net, optimizer, to_device(data.train, CPU), 128, scaling, torch.Generator().manual_seed(0))
    return model, net, scaling


def test_cpu_auto_plan_changes_nothing() -> None:
    plan = resolve(RuntimeConfig(), CPU, "cnn")
    assert plan == Plan(autocast=None, channels_last=False, compile=False)
    model = build_model(CNN)
    assert accelerate(model, CPU, plan) is model  # no wrapper on the default CPU path


def test_forced_bf16_resolves_on_any_device() -> None:
    assert resolve(RuntimeConfig(precision="bf16"), CPU, "lstm").autocast == torch.bfloat16
    assert resolve(RuntimeConfig(precision="fp32"), CPU, "mlp").autocast is None


def test_bf16_channels_last_trains_and_predicts_like_fp32(data, one_torch_thread: None) -> None:  # noqa: ANN001
    fp32_model, _, scaling = trained_cnn(data, Plan(None, False, False))
    model, net, _ = trained_cnn(data, Plan(torch.bfloat16, True, False))
    assert isinstance(net, Accelerated)
    assert model.state_dict().keys() == fp32_model.state_dict().keys()  # checkpoints stay plain
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    test = to_device(data.test, CPU)
    logits = predict_logits(net, test.images[:2000], scaling)
    assert logits.dtype == torch.float32  # the loss always sees fp32
    _, acc_fp32 = evaluate(fp32_model, test, scaling)
    _, acc_bf16 = evaluate(net, test, scaling)
    assert acc_fp32 > 0.55 and abs(acc_fp32 - acc_bf16) < 0.03, (acc_fp32, acc_bf16)
    # The same weights under bf16 autocast and in fp32 agree on nearly every prediction.
    agree = (logits.argmax(1) == predict_logits(model, test.images[:2000], scaling).argmax(1)).float().mean()
    assert agree > 0.97


def test_compile_switch_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [16]})
    net = accelerate(model, CPU, Plan(None, False, True))
    assert net is not model
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-5)
    assert "_orig_mod" not in "".join(model.state_dict())


def test_runtime_section_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"runtime\.precison: unknown key \(did you mean 'precision'\?\)"):
        load_config(SMOKE, ["runtime.precison=bf16"])
    with pytest.raises(ConfigError, match=r"runtime\.precision"):
        load_config(SMOKE, ["runtime.precision=fp16"])
    assert load_config(SMOKE, ["runtime.compile=true"]).runtime.compile is True
