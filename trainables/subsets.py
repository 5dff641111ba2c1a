"""Seeded, stratified subsets: the carved validation and test splits and `data.train_limit`.

Every class keeps its share: a subset of `size` samples takes from each class in proportion to the
class's count (largest remainders), and at least one sample of every class that can spare one, so
class-sorted arrays, rare classes and small subsets all keep every class on both sides. Within a class
the samples are a seeded random choice; the chosen indices are returned in source order. The same
seed always gives the same subsets, so every trial of an experiment sees the same splits. No torch here.
"""

from __future__ import annotations

import numpy as np

from trainables.data import DataError, Split


def carve(images: np.ndarray, labels: np.ndarray, size: int, seed: int, field: str = "size") -> tuple[Split, Split]:
    """(rest, carved): `size` samples carved per class; every class with two or more samples keeps at
    least one on each side, and a class of one stays in the rest (which trains) unless `size` needs it."""
    counts = np.bincount(labels)
    present = counts[counts > 0]
    single = present == 1
    low = (~single).astype(np.int64)
    high = np.where(single, 1, present - 1)
    if size < low.sum() or size > high.sum():
        raise DataError(
            f"{field}: {size} of {len(labels)} samples cannot keep each of the {int(low.sum())} classes with two "
            f"or more samples on both sides; give between {int(low.sum())} and {int(high.sum())}"
        )
    rng = np.random.default_rng(seed)
    picked = _pick(labels, _quota(present, size, low, high, rng, last=single), rng)
    rest = np.setdiff1d(np.arange(len(labels)), picked, assume_unique=True)
    return Split(images[rest], labels[rest]), Split(images[picked], labels[picked])


def limit(split: Split, size: int, seed: int, field: str = "data.train_limit") -> Split:
    """`size` samples of the split, every class kept in proportion (at least one of each)."""
    if size >= len(split):
        return split
    counts = np.bincount(split.labels)
    present = counts[counts > 0]
    if size < len(present):
        raise DataError(
            f"{field}: {size} samples cannot hold one of each of the {len(present)} classes of the training "
            f"split; use at least {len(present)}"
        )
    rng = np.random.default_rng(seed)
    picked = _pick(split.labels, _quota(present, size, np.ones_like(present), present, rng), rng)
    return Split(split.images[picked], split.labels[picked])


def _quota(
    counts: np.ndarray,
    size: int,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    last: np.ndarray | None = None,
) -> np.ndarray:
    """Per class, how many to take: proportional to its count, within low..high, the remainder going to the
    classes furthest below their exact share (ties drawn at random; the `last` classes only when needed)."""
    exact = size * counts / counts.sum()
    quota = np.clip(np.floor(exact).astype(np.int64), low, high)
    ties = rng.random(len(counts))
    last = np.zeros(len(counts), bool) if last is None else last
    while (missing := size - int(quota.sum())) != 0:
        sign = 1 if missing > 0 else -1
        room = quota < high if sign > 0 else quota > low
        need = (exact - quota) * sign
        # lexsort's last key sorts first: classes with room, then not `last` (when adding), then by need.
        order = np.lexsort((ties, -need, last if sign > 0 else ~last, ~room))[: min(abs(missing), int(room.sum()))]
        quota[order] += sign
    return quota


def _pick(labels: np.ndarray, quota: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices: quota[k] random samples of the k-th present class."""
    classes, inverse = np.unique(labels, return_inverse=True)
    keys = rng.random(len(labels))
    order = np.lexsort((keys, inverse))  # grouped by class, random within each class
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(classes)))[:-1]])
    rank = np.arange(len(labels)) - starts[inverse[order]]
    return np.sort(order[rank < quota[inverse[order]]])
