"""Where a dataset comes from (`data:`), read once by the driver and checked before Ray starts.

    data: {source: fashion_mnist}                                    # the default: the IDX files
    data: {source: npz, path: data/digits.npz, val_size: 0.2}        # x_train, y_train[, x_test, y_test, classes]
    data: {source: torchvision, dataset: CIFAR10, root: ./data, download: true}
    data: {source: entry_point, entry_point: mypkg.data:load, args: {n: 1000}}

Every source yields the same arrays, checked the same way (the contract: `trainables.data_contract`):
images `(N, C, H, W)`, `(N, H, W, C)` (converted where unambiguous or declared by `data.layout`) or
`(N, H, W)` (one channel) or flat features `(N, D)`, uint8 or floating point (finite, within a declared
`data.value_range`); integer labels from 0; the number of classes inferred from the labels or given by the
class names. Where a source has no test split, one is carved with the experiment seed, like the validation
split; carved splits and `data.train_limit` are stratified (`trainables.subsets`). A dataset above
`MAX_DATASET_BYTES` is refused: every trial keeps all of it resident on its device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from trainables.data import MAX_DATASET_BYTES, DataError, Dataset, Split, channel_stats
from trainables.data_contract import channels_first, check_classes, value_range
from trainables.data_readers import (
    TORCHVISION,
    call_entry_point,
    read_fashion,
    read_npz,
    read_torchvision,
)
from trainables.schema import MAX_WIDTH, Section
from trainables.subsets import carve, limit

MAX_CLASSES = MAX_WIDTH
SOURCE_FIELDS = {
    "fashion_mnist": {"root", "download"},
    "npz": {"path"},
    "torchvision": {"dataset", "root", "download"},
    "entry_point": {"entry_point", "args"},
}
Size = int | float
LAYOUT_SOURCES = ("npz", "entry_point")  # the readers of the other sources return channels-first arrays


class DataConfig(Section):
    source: Literal["fashion_mnist", "npz", "torchvision", "entry_point"] = Field(
        default="fashion_mnist", description="where the arrays come from"
    )
    root: str = Field(default="./data", min_length=1, description="fashion_mnist/torchvision: the dataset directory")
    download: bool = Field(default=False, description="fashion_mnist/torchvision: download when not found")
    path: str | None = Field(default=None, min_length=1, description="npz: a .npz file or a directory of them")
    dataset: str | None = Field(default=None, description=f"torchvision: one of {', '.join(TORCHVISION)}")
    entry_point: str | None = Field(
        default=None, description="entry_point: package.module:function returning a mapping of arrays (as in a .npz)"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="entry_point: keyword arguments")
    val_size: Size = Field(
        default=10_000,
        gt=0,
        description="validation samples carved from the training split (a count, or a fraction below 1)",
    )
    test_size: Size = Field(
        default=0.2,
        gt=0,
        description="test samples carved from the training data when the "
        "source has no test split (a count, or a fraction below 1)",
    )
    train_limit: int | None = Field(
        default=None,
        ge=1,
        le=2**40,
        description="train on N samples of the training split only, a seeded sample keeping every class in "
        "proportion (quick looks and tests); none = all",
    )
    layout: Literal["auto", "channels_first", "channels_last"] = Field(
        default="auto",
        description="npz/entry_point: 4-D images as (N, C, H, W) or (N, H, W, C); auto converts only an "
        "unambiguous shape (channel axis of 1, 3 or 4 on one side only) and refuses the rest",
    )
    value_range: tuple[float, float] | None = Field(
        default=None,
        description="[low, high]: what the stored values span (a black and a white pixel), mapped to 0..1 by "
        "input_scale unit; none = 0..255 for uint8, 0..1 for floats (floats outside it: standard or raw only)",
    )

    @model_validator(mode="after")
    def _fields_fit_the_source(self) -> DataConfig:
        needed = {"npz": "path", "torchvision": "dataset", "entry_point": "entry_point"}.get(self.source)
        if needed and getattr(self, needed) is None:
            raise ValueError(f"source {self.source} needs data.{needed}")
        for name in ("path", "dataset", "entry_point", "args"):
            # A recorded config writes the unused fields out as null / {}: only a value counts as set.
            if getattr(self, name) not in (None, {}) and name not in SOURCE_FIELDS[self.source]:
                raise ValueError(f"data.{name} does not apply to source {self.source}")
        if self.source == "torchvision" and self.dataset not in TORCHVISION:
            raise ValueError(f"unknown torchvision dataset {self.dataset!r} (valid: {', '.join(TORCHVISION)})")
        if self.layout != "auto" and self.source not in LAYOUT_SOURCES:
            raise ValueError(f"data.layout applies to npz and entry_point; source {self.source} is read channels first")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"data.value_range must be [low, high] with low < high (got {list(self.value_range)})")
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if isinstance(value, float) and not value < 1:
                raise ValueError(f"data.{name}: a fraction must be below 1, or give a whole count")
        return self


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Read, check and split; raises DataError with one line naming the problem."""
    arrays, source = _read(cfg)
    if cfg.train_limit is None:  # every sample stays resident: refused before a check or a split copies it
        _check_size(_resident_bytes(arrays))
    x_train, y_train, classes = _checked(arrays, source, cfg.layout)
    if ("x_test" in arrays) != ("y_test" in arrays):
        given, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(
            f"{source}: {given} without {missing}; give both (a test split) or neither (one is carved "
            "by data.test_size)"
        )
    if "x_test" in arrays:
        x_test, y_test, _ = _checked(
            {**arrays, "x_train": arrays["x_test"], "y_train": arrays["y_test"]},
            source,
            cfg.layout,
            what="test",
            classes=classes,
        )
        if x_test.shape[1:] != x_train.shape[1:] or x_test.dtype != x_train.dtype:
            raise DataError(
                f"{source}: x_test samples are {x_test.dtype} {list(x_test.shape[1:])}, x_train's are "
                f"{x_train.dtype} {list(x_train.shape[1:])}"
            )
        rest = Split(x_train, y_train)
        test = Split(x_test, y_test)
    else:
        size = _count(cfg.test_size, len(y_train), "data.test_size")
        rest, test = carve(x_train, y_train, size, seed, "data.test_size")
    train, val = carve(
        rest.images, rest.labels, _count(cfg.val_size, len(rest), "data.val_size"), seed, "data.val_size"
    )
    if cfg.train_limit is not None:
        train = limit(train, cfg.train_limit, seed)
    check_classes(train, val, test, classes, source)
    _check_size(sum(s.images.nbytes + s.labels.nbytes for s in (train, val, test)))  # before the statistics
    named = [
        ("x_train", train.images),
        ("validation split", val.images),
        ("x_test" if "x_test" in arrays else "test split", test.images),
    ]
    span, observed = value_range(named, cfg.value_range)
    mean, std = channel_stats(train.images, span)
    return Dataset(
        train, val, test, source=source, classes=classes, mean=mean, std=std, value_range=span, observed=observed
    )


