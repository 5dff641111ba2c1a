"""The report's section on accuracy against cost: the Pareto front drawn against each cost, and its members.

    pareto.png    best validation accuracy against each measured cost (parameters, checkpoint MB, latency,
                  throughput, training time), one panel each; the front's members (outputs.pareto) ringed,
                  and each panel's own two-way front (accuracy against that cost alone) as a step line

No Ray here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.outputs import pareto
from orchestrator.outputs.tables import cell, cost_cells
from orchestrator.review.plots import pyplot, save_figure, short_name, status_color
from orchestrator.review.summaries import markdown_table
from trainables import metrics as m
from trainables.metrics import finite

LABELS = {
    m.PARAMS: "parameters", m.CHECKPOINT_MB: "checkpoint MB", m.LATENCY_MS: "latency ms (batch 1)",
    m.THROUGHPUT: "throughput, samples/s", m.TRAIN_SECONDS: "training seconds",
}  # fmt: skip
ACCURACY = "best_val_accuracy"


def front_markdown(rows: list[dict[str, Any]], chosen: tuple[str, ...]) -> str:
    flags = pareto.front(rows, chosen)
    members = sorted((r for r, f in zip(rows, flags, strict=True) if f), key=lambda r: -float(r[ACCURACY]))
    if not members:
        return "No ended trial has every objective measured yet: no Pareto front."
    names = ", ".join(f"{o} ({m.OBJECTIVE_MODES[o]})" for o in chosen)
    body = [
        [short_name(str(r["trial_name"]), 40), cell(r.get(ACCURACY)), cell(r.get("best_test_accuracy")), *cost_cells(r)]
        for r in members
    ]
    header = ["trial", "best val acc", "best test acc", "params", "MB", "ms@1", "samples/s", "train_s"]
    return (
        f"The Pareto front over {names}: {len(members)} of {len(rows)} trials, those no other trial beats on "
        "every objective at once (`pareto` in results.parquet). Latency and throughput were timed in each trial "
        "on its own device, while other trials ran beside it.\n\n" + markdown_table(header, body)
    )


def _two_way(points: list[tuple[float, float]], mode: str) -> list[tuple[float, float]]:
    """(cost, accuracy) points no other beats on both, in cost order: the step line of one panel."""
    better = (lambda a, b: a <= b) if mode == "min" else (lambda a, b: a >= b)
    front = [p for p in points if not any(q != p and better(q[0], p[0]) and q[1] >= p[1] for q in points)]
    return sorted(set(front))


def plot_front(rows: list[dict[str, Any]], chosen: tuple[str, ...], path: Path) -> bool:
    """Draws pareto.png; False (and no file) when no trial has a cost and an accuracy to draw."""
    costs = [c for c in m.COSTS if any(finite(r.get(c)) and finite(r.get(ACCURACY)) for r in rows)]
    if not costs:
        return False
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    flags = pareto.front(rows, chosen)
    fig, axes = plt.subplots(1, len(costs), figsize=(4.2 * len(costs), 4.2), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        drawn = [(r, f) for r, f in zip(rows, flags, strict=True) if finite(r.get(cost)) and finite(r.get(ACCURACY))]
        for row, on_front in drawn:
            ax.scatter(
                float(row[cost]), float(row[ACCURACY]), s=90 if on_front else 40, color=status_color(row["status"]),
                edgecolors="crimson" if on_front else "black", linewidths=2.0 if on_front else 0.5, zorder=3,
            )  # fmt: skip
        points = [(float(r[cost]), float(r[ACCURACY])) for r, _ in drawn if r.get("status") in pareto.QUALIFIES]
        line = _two_way(points, m.COST_MODES[cost])
        if line:
            xs, ys = zip(*line, strict=True)
            ax.step(xs, ys, where="post" if m.COST_MODES[cost] == "min" else "pre", color="crimson", lw=1, alpha=0.7)
        values = [float(r[cost]) for r, _ in drawn]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_xscale("log")
        else:  # a few ticks: timings of similar models differ in the third digit, and labels would collide
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_xlabel(LABELS[cost] + (" (lower is better)" if m.COST_MODES[cost] == "min" else " (higher is better)"))
        ax.set_ylabel("best validation accuracy")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy against cost: the Pareto front's members ringed in red")
    save_figure(fig, path)
    return True
