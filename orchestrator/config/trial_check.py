"""The launch check that runs each model as its trials will, so a config that would fail every trial fails
before Ray starts, with one line naming the setting and its fix.

    python -m orchestrator launch my.yaml --dry-run      # exit 2: config error: runtime.channels_last: ...

For every distinct model, init and batch size the space can produce, on the driver's CPU:
1. `trial.init` is applied (a layer the scheme cannot handle is refused: `trainables.initialization`);
2. one training step (train mode, forward, loss, backward) on the smallest batch a trial trains: 2, or 1
   when `batch_size` is 1 (a last batch of one sample is never trained: `trainables.loop`), so batch norm
   with `batch_size: 1` is refused here;
3. the same step in channels_last memory format where a GPU trial would use it (`runtime.channels_last`
   and a GPU possible: `resources.gpu` not 0), so a model that `.view()`s a convolution's output fails
   here and not on every GPU;
4. the same step under bf16 autocast where a trial would use it (`runtime.precision: bf16`, or `auto`
   on a GPU for the mlp and cnn families), with the CPU's autocast standing in for the GPU's.
The steps run as the trial runs them (`trainables.accel.accelerate`), on random inputs in the scaled
range, with the driver's RNG left as it was. No Ray here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from orchestrator.config.schema import ExperimentConfig
from orchestrator.errors import ConfigError
from trainables.accel import AUTOCAST_FAMILIES, Plan, accelerate, has_conv
from trainables.initialization import InitError, initialize
from trainables.models import ModelError, build_model
from trainables.recipe import TrialConfig


def check_like_a_trial(cfg: ExperimentConfig, trial: TrialConfig, spec: dict[str, Any]) -> None:
    """Raises ConfigError when a trial with this config would fail its first training step."""
    shape, classes = tuple(spec["input_shape"]), int(spec["num_classes"])
    what = f"{spec['name']} {spec['args']}" if spec["args"] else str(spec["name"])
    gpu_possible = cfg.resources.gpu == "auto" or float(cfg.resources.gpu) > 0
    channels_last = cfg.runtime.channels_last and gpu_possible and len(shape) == 3
    autocast = cfg.runtime.precision == "bf16" or (
        cfg.runtime.precision == "auto" and gpu_possible and trial.model in AUTOCAST_FAMILIES
    )
    batch = 1 if trial.batch_size == 1 else 2
    stages: list[tuple[Plan, str, object]] = [
        (Plan(None, False, False), "trial.batch_size" if batch == 1 else "trial.model", trial.batch_size)
    ]
    if channels_last:
        stages.append((Plan(None, True, False), "runtime.channels_last", True))
    if autocast:
        stages.append((Plan(torch.bfloat16, channels_last, False), "runtime.precision", cfg.runtime.precision))
    with torch.random.fork_rng(devices=[]):  # the driver's RNG stays as it was
        torch.manual_seed(0)
        images, labels = torch.rand(batch, *shape), torch.arange(batch) % classes
        for plan, field, value in stages:
            try:
                model = initialize(build_model(spec), trial.init)
            except InitError as exc:
                raise ConfigError("trial.init.scheme", f"{exc} (model {what})", trial.init.scheme) from None
            except ModelError as exc:
                raise ConfigError("trial.model", str(exc).removeprefix("model: "), spec["name"]) from None
            if plan.channels_last and not has_conv(model):
                continue  # the trial applies channels_last only to models with convolutions
            try:
                _train_step(accelerate(model, torch.device("cpu"), plan), images, labels)
            except Exception as exc:  # the user's forward may raise anything
                raise ConfigError(field, _why(field, what, batch, exc), value) from None


def _train_step(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    net.train()
    logits = net(images)
    F.cross_entropy(logits.float(), labels).backward()


def _why(field: str, what: str, batch: int, exc: BaseException) -> str:
    error = f"{type(exc).__name__}: {_first_line(exc)}"
    if field == "runtime.channels_last":
        return (
            f"{what} fails on input in channels_last memory format, what a GPU trial feeds it ({error}); "
            "use .reshape() or .flatten() where it calls .view(), or set runtime.channels_last: false"
        )
    if field == "runtime.precision":
        return f"{what} fails under bf16 autocast, as a trial would run it ({error}); set runtime.precision: fp32"
    if batch == 1:
        return (
            f"{what} fails a training step on a batch of 1 ({error}); batch norm needs 2 or more samples "
            "per batch: use a batch_size of 2 or more"
        )
    return f"{what} fails a training step (train mode, forward and backward) on a batch of {batch} ({error})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
