"""Image augmentation as batched tensor ops on the trial's device; training batches only.

    augment: {crop_padding: 2, flip: true, rotate: 10, translate: 0.05, scale: 0.1, erase_prob: 0.25}

Every op works on a whole (N, C, H, W) batch at once with per-sample random parameters drawn from
torch's global RNG (seeded per trial and saved in checkpoints), so there is no per-sample Python and
no host round trip. Input is the uint8 batch; output is float in pixel units (0..255), which the
trial's input scaling then maps like any other batch. Empty space is filled with 0 (black), as the
images' background is. The affine op (rotate, translate, scale) is built in pixel units, so it is right
for any H x W (the same pixels as torchvision's functional `affine`; tests/unit/test_augment_geometry.py).
No op writes into its input: each returns a new tensor (for float data, `images.float()` is the stored
array itself).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field

from trainables.lazy import lazy
from trainables.schema import Section

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")
    F = lazy("torch.nn.functional")

ERASE_AREA = (0.02, 0.25)  # erased fraction of the image (torchvision's RandomErasing range, trimmed)
ERASE_RATIO = (0.3, 3.3)  # erased rectangle's aspect ratio


class AugmentSpec(Section):
    crop_padding: int = Field(
        default=0,
        ge=0,
        le=8,
        description="random crop after zero-padding by this many pixels (an integer shift of up to ±padding); 0 = off",
    )
    flip: bool = Field(default=False, description="horizontal flip with probability 0.5")
    rotate: float = Field(default=0.0, ge=0, le=180, description="affine: rotation up to ±degrees")
    translate: float = Field(default=0.0, ge=0, lt=0.5, description="affine: shift up to ±fraction of the side")
    scale: float = Field(default=0.0, ge=0, lt=0.5, description="affine: zoom in [1 - scale, 1 + scale]")
    erase_prob: float = Field(default=0.0, ge=0, le=1, description="probability of erasing a random rectangle")

    @property
    def enabled(self) -> bool:
        return bool(self.crop_padding or self.flip or self.affine or self.erase_prob)

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.translate or self.scale)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each sample at a random offset from its zero-padded copy: exact integer shifts."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    rows = dy + torch.arange(h, device=x.device).view(1, h, 1)
    cols = dx + torch.arange(w, device=x.device).view(1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


def affine(x: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by `angle` (radians, counter-clockwise on screen) about its centre, zoom it by `zoom`,
    and shift it by `shift` (N, 2: x and y, in fractions of the width and of the height).

    The rotation and zoom are built in pixel units, so any H x W image keeps its shapes (a circle stays a
    circle); affine_grid's normalized coordinates stretch x by W/2 and y by H/2, hence the H/W and W/H terms.
    """
    n, _, h, w = x.shape
    # affine_grid maps output to input coordinates (in [-1, 1]): the inverse transform A, hence / zoom; the
    # shift moves the output (as torchvision's affine does), so the input offset is -A @ shift.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    inverse = torch.stack([torch.stack([cos, sin * (h / w)], 1), torch.stack([-sin * (w / h), cos], 1)], 1)
    offset = -(inverse @ (2 * shift).unsqueeze(2))
    theta = torch.cat([inverse, offset], 2)
    grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(x: torch.Tensor, degrees: float, translate: float, scale: float) -> torch.Tensor:
    n, device = x.shape[0], x.device
    angle = _uniform(n, -degrees, degrees, device) * (math.pi / 180)
    zoom = _uniform(n, 1 - scale, 1 + scale, device)
    shift = _uniform(2 * n, -translate, translate, device).view(n, 2)
    return affine(x, angle, zoom, shift)


def random_erasing(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero one random rectangle in each selected sample (the rectangle's size and place vary per sample)."""
    n, _, h, w = x.shape
    device = x.device
    area = _uniform(n, *ERASE_AREA, device) * h * w
    ratio = torch.exp(_uniform(n, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), device))
    eh = torch.sqrt(area * ratio).round().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().clamp(1, w)
    top = (torch.rand(n, device=device) * (h - eh + 1)).floor()
    left = (torch.rand(n, device=device) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + eh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + ew).view(n, 1, 1))
    )
    chosen = (torch.rand(n, device=device) < prob).view(n, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)


class Augment:
    """augment(uint8 batch) -> float batch in pixel units, with the configured random ops."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        s = self.spec
        x = images.float()
        if s.crop_padding:
            x = random_crop(x, s.crop_padding)
        if s.flip:
            x = random_flip(x)
        if s.affine:
            x = random_affine(x, s.rotate, s.translate, s.scale)
        if s.erase_prob:
            x = random_erasing(x, s.erase_prob)
        return x


def build_augment(spec: AugmentSpec) -> Augment | None:
    return Augment(spec) if spec.enabled else None
