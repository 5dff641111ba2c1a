"""The report's knob figures: parallel coordinates of the searched knobs, each knob against the selection
metric, and the knobs' importance.

    python -m orchestrator report runs/smoke      # writes parallel.png, knobs.png, importance.png

Shares the colours, markers and saving of `orchestrator.review.plots`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config.space import LIST_KINDS
from orchestrator.outputs.tables import score_key
from orchestrator.review.importance import Importance, Knob, label
from orchestrator.review.plots import (
    legend_below,
    pyplot,
    save_figure,
    short_name,
    status_color,
    status_handles,
    status_markers,
)
from trainables.metrics import finite

MISSING = -0.12  # where a trial that does not use a knob meets that knob's axis (below the axis' range)


def _axis(knob: Knob) -> tuple[list[float | None], list[tuple[float, str]]]:
    """Each trial's height on the knob's axis (0..1; None when unused) and the axis' ticks."""
    if knob.numeric:
        low, high = knob.bounds
        scale = (lambda v: math.log10(v)) if knob.log else float
        lo, hi = scale(low), scale(high)
        span = hi - lo or 1.0

        def place(v: float) -> float:
            return (scale(v) - lo) / span if hi > lo else 0.5

        distinct = sorted({float(v) for v in knob.used})
        if knob.kind in LIST_KINDS and len(distinct) <= 8:
            ticks = distinct  # a listed grid: its values are the only ones worth naming
        elif knob.log:
            decades = range(math.floor(lo), math.ceil(hi) + 1)
            ticks = [10.0**d for d in decades if lo - 1e-9 <= d <= hi + 1e-9]
            ticks = sorted({*ticks, low, high}) if len(ticks) < 3 else ticks
        else:
            ticks = list(np.linspace(low, high, 5)) if hi > lo else [low]
        # Accuracies read to 3 places; a knob's values to 3 significant digits (1e-05, 0.003, 128).
        form = "{:.3f}" if knob.kind == "metric" else "{:.3g}"
        return (
            [place(float(v)) if v is not None else None for v in knob.values],
            [(place(t), form.format(t)) for t in ticks],
        )
    categories = knob.categories
    count = len(categories)
    position = {text: (i / (count - 1) if count > 1 else 0.5) for i, text in enumerate(categories)}
    return (
        [position[label(v)] if v is not None else None for v in knob.values],
        [(y, short_name(text, 18)) for text, y in position.items()],
    )


def plot_parallel(
    knobs: list[Knob],
    rows: list[dict[str, Any]],
    metric: str,
    best_trial: str | None,
    path: Path,
    best_label: str = "best",
) -> None:
    """One axis per searched knob and a last one for the selection metric; one line per trial."""
    plt = pyplot()
    key = score_key(metric)
    scores = [r.get(key) if finite(r.get(key)) else None for r in rows]
    metric_knob = Knob(f"best {metric}", "metric", [], scores)
    axes = [*knobs, metric_knob]
    placed: list[tuple[list[Any], list[Any]]] = [_axis(k) if k.used else ([None] * len(rows), []) for k in axes]
    fig, ax = plt.subplots(figsize=(max(7.0, 2.6 * len(axes)), 5.2))
    for i, (knob, (_, ticks)) in enumerate(zip(axes, placed, strict=True)):
        ax.plot([i, i], [0, 1], color="black", lw=1.2, zorder=1)
        for y, text in ticks:
            ax.plot([i - 0.02, i], [y, y], color="black", lw=1, zorder=1)
            ax.text(
                i - 0.045,
                y,
                text,
                ha="right",
                va="center",
                fontsize=8.5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9, "pad": 0.6},
                zorder=5,
            )
        if any(v is None for v in knob.values) and knob is not metric_knob:
            ax.text(i - 0.04, MISSING, "not used", ha="right", va="center", fontsize=8, color="dimgray", zorder=5)
        title = knob.name + (" (log)" if knob.log else "")
        ax.text(i, 1.07, title, ha="center", va="bottom", fontsize=10, fontweight="bold")
    for t, row in enumerate(rows):
        heights = [h[t] for h, _ in placed]
        ys = [MISSING if y is None else y for y in heights]
        best = row["trial_name"] == best_trial
        # Categories put many trials on one point: a small spread per trial keeps their lines apart.
        spread = [0.0 if k.numeric or k is metric_knob else 0.012 * ((t % 5) - 2) for k in axes]
        ax.plot(
            range(len(axes)),
            [y + s for y, s in zip(ys, spread, strict=True)],
            color=status_color(row["status"]),
            lw=4.5 if best else 1.6,
            alpha=0.95 if best else 0.7,
            zorder=4 if best else 2,
            marker="o",
            ms=6 if best else 3.5,
        )
    handles = status_handles([r["status"] for r in rows])
    if best_trial:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="dimgray", lw=4.5, label=f"{best_label}: {short_name(best_trial, 40)}"))
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.06),
        ncol=max(1, min(len(handles), 5)),
        fontsize=9,
        frameon=False,
    )
    ax.set_xlim(-0.75, len(axes) - 0.6)
    ax.set_ylim(MISSING - 0.06, 1.13)
    ax.axis("off")
    ax.set_title(f"searched knobs and the best {metric} of each trial ({len(rows)} trials)", fontsize=11, pad=14)
    save_figure(fig, path)


