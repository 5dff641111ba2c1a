"""The two reference loops `orchestrator.bench` compares the orchestrator against. Plain PyTorch, no Ray.

- `raw_epochs`: the floor. A deliberately bare loop over resident, pre-scaled float tensors: permute,
  slice, step; no running sums, no per-batch scaling, no reporting. It is *not* `train_one_epoch`
  on purpose: measured against itself the framework would always look free. It must stay this bare
  when the product loop gains features (regularizers, augmentation, schedulers), so that the
  orchestrated/raw ratio keeps showing what those features and the orchestration cost.
- `tutorial_trial`: how a trial is usually written: torchvision's FashionMNIST Dataset (a PIL image and
  ToTensor per sample) behind a shuffling DataLoader, evaluation through DataLoaders, one trial at a
  time on the whole device. It trains the same samples, model, optimizer and epochs as a trial.
"""

from __future__ import annotations

import copy
import gzip
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from trainables.data import Dataset, Split
from trainables.data_readers import IDX_NAMES, find_idx_dir
from trainables.models import build_model
from trainables.optimizers import build_optimizer
from trainables.recipe import TrialConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_epochs(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    epochs: int,
    seed: int,
) -> list[float]:
    """Seconds per epoch of the bare loop; `images` are float and already scaled, on the device."""
    device = labels.device
    generator = torch.Generator(device=device).manual_seed(seed)
    n = labels.shape[0]
    seconds = []
    net.train()
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator, device=device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def torchvision_root(dataset: Dataset, root: Path) -> Path:
    """torchvision's FashionMNIST wants uncompressed IDX files under root/FashionMNIST/raw."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    source = find_idx_dir(Path(dataset.source))
    for stem in IDX_NAMES.values():
        packed, plain = source / f"{stem}.gz", source / stem
        if not (raw / stem).exists():
            if packed.exists():
                with gzip.open(packed, "rb") as src, open(raw / stem, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copyfile(plain, raw / stem)
    return root


def vision_splits(dataset: Dataset, root: Path) -> dict[str, torch.utils.data.Dataset]:
    """torchvision datasets holding exactly the orchestrator's train/val/test samples."""
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import ToTensor

    base = FashionMNIST(str(root), train=False, download=False, transform=ToTensor())
    splits = {}
    for name, split in (("train", dataset.train), ("val", dataset.val), ("test", dataset.test)):
        view = copy.copy(base)
        view.data = torch.tensor(split.images[:, 0])  # (N, 28, 28) as torchvision keeps it; a copy
        view.targets = torch.tensor(split.labels)
        splits[name] = view
    return splits


@dataclass(frozen=True)
class TutorialResult:
    seconds: float
    epochs: int
    test_accuracy: float


def _accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.shape[0]
    model.train()
    return correct / total


def tutorial_trial(
    trial: TrialConfig, splits: dict[str, torch.utils.data.Dataset], device: torch.device, workers: int
) -> TutorialResult:
    """One trial, tutorial style; evaluates val and test every epoch as a trial does."""
    start = time.perf_counter()
    torch.manual_seed(trial.seed)
    model = build_model(trial.model_spec((1, 28, 28), 10)).to(device)
    optimizer = build_optimizer(trial.optimizer, model, trial.lr, trial.weight_decay)
    train = DataLoader(splits["train"], batch_size=trial.batch_size, shuffle=True, num_workers=workers)
    val, test = (DataLoader(splits[k], batch_size=trial.batch_size, num_workers=workers) for k in ("val", "test"))
    test_accuracy = 0.0
    for _ in range(trial.epochs):
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _accuracy(model, val, device)
        test_accuracy = _accuracy(model, test, device)
    sync(device)
    return TutorialResult(time.perf_counter() - start, trial.epochs, test_accuracy)


def scaled_float(split: Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw loop's inputs: the whole split as 0..1 floats on the device (the `unit` input scale)."""
    images = torch.tensor(split.images).to(device).float().div_(255)
    return images, torch.tensor(split.labels).to(device)
