"""Weight initialization schemes, applied once after the model is built (and before a checkpoint restore).

    init: {scheme: kaiming, distribution: normal}

`default` keeps PyTorch's own per-layer init (Linear/Conv: U(±1/sqrt(fan_in)) for weights and biases).
The other schemes claim every layer with weights (`weight_layers()`): linear and bilinear layers, every
convolution and transposed convolution (1-3d), recurrent layers (RNN, LSTM, GRU and their cells),
embeddings and multi-head attention. xavier and kaiming set their weight tensors and zero their biases;
`uniform` is the seeds' flat init, U(-bound, bound) for every weight and bias alike. An embedding's
`padding_idx` row stays zero. Normalization layers (batch, layer, group, instance norm, scales 1 and
shifts 0) and PReLU slopes are left as PyTorch sets them, by design. Any other parameter (a custom
layer's, or one a model holds directly) is neither touched nor silently skipped: `initialize` refuses it
in one line naming the layer type and the knob, and the launch check runs it before Ray starts.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from trainables.lazy import lazy
from trainables.schema import Section

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")
    nn = lazy("torch.nn")


@functools.cache
def weight_layers() -> tuple[type, ...]:
    """Layers the schemes set (subclasses included: MultiheadAttention's out_proj is a Linear)."""
    return (
        nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.RNNBase, nn.RNNCellBase, nn.Embedding, nn.EmbeddingBag,
        nn.MultiheadAttention,
    )  # fmt: skip


@functools.cache
def kept_layers() -> tuple[type, ...]:
    """Layers the schemes leave at PyTorch's init on purpose: normalization (scale 1, shift 0), PReLU slopes."""
    return (
        nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.PReLU,
        *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
    )  # fmt: skip


class InitError(ValueError):
    """A layer the chosen scheme cannot initialize; the message is one line naming it and the knob."""


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
    if weight.ndim < 2:  # xavier/kaiming need a fan in and out: a vector weight keeps a flat U(±1/sqrt(n))
        bound = 1 / max(weight.numel(), 1) ** 0.5
        weight.uniform_(-bound, bound)
    elif spec.scheme == "xavier":
        (nn.init.xavier_uniform_ if spec.distribution == "uniform" else nn.init.xavier_normal_)(weight)
    else:  # kaiming: variance 2/fan_in, the ReLU-family choice
        init = nn.init.kaiming_uniform_ if spec.distribution == "uniform" else nn.init.kaiming_normal_
        init(weight, nonlinearity="relu")


def _role(name: str) -> str | None:
    """A parameter's role by PyTorch's names (weight, weight_ih_l0, in_proj_weight; bias, bias_k), or None."""
    if name.startswith("weight") or name.endswith("_weight"):
        return "weight"
    if name.startswith("bias") or name.endswith("_bias"):
        return "bias"
    return None


def unclaimed(model: nn.Module) -> list[tuple[str, str, str]]:
    """(module path, layer type, parameter) of every parameter no scheme claims and none keeps on purpose:
    a custom layer's, one a model holds directly, or an unknown extra one on a subclass of a known layer."""
    found = []
    for path, module in model.named_modules():
        if isinstance(module, kept_layers()):
            continue
        for name, _ in module.named_parameters(recurse=False):
            if not isinstance(module, weight_layers()) or _role(name) is None:
                found.append((path or "the model itself", type(module).__name__, name))
    return found


def initialize(model: nn.Module, spec: InitSpec) -> nn.Module:
    """Re-initialize `model` in place (draws from torch's global RNG, so it follows the trial seed).
    Raises InitError for a parameter the scheme would otherwise skip silently."""
    if spec.scheme == "default":
        return model
    with torch.no_grad():
        return _initialize(model, spec)


def _initialize(model: nn.Module, spec: InitSpec) -> nn.Module:
    skipped = unclaimed(model)
    if skipped:
        path, layer, name = skipped[0]
        raise InitError(
            f"{spec.scheme} cannot initialize layer type {layer} (parameter {name!r} of {path}): "
            "it sets linear, convolution, recurrent, embedding and attention layers only; use init.scheme: default"
        )
    for module in model.modules():
        if not isinstance(module, weight_layers()):
            continue
        for name, param in module.named_parameters(recurse=False):
            if isinstance(param, nn.parameter.UninitializedParameter):
                raise InitError(
                    f"{spec.scheme} cannot initialize the lazy layer {type(module).__name__} before "
                    "its first batch: give it its input size, or use init.scheme: default"
                )
            if spec.scheme == "uniform":
                param.uniform_(-spec.bound, spec.bound)
            elif _role(name) == "weight":
                _init_weight(param, spec)
            else:  # biases, including attention's in_proj_bias, bias_k and bias_v
                param.zero_()
        padding = getattr(module, "padding_idx", None)
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) and padding is not None:
            module.weight[padding].zero_()
    return model
