"""train_one_epoch / evaluate: plain PyTorch over device-resident tensors. No Ray, no prints, no globals.

An epoch trains every batch of one seeded permutation, except a last batch of a single sample (when
`len(train) % batch_size == 1` and batch_size > 1): batch norm cannot train on one sample, so such a batch
would crash every trial of a batch-norm model; the sample left out differs every epoch. `train_*`
metrics and `samples_per_second` count the samples trained.

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

from trainables import metrics as m
from trainables.data import DeviceSplit, batch_indices

Scaling = Callable[[torch.Tensor], torch.Tensor]
EVAL_BATCH = 1024  # no activations kept for backward; larger CNN batches only thrash a CPU's caches


@dataclass(frozen=True)
class StepHooks:
    """The recipe around each training step, every part optional and made of device tensor ops:
    augment (uint8 batch -> float pixels), loss_fn (logits, labels -> objective), clip (between backward
    and step), after_step (a per-step lr schedule). Built by the trial from its TrialConfig."""

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    clip: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None


@dataclass(frozen=True)
class EpochResult:
    loss: float
    accuracy: float
    samples: int
    seconds: float
    lr: float = float("nan")  # the lr of the epoch's first optimizer step (what `lr` reports)
    lr_last: float = float("nan")  # the lr of its last step (differs under a per-step schedule)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: DeviceSplit,
    batch_size: int,
    scaling: Scaling,
    generator: torch.Generator,
    hooks: StepHooks | None = None,
) -> EpochResult:
    hooks = hooks or StepHooks()
    model.train()
    start = time.perf_counter()
    device = split.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    lrs: list[float] = []  # the lr each step trained with, read before the step (a per-step schedule moves it)
    n = 0
    for idx in batch_indices(len(split), batch_size, generator, device):
        if idx.shape[0] == 1 < batch_size < len(split):
            continue  # a last batch of one: batch norm cannot train on it (see `steps_per_epoch`)
        n += idx.shape[0]
        labels = split.labels[idx]
        images = split.images[idx] if hooks.augment is None else hooks.augment(split.images[idx])
        logits = model(scaling(images))
        loss = hooks.loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hooks.clip is not None:
            hooks.clip()
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if hooks.after_step is not None:
            hooks.after_step()
        loss_sum += loss.detach() * labels.shape[0]
        correct += (logits.detach().argmax(1) == labels).sum()
    n = max(n, 1)
    seconds = time.perf_counter() - start
    first, last = (float(lrs[0]), float(lrs[-1])) if lrs else (float("nan"), float("nan"))
    return EpochResult(loss_sum.item() / n, correct.item() / n, n, seconds, first, last)


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, scaling: Scaling, batch_size: int = EVAL_BATCH
) -> torch.Tensor:
    """Logits for uint8 images (N, 1, 28, 28) in eval mode; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(scaling(images[i : i + batch_size])) for i in range(0, images.shape[0], batch_size)])
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Scores:
    """One split's scores: mean cross-entropy, accuracy, and the class-balanced pair (trainables.metrics)."""

    loss: float
    accuracy: float
    balanced_accuracy: float
    macro_f1: float


def score(model: nn.Module, split: DeviceSplit, scaling: Scaling, classes: int) -> Scores:
    """Every score of a whole split, from one pass; `classes` sizes the confusion matrix."""
    logits = predict_logits(model, split.images, scaling)
    predicted = logits.argmax(1)
    counts = m.confusion(split.labels, predicted, max(classes, logits.shape[1]))
    return Scores(
        F.cross_entropy(logits, split.labels).item(),
        (predicted == split.labels).float().mean().item(),
        m.balanced_accuracy(counts),
        m.macro_f1(counts),
    )


def evaluate(model: nn.Module, split: DeviceSplit, scaling: Scaling) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split."""
    logits = predict_logits(model, split.images, scaling)
    loss = F.cross_entropy(logits, split.labels).item()
    accuracy = (logits.argmax(1) == split.labels).float().mean().item()
    return loss, accuracy