def _check_size(nbytes: int) -> None:
    if nbytes > MAX_DATASET_BYTES:
        raise DataError(
            f"data: {nbytes / 2**30:.1f} GiB is above the {MAX_DATASET_BYTES >> 30} GiB a trial "
            "keeps resident on its device; use data.train_limit or a smaller dataset"
        )


def _resident_bytes(arrays: dict[str, Any]) -> int:
    """What the arrays will occupy once checked (floats as float32, labels as int64), from their shapes
    alone: a broadcast or memory-mapped array is not read. Arrays the checks will refuse count nothing."""
    total = 0
    for key in ("x_train", "y_train", "x_test", "y_test"):
        value = arrays.get(key)
        if not isinstance(value, np.ndarray):
            continue
        if key.startswith("y"):
            total += value.size * 8
        elif value.dtype == np.uint8 or np.issubdtype(value.dtype, np.floating):
            total += value.size * (1 if value.dtype == np.uint8 else 4)
    return total


def _count(size: Size, available: int, field: str) -> int:
    count = int(size) if isinstance(size, int) else round(size * available)
    if not 1 <= count < available:
        raise DataError(
            f"{field}: {size} gives {count} of {available} samples; it must leave at least one on "
            f"either side (e.g. {field}: 0.2)"
        )
    return count


