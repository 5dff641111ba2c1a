"""Fashion-MNIST read once as uint8 arrays, the seeded train/validation split, device-resident batches.

The driver calls `load_dataset` once; the resulting `Dataset` (plain numpy arrays) travels to every
trial through Ray's object store, where numpy arrays are read zero-copy. A trial moves each split to
its device once (`to_device`) and draws batches as index slices of a device-side permutation, so an
epoch has no per-sample Python, no DataLoader and no host-to-device copy per batch.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPE = {0x08: np.uint8}


class DatasetNotFoundError(ValueError):
    """The IDX files are nowhere we looked; the message says where and how to get them."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    source: str
    # mean/std of the training split on the 0..1 scale, for the "standard" input scaling
    mean: float
    std: float
    classes: tuple[str, ...] = CLASSES


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _candidate_dirs(root: Path) -> list[Path]:
    # The config's root first, then Debian's package, then torchvision's download layout.
    return [root, DEBIAN_DIR, root / "FashionMNIST" / "raw"]


def find_idx_dir(root: Path, download: bool = False) -> Path:
    """The first directory holding all four IDX files; downloads with torchvision only if asked."""
    candidates = _candidate_dirs(root)
    for directory in candidates:
        if all(_find_file(directory, stem) for stem in IDX_NAMES.values()):
            return directory
    if download:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
        return candidates[-1]
    looked = ", ".join(str(d) for d in candidates)
    raise DatasetNotFoundError(
        f"data.root: Fashion-MNIST IDX files not found (looked in {looked}); "
        "install them with `apt-get install dataset-fashion-mnist` or set data.download: true"
    )


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a numpy array, checking its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPE:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file (expected {shape})")
    return data.reshape(shape)


def split_train_val(images: np.ndarray, labels: np.ndarray, val_size: int, seed: int) -> tuple[Split, Split]:
    """A seeded permutation: every trial of an experiment sees the same validation set."""
    order = np.random.default_rng(seed).permutation(len(labels))
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


def load_fashion_mnist(root: Path, download: bool, val_size: int, seed: int,
                       train_limit: int | None = None) -> Dataset:
    directory = find_idx_dir(Path(root), download)
    arrays = {key: read_idx(_find_file(directory, stem)) for key, stem in IDX_NAMES.items()}  # type: ignore[arg-type]
    train, val = split_train_val(
        arrays["train_images"], arrays["train_labels"].astype(np.int64), val_size, seed
    )
    if train_limit is not None:
        train = Split(train.images[:train_limit], train.labels[:train_limit])
    test = Split(arrays["test_images"], arrays["test_labels"].astype(np.int64))
    unit = train.images.astype(np.float32) / 255.0
    return Dataset(train, val, test, source=str(directory), mean=float(unit.mean()), std=float(unit.std()))


@dataclass(frozen=True)
class DeviceSplit:
    """One split resident on the trial's device: uint8 images (N, 1, 28, 28) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_device(split: Split, device: torch.device) -> DeviceSplit:
    """Zero-copy on the CPU (the arrays are read-only views of the object store); one copy to a GPU."""
    with warnings.catch_warnings():
        # The object store hands out read-only arrays; nothing here ever writes to them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        images = torch.from_numpy(split.images).unsqueeze(1)
        labels = torch.from_numpy(split.labels)
    return DeviceSplit(images.to(device), labels.to(device))


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Slices of one seeded permutation: each sample exactly once per epoch, in a seed-dependent order."""
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


INPUT_SCALES = ("raw", "unit", "tiny", "standard")


@dataclass(frozen=True)
class InputScaling:
    """uint8 pixels -> float inputs, applied per batch on the device: (x - shift) * factor."""

    shift: float
    factor: float

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # In place on the fresh float copy: one temporary per batch instead of three.
        x = images.float()
        if self.shift:
            x.sub_(self.shift)
        return x.mul_(self.factor)


def input_scaling(scale: str, mean: float, std: float) -> InputScaling:
    """raw 0..255, unit 0..1, tiny (the /255/10000 batch-norm study), standard (train-split z-score)."""
    table = {
        "raw": InputScaling(0.0, 1.0),
        "unit": InputScaling(0.0, 1 / 255),
        "tiny": InputScaling(0.0, 1 / 255 / 10_000),
        "standard": InputScaling(mean * 255, 1 / (std * 255)),
    }
    if scale not in table:
        raise ValueError(f"input_scale: unknown scaling {scale!r} (valid: {', '.join(table)})")
    return table[scale]
