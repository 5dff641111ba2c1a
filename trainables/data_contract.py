"""The data contract: what every source's arrays are checked against and converted to, never guessed.

Layout (`data.layout`): images go to the model channels first, (N, C, H, W). `auto` converts only what
is unambiguous: channels last when the last axis is 1, 3 or 4 and axis 1 is not; channels first the other
way round. A shape that could be either, (N, 3, 8, 3) or (N, 16, 16, 16), is refused with the fix:
declare `data.layout: channels_first` or `channels_last`.

Value range (`data.value_range: [low, high]`): what the stored values span, the values of a black and a
white pixel. uint8 is 0..255 and floats within 0..1 are 0..1 unless declared; floats outside 0..1 with no
declared range have no known pixel scale, so the scalings that assume one (`unit`, `tiny`) refuse them (see
orchestrator/config/data_fit.py) and `evaluate --predict` will not convert image files for them. A declared
range is checked against every split.

Classes: checked on what actually trains (after `data.train_limit`): at least two, and every class the
validation or test split holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainables.data import DataError, Split

CHANNEL_COUNTS = (1, 3, 4)  # grey, RGB, RGBA: what an unambiguous channel axis holds
UNIT_TOLERANCE = 1e-6  # floats computed as x / 255 may land a rounding step outside 0..1


def channels_first(x: np.ndarray, layout: str, source: str, name: str) -> np.ndarray:
    """(N, C, H, W) from a 4-D array in the declared (or unambiguous) layout; other ranks unchanged."""
    if x.ndim != 4 or layout == "channels_first":
        return x
    if layout == "auto":
        first, last = x.shape[1] in CHANNEL_COUNTS, x.shape[3] in CHANNEL_COUNTS
        if first and not last:
            return x
        if first or not last:
            raise DataError(
                f"{source}: {name} of shape {list(x.shape)} could be channels first (N, C, H, W) or channels "
                "last (N, H, W, C); declare data.layout: channels_first or channels_last"
            )
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # one copy, on the driver, before any trial


def value_range(
    splits: Sequence[tuple[str, np.ndarray]], declared: tuple[float, float] | None
) -> tuple[tuple[float, float] | None, tuple[float, float]]:
    """(the value range, the observed smallest..largest value over every split). Raises DataError when a
    split holds values outside a declared range."""
    lows, highs = zip(*((float(x.min()), float(x.max())) for _, x in splits), strict=True)
    observed = (min(lows), max(highs))
    if declared is not None:
        low, high = declared
        slack = UNIT_TOLERANCE * (high - low)
        for (name, _), seen_low, seen_high in zip(splits, lows, highs, strict=True):
            if seen_low < low - slack or seen_high > high + slack:
                raise DataError(
                    f"data.value_range: {name} holds values {seen_low:g}..{seen_high:g}, outside the declared "
                    f"[{low:g}, {high:g}]; declare the range the data spans (a black pixel's value, a white one's)"
                )
        return (float(low), float(high)), observed
    if splits[0][1].dtype == np.uint8:
        return (0.0, 255.0), observed
    if observed[0] >= -UNIT_TOLERANCE and observed[1] <= 1 + UNIT_TOLERANCE:
        return (0.0, 1.0), observed
    return None, observed


def check_classes(train: Split, val: Split, test: Split, classes: Sequence[str], source: str) -> None:
    """Classification needs two classes in what trains, and a class to score must be one that trains."""
    trained = np.unique(train.labels)
    if len(trained) < 2:
        raise DataError(
            f"{source}: the training split (after data.train_limit) has a single class ({classes[trained[0]]}); "
            "classification needs at least two"
        )
    for name, split in (("validation", val), ("test", test)):
        unseen = np.setdiff1d(np.unique(split.labels), trained)
        if len(unseen):
            raise DataError(
                f"{source}: the {name} split has class {classes[unseen[0]]!r}, which the training split (after "
                "data.train_limit) never has: the model could never predict it; give training samples of every class"
            )