def _read(cfg: DataConfig) -> tuple[dict[str, Any], str]:
    if cfg.source == "npz":
        return read_npz(_expand(str(cfg.path), "data.path"))
    if cfg.source == "torchvision":
        return read_torchvision(str(cfg.dataset), _expand(cfg.root, "data.root"), cfg.download)
    if cfg.source == "entry_point":
        return call_entry_point(str(cfg.entry_point), cfg.args)
    return read_fashion(_expand(cfg.root, "data.root"), cfg.download)


def _expand(text: str, field: str) -> Path:
    path = Path(os.path.expanduser(text))  # Path.expanduser raises for an unknown ~user; this leaves it as is
    if str(path).startswith("~"):
        raise DataError(f"{field}: unknown user in {text!r} (no such home directory)")
    return path


# ------------------------------------------------------------------ the checks every source goes through


def _checked(
    arrays: dict[str, Any], source: str, layout: str, what: str = "train", classes: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(
                f"{source}: missing array {key if what == 'train' else key.replace('train', 'test')} "
                "(expected x_train, y_train, and optionally x_test, y_test, classes)"
            )
    x, y = arrays["x_train"], arrays["y_train"]
    name = f"x_{what}"
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(
            f"{source}: x_{what} and y_{what} must be numpy arrays (got {type(x).__name__}, {type(y).__name__})"
        )
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0 or 0 in x.shape:
        raise DataError(
            f"{source}: {name} must be (N, D), (N, H, W) or (N, C, H, W) with N > 0 (got shape {list(x.shape)})"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{source}: y_{what} must be one label per sample ({len(x)}); got shape {list(y.shape)}")
    x = channels_first(_pixels(x, source, name), layout, source, name)
    y = _labels(y, source, f"y_{what}")
    classes = classes or _class_names(arrays.get("classes"), int(y.max()) + 1, source)
    if int(y.max()) >= len(classes):
        raise DataError(f"{source}: y_{what} has label {int(y.max())} but there are {len(classes)} classes")
    if what == "train" and len(np.unique(y)) < 2:  # the split's own check, on what trains, comes later
        raise DataError(f"{source}: y_train has a single class; classification needs at least two")
    return (x[:, None] if x.ndim == 3 else x), y, classes


def _pixels(x: np.ndarray, source: str, name: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{source}: {name} must be uint8 pixels or floating point (got {x.dtype})")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise DataError(f"{source}: {name} contains NaN or infinite values")
    return x


def _labels(y: np.ndarray, source: str, name: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {name} must hold integer class indices (got {y.dtype})")
    if int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES:
        raise DataError(f"{source}: {name} labels must be in 0..{MAX_CLASSES - 1} (got {int(y.min())}..{int(y.max())})")
    return y.astype(np.int64, copy=False)


def _class_names(names: Any, inferred: int, source: str) -> tuple[str, ...]:
    if names is None:
        return tuple(str(i) for i in range(max(inferred, 2)))
    names = names.tolist() if isinstance(names, np.ndarray) else names
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{source}: classes must be a list of non-empty names")
    if not 2 <= len(names) <= MAX_CLASSES or len(set(names)) != len(names):
        raise DataError(f"{source}: classes must be 2 to {MAX_CLASSES} distinct names (got {len(names)})")
    return tuple(names)
