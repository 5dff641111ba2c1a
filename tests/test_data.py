"""The real Fashion-MNIST: IDX parsing, the seeded split, and resident batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data import (
    DatasetNotFoundError,
    batch_indices,
    find_idx_dir,
    input_scaling,
    load_fashion_mnist,
    read_idx,
    split_train_val,
)


def test_real_dataset_shapes(dataset) -> None:  # noqa: ANN001
    assert dataset.train.images.shape == (50_000, 28, 28) and dataset.train.images.dtype == np.uint8
    assert len(dataset.val) == 10_000 and len(dataset.test) == 10_000
    assert set(np.unique(dataset.test.labels)) == set(range(10))
    assert 0.2 < dataset.mean < 0.4 and 0.3 < dataset.std < 0.4


def test_split_is_seeded_disjoint_and_identical_for_every_trial(dataset) -> None:  # noqa: ANN001
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1)
    labels = np.arange(100)
    a_train, a_val = split_train_val(images, labels, 20, seed=7)
    b_train, b_val = split_train_val(images, labels, 20, seed=7)
    _, c_val = split_train_val(images, labels, 20, seed=8)
    assert np.array_equal(a_val.labels, b_val.labels) and not np.array_equal(a_val.labels, c_val.labels)
    assert set(a_val.labels).isdisjoint(a_train.labels) and len(a_train) == 80


def test_each_sample_once_per_epoch_in_a_seeded_order() -> None:
    def order(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat(list(batch_indices(1000, 64, gen, torch.device("cpu"))))

    first = order(0)
    assert torch.equal(first.sort().values, torch.arange(1000))
    assert torch.equal(first, order(0)) and not torch.equal(first, order(1))


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    src = find_idx_dir(tmp_path) / "t10k-labels-idx1-ubyte.gz"
    import gzip

    raw = gzip.decompress(src.read_bytes())
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def test_missing_dataset_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainables.data as data

    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist.*data.download: true"):
        load_fashion_mnist(tmp_path, download=False, val_size=10, seed=0)


def test_input_scalings() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert input_scaling("raw", 0.3, 0.35)(x).tolist() == [0.0, 255.0]
    assert input_scaling("unit", 0.3, 0.35)(x).tolist() == [0.0, 1.0]
    assert input_scaling("tiny", 0.3, 0.35)(x)[1].item() == pytest.approx(1e-4)
    assert input_scaling("standard", 0.3, 0.35)(x)[0].item() == pytest.approx(-0.3 / 0.35, rel=1e-5)