def plot_knobs(knobs: list[Knob], rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """The selection metric against each searched knob, one panel per knob."""
    plt = pyplot()
    key = score_key(metric)
    panels = knobs or [Knob("(none searched)", "observed", [], [None] * len(rows))]
    columns = min(3, len(panels))  # rows of at most 3 panels stay readable at the report's width
    grid = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(grid, columns, figsize=(4.6 * columns, 4 * grid), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, knob in zip(axes.flat, panels, strict=False):
        points = [
            (v, r[key], r["status"])
            for v, r in zip(knob.values, rows, strict=True)
            if v is not None and finite(r.get(key))
        ]
        if knob.numeric:
            xs = [float(v) for v, _, _ in points]
            if knob.log:
                ax.set_xscale("log")
        else:
            categories = knob.categories
            position = {text: i for i, text in enumerate(categories)}
            # A small fixed spread keeps trials with the same category from hiding one another.
            xs = [position[label(v)] + 0.06 * ((i % 5) - 2) for i, (v, _, _) in enumerate(points)]
            ax.set_xticks(
                range(len(categories)),
                [short_name(c, 18) for c in categories],
                rotation=20 if len(categories) > 3 else 0,
            )
            ax.set_xlim(-0.5, len(categories) - 0.5)
        for status in dict.fromkeys(s for _, _, s in points):
            chosen = [(x, score) for x, (_, score, s) in zip(xs, points, strict=True) if s == status]
            ax.scatter(
                *zip(*chosen, strict=True),
                s=60,
                alpha=0.85,
                color=status_color(status),
                label=status,
                edgecolors="black",
                linewidths=0.5,
            )
        ax.set(xlabel=knob.name + (" (log)" if knob.log else ""), ylabel=f"best {metric}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"best {metric} of each trial against each searched knob", fontsize=11)
    fig.tight_layout()
    # One legend for all panels, below them: inside a panel it would hide points.
    statuses = [r["status"] for r in rows if finite(r.get(key))]
    if statuses:
        legend_below(fig, ncol=8, handles=status_markers(statuses))
    save_figure(fig, path)


def plot_importance(importance: Importance, path: Path) -> None:
    plt = pyplot()
    names = list(importance.scores)[::-1]  # barh draws bottom-up: the most important on top
    values = [importance.scores[n] for n in names]
    fig, ax = plt.subplots(figsize=(7.5, max(2.8, 1.2 + 0.45 * len(names))))
    bars = ax.barh(names, values, color="tab:blue", edgecolor="black")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=9)
    ax.set_xlim(0, max(1.0, max(values, default=0) * 1.15))
    ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
    ax.set_title(
        f"which knobs set the best {round(importance.quantile * 100):g}% apart ({importance.trials} trials)",
        fontsize=11,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------- the best model
