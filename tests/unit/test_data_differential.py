"""Differential tests: the project's trial against a plain-PyTorch loop of the same recipe (tests/oracle.py),
on real data of every kind a user brings, and the same data in different encodings against itself.

Each kind is written as a user would hand it over (a .npz), read by `load_dataset`, trained by the trial's
own pieces; the oracle takes the same raw arrays and the same split indices and does its own conversion
and scaling. Data: Fashion-MNIST subsets, scikit-learn's bundled digits (8x8, 0..16), wine (13 raw-scale
features, class-sorted) and two photographs (cut into 32x32 RGB patches). Same numbers on the CPU, within
`assert_same_numbers`' tolerance where the oracle computes statistics its own way, bit for bit where it
cannot differ (encodings).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from oracle import Recipe, assert_same_numbers, oracle, project

from trainables.data import Split
from trainables.data_readers import find_idx_dir, read_idx
from trainables.data_sources import DataConfig, load_dataset
from trainables.subsets import carve, limit

sklearn = pytest.importorskip("sklearn", reason="the digits, wine and photographs ship with scikit-learn")
from sklearn.datasets import load_digits, load_sample_images, load_wine  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

SEED = 0
RECIPE = Recipe(seed=SEED)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """One torch thread, as a trial with one CPU has: tiny models on a busy machine otherwise spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ real data, as users hand it over


@pytest.fixture(scope="module")
def fashion_subset() -> dict[str, np.ndarray]:
    """1,000 training and 300 test images of the real Fashion-MNIST, uint8 (N, 28, 28)."""
    directory = find_idx_dir(Path("./data"))
    read = lambda stem: read_idx(directory / f"{stem}.gz")  # noqa: E731
    return {
        "x_train": read("train-images-idx3-ubyte")[:1000],
        "y_train": read("train-labels-idx1-ubyte")[:1000].astype(np.int64),
        "x_test": read("t10k-images-idx3-ubyte")[:300],
        "y_test": read("t10k-labels-idx1-ubyte")[:300].astype(np.int64),
    }


@functools.cache
def digits(encoding: str) -> dict[str, np.ndarray]:
    """scikit-learn's digits (values 0..16) as bytes 0..255, floats 0..1 or floats 0..255; class-sorted
    with `sorted`."""
    data = load_digits()
    order = np.argsort(data.target, kind="stable") if encoding.endswith("sorted") else np.arange(len(data.target))
    pixels = np.round(data.images[order] * (255 / 16)).astype(np.uint8)
    x = {
        "uint8": pixels,
        "uint8-sorted": pixels,
        "float01": pixels.astype(np.float32) / 255,
        "float0255": pixels.astype(np.float32),
    }[encoding]
    return {"x_train": x, "y_train": data.target[order]}


