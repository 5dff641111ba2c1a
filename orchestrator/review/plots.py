"""The report's figures, drawn with matplotlib's Agg backend into PNG files (no display needed).

    python -m orchestrator report runs/smoke      # draws every figure below into runs/smoke/report/

Each function takes plain rows (`outputs.reader.records`) and writes one PNG. Figures are saved with a tight
bounding box, so legends placed outside the axes are kept whole instead of being drawn over the data.
No Ray here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.outputs.tables import ordered
from trainables import metrics as m
from trainables.metrics import finite

STATUS_COLORS = {
    "completed": "tab:green",
    "stopped": "tab:orange",
    "running": "tab:blue",
    "paused": "tab:cyan",
    "pending": "tab:gray",
    "unfinished": "tab:purple",
    "diverged": "tab:red",
    "error": "black",
}
DPI = 110


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    # bbox "tight" grows the canvas to hold whatever sits outside the axes (legends below, long labels).
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    pyplot().close(fig)


def legend_below(fig: Any, ncol: int, handles: list[Any] | None = None, title: str | None = None) -> None:
    """The figure's legend centred under its axes (save_figure keeps it whole), never over the data."""
    options: dict[str, Any] = {"handles": handles} if handles is not None else {}
    if title:
        options.update(title=title, title_fontsize=9)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=9, frameon=False, **options)


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, "tab:gray")


def status_handles(statuses: list[str]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=status_color(s), lw=3, label=s) for s in dict.fromkeys(statuses)]


def status_markers(statuses: list[str]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], ls="", marker="o", ms=8, mfc=status_color(s), mec="black", label=s)
        for s in dict.fromkeys(statuses)
    ]


def short_name(name: str, width: int = 32) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


# ---------------------------------------------------------------- learning curves


def plot_learning_curves(
    rows: list[dict[str, Any]],
    history: pd.DataFrame,
    metric: str,
    best_trial: str | None,
    rungs: list[int],
    top: int,
    path: Path,
) -> None:
    plt = pyplot()
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 4.8))
    shown = ordered(rows, metric)[:top]
    drawn = 0
    for rank, row in enumerate(shown, 1):
        name = row["trial_name"]
        curve = history[history["trial_name"] == name].sort_values(m.EPOCH)
        if curve.empty:
            continue
        drawn += 1
        # Trials cut at the same epoch with the same loss would sit on one point: a small sideways step per
        # trial keeps each visible (0.03 epoch, well inside the gap between two epochs).
        epochs = curve[m.EPOCH] + 0.03 * (rank - (len(shown) + 1) / 2)
        best = name == best_trial
        width = 3.0 if best else 1.5
        text = (
            f"{rank}. {name}" + (" (best)" if best else "") + (" - stopped early" if row["status"] == "stopped" else "")
        )
        # Markers on every series: a trial stopped after one epoch is a single point, which a line alone hides.
        (line,) = acc_ax.plot(
            epochs,
            curve[m.VAL_ACCURACY],
            marker="o",
            ms=7 if best else 5,
            lw=width,
            label=text,
            zorder=3 if best else 2,
        )
        color = line.get_color()
        loss_ax.plot(epochs, curve[m.TRAIN_LOSS], marker="o", ms=5, lw=width, color=color)
        loss_ax.plot(epochs, curve[m.VAL_LOSS], marker="s", ms=5, mfc="white", ls="--", lw=1.2, color=color)
        if row["status"] == "stopped":
            acc_ax.plot(
                epochs.iloc[-1],
                curve[m.VAL_ACCURACY].iloc[-1],
                marker="X",
                ms=12,
                color=color,
                mec="black",
                mew=0.6,
                zorder=4,
            )
    for epoch in rungs[:-1]:
        acc_ax.axvline(epoch, color="gray", ls=":", lw=1)
    acc_ax.set_title(f"validation accuracy, top {len(shown)} by {metric}", fontsize=11)
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy")
    loss_ax.set_title("loss: solid = train (o), dashed = validation (□)", fontsize=11)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy")
    last_epoch = int(history[m.EPOCH].max()) if len(history) and finite(history[m.EPOCH].max()) else 1
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.set_xticks(range(1, max(last_epoch, *(rungs or [1])) + 1))
        ax.set_xlim(0.7, max(last_epoch, *(rungs or [1])) + 0.3)  # a one-epoch sweep still gets a visible range
    if drawn:
        notes = "X = stopped early" + (", dotted = early-stopping rung" if rungs[:-1] else "")
        legend_below(fig, ncol=2 if drawn > 1 else 1, title=notes)
    else:
        acc_ax.text(0.5, 0.5, "no trial has reported an epoch yet", ha="center", transform=acc_ax.transAxes)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------- knobs


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    """Heatmap of the test split's confusion (colour: share of the true class) beside per-class accuracy."""
    plt = pyplot()
    support = matrix.sum(axis=1, keepdims=True)
    share = matrix / np.maximum(support, 1)
    count = len(classes)
    size = max(5.5, 0.55 * count + 2)
    # Constrained layout sizes the gaps to the labels: the colour bar and the bars' class names never meet.
    fig, (heat, bars) = plt.subplots(1, 2, figsize=(size * 1.9, size), width_ratios=(1.6, 1), layout="constrained")
    image = heat.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if count <= 30:  # counts in the cells stay legible up to about this many classes
        for i in range(count):
            for j in range(count):
                if matrix[i, j]:
                    heat.text(
                        j,
                        i,
                        str(int(matrix[i, j])),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black",
                    )
    heat.set_xticks(range(count), classes, rotation=45, ha="right", fontsize=9)
    heat.set_yticks(range(count), classes, fontsize=9)
    heat.set(xlabel="predicted class", ylabel="true class")
    heat.set_title("confusion matrix (counts; colour = share of the true class)", fontsize=11)
    fig.colorbar(image, ax=heat, fraction=0.046, pad=0.02)
    accuracy = np.diag(share)
    ys = np.arange(count)
    drawn = bars.barh(ys, accuracy, color=[plt.cm.RdYlGn(a) for a in accuracy], edgecolor="black")
    bars.bar_label(drawn, labels=[f"{a:.3f}" for a in accuracy], padding=3, fontsize=9)
    bars.set_yticks(ys, classes, fontsize=9)
    bars.set_ylim(count - 0.5, -0.5)  # the same top-down order as the heatmap's rows
    bars.set_xlim(0, 1.15)
    bars.set_xlabel("accuracy on the class")
    overall = float(np.trace(matrix)) / max(float(matrix.sum()), 1.0)
    bars.axvline(overall, color="black", ls="--", lw=1)
    bars.set_title(f"per-class accuracy (dashed: overall {overall:.4f})", fontsize=11)
    bars.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


