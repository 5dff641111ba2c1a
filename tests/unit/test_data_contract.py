"""The data contract (trainables/data_contract.py, subsets.py, data.py): the dataset is never written, layouts
are converted only when unambiguous, value ranges are known or declared, `standard` scales per feature,
subsets keep every class, and `evaluate --predict` feeds an image file exactly as training fed the data."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from oracle import Recipe, digest, project
from PIL import Image

from orchestrator.errors import ConfigError
from orchestrator.review.evaluation import LoadedModel, read_image
from trainables.data import DataError, Split, input_scaling
from trainables.data_contract import channels_first
from trainables.data_sources import DataConfig, load_dataset
from trainables.subsets import carve, limit

pytest.importorskip("sklearn", reason="the digits, wine and photographs ship with scikit-learn")
from sklearn.datasets import load_digits, load_sample_images, load_wine  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return np.round(data.images * (255 / 16)).astype(np.uint8), data.target


@functools.cache
def _patches() -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 patches of the two photographs, four classes."""
    images, labels = [], []
    for index, photo in enumerate(load_sample_images().images):
        for r in range(photo.shape[0] // 32):
            for c in range(photo.shape[1] // 32):
                images.append(photo[32 * r : 32 * r + 32, 32 * c : 32 * c + 32])
                labels.append(2 * index + (c >= photo.shape[1] // 64))
    return np.stack(images), np.array(labels)


def _kind(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any], list[str]]:
    """(arrays, data section, input scales to train with) for each kind of data a user brings."""
    pixels, labels = _digits()
    wine = load_wine()
    kinds = {
        "uint8-grey": ({"x_train": pixels, "y_train": labels}, {}, ["unit", "standard"]),
        "uint8-rgb": ({"x_train": _patches()[0], "y_train": _patches()[1]}, {}, ["unit", "standard"]),
        "float32": ({"x_train": pixels.astype(np.float32) / 255, "y_train": labels}, {}, ["unit", "tiny", "standard"]),
        "float32-0-255": (
            {"x_train": pixels.astype(np.float32), "y_train": labels},
            {"value_range": [0, 255]},
            ["unit", "standard"],
        ),
        "float64-flat": ({"x_train": wine.data, "y_train": wine.target}, {}, ["standard", "raw"]),
        "float32-given-test": (
            {
                "x_train": pixels[:1400].astype(np.float32) / 255,
                "y_train": labels[:1400],
                "x_test": pixels[1400:].astype(np.float32) / 255,
                "y_test": labels[1400:],
            },
            {},
            ["unit", "standard"],
        ),
    }
    return kinds[name]


def _load(tmp_path: Path, arrays: dict[str, np.ndarray], **data: Any) -> Any:
    np.savez(tmp_path / "data.npz", **arrays)
    return load_dataset(DataConfig.model_validate({"source": "npz", "path": str(tmp_path / "data.npz"), **data}), 0)


# ------------------------------------------------------------------ the dataset is immutable


@pytest.mark.parametrize(
    "kind", ["uint8-grey", "uint8-rgb", "float32", "float32-0-255", "float64-flat", "float32-given-test"]
)
def test_training_and_evaluating_never_write_to_the_dataset(tmp_path: Path, kind: str) -> None:
    """Every scale, augmentation on images, two epochs of training and evaluation (which slices the stored
    validation and test splits): afterwards every stored byte is as it was."""
    arrays, section, scales = _kind(kind)
    data = _load(tmp_path, arrays, val_size=0.2, **section)
    before = digest(data)
    images = len(data.input_shape) == 3
    augment = {"flip": True, "crop_padding": 2, "rotate": 10, "erase_prob": 0.5} if images else {}
    histories = []
    for scale in scales:
        history, _ = project(data, Recipe(epochs=2).trial(scale, augment=augment))
        histories.append(history)
        assert digest(data) == before, scale
    # Evaluating twice gives the same numbers: the splits it scores were not rescaled by the first pass.
    again, _ = project(data, Recipe(epochs=2).trial(scales[0], augment=augment))
    assert again == histories[0]


def test_input_scaling_returns_a_new_tensor_for_every_dtype() -> None:
    for stored in (torch.arange(6, dtype=torch.uint8), torch.linspace(0, 1, 6), torch.linspace(0, 1, 6).double()):
        kept = stored.clone()
        for scale in ("raw", "unit", "tiny", "standard"):
            out = input_scaling(scale, [0.5], [0.25], 255.0 if stored.dtype == torch.uint8 else 1.0)(stored[1:4])
            assert out.dtype == torch.float32 and out.data_ptr() != stored.data_ptr()
            assert torch.equal(stored, kept), (stored.dtype, scale)


# ------------------------------------------------------------------ layout: converted when unambiguous, else declared


@pytest.mark.parametrize(
    ("shape", "layout", "expected"),
    [
        ((2, 16, 16, 3), "auto", (2, 3, 16, 16)),  # the case: 16 rows were read as 16 channels
        ((2, 28, 28, 1), "auto", (2, 1, 28, 28)),
        ((2, 32, 32, 4), "auto", (2, 4, 32, 32)),
        ((2, 3, 32, 32), "auto", (2, 3, 32, 32)),
        ((2, 3, 8, 3), "channels_last", (2, 3, 3, 8)),
        ((2, 3, 8, 3), "channels_first", (2, 3, 8, 3)),
        ((2, 16, 16, 16), "channels_first", (2, 16, 16, 16)),
    ],
)
def test_layouts(shape: tuple[int, ...], layout: str, expected: tuple[int, ...]) -> None:
    x = np.arange(np.prod(shape)).reshape(shape)
    out = channels_first(x, layout, "src", "x_train")
    assert out.shape == expected and out.flags.c_contiguous
    if out.shape != x.shape:
        assert np.array_equal(out, x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("shape", [(2, 3, 8, 3), (2, 1, 5, 1), (2, 16, 16, 16), (2, 2, 28, 28)])
def test_ambiguous_layouts_are_refused_in_auto(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match=r"declare data.layout: channels_first or channels_last"):
        channels_first(np.zeros(shape), "auto", "src", "x_train")


def test_channels_last_rgb_keeps_red_red(tmp_path: Path) -> None:
    """A red image stays red: channel 0 of the converted (N, 3, H, W) data is the red plane."""
    x = np.zeros((20, 16, 16, 3), np.uint8)
    x[..., 0] = 200
    data = _load(tmp_path, {"x_train": x, "y_train": np.arange(20) % 2}, val_size=4, test_size=4)
    assert data.input_shape == (3, 16, 16)
    assert (data.train.images[:, 0] == 200).all() and (data.train.images[:, 1:] == 0).all()


# ------------------------------------------------------------------ value ranges and per-feature scaling


def test_value_ranges(tmp_path: Path) -> None:
    pixels, labels = _digits()
    for x, section, expected in [
        (pixels, {}, (0.0, 255.0)),
        (pixels.astype(np.float32) / 255, {}, (0.0, 1.0)),
        (pixels.astype(np.float32), {}, None),
        (pixels.astype(np.float32), {"value_range": [0, 255]}, (0.0, 255.0)),
        (pixels.astype(np.float32) / 255 * 2 - 1, {"value_range": [-1, 1]}, (-1.0, 1.0)),
    ]:
        data = _load(tmp_path, {"x_train": x, "y_train": labels}, val_size=0.2, **section)
        assert data.value_range == expected
        if expected is not None:  # unit maps the range onto 0..1, whatever the encoding
            unit = input_scaling("unit", data.mean, data.std, data.pixel_max, data.pixel_min)
            scaled = unit(torch.from_numpy(data.train.images))
            assert torch.allclose(
                scaled,
                torch.from_numpy(data.train.images.astype(np.float32) - expected[0]) / (expected[1] - expected[0]),
            )
            assert scaled.min() >= 0 and scaled.max() <= 1


def test_standard_on_flat_features_is_scikit_learns_standard_scaler(tmp_path: Path) -> None:
    wine = load_wine()
    x = np.concatenate([wine.data, np.full((len(wine.data), 1), 7.0)], axis=1)  # and a constant feature
    data = _load(tmp_path, {"x_train": x, "y_train": wine.target}, val_size=0.2)
    scaling = input_scaling("standard", data.mean, data.std, data.pixel_max, data.pixel_min)
    scaled = scaling(torch.from_numpy(data.val.images)).numpy()
    expected = StandardScaler().fit(data.train.images.astype(np.float64)).transform(data.val.images)
    assert np.allclose(scaled, expected, atol=1e-4)
    assert np.all(scaled[:, -1] == 0.0)  # the constant feature is centred, not divided by zero


# ------------------------------------------------------------------ subsets keep every class


def test_carve_is_stratified_seeded_and_keeps_every_class() -> None:
    labels = np.repeat(np.arange(6), [400, 200, 50, 9, 2, 1])  # class-sorted and imbalanced; one singleton
    index = np.arange(len(labels))
    rest, carved = carve(index, labels, 132, seed=3)
    assert np.array_equal(np.sort(np.concatenate([rest.images, carved.images])), index)
    # Shares of 132/662: 79.8, 39.9, 9.97, 1.79, 0.40, 0.20; the class of two keeps one on each side, the
    # singleton stays to train, and the largest remainders take the rest.
    assert np.array_equal(np.bincount(carved.labels, minlength=6), [79, 40, 10, 2, 1, 0])
    assert set(rest.labels) == set(range(6))  # the singleton trains
    again, other = carve(index, labels, 132, seed=3)[1], carve(index, labels, 132, seed=4)[1]
    assert np.array_equal(again.images, carved.images) and not np.array_equal(other.images, carved.images)
    assert carved.images[0] != 0 or carved.images[1] != 1  # a random sample within each class, not its head


def test_limit_keeps_every_class_in_proportion() -> None:
    labels = np.repeat(np.arange(10), 100)  # sorted: the first 200 are two classes
    kept = limit(Split(np.arange(1000), labels), 200, seed=0)
    assert np.array_equal(np.bincount(kept.labels), [20] * 10)
    with pytest.raises(DataError, match="data.train_limit: 5 samples cannot hold one of each of the 10 classes"):
        limit(Split(np.arange(1000), labels), 5, seed=0)


# ------------------------------------------------------------------ evaluate --predict feeds images as training did


def _loaded(data: Any, scale: str) -> LoadedModel:
    record = data.scaling_record()
    image_range = tuple(record["image_range"]) if record["image_range"] else None
    return LoadedModel(
        model=torch.nn.Identity(),
        scaling=input_scaling(scale, data.mean, data.std, data.pixel_max, data.pixel_min),
        input_shape=data.input_shape,
        classes=data.classes,
        image_range=image_range,  # type: ignore[arg-type]
        mean=float(np.mean(data.mean)),
        source="test",
        manifest=None,
        experiment=None,
    )


@pytest.mark.parametrize(
    ("encode", "section"),
    [
        (lambda p: p, {}),
        (lambda p: p.astype(np.float32) / 255, {}),
        (lambda p: p.astype(np.float32), {"value_range": [0, 255]}),
        (lambda p: p.astype(np.float32) / 255 * 4 - 2, {"value_range": [-2, 2]}),
    ],
    ids=["uint8", "float-0-1", "float-0-255-declared", "float-declared-minus-2-to-2"],
)
@pytest.mark.parametrize("scale", ["unit", "standard"])
def test_predict_feeds_an_image_file_as_training_fed_its_pixels(
    tmp_path: Path, encode: Any, section: dict[str, Any], scale: str
) -> None:
    pixels, labels = _digits()
    data = _load(tmp_path, {"x_train": encode(pixels), "y_train": labels}, val_size=0.2, **section)
    loaded = _loaded(data, scale)
    Image.fromarray(pixels[0]).save(tmp_path / "digit.png")
    from_file, _ = read_image(tmp_path / "digit.png", loaded, invert=False)
    from_training = torch.from_numpy(encode(pixels[:1])[:, None])
    assert torch.allclose(loaded.scaling(from_file[None]), loaded.scaling(from_training), atol=1e-5)


def test_predict_refuses_floats_of_unknown_range(tmp_path: Path) -> None:
    pixels, labels = _digits()
    data = _load(tmp_path, {"x_train": pixels.astype(np.float32), "y_train": labels}, val_size=0.2)
    Image.fromarray(pixels[0]).save(tmp_path / "digit.png")
    with pytest.raises(ConfigError, match=r"--predict: .*no declared data.value_range"):
        read_image(tmp_path / "digit.png", _loaded(data, "standard"), invert=False)
