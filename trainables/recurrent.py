"""The built-in recurrent family: an LSTM or GRU reading an image's rows (each row's channels and pixels are one
step), or flat data as one step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from trainables.models import RNNSpec


class RowRNN(nn.Module):
    """Reads an image as the sequence of its rows (a row's channels and pixels are one step); a flat
    feature vector is one step. Classifies the last state."""

    def __init__(
        self, cell: type[nn.LSTM] | type[nn.GRU], spec: RNNSpec, input_shape: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        self.steps = input_shape[1] if len(input_shape) == 3 else 1
        self.features = math.prod(input_shape) // self.steps
        self.rnn = cell(
            self.features,
            spec.hidden_size,
            num_layers=spec.layers,
            batch_first=True,
            bidirectional=spec.bidirectional,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
        )
        self.head = nn.Linear(spec.hidden_size * (2 if spec.bidirectional else 1), num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 4:  # (N, C, H, W) -> (N, H, C * W): each row with all its channels is one step
            images = images.permute(0, 2, 1, 3)
        out, _ = self.rnn(images.reshape(images.shape[0], self.steps, self.features))
        return self.head(out[:, -1])
