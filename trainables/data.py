"""A dataset as arrays read once: the seeded splits, the input scaling, device-resident batches.

The driver builds one `Dataset` (`trainables.data_sources.load_dataset`); it travels to every trial
through Ray's object store, where numpy arrays are read zero-copy. A trial moves each split to its
device once (`to_device`) and draws batches as index slices of a device-side permutation, so an epoch
has no per-sample Python, no DataLoader and no host-to-device copy per batch.

Samples are images `(C, H, W)` or flat feature vectors `(D,)`, stored as uint8 or float32, with a
value range: what the stored values span (uint8: 0..255; floats: 0..1, or a declared `data.value_range`),
which the `unit` scale maps to 0..1 and an image file's pixels are mapped into. No Ray here.

The dataset is immutable: nothing here writes to the arrays, which a trial receives as read-only views
of Ray's object store shared by every trial on the node. A trial copies each split once (`to_device`),
and the input scaling makes a new tensor of every batch, so no op ever works in place on stored data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainables.lazy import lazy

if TYPE_CHECKING:
    import torch
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")

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
    # Per-channel (images) or per-feature (flat) mean/std of the training split on the unit scale, for
    # `standard` scaling; a constant channel or feature has std 1 (it is centred, never divided by 0).
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # What the stored values span, mapped to 0..1 by the unit scale: (0, 255) for uint8, (0, 1) for floats
    # within it, a declared data.value_range; None for floats outside 0..1 with no range declared.
    value_range: tuple[float, float] | None = (0.0, 255.0)
    observed: tuple[float, float] = (0.0, 255.0)  # the smallest and largest stored value, over every split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def unit_range(self) -> tuple[float, float]:
        """The stored values of 0 and 1 on the unit scale: the value range, or (0, 1) when it is unknown."""
        return self.value_range or (0.0, 1.0)

    @property
    def pixel_max(self) -> float:
        return self.unit_range[1]

    @property
    def pixel_min(self) -> float:
        return self.unit_range[0]

    @property
    def nbytes(self) -> int:
        return sum(s.images.nbytes + s.labels.nbytes for s in (self.train, self.val, self.test))

    def scaling_record(self) -> dict[str, object]:
        """What a checkpoint keeps so that a reader scales inputs as the trial did, and maps an image file's
        pixels 0..255 onto the stored values (`image_range`; None: the data's pixel scale is unknown)."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "pixel_min": self.pixel_min,
            "pixel_max": self.pixel_max,
            "image_range": list(self.value_range) if self.value_range else None,
        }


STATS_CHUNK_BYTES = 256 << 20  # above this much float32, the stats are taken a chunk of samples at a time
MIN_STD = 1e-12  # on the unit scale; below it a channel or feature counts as constant (std 1, as scikit-learn)