@functools.cache
def photo_patches(layout: str) -> dict[str, np.ndarray]:
    """32x32 RGB patches of the two photographs, uint8, channels last as images come, or transposed;
    the class is the photograph and its half."""
    images, labels = [], []
    for index, photo in enumerate(load_sample_images().images):
        rows, cols = photo.shape[0] // 32, photo.shape[1] // 32
        for r in range(rows):
            for c in range(cols):
                images.append(photo[32 * r : 32 * r + 32, 32 * c : 32 * c + 32])
                labels.append(2 * index + (c >= cols // 2))
    x = np.stack(images)
    return {
        "x_train": x if layout == "last" else np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
        "y_train": np.array(labels),
    }


def wine() -> dict[str, np.ndarray]:
    """178 wines, 13 raw-scale float64 features (0.1 to 1,680), sorted by class (as scikit-learn ships it)."""
    data = load_wine()
    return {"x_train": data.data, "y_train": data.target}


def load(tmp_path: Path, arrays: dict[str, np.ndarray], **data: Any) -> Any:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return load_dataset(DataConfig.model_validate({"source": "npz", "path": str(path), **data}), SEED)


# ------------------------------------------------------------------ the oracle's own view of the same data


def split_indices(
    labels: np.ndarray, given_test: int | None, val: float | int, test: float = 0.2, train_limit: int | None = None
) -> dict[str, np.ndarray]:
    """Which samples each split holds: the project's seeded stratified carve, applied to sample numbers."""
    index = np.arange(len(labels))
    if given_test is None:
        rest, carved = carve(index, labels, round(test * len(labels)), SEED)
        test_index = carved.images
    else:
        rest, test_index = Split(index, labels), np.arange(given_test)
    size = val if isinstance(val, int) else round(val * len(rest))
    train, val_split = carve(rest.images, rest.labels, size, SEED)
    if train_limit is not None:
        train = limit(train, train_limit, SEED)
    return {"train": train.images, "val": val_split.images, "test": test_index}


def oracle_splits(
    arrays: dict[str, np.ndarray],
    where: dict[str, np.ndarray],
    prepare: Callable[[np.ndarray, np.ndarray], torch.Tensor],
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) per split; `prepare(x, x_train)` is the oracle's own conversion and scaling."""
    x_train = arrays["x_train"][where["train"]]
    out = {}
    for name, index in where.items():
        source = "test" if name == "test" and "x_test" in arrays else "train"
        x, y = arrays[f"x_{source}"][index], arrays[f"y_{source}"][index]
        out[name] = (prepare(x, x_train), torch.from_numpy(y.astype(np.int64)))
    return out


def unit_bytes(x: np.ndarray, _: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / 255)


def run_both(
    data: Any,
    arrays: dict[str, np.ndarray],
    where: dict[str, np.ndarray],
    prepare: Callable[..., torch.Tensor],
    scale: str,
    recipe: Recipe = RECIPE,
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    splits = oracle_splits(arrays, where, prepare)
    for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
        assert np.array_equal(split.labels, splits[name][1].numpy()), name  # the oracle holds the same samples
    want, _ = oracle(splits["train"], {"val": splits["val"], "test": splits["test"]}, data.num_classes, recipe)
    got, _ = project(data, recipe.trial(scale))
    assert_same_numbers(got, want, {"val": len(data.val), "test": len(data.test)})
    return got, want


# ------------------------------------------------------------------ one test per kind of data


def test_uint8_grey_with_a_given_test_split(tmp_path: Path, fashion_subset: dict[str, np.ndarray]) -> None:
    data = load(tmp_path, fashion_subset, val_size=200)
    where = split_indices(fashion_subset["y_train"], 300, 200)
    got, _ = run_both(data, fashion_subset, where, unit_bytes, "unit")
    assert got[-1]["test_accuracy"] > 0.7


def test_uint8_rgb_channels_last_with_standard_scaling_per_channel(tmp_path: Path) -> None:
    arrays = photo_patches("last")
    data = load(tmp_path, arrays, val_size=0.2)
    assert data.input_shape == (3, 32, 32) and len(data.mean) == 3

    def standard(x: np.ndarray, x_train: np.ndarray) -> torch.Tensor:
        unit, reference = x.transpose(0, 3, 1, 2) / 255, x_train.transpose(0, 3, 1, 2) / 255  # the oracle's own
        mean, std = reference.mean(axis=(0, 2, 3)), reference.std(axis=(0, 2, 3))
        return torch.from_numpy(((unit - mean[:, None, None]) / std[:, None, None]).astype(np.float32))

    got, _ = run_both(data, arrays, split_indices(arrays["y_train"], None, 0.2), standard, "standard")
    assert got[-1]["test_accuracy"] > 0.5  # four classes


def test_float_on_the_unit_scale(tmp_path: Path) -> None:
    arrays = digits("float01")
    data = load(tmp_path, arrays, val_size=0.2)
    assert data.value_range == (0.0, 1.0)
    prepare = lambda x, _: torch.from_numpy(x)  # noqa: E731 - already 0..1
    got, _ = run_both(data, arrays, split_indices(arrays["y_train"], None, 0.2), prepare, "unit")
    assert got[-1]["test_accuracy"] > 0.85


def test_float_pixels_0_to_255_with_a_declared_range(tmp_path: Path) -> None:
    arrays = digits("float0255")
    data = load(tmp_path, arrays, val_size=0.2, value_range=[0, 255])
    got, _ = run_both(data, arrays, split_indices(arrays["y_train"], None, 0.2), unit_bytes, "unit")
    assert got[-1]["test_accuracy"] > 0.85


def test_raw_scale_tabular_features_with_standard_scaling_per_feature(tmp_path: Path) -> None:
    """The headline: wine's 13 raw-scale features, class-sorted; standard scales each feature (as scikit-learn's
    StandardScaler does), validation and test are stratified and learn far past the majority class."""
    arrays = wine()
    data = load(tmp_path, arrays, val_size=0.2)
    assert data.value_range is None and len(data.mean) == 13  # floats outside 0..1: no pixel scale

    def scaler(x: np.ndarray, x_train: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(StandardScaler().fit(x_train).transform(x).astype(np.float32))

    recipe = Recipe(seed=SEED, epochs=10, batch_size=16)
    got, _ = run_both(data, arrays, split_indices(arrays["y_train"], None, 0.2), scaler, "standard", recipe)
    majority = np.bincount(data.val.labels).max() / len(data.val)
    assert got[-1]["val_accuracy"] > 0.9 > majority and got[-1]["test_accuracy"] > 0.9


def test_class_sorted_arrays_with_train_limit(tmp_path: Path) -> None:
    """Digits sorted by class, 300 kept for training: a sample of every class in proportion, not the first
    300 (two classes of ten)."""
    arrays = digits("uint8-sorted")
    data = load(tmp_path, arrays, val_size=0.2, train_limit=300)
    counts = np.bincount(data.train.labels, minlength=10)
    assert counts.sum() == 300 and counts.min() >= 28 and counts.max() <= 32, counts
    where = split_indices(arrays["y_train"], None, 0.2, train_limit=300)
    got, _ = run_both(data, arrays, where, unit_bytes, "unit")
    assert got[-1]["val_accuracy"] > 0.6  # the first 300 (two classes of ten) score about 0.2


# ------------------------------------------------------------------ the same data, another encoding: the same model


def _same_model(a: Any, b: Any, scale: str) -> None:
    (history_a, model_a), (history_b, model_b) = project(a, RECIPE.trial(scale)), project(b, RECIPE.trial(scale))
    assert history_a == history_b
    for (name, pa), pb in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize(("other", "data"), [("float01", {}), ("float0255", {"value_range": [0, 255]})])
def test_bytes_and_floats_of_the_same_pixels_train_the_same_model(
    tmp_path: Path, other: str, data: dict[str, Any]
) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _same_model(
        load(tmp_path / "a", digits("uint8"), val_size=0.2),
        load(tmp_path / "b", digits(other), val_size=0.2, **data),
        "unit",
    )


@pytest.mark.parametrize("scale", ["unit", "standard"])
def test_channels_first_and_channels_last_train_the_same_model(tmp_path: Path, scale: str) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = load(tmp_path / "a", photo_patches("first"), val_size=0.2)
    last = load(tmp_path / "b", photo_patches("last"), val_size=0.2)
    assert np.array_equal(first.train.images, last.train.images)
    _same_model(first, last, scale)


def test_float64_and_float32_train_the_same_model(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    single = {**wine(), "x_train": wine()["x_train"].astype(np.float32)}
    _same_model(load(tmp_path / "a", wine(), val_size=0.2), load(tmp_path / "b", single, val_size=0.2), "standard")
