"""The Pareto front of the ended trials: those no other trial beats on every objective at once.

    flags = front(rows, objectives(config))     # one bool per results row: results.parquet's `pareto`

A trial is on the front when no other trial is at least as good on every objective and better on one.
The objectives are `search.objectives` when the search had several, else validation accuracy against the
parameter count: "the most accurate model for its size". Latency is not in the default because it is a
timing: a flag derived from it could change on a rerun, and the tables are reproducible. A trial's
accuracy is its best validation accuracy (the checkpoint the selection can take); its costs are those it
reported. Diverged, failed and unfinished trials, or a trial missing an objective, are never on the front.
No Ray here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainables import metrics as m
from trainables.metrics import finite

DEFAULT = (m.VAL_ACCURACY, m.PARAMS)  # no timing: the flag is as reproducible as the tables
COLUMNS = {m.VAL_ACCURACY: "best_val_accuracy"}  # objective -> results column, where the names differ
QUALIFIES = ("completed", "stopped")


def objectives(config: dict[str, Any]) -> tuple[str, ...]:
    """The front's objectives for an experiment's (resolved) config."""
    chosen = (config.get("search") or {}).get("objectives") or ()
    return tuple(chosen) or DEFAULT


def column(objective: str) -> str:
    return COLUMNS.get(objective, objective)


def _point(row: dict[str, Any], chosen: Sequence[str]) -> tuple[float, ...] | None:
    """The row's objectives, each as a number where higher is better; None when one is missing."""
    raw = [row.get(column(o)) for o in chosen]
    if row.get("status") not in QUALIFIES or not all(finite(v) for v in raw):
        return None
    values = [float(v) for v in raw]  # type: ignore[arg-type]  # finite: numbers
    return tuple(v if m.OBJECTIVE_MODES[o] == "max" else -v for o, v in zip(chosen, values, strict=True))


def front(rows: list[dict[str, Any]], chosen: Sequence[str]) -> list[bool]:
    points = [_point(row, chosen) for row in rows]
    flags = []
    for point in points:
        if point is None:
            flags.append(False)
            continue
        dominated = any(
            other is not None and other != point and all(b >= a for a, b in zip(point, other, strict=True))
            for other in points
        )
        flags.append(not dominated)
    return flags
