"""The epochs at which early stopping compares trials, for each bracket: one formula for every user.

    rungs(grace_period=1, reduction_factor=2, max_t=5)            -> [1, 2, 4]
    rungs(grace_period=1, reduction_factor=2, max_t=5, bracket=1)  -> [2, 4]

Ray's ASHA milestones, computed the way Ray computes them, so the plan, both schedulers and the review
agree. A milestone at max_t decides nothing: a trial that reaches max_t ends there anyway.
"""

from __future__ import annotations

import math


def rungs(grace_period: int, reduction_factor: float, max_t: int, bracket: int = 0) -> list[int]:
    """Rung epochs of one bracket, smallest first."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1) - bracket
    return [int(grace_period * reduction_factor ** (k + bracket)) for k in range(max(count, 0))]
