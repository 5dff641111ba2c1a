"""The report's figures about how the sweep spent its budget: wall time per trial, and how many trials
early stopping let train to each epoch. Same conventions as `plots` (Agg backend, one PNG each). No Ray here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.outputs.tables import ordered
from orchestrator.review.plots import legend_below, pyplot, save_figure, short_name, status_color, status_handles
from orchestrator.review.summaries import reached, rung_epochs
from trainables import metrics as m
from trainables.metrics import finite


def wall_seconds(row: dict[str, Any], history: pd.DataFrame) -> tuple[float | None, bool]:
    """(seconds, measured by Ray): Ray's time_total_s of the last epoch, else the sum of the epochs' own times."""
    if finite(row.get("wall_seconds")):
        return float(row["wall_seconds"]), True
    if m.EPOCH_SECONDS not in history:
        return None, False
    epochs = history.loc[history["trial_name"] == row["trial_name"], m.EPOCH_SECONDS].dropna()
    return (float(epochs.sum()), False) if len(epochs) else (None, False)


def plot_wall_time(rows: list[dict[str, Any]], history: pd.DataFrame, metric: str, path: Path, limit: int = 40) -> None:
    plt = pyplot()
    ranked = ordered(rows, metric)[:limit]
    times = [wall_seconds(r, history) for r in ranked]
    fig, ax = plt.subplots(figsize=(9.5, 1.4 + 0.38 * max(len(ranked), 1)))
    ys = np.arange(len(ranked))
    seconds = [t or 0.0 for t, _ in times]
    bars = ax.barh(ys, seconds, color=[status_color(r["status"]) for r in ranked], edgecolor="black")
    for bar, (_, measured) in zip(bars, times, strict=True):
        if not measured:
            bar.set_hatch("//")
    ax.bar_label(
        bars,
        labels=[
            f"{t:.1f} s, {r['epochs_run']} ep" if t is not None else "no time yet"
            for (t, _), r in zip(times, ranked, strict=True)
        ],
        padding=3,
        fontsize=8.5,
    )
    ax.set_yticks(ys, [f"{i}. {short_name(str(r['trial_name']), 40)}" for i, r in enumerate(ranked, 1)], fontsize=9)
    if ranked:
        ax.set_ylim(len(ranked) - 0.5, -0.5)
    else:
        ax.text(0.5, 0.5, "no trial has reported yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, max(seconds, default=1.0) * 1.3 or 1.0)
    ax.set_xlabel("wall time (s)")
    more = f"; first {limit} of {len(rows)} shown" if len(rows) > limit else ""
    hatched = "; hatched = sum of epoch times (no Ray total)" if any(not ok for t, ok in times if t) else ""
    ax.set_title(f"wall time per trial, in leaderboard order{more}{hatched}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    legend_below(fig, ncol=5, handles=status_handles([r["status"] for r in ranked]))
    save_figure(fig, path)


def plot_asha(rows: list[dict[str, Any]], asha: dict[str, Any], epochs: int | None, path: Path) -> None:
    plt = pyplot()
    rungs = rung_epochs(asha, epochs)
    max_t = rungs[-1] if rungs else max((int(r["epochs_run"] or 0) for r in rows), default=1) or 1
    counts = reached(rows, list(range(1, max_t + 1)))
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:orange" if e in rungs[:-1] else "tab:green" if e == max_t else "tab:gray" for e in counts]
    bars = ax.bar(list(counts), list(counts.values()), color=colors, edgecolor="black")
    ax.bar_label(bars, labels=[str(c) for c in counts.values()])
    ax.set(xlabel="epoch", ylabel="trials", ylim=(0, max(len(rows), 1) * 1.15))
    ax.set_title(
        f"trials that trained to each epoch ({len(rows)} trials)\n"
        "orange = early-stopping rung, green = last epoch, gray = between rungs",
        fontsize=10,
    )
    ax.set_xticks(list(counts))
    fig.tight_layout()
    save_figure(fig, path)
