"""The model registry: name -> (spec schema, builder). An unknown name lists the valid ones.

A model spec is a plain dict `{"name": ..., **fields}`; it is saved in every checkpoint so a model can
be rebuilt without the trial config (`build_model(spec)`). Adding a model is one spec class, one
builder and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

IMAGE_SIDE = 28
NUM_CLASSES = 10

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}
Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid", "elu", "gelu"]
Probability = Field(default=0.0, ge=0.0, lt=1.0)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLPSpec(ModelSpec):
    hidden: tuple[int, ...] = Field(default=(256, 128), description="widths of hidden layers; () = logistic regression")
    activation: Activation = Field(default="relu", description="nonlinearity after each hidden layer")
    batch_norm: bool = Field(default=False, description="BatchNorm1d after each hidden linear layer")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout after each hidden layer")
    input_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on the flattened input")


class CNNSpec(ModelSpec):
    channels: tuple[int, ...] = Field(default=(32, 64), min_length=1, max_length=4,
                                      description="output channels of each conv block (conv, act, pool /2)")
    kernel_size: Literal[3, 5, 7] = Field(default=3, description="square conv kernel, 'same' padding")
    pool: Literal["max", "avg"] = Field(default="max", description="2x2 pooling after each conv block")
    hidden: int = Field(default=128, ge=0, description="width of the linear layer before the head; 0 = none")
    activation: Activation = "relu"
    batch_norm: bool = Field(default=False, description="BatchNorm2d after each conv")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout before the head")


class RNNSpec(ModelSpec):
    hidden_size: int = Field(default=128, gt=0, description="recurrent state width")
    layers: int = Field(default=1, ge=1, le=4, description="stacked recurrent layers")
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout between stacked layers")


def _hidden_block(width_in: int, width: int, spec: MLPSpec) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(width_in, width)]
    if spec.batch_norm:
        layers.append(nn.BatchNorm1d(width))
    layers.append(ACTIVATIONS[spec.activation]())
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    return layers


def build_mlp(spec: MLPSpec) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    if spec.input_dropout:
        layers.append(nn.Dropout(spec.input_dropout))
    width = IMAGE_SIDE * IMAGE_SIDE
    for hidden in spec.hidden:
        layers += _hidden_block(width, hidden, spec)
        width = hidden
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def build_cnn(spec: CNNSpec) -> nn.Module:
    layers: list[nn.Module] = []
    channels_in, side = 1, IMAGE_SIDE
    pool = nn.MaxPool2d if spec.pool == "max" else nn.AvgPool2d
    for channels in spec.channels:
        layers.append(nn.Conv2d(channels_in, channels, spec.kernel_size, padding=spec.kernel_size // 2))
        if spec.batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers += [ACTIVATIONS[spec.activation](), pool(2)]
        channels_in, side = channels, side // 2
    layers.append(nn.Flatten())
    width = channels_in * side * side
    if spec.hidden:
        layers += [nn.Linear(width, spec.hidden), ACTIVATIONS[spec.activation]()]
        width = spec.hidden
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


class RowRNN(nn.Module):
    """Reads an image as a sequence of its 28 rows (as the seeds do) and classifies the last state."""

    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU], spec: RNNSpec) -> None:
        super().__init__()
        self.rnn = cell(
            IMAGE_SIDE, spec.hidden_size, num_layers=spec.layers, batch_first=True,
            bidirectional=spec.bidirectional, dropout=spec.dropout if spec.layers > 1 else 0.0,
        )
        self.head = nn.Linear(spec.hidden_size * (2 if spec.bidirectional else 1), NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(images.reshape(images.shape[0], IMAGE_SIDE, IMAGE_SIDE))
        return self.head(out[:, -1])


MODELS: dict[str, tuple[type[ModelSpec], Callable[[Any], nn.Module]]] = {
    "mlp": (MLPSpec, build_mlp),
    "cnn": (CNNSpec, build_cnn),
    "lstm": (RNNSpec, lambda spec: RowRNN(nn.LSTM, spec)),
    "gru": (RNNSpec, lambda spec: RowRNN(nn.GRU, spec)),
}


def spec_class(name: str) -> type[ModelSpec]:
    if name not in MODELS:
        raise ValueError(f"model: unknown model {name!r} (valid: {', '.join(MODELS)})")
    return MODELS[name][0]


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its saved spec dict: {"name": ..., **fields}."""
    fields = dict(spec)
    name = fields.pop("name", None)
    schema = spec_class(str(name))
    return MODELS[str(name)][1](schema.model_validate(fields))
