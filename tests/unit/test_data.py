"""The real Fashion-MNIST through the data sources: IDX parsing, the seeded splits, scaling, resident batches."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FASHION_DIR

from trainables.data import DataError, batch_indices, channel_stats, input_scaling
from trainables.data_readers import find_idx_dir, read_idx
from trainables.data_sources import DataConfig, load_dataset
from trainables.subsets import carve


def test_real_dataset_shapes(fashion) -> None:  # noqa: ANN001
    assert fashion.train.images.shape == (50_000, 1, 28, 28) and fashion.train.images.dtype == np.uint8
    assert len(fashion.val) == 10_000 and len(fashion.test) == 10_000
    assert set(np.unique(fashion.test.labels)) == set(range(10))
    assert fashion.input_shape == (1, 28, 28) and fashion.num_classes == 10 and fashion.classes[0] == "T-shirt/top"
    assert 0.2 < fashion.mean[0] < 0.4 and 0.3 < fashion.std[0] < 0.4


def test_split_is_seeded_disjoint_and_identical_for_every_trial() -> None:
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1)
    labels = np.arange(100)
    labels = np.arange(100) % 4
    a_train, a_val = carve(images, labels, 20, seed=7)
    b_train, b_val = carve(images, labels, 20, seed=7)
    _, c_val = carve(images, labels, 20, seed=8)
    assert np.array_equal(a_val.images, b_val.images) and not np.array_equal(a_val.images, c_val.images)
    assert set(a_val.images.ravel()).isdisjoint(a_train.images.ravel()) and len(a_train) == 80


def test_each_sample_once_per_epoch_in_a_seeded_order() -> None:
    def order(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat(list(batch_indices(1000, 64, gen, torch.device("cpu"))))

    first = order(0)
    assert torch.equal(first.sort().values, torch.arange(1000))
    assert torch.equal(first, order(0)) and not torch.equal(first, order(1))


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    src = find_idx_dir(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(src.read_bytes())
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")


def test_missing_dataset_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainables.data_readers as sources

    monkeypatch.setattr(sources, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*data.download: true"):
        load_dataset(DataConfig(root=str(tmp_path)), seed=0)


def test_input_scalings() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert input_scaling("raw", [0.3], [0.35])(x).tolist() == [0.0, 255.0]
    assert input_scaling("unit", [0.3], [0.35])(x).tolist() == [0.0, 1.0]
    assert input_scaling("tiny", [0.3], [0.35])(x)[1].item() == pytest.approx(1e-4)
    assert input_scaling("standard", [0.3], [0.35])(x)[0].item() == pytest.approx(-0.3 / 0.35, rel=1e-5)
    floats = torch.tensor([0.0, 1.0])
    assert input_scaling("unit", [0.3], [0.35], pixel_max=1.0)(floats).tolist() == [0.0, 1.0]


def test_standard_scaling_is_per_channel() -> None:
    images = np.stack([np.zeros((4, 2, 2)), np.full((4, 2, 2), 255.0)], axis=1).astype(np.uint8)
    images[0, 0] = 255  # channel 0 not constant
    mean, std = channel_stats(images)
    # A constant channel is centred and left unscaled (std 1, as scikit-learn's StandardScaler), never / 0.
    assert len(mean) == 2 and mean[1] == pytest.approx(1.0) and std[1] == 1.0
    constant = input_scaling("standard", mean, std)(torch.from_numpy(images))
    assert torch.isfinite(constant).all() and torch.equal(constant[:, 1], torch.zeros(4, 2, 2))
    with pytest.raises(DataError, match="std > 0"):
        input_scaling("standard", mean, (std[0], 0.0))  # a checkpoint recording std 0 is damaged
    scaled = input_scaling("standard", [0.5, 0.25], [0.5, 0.25])(torch.full((1, 2, 1, 1), 255, dtype=torch.uint8))
    assert scaled.flatten().tolist() == pytest.approx([1.0, 3.0])


def test_the_split_is_stratified_and_the_scaling_is_the_training_splits(fashion) -> None:  # noqa: ANN001
    """The built-in source: 60k training images, 6,000 per class; the validation split of seed 0 takes exactly
    1,000 of each class, at random within it; the stats are the training split's on the unit scale."""
    raw = read_idx(find_idx_dir(FASHION_DIR) / "train-labels-idx1-ubyte.gz").astype(np.int64)
    assert np.array_equal(np.bincount(fashion.val.labels), [1000] * 10)
    assert np.array_equal(np.bincount(fashion.train.labels), [5000] * 10)
    images = read_idx(find_idx_dir(FASHION_DIR) / "train-images-idx3-ubyte.gz")
    rows = {bytes(row) for row in fashion.val.images.reshape(10_000, -1)}
    chosen = np.array([bytes(row) in rows for row in images.reshape(60_000, -1)])
    assert np.array_equal(np.bincount(raw[chosen]), [1000] * 10)  # the val images are training images
    assert not chosen[:1000].all() and not chosen[-1000:].all()  # a random sample, not a block
    unit = fashion.train.images.astype(np.float32) / 255.0
    assert fashion.mean[0] == float(unit.mean()) and fashion.std[0] == float(unit.std())
