"""A dataset as arrays read once: the seeded splits, the input scaling, device-resident batches.

The driver builds one `Dataset` (`trainables.data_sources.load_dataset`); it travels to every trial
through Ray's object store, where numpy arrays are read zero-copy. A trial moves each split to its
device once (`to_device`) and draws batches as index slices of a device-side permutation, so an epoch
has no per-sample Python, no DataLoader and no host-to-device copy per batch.

Samples are images `(C, H, W)` or flat feature vectors `(D,)`, stored as uint8 (pixels 0..255) or
float32 (already on the unit scale). No Ray here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

MAX_DATASET_BYTES = 4 << 30  # resident in every trial: must fit in Ray's object store and each trial's device


class DataError(ValueError):
    """Data that cannot be used: the message names the field or file and what to do."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, C, H, W) or (N, D); uint8 or float32
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    source: str  # where it was read from, in words
    classes: tuple[str, ...]
    # Per-channel mean/std of the training split on the unit scale (bytes / 255), for `standard` scaling.
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def pixel_max(self) -> float:
        """What one unit of the unit scale is in stored values: 255 for bytes, 1 for floats."""
        return 255.0 if self.train.images.dtype == np.uint8 else 1.0

    @property
    def nbytes(self) -> int:
        return sum(s.images.nbytes + s.labels.nbytes for s in (self.train, self.val, self.test))

    def scaling_record(self) -> dict[str, object]:
        """What a checkpoint keeps so that a reader scales inputs as the trial did."""
        return {"mean": list(self.mean), "std": list(self.std), "pixel_max": self.pixel_max}


def carve(images: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple[Split, Split]:
    """(rest, carved): a seeded permutation, so every trial of an experiment sees the same carved split."""
    order = np.random.default_rng(seed).permutation(len(labels))
    carved, rest = np.sort(order[:size]), np.sort(order[size:])
    return Split(images[rest], labels[rest]), Split(images[carved], labels[carved])


STATS_CHUNK_BYTES = 256 << 20  # above this much float32, the stats are taken a chunk of samples at a time


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std on the unit scale; a flat feature vector counts as one channel."""
    if images.size * 4 > STATS_CHUNK_BYTES:  # a whole float copy (and numpy's std makes two) would not fit
        return _chunked_stats(images)
    unit = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    if unit.ndim == 4 and unit.shape[1] > 1:
        axes = (0, 2, 3)
        return tuple(float(v) for v in unit.mean(axis=axes)), tuple(float(v) for v in unit.std(axis=axes))
    return (float(unit.mean()),), (float(unit.std()),)


def _chunked_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The same statistics in two passes over chunks of samples, accumulated in float64."""
    channels = images.shape[1] if images.ndim == 4 else 1
    per_channel = images.reshape(len(images), channels, -1)
    step = max(1, STATS_CHUNK_BYTES // (per_channel[0].size * 8))
    scale = 1 / 255.0 if images.dtype == np.uint8 else 1.0
    count = len(images) * per_channel.shape[2]
    total = sum(per_channel[i : i + step].sum(axis=(0, 2), dtype=np.float64) for i in range(0, len(images), step))
    mean = total * scale / count
    squares = np.zeros(channels)
    for i in range(0, len(images), step):
        centred = per_channel[i : i + step].astype(np.float64)
        centred *= scale
        centred -= mean[None, :, None]
        squares += np.einsum("ncx,ncx->c", centred, centred)
    std = np.sqrt(squares / count)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


@dataclass(frozen=True)
class DeviceSplit:
    """One split resident on the trial's device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_device(split: Split, device: torch.device) -> DeviceSplit:
    """Zero-copy on the CPU (the arrays are read-only views of the object store); one copy to a GPU."""
    with warnings.catch_warnings():
        # The object store hands out read-only arrays; nothing here ever writes to them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        images = torch.from_numpy(split.images)
        labels = torch.from_numpy(split.labels)
    return DeviceSplit(images.to(device), labels.to(device))


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Slices of one seeded permutation: each sample exactly once per epoch, in a seed-dependent order."""
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@dataclass(frozen=True)
class InputScaling:
    """Stored values -> float inputs, per batch on the device: (x - shift) * factor, per channel."""

    shift: float | tuple[float, ...]
    factor: float | tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # In place on the fresh float copy: one temporary per batch instead of three.
        x = images.float()
        shift, factor = self.shift, self.factor
        if isinstance(shift, tuple):  # per channel of (N, C, H, W)
            view = (1, len(shift), 1, 1)
            return x.sub_(torch.tensor(shift, device=x.device).view(view)).mul_(
                torch.tensor(factor, device=x.device).view(view)
            )
        if shift:
            x.sub_(shift)
        return x.mul_(float(factor))  # type: ignore[arg-type]  # one channel: shift and factor are numbers


def input_scaling(scale: str, mean: Sequence[float], std: Sequence[float], pixel_max: float = 255.0) -> InputScaling:
    """raw (as stored), unit (/255 for bytes), tiny (unit/10000, the batch-norm study), standard (z-score)."""
    if isinstance(pixel_max, bool) or not isinstance(pixel_max, int | float) or not 0 < pixel_max < float("inf"):
        raise DataError(f"scaling: pixel_max must be a finite number > 0 (got {pixel_max!r})")
    if scale == "raw":
        return InputScaling(0.0, 1.0)
    if scale == "unit":
        return InputScaling(0.0, 1 / pixel_max)
    if scale == "tiny":
        return InputScaling(0.0, 1 / pixel_max / 10_000)
    if scale != "standard":
        raise DataError(f"input_scale: unknown scaling {scale!r} (valid: raw, unit, tiny, standard)")
    if len(mean) != len(std) or not mean or not all(np.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
        raise DataError(
            f"scaling: standard scaling needs a finite mean and a std > 0 per channel (got mean "
            f"{list(mean)}, std {list(std)})"
        )
    if len(mean) == 1:
        return InputScaling(mean[0] * pixel_max, 1 / (std[0] * pixel_max))
    return InputScaling(tuple(m * pixel_max for m in mean), tuple(1 / (s * pixel_max) for s in std))
