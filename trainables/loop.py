"""train_one_epoch / evaluate: plain PyTorch over device-resident tensors. No Ray, no prints, no globals.

Running sums stay on the device and are read once per epoch, so a GPU is never stalled by a
per-batch `.item()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainables.data import DeviceSplit, batch_indices

Scaling = Callable[[torch.Tensor], torch.Tensor]
EVAL_BATCH = 1024  # no activations kept for backward; larger CNN batches only thrash a CPU's caches


@dataclass(frozen=True)
class EpochResult:
    loss: float
    accuracy: float
    samples: int
    seconds: float


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: DeviceSplit,
    batch_size: int,
    scaling: Scaling,
    generator: torch.Generator,
) -> EpochResult:
    model.train()
    start = time.perf_counter()
    device = split.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for idx in batch_indices(len(split), batch_size, generator, device):
        labels = split.labels[idx]
        logits = model(scaling(split.images[idx]))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * labels.shape[0]
        correct += (logits.detach().argmax(1) == labels).sum()
    n = len(split)
    return EpochResult(loss_sum.item() / n, correct.item() / n, n, time.perf_counter() - start)


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, scaling: Scaling, batch_size: int = EVAL_BATCH
) -> torch.Tensor:
    """Logits for uint8 images (N, 1, 28, 28) in eval mode; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(scaling(images[i:i + batch_size])) for i in range(0, images.shape[0], batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, split: DeviceSplit, scaling: Scaling) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split."""
    logits = predict_logits(model, split.images, scaling)
    loss = F.cross_entropy(logits, split.labels).item()
    accuracy = (logits.argmax(1) == split.labels).float().mean().item()
    return loss, accuracy
