"""Run settings that are not hyperparameters (`runtime:`), and how they speed a trial up on its device.

    runtime:
      precision: auto        # auto | fp32 | bf16
      channels_last: true    # CNNs on a GPU
      compile: false         # torch.compile the model
      reuse_actors: true     # Tune keeps a trial's worker process for the next trial
      gpu_memory_gb: null    # what the preflight assumes a GPU holds when the driver sees none
      deterministic: false   # deterministic kernels (cuDNN, cuBLAS): bit-identical reruns on a GPU, slower

The trial trains `accelerate(model, ...)` and checkpoints the bare model, so a checkpoint never depends
on these settings. The plan is resolved per device and model family:
- bf16 autocast: `auto` uses it on CUDA GPUs that support bf16, for the MLP and CNN families only;
  recurrent models stay fp32 (rounding compounds over the 28 steps, and cuDNN's bf16 RNN support varies).
  bf16 keeps fp32's exponent range, so no loss scaling is needed and every input scale (even `tiny`) is
  representable. The CPU stays fp32 under `auto`: CPUs without bf16 units run autocast slower.
- channels_last: conv kernels on a GPU prefer NHWC; a no-op for models without convolutions.
- reuse_actors: on. A fresh worker pays the imports of torch and of torch._dynamo (every optimizer's first
  construction imports it): ~10 s on a loaded 2-core machine. The bench's 6-trial sweep took 116 s with
  reuse and 155 s without, with identical accuracies (`python -m orchestrator.bench --compare-reuse`).
- compile: off by default, a switch to measure (`python -m orchestrator.bench --compile`): on a small model
  its compile time is a large share of a short trial, and varying batch shapes trigger recompiles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from trainables.runtime_config import RuntimeConfig

__all__ = ["AUTOCAST_FAMILIES", "Accelerated", "Plan", "RuntimeConfig", "accelerate", "make_deterministic", "resolve"]

AUTOCAST_FAMILIES = ("mlp", "cnn")


@dataclass(frozen=True)
class Plan:
    """What actually applies to one trial on one device."""

    autocast: torch.dtype | None
    channels_last: bool
    compile: bool


def resolve(runtime: RuntimeConfig, device: torch.device, family: str) -> Plan:
    on_gpu = device.type == "cuda"
    if runtime.precision == "bf16":
        autocast: torch.dtype | None = torch.bfloat16
    elif runtime.precision == "auto" and on_gpu and family in AUTOCAST_FAMILIES and torch.cuda.is_bf16_supported():
        autocast = torch.bfloat16
    else:
        autocast = None
    return Plan(autocast=autocast, channels_last=runtime.channels_last and on_gpu, compile=runtime.compile)


def make_deterministic(on: bool) -> None:
    """The flags PyTorch documents for reproducible GPU runs; the CPU path is deterministic already."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS when its handle is created
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


class Accelerated(nn.Module):
    """Runs the wrapped model under autocast / channels_last and hands fp32 logits to the loss."""

    def __init__(self, model: nn.Module, device_type: str, autocast: torch.dtype | None, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.autocast = autocast
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.autocast is None:
            return self.model(images)
        with torch.autocast(self.device_type, dtype=self.autocast):
            logits = self.model(images)
        return logits.float()


def accelerate(model: nn.Module, device: torch.device, plan: Plan) -> nn.Module:
    """The module to train and evaluate; `model` itself (same parameters) is what gets checkpointed.

    With nothing to apply it returns `model` unchanged: the default CPU path has no wrapper at all.
    """
    channels_last = plan.channels_last and has_conv(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # in place: the optimizer keeps the same parameters
    net: nn.Module = torch.compile(model) if plan.compile else model  # type: ignore[assignment]
    if plan.autocast is None and not channels_last:
        return net
    return Accelerated(net, device.type, plan.autocast, channels_last)
