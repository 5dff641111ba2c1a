"""The model registry: a built-in family by name, or a user's factory by import path.

    trial: {model: cnn, cnn: {channels: [32, 64]}}                 # built-in: mlp | cnn | lstm | gru
    trial: {model: mypkg.nets:build, model_args: {width: 64}}      # build(input_shape, num_classes, width=64)

A model spec is plain data, saved in every checkpoint and in best/model.pt, so a model is rebuilt
without the trial config: `{"name", "args", "input_shape", "num_classes"}`. Built-in families adapt
to the input: the MLP flattens anything, the CNN takes C x H x W, the recurrent ones read the rows
of an image (each row's channels and pixels are one step). Importing a factory runs the user's code:
that is the point of a factory, and why only configs a user trusts should name one.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from trainables.lazy import lazy
from trainables.schema import MAX_PARAMETERS, MAX_WIDTH, Section

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")
    nn = lazy("torch.nn")

FASHION_SHAPE = (1, 28, 28)  # the built-in dataset, and what a spec saved before shapes were recorded means
FASHION_CLASSES = 10
IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")

ACTIVATIONS = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "elu": "ELU",
    "gelu": "GELU",
}
Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid", "elu", "gelu"]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]  # a layer's width or a conv block's channels


class ModelError(ValueError):
    """A model that cannot be built for this data, or a factory that cannot be imported or misbehaves."""


class MLPSpec(Section):
    hidden: tuple[Width, ...] = Field(
        default=(256, 128), max_length=16, description="widths of hidden layers; () = logistic regression"
    )
    activation: Activation = Field(default="relu", description="nonlinearity after each hidden layer")
    batch_norm: bool = Field(default=False, description="BatchNorm1d after each hidden linear layer")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout after each hidden layer")
    input_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on the flattened input")


class CNNSpec(Section):
    channels: tuple[Width, ...] = Field(
        default=(32, 64),
        min_length=1,
        max_length=4,
        description="output channels of each conv block (conv, act, pool /2)",
    )
    kernel_size: Literal[3, 5, 7] = Field(default=3, description="square conv kernel, 'same' padding")
    pool: Literal["max", "avg"] = Field(default="max", description="2x2 pooling after each conv block")
    hidden: int = Field(default=128, ge=0, le=MAX_WIDTH, description="width of the layer before the head; 0 = none")
    activation: Activation = "relu"
    batch_norm: bool = Field(default=False, description="BatchNorm2d after each conv")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout before the head")


class RNNSpec(Section):
    hidden_size: int = Field(default=128, ge=1, le=MAX_WIDTH, description="recurrent state width")
    layers: int = Field(default=1, ge=1, le=4, description="stacked recurrent layers")
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout between stacked layers")


def activation(name: str) -> nn.Module:
    """A fresh nonlinearity layer by its config name (`ACTIVATIONS` maps it to torch.nn's class)."""
    layer: nn.Module = getattr(nn, ACTIVATIONS[name])()
    return layer


def _check_widths(widths: Sequence[int], field: str) -> None:
    for width in widths:
        if not 1 <= width <= MAX_WIDTH:
            raise ModelError(f"{field}: each width must be between 1 and {MAX_WIDTH} (got {width})")


def _hidden_block(width_in: int, width: int, spec: MLPSpec) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(width_in, width)]
    if spec.batch_norm:
        layers.append(nn.BatchNorm1d(width))
    layers.append(activation(spec.activation))
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    return layers


