"""Augmentation on real Fashion-MNIST batches: shapes kept, each op does what it says, every augmented
image is still its own sample (labels stay right), and only training batches are augmented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainables.augment import (
    ERASE_AREA,
    Augment,
    AugmentSpec,
    build_augment,
    random_crop,
    random_erasing,
    random_flip,
)
from trainables.data import input_scaling, to_device
from trainables.data_sources import DataConfig, load_dataset
from trainables.loop import StepHooks, train_one_epoch
from trainables.models import build_model


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    data = load_dataset(DataConfig(val_size=1000, train_limit=256), seed=0)
    return to_device(data.train, torch.device("cpu")).images  # (256, 1, 28, 28) uint8


def test_every_op_keeps_shape_and_pixel_range(batch: torch.Tensor) -> None:
    torch.manual_seed(0)
    spec = AugmentSpec(crop_padding=3, flip=True, rotate=15, translate=0.1, scale=0.1, erase_prob=0.5)
    out = Augment(spec)(batch)
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    assert not torch.equal(out, batch.float())


def test_crop_is_an_integer_shift_within_the_padding(batch: torch.Tensor) -> None:
    torch.manual_seed(0)
    x = batch[:32].float()
    out = random_crop(x, 2)
    padded = F.pad(x, (2,) * 4)
    for i in range(32):
        shifts = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 28, dx : dx + 28])
        ]
        assert shifts, f"sample {i} is not a crop of its own padded image"
    assert len({tuple(out[i].flatten()[:50].tolist()) for i in range(32)}) > 1


def test_flip_mirrors_about_half_the_samples(batch: torch.Tensor) -> None:
    torch.manual_seed(0)
    x = batch.float()
    out = random_flip(x)
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) and not torch.equal(o, s) for o, s in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x, strict=True)])
    assert bool((flipped | kept).all())
    assert 0.3 < float(flipped.float().mean()) < 0.7


def test_erasing_zeroes_one_rectangle_of_the_configured_area(batch: torch.Tensor) -> None:
    torch.manual_seed(0)
    x = torch.full((64, 1, 28, 28), 100.0)
    out = random_erasing(x, prob=1.0)
    erased = (out == 0).squeeze(1)
    for mask in erased:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(mask.sum()) == int(box)  # one solid rectangle
        assert int(mask.sum()) <= ERASE_AREA[1] * 784 * 1.5
    assert torch.equal(random_erasing(x, prob=0.0), x)


def test_zero_affine_is_identity_and_off_means_no_augment(batch: torch.Tensor) -> None:
    assert build_augment(AugmentSpec()) is None
    out = Augment(AugmentSpec(rotate=1e-9))(batch[:8])
    assert torch.allclose(out, batch[:8].float(), atol=1e-3)


def test_augmented_images_keep_their_labels() -> None:
    """Train on augmented batches, then classify augmented validation images: if augmentation ever
    separated an image from its label, neither would beat chance (10%)."""
    data = load_dataset(DataConfig(val_size=1000, train_limit=5000), seed=0)
    train, val = to_device(data.train, torch.device("cpu")), to_device(data.val, torch.device("cpu"))
    augment = Augment(AugmentSpec(crop_padding=2, flip=True, rotate=10, erase_prob=0.25))
    scaling = input_scaling("unit", data.mean, data.std)
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [64]})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        train_one_epoch(
            model, optimizer, train, 64, scaling, torch.Generator().manual_seed(0), StepHooks(augment=augment)
        )
    with torch.no_grad():
        model.eval()
        augmented = model(scaling(augment(val.images))).argmax(1)
        clean = model(scaling(val.images)).argmax(1)
    assert float((augmented == val.labels).float().mean()) > 0.6
    assert float((clean == val.labels).float().mean()) > 0.6


def test_training_batches_are_augmented_evaluation_is_not(batch: torch.Tensor) -> None:
    data = load_dataset(DataConfig(val_size=1000, train_limit=256), seed=0)
    split = to_device(data.train, torch.device("cpu"))
    seen: list[torch.Tensor] = []

    def recording(images: torch.Tensor) -> torch.Tensor:
        seen.append(images)
        return images.float()

    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [8]})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaling = input_scaling("unit", data.mean, data.std)
    train_one_epoch(
        model, optimizer, split, 64, scaling, torch.Generator().manual_seed(0), StepHooks(augment=recording)
    )
    assert len(seen) == 4 and sum(len(s) for s in seen) == 256