def channel_stats(
    images: np.ndarray, unit_range: tuple[float, float] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std on the unit scale per channel of (N, C, H, W) images, per feature of (N, D) vectors (as
    scikit-learn's StandardScaler); `unit_range` is what 0..1 is in stored values (default: the dtype's)."""
    low, high = unit_range or ((0.0, 255.0) if images.dtype == np.uint8 else (0.0, 1.0))
    if images.size * 4 > STATS_CHUNK_BYTES:  # a whole float copy (and numpy's std makes two) would not fit
        mean, std = _chunked_stats(images, low, high)
    else:
        unit = images.astype(np.float32) if images.dtype != np.float32 or low else images
        if low:
            unit = unit - np.float32(low)
        if high - low != 1.0:
            unit = unit / np.float32(high - low)
        if images.ndim == 4 and images.shape[1] == 1:  # one channel: over everything, as always
            mean, std = np.array([unit.mean()]), np.array([unit.std()])
        else:
            axes = (0, 2, 3) if images.ndim == 4 else (0,)  # float64 sums: a column of a million rows
            mean, std = unit.mean(axis=axes, dtype=np.float64), unit.std(axis=axes, dtype=np.float64)
    std = np.where(std < MIN_STD, 1.0, std)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _chunked_stats(images: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The same statistics in two passes over chunks of samples, accumulated in float64."""
    channels = images.shape[1] if images.ndim in (2, 4) else 1
    per_channel = images.reshape(len(images), channels, -1)
    step = max(1, STATS_CHUNK_BYTES // (per_channel[0].size * 8))
    scale = 1 / (high - low)
    count = len(images) * per_channel.shape[2]
    total = sum(per_channel[i : i + step].sum(axis=(0, 2), dtype=np.float64) for i in range(0, len(images), step))
    mean = (total / count - low) * scale
    squares = np.zeros(channels)
    for i in range(0, len(images), step):
        centred = per_channel[i : i + step].astype(np.float64)
        centred -= low
        centred *= scale
        centred -= mean[None, :, None]
        squares += np.einsum("ncx,ncx->c", centred, centred)
    return mean, np.sqrt(squares / count)


@dataclass(frozen=True)
class DeviceSplit:
    """One split resident on the trial's device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


COPY_CHUNK_BYTES = 64 << 20  # host memory a copy to a GPU passes through at a time


def to_device(split: Split, device: torch.device) -> DeviceSplit:
    """The trial's own copy of a split on its device, made once. The arrays themselves (on a CPU, read-only
    views of Ray's object store that every trial on the node shares) are never handed to torch, which
    cannot keep a tensor read-only: whatever a trial does to its tensors, the dataset stays as it was."""
    return DeviceSplit(resident(split.images, device), resident(split.labels, device))


def resident(array: np.ndarray, device: torch.device, chunk_bytes: int | None = None) -> torch.Tensor:
    """A copy of `array` on `device` (`torch.tensor` copies; `torch.from_numpy` would share the memory). To a
    GPU a chunk of samples at a time, so the host never holds a second copy of a large split."""
    if chunk_bytes is None:
        chunk_bytes = array.nbytes if device.type == "cpu" else COPY_CHUNK_BYTES
    if array.nbytes <= chunk_bytes:
        return torch.tensor(array, device=device)
    out = torch.empty(array.shape, dtype=torch.tensor(array[:0]).dtype, device=device)
    step = max(1, chunk_bytes // max(1, array[0].nbytes))
    for start in range(0, len(array), step):
        out[start : start + step].copy_(torch.tensor(array[start : start + step]))
    return out


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Slices of one seeded permutation: each sample exactly once per epoch, in a seed-dependent order."""
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@dataclass(frozen=True)
class InputScaling:
    """Stored values -> float inputs, per batch on the device: (x - shift) / divisor, per channel of
    (N, C, H, W) images or per feature of (N, D) vectors. Always a new tensor: the input is never written.
    A division, not a product with the reciprocal: uint8 pixels / 255 are then bit for bit the floats
    u / 255 a user would store, so the same data in either encoding trains the same model."""

    shift: float | tuple[float, ...]
    divisor: float | tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # An explicit copy, then in place on it (one temporary per batch instead of three). Not `.float()`:
        # for float32 input that returns the input itself, and a slice of a stored split would be rescaled.
        x = images.to(torch.float32, copy=True)
        shift, divisor = self.shift, self.divisor
        if isinstance(shift, tuple):  # per channel of (N, C, H, W), per feature of (N, D)
            view = (1, len(shift), *(1,) * (x.ndim - 2))
            return x.sub_(torch.tensor(shift, device=x.device).view(view)).div_(
                torch.tensor(divisor, device=x.device).view(view)
            )
        if shift:
            x.sub_(shift)
        return x.div_(float(divisor)) if divisor != 1 else x  # type: ignore[arg-type]  # one channel: numbers


def input_scaling(
    scale: str, mean: Sequence[float], std: Sequence[float], pixel_max: float = 255.0, pixel_min: float = 0.0
) -> InputScaling:
    """raw (as stored), unit (pixel_min..pixel_max -> 0..1: /255 for bytes), tiny (unit/10000, the batch-norm
    study), standard (z-score per channel or feature, from statistics on the unit scale)."""
    for name, value in (("pixel_max", pixel_max), ("pixel_min", pixel_min)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) < float("inf"):
            raise DataError(f"scaling: {name} must be a finite number (got {value!r})")
    if not pixel_max > pixel_min:
        raise DataError(f"scaling: pixel_max must be above pixel_min (got {pixel_min!r}..{pixel_max!r})")
    span = pixel_max - pixel_min
    if scale == "raw":
        return InputScaling(0.0, 1.0)
    if scale == "unit":
        return InputScaling(pixel_min, span)
    if scale == "tiny":
        return InputScaling(pixel_min, span * 10_000)
    if scale != "standard":
        raise DataError(f"input_scale: unknown scaling {scale!r} (valid: raw, unit, tiny, standard)")
    if len(mean) != len(std) or not mean or not all(np.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
        raise DataError(
            f"scaling: standard scaling needs a finite mean and a std > 0 per channel (got mean "
            f"{list(mean)}, std {list(std)})"
        )
    if len(mean) == 1:
        return InputScaling(pixel_min + mean[0] * span, std[0] * span)
    return InputScaling(tuple(pixel_min + m * span for m in mean), tuple(s * span for s in std))
