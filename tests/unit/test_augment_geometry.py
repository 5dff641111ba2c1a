"""Augmentations are right for any H x W and never write into their input.

The affine op is held against torchvision's functional affine (bilinear, zero padding) on non-square
images: the same per-sample angle, zoom and shift, the same pixels."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from trainables.augment import Augment, AugmentSpec, random_affine, random_crop, random_erasing, random_flip

SHAPES = [(12, 20), (20, 12), (7, 31)]


def _reference(image: torch.Tensor, degrees: float, zoom: float, shift: tuple[float, float]) -> torch.Tensor:
    """torchvision's affine of one (C, H, W) image; shift in fractions of the width and height."""
    h, w = image.shape[-2:]
    return TF.affine(
        image,
        angle=degrees,
        translate=[round(shift[0] * w), round(shift[1] * h)],
        scale=zoom,
        shear=[0.0],
        interpolation=InterpolationMode.BILINEAR,
        fill=None,  # zero padding, as grid_sample's (a given fill blends the border in again)
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_random_affine_matches_torchvision_on_non_square_images(shape: tuple[int, int]) -> None:
    h, w = shape
    torch.manual_seed(0)
    images = torch.rand(6, 3, h, w) * 255
    degrees, translate, scale = 40.0, 0.2, 0.3
    torch.manual_seed(1)
    out = random_affine(images, degrees, translate, scale)
    torch.manual_seed(1)  # the same draws, in random_affine's order: angle, zoom, shift
    angles = -degrees + 2 * degrees * torch.rand(6)
    zooms = 1 - scale + 2 * scale * torch.rand(6)
    shifts = (-translate + 2 * translate * torch.rand(12)).view(6, 2)
    for i in range(6):
        # torchvision rounds its translation to whole pixels: compare with a shift that is whole pixels
        whole = (round(float(shifts[i, 0]) * w) / w, round(float(shifts[i, 1]) * h) / h)
        expected = _reference(images[i], float(angles[i]), float(zooms[i]), whole)
        torch.manual_seed(1)
        one = random_affine_fixed(images[i : i + 1], float(angles[i]), float(zooms[i]), whole)
        assert torch.allclose(one[0], expected, atol=1e-2), (shape, i, (one[0] - expected).abs().max())
    # and the batched draws are the ones above (no other randomness in the op)
    exact = torch.stack(
        [
            random_affine_fixed(images[i : i + 1], float(angles[i]), float(zooms[i]), tuple(shifts[i].tolist()))[0]
            for i in range(6)
        ]
    )
    assert torch.allclose(out, exact, atol=1e-3)


def random_affine_fixed(x: torch.Tensor, degrees: float, zoom: float, shift: tuple[float, float]) -> torch.Tensor:
    from trainables.augment import affine

    return affine(x, torch.tensor([math.radians(degrees)]), torch.tensor([zoom]), torch.tensor([shift]))


def test_a_right_angle_turns_a_wide_image_without_distortion() -> None:
    """A bar 2 pixels tall and 6 wide through the centre of a 10 x 16 image, turned 90 degrees: 6 tall
    and 2 wide (in normalised coordinates it came out 6 * 10/16 tall, squashed)."""
    image = torch.zeros(1, 1, 10, 16)
    image[..., 4:6, 5:11] = 255
    turned = random_affine_fixed(image, 90.0, 1.0, (0.0, 0.0))[0, 0]
    rows, cols = torch.nonzero(turned > 127, as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (6, 2)
    assert turned.sum() == pytest.approx(image.sum(), rel=1e-4)  # no pixel lost or stretched


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_no_augmentation_writes_into_its_input_or_returns_it(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    images = (torch.rand(16, 3, 9, 13) * 255).to(dtype)
    before = images.clone()
    ops = {
        "crop": lambda x: random_crop(x, 2),
        "flip": random_flip,
        "affine": lambda x: random_affine(x, 30, 0.1, 0.1),
        "erase": lambda x: random_erasing(x, 1.0),
        "all": Augment(AugmentSpec(crop_padding=2, flip=True, rotate=30, translate=0.1, scale=0.1, erase_prob=1.0)),
    }
    for name, op in ops.items():
        source = images.float()  # for float32 data, this *is* the stored tensor
        out = op(source)
        assert torch.equal(images, before), name
        assert out.untyped_storage().data_ptr() != images.untyped_storage().data_ptr(), name