def build_mlp(spec: MLPSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    _check_widths(spec.hidden, "mlp.hidden")
    layers: list[nn.Module] = [nn.Flatten()]
    if spec.input_dropout:
        layers.append(nn.Dropout(spec.input_dropout))
    width = math.prod(input_shape)
    for hidden in spec.hidden:
        layers += _hidden_block(width, hidden, spec)
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def build_cnn(spec: CNNSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise ModelError(f"model: cnn needs images (C x H x W); this data has input shape {list(input_shape)}")
    _check_widths(spec.channels, "cnn.channels")
    channels_in, height, width = input_shape
    if min(height, width) < 2 ** len(spec.channels):
        raise ModelError(
            f"cnn.channels: {len(spec.channels)} blocks halve a {height}x{width} image to nothing; "
            f"use at most {max(int(math.log2(min(height, width))), 0)}"
        )
    layers: list[nn.Module] = []
    pool = nn.MaxPool2d if spec.pool == "max" else nn.AvgPool2d
    for channels in spec.channels:
        layers.append(nn.Conv2d(channels_in, channels, spec.kernel_size, padding=spec.kernel_size // 2))
        if spec.batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers += [activation(spec.activation), pool(2)]
        channels_in, height, width = channels, height // 2, width // 2
    layers.append(nn.Flatten())
    flat = channels_in * height * width
    if spec.hidden:
        layers += [nn.Linear(flat, spec.hidden), activation(spec.activation)]
        flat = spec.hidden
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(flat, num_classes))
    return nn.Sequential(*layers)


Builder = Callable[[Any, tuple[int, ...], int], "nn.Module"]
MODELS: dict[str, tuple[type[Section], Builder]] = {
    "mlp": (MLPSpec, build_mlp),
    "cnn": (CNNSpec, build_cnn),
    "lstm": (RNNSpec, lambda spec, shape, classes: _row_rnn(nn.LSTM, spec, shape, classes)),
    "gru": (RNNSpec, lambda spec, shape, classes: _row_rnn(nn.GRU, spec, shape, classes)),
}


def _row_rnn(cell: type[nn.LSTM] | type[nn.GRU], spec: RNNSpec, shape: tuple[int, ...], classes: int) -> nn.Module:
    from trainables.recurrent import RowRNN  # a torch.nn.Module subclass: defined where torch is imported

    return RowRNN(cell, spec, shape, classes)


def is_import_path(name: str) -> bool:
    return bool(IMPORT_PATH.fullmatch(name))


def check_model_name(name: str) -> str:
    if name in MODELS or is_import_path(name):
        return name
    raise ValueError(f"unknown model {name!r} (valid: {', '.join(MODELS)}, or a factory as package.module:function)")


def import_factory(path: str) -> Callable[..., nn.Module]:
    """`package.module:function`, imported (running the module's code) and checked to be callable."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise ModelError(
            f"model: cannot import {module_name!r} for {path} ({type(exc).__name__}: "
            f"{_first_line(exc)}); is its package installed or on PYTHONPATH?"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelError(f"model: {module_name} has no function {attribute!r} ({path})")
    return factory


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def make_spec(name: str, args: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    return {
        "name": name,
        "args": dict(args),
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
    }


def _unpack(spec: dict[str, Any]) -> tuple[str, dict[str, Any], tuple[int, ...], int]:
    """A saved spec's parts; a spec saved before shapes were recorded is a Fashion-MNIST model."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ModelError(f"model spec: expected a mapping with a name (got {str(spec)[:80]})")
    if "args" not in spec:
        fields = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], fields, FASHION_SHAPE, FASHION_CLASSES
    shape, classes, args = spec.get("input_shape"), spec.get("num_classes"), spec.get("args")
    if (
        not isinstance(shape, list | tuple)
        or not 1 <= len(shape) <= 3
        or not all(isinstance(s, int) and 1 <= s <= MAX_WIDTH * 16 for s in shape)
    ):
        raise ModelError(f"model spec: input_shape must be 1 to 3 positive sizes (got {shape})")
    if not isinstance(classes, int) or isinstance(classes, bool) or not 2 <= classes <= MAX_WIDTH:
        raise ModelError(f"model spec: num_classes must be an integer from 2 to {MAX_WIDTH} (got {classes})")
    if not isinstance(args, dict):
        raise ModelError(f"model spec: args must be a mapping (got {str(args)[:80]})")
    return spec["name"], args, tuple(shape), classes


def _construct(spec: dict[str, Any]) -> nn.Module:
    name, args, shape, classes = _unpack(spec)
    if name in MODELS:
        schema, builder = MODELS[name]
        try:
            fields = schema.model_validate(args)
        except ValueError as exc:
            raise ModelError(f"model spec: {name} arguments are invalid ({_first_line(exc)})") from None
        return builder(fields, shape, classes)
    check_model_name(name)
    factory = import_factory(name)
    try:
        model = factory(input_shape=shape, num_classes=classes, **args)
    except Exception as exc:  # the user's factory may raise anything
        raise ModelError(
            f"model: {name}(input_shape={list(shape)}, num_classes={classes}, "
            f"**{args}) raised {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model: {name} returned {type(model).__name__}, not a torch.nn.Module")
    if any(nn.parameter.is_lazy(p) for p in model.parameters()):
        raise ModelError(
            f"model: {name} has lazy (uninitialized) parameters; size every layer from the "
            "input_shape argument instead (its parameters are counted and checked before training)"
        )
    return model


def count_parameters(spec: dict[str, Any]) -> int:
    """Parameters of the model a spec builds, without allocating them (built on the meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in _construct(spec).parameters())


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its saved spec; refuses one above MAX_PARAMETERS before allocating it."""
    parameters = count_parameters(spec)
    if parameters > MAX_PARAMETERS:
        raise ModelError(
            f"model: {spec['name']} has {parameters:,} parameters, above the cap of "
            f"{MAX_PARAMETERS:,}; use a smaller model"
        )
    return _construct(spec)
