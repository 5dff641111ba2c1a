"""The differential tests' two sides: a plain-PyTorch oracle written from scratch, and the project's trial.

`oracle` is the recipe a user would write by hand: a seeded MLP (Flatten, Linear, ReLU, Linear), Adam,
one seeded permutation of the training set per epoch, cross-entropy, and inputs the caller prepared
itself (its own layout conversion, its own scaling). `project` runs a trial's own plain-PyTorch pieces
in-process, in the order `trainables.trial.train_trial` runs them (seed, assemble, generator, to_device,
input_scaling, then per epoch train_one_epoch and evaluate), on a `Dataset` from `load_dataset`.
Given the same splits, seed and recipe, the two must give the same numbers on the CPU.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.assemble import assemble, steps_per_epoch
from trainables.data import Dataset, input_scaling, to_device
from trainables.loop import evaluate, train_one_epoch
from trainables.recipe import TrialConfig

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Recipe:
    hidden: int = 16
    lr: float = 1e-2
    batch_size: int = 32
    epochs: int = 3
    seed: int = 0

    def trial(self, input_scale: str, **extra: Any) -> TrialConfig:
        fixed = {
            "model": "mlp",
            "mlp": {"hidden": [self.hidden]},
            "optimizer": "adam",
            "lr": self.lr,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "seed": self.seed,
            "input_scale": input_scale,
            **extra,
        }
        return TrialConfig.resolve(fixed, {})


Split = tuple[torch.Tensor, torch.Tensor]  # (float32 inputs as the model takes them, int64 labels)


def oracle(
    train: Split, evals: dict[str, Split], classes: int, recipe: Recipe
) -> tuple[list[dict[str, float]], nn.Module]:
    """Per epoch {name_loss, name_accuracy} for each evaluated split, and the trained model."""
    x, y = train
    torch.manual_seed(recipe.seed)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(x[0].numel(), recipe.hidden), nn.ReLU(), nn.Linear(recipe.hidden, classes)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(recipe.seed)
    history = []
    for _ in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        row = {}
        with torch.no_grad():
            for name, (ex, ey) in evals.items():
                logits = model(ex)
                row[f"{name}_loss"] = F.cross_entropy(logits, ey).item()
                row[f"{name}_accuracy"] = (logits.argmax(1) == ey).float().mean().item()
        history.append(row)
    return history, model


def project(data: Dataset, cfg: TrialConfig) -> tuple[list[dict[str, float]], nn.Module]:
    """The trial's own pieces on the CPU, in the trial's order; per epoch val/test loss and accuracy."""
    torch.manual_seed(cfg.seed)
    spec = cfg.model_spec(data.input_shape, data.num_classes)
    training = assemble(cfg, spec, CPU, steps_per_epoch(len(data.train), cfg.batch_size))
    generator = torch.Generator(device=CPU).manual_seed(cfg.seed)
    train, val, test = (to_device(s, CPU) for s in (data.train, data.val, data.test))
    scaling = input_scaling(cfg.input_scale, data.mean, data.std, data.pixel_max, data.pixel_min)
    history = []
    for _ in range(cfg.epochs):
        train_one_epoch(training.model, training.optimizer, train, cfg.batch_size, scaling, generator, training.hooks)
        val_loss, val_acc = evaluate(training.model, val, scaling)
        test_loss, test_acc = evaluate(training.model, test, scaling)
        history.append(
            {"val_loss": val_loss, "val_accuracy": val_acc, "test_loss": test_loss, "test_accuracy": test_acc}
        )
    for split, stored in ((train, data.train), (val, data.val), (test, data.test)):  # nor the trial's own copies
        assert torch.equal(split.images, torch.from_numpy(stored.images)), "a split was written during the trial"
    return history, training.model


def train_from_the_store(refs: list[Any], scale: str, augment: dict[str, Any]) -> list[dict[str, float]]:
    """A Ray task: the dataset read zero-copy from the object store, as a trial reads it, then trained on."""
    import ray

    data = ray.get(refs[0])
    assert not data.val.images.flags.writeable  # a read-only view of the object store
    torch.set_num_threads(1)
    history, _ = project(data, Recipe(epochs=2).trial(scale, augment=augment))
    return history


def digest(data: Dataset) -> str:
    """SHA-256 over every split's stored bytes, shapes and dtypes."""
    sha = hashlib.sha256()
    for split in (data.train, data.val, data.test):
        for array in (split.images, split.labels):
            sha.update(f"{array.shape}{array.dtype}".encode())
            sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def assert_same_numbers(got: list[dict[str, float]], want: list[dict[str, float]], sizes: dict[str, int]) -> None:
    """The same metrics, epoch by epoch. Tolerance: losses 1e-4 (float32 rounding of independently computed
    statistics), accuracies one sample of the split."""
    assert len(got) == len(want)
    for epoch, (a, b) in enumerate(zip(got, want, strict=True), 1):
        for name, size in sizes.items():
            assert abs(a[f"{name}_loss"] - b[f"{name}_loss"]) <= 1e-4, (epoch, name, a, b)
            assert abs(a[f"{name}_accuracy"] - b[f"{name}_accuracy"]) <= 1 / size + 1e-9, (epoch, name, a, b)
