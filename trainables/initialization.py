"""Weight initialization schemes, applied once after the model is built (and before a checkpoint restore).

    init: {scheme: kaiming, distribution: normal}

`default` keeps PyTorch's own per-layer init (Linear/Conv: U(±1/sqrt(fan_in)) for weights and biases).
The other schemes touch only Linear, Conv and recurrent layers: batch-norm scales stay 1 and shifts 0.
xavier and kaiming set weight matrices and zero the biases; `uniform` is the seeds' flat init,
U(-bound, bound) for every weight and bias alike.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from trainables.schema import Section

_LAYERS = (nn.Linear, nn.Conv2d, nn.LSTM, nn.GRU)


class InitSpec(Section):
    scheme: Literal["default", "xavier", "kaiming", "uniform"] = Field(
        default="default", description="default (PyTorch's), xavier (Glorot), kaiming (He, fan_in), uniform"
    )
    distribution: Literal["uniform", "normal"] = Field(
        default="uniform", description="xavier/kaiming drawn from a uniform or a normal distribution"
    )
    bound: float = Field(
        default=0.05, gt=0, le=1e3, description="uniform scheme only: weights and biases ~ U(-bound, bound)"
    )


def _init_weight(weight: torch.Tensor, spec: InitSpec) -> None:
    if spec.scheme == "xavier":
        (nn.init.xavier_uniform_ if spec.distribution == "uniform" else nn.init.xavier_normal_)(weight)
    else:  # kaiming: variance 2/fan_in, the ReLU-family choice
        init = nn.init.kaiming_uniform_ if spec.distribution == "uniform" else nn.init.kaiming_normal_
        init(weight, nonlinearity="relu")


@torch.no_grad()
def initialize(model: nn.Module, spec: InitSpec) -> nn.Module:
    """Re-initialize `model` in place (draws from torch's global RNG, so it follows the trial seed)."""
    if spec.scheme == "default":
        return model
    for module in model.modules():
        if not isinstance(module, _LAYERS):
            continue
        for name, param in module.named_parameters(recurse=False):
            if spec.scheme == "uniform":
                param.uniform_(-spec.bound, spec.bound)
            elif name.startswith("weight"):
                _init_weight(param, spec)
            else:
                param.zero_()
    return model
