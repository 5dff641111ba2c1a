"""Selection under budgets: which trials meet `selection.constraints`, and, when none does, the closest.

    selection: {metric: test_accuracy, constraints: {max_params: 100000, max_latency_ms: 2}}

A budget is a property of a trial's model (`TrialRecord.costs`, as its latest report measured them), so a
trial meets it with every kept checkpoint or with none, and the checkpoint retention (per trial, by score)
never deletes the one the constrained selection wants. A cost a trial never reported (a trial from an
earlier version) cannot be shown to meet its budget, so that trial does not. No Ray here.
"""

from __future__ import annotations

import math
from typing import Any

from orchestrator.config.schema import ConstraintsConfig
from orchestrator.records import TrialRecord
from trainables import metrics as m
from trainables.metrics import finite

NAMES = {m.PARAMS: "params", m.CHECKPOINT_MB: "checkpoint MB", m.LATENCY_MS: "latency ms",
         m.THROUGHPUT: "throughput", m.TRAIN_SECONDS: "train seconds"}  # fmt: skip
FIELDS = {m.PARAMS: "max_params", m.CHECKPOINT_MB: "max_checkpoint_mb", m.LATENCY_MS: "max_latency_ms",
          m.THROUGHPUT: "min_throughput", m.TRAIN_SECONDS: "max_train_seconds"}  # fmt: skip


def misses(costs: dict[str, Any], constraints: ConstraintsConfig) -> dict[str, float]:
    """Each budget the costs break -> by how much, as a share of the limit (inf when the cost is unknown)."""
    out = {}
    for key, (mode, limit) in constraints.limits().items():
        value = costs.get(key)
        if not finite(value):
            out[key] = math.inf
            continue
        number = float(value)  # type: ignore[arg-type]  # finite: a number
        if mode == "min" and number > limit:
            out[key] = (number - limit) / limit
        elif mode == "max" and number < limit:
            out[key] = (limit - number) / limit
    return out


def meets(record: TrialRecord, constraints: ConstraintsConfig) -> bool:
    return not misses(record.costs, constraints)


def closest_miss(records: list[TrialRecord], constraints: ConstraintsConfig) -> str:
    """The one line for a sweep where no trial with a usable checkpoint meets every budget."""
    candidates = [r for r in records if r.checkpoints and not r.diverged and not r.error] or records
    if not candidates:
        return "no trial meets selection.constraints (no trial ran)"
    best = min(candidates, key=lambda r: (sum(misses(r.costs, constraints).values()), r.name))
    parts = []
    for key, share in misses(best.costs, constraints).items():
        mode, limit = constraints.limits()[key]
        value = best.costs.get(key)
        shown = _number(key, float(value)) if finite(value) else "not measured"  # type: ignore[arg-type]
        by = "" if math.isinf(share) else f" by {share:.1%}"
        parts.append(f"{NAMES[key]} {shown} {'>' if mode == 'min' else '<'} {FIELDS[key]} {_number(key, limit)}{by}")
    return f"no trial meets selection.constraints; the closest is {best.name}: " + "; ".join(parts)


def _number(key: str, value: float) -> str:
    return f"{int(value):,}" if key == m.PARAMS else f"{value:.4g}"