# ---------------------------------------------------------------- every trial


def plot_test_vs_val(rows: list[dict[str, Any]], metric: str, best_trial: str | None, path: Path) -> None:
    """Best test against best validation accuracy per trial, and their difference: the distance from the
    diagonal on the left is the height above or below zero on the right, drawn at a scale where it shows."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    ranked = ordered(rows, metric)
    points = [
        (rank, r)
        for rank, r in enumerate(ranked, 1)
        if finite(r.get("best_val_accuracy")) and finite(r.get("best_test_accuracy"))
    ]
    fig, (both, gap) = plt.subplots(1, 2, figsize=(13, 5.6), width_ratios=(1, 1.15))
    values = [v for _, r in points for v in (r["best_val_accuracy"], r["best_test_accuracy"])]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, (high - low) * 0.08)
    low, high = max(0.0, low - pad), min(1.0, high + pad)
    both.plot([low, high], [low, high], color="gray", ls="--", lw=1)
    gap.axhline(0, color="gray", ls="--", lw=1)
    # Alternating label offsets: trials with nearly equal scores would otherwise print their ranks on one spot.
    offsets = [(7, 5), (-14, -13), (7, -13), (-14, 5)]
    for rank, r in points:
        val, test = r["best_val_accuracy"], r["best_test_accuracy"]
        best = r["trial_name"] == best_trial
        style = {
            "s": 280 if best else 70,
            "marker": "*" if best else "o",
            "color": status_color(r["status"]),
            "edgecolors": "black",
            "linewidths": 0.6,
            "zorder": 3,
        }
        both.scatter(val, test, **style)
        gap.scatter(val, test - val, **style)
        if rank <= 10:  # rank numbers link points to the table; more would crowd the figure
            for ax, y in ((both, test), (gap, test - val)):
                ax.annotate(str(rank), (val, y), xytext=offsets[rank % 4], textcoords="offset points", fontsize=9)
    both.set(xlim=(low, high), ylim=(low, high), xlabel="best validation accuracy", ylabel="best test accuracy")
    both.set_aspect("equal")
    both.set_title("test vs validation (dashed: equal)", fontsize=11)
    gaps = [r["best_test_accuracy"] - r["best_val_accuracy"] for _, r in points]
    reach = max([abs(g) for g in gaps] + [0.005]) * 1.35
    gap.set(xlim=(low, high), ylim=(-reach, reach), xlabel="best validation accuracy", ylabel="test - validation")
    gap.set_title("how far each trial sits from the diagonal", fontsize=11)
    for ax in (both, gap):
        ax.grid(alpha=0.3)
    handles = status_markers([r["status"] for _, r in points])
    if best_trial:
        handles.append(Line2D([], [], ls="", marker="*", ms=14, mfc="white", mec="black", label="best"))
    legend_below(fig, ncol=len(handles) or 1, handles=handles, title="numbers: leaderboard rank")
    fig.tight_layout()
    save_figure(fig, path)
