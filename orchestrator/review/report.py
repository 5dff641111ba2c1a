"""The sweep report: Markdown (and HTML) with plots, for a finished, running or interrupted experiment.

    python -m orchestrator report runs/smoke [--out DIR] [--top 5]

Prints the leaderboard (the one the sweep prints) and writes DIR (default `<experiment>/report/`):
  report.md             leaderboard, the best checkpoint's origin, the ASHA picture, the plots below
  learning_curves.png   validation accuracy and training loss per epoch of the top trials
  knobs.png             best validation accuracy against each searched knob, one panel per knob
  asha.png              how many trials trained to each epoch; ASHA's rungs marked
Before the sweep has finished, the tables are rebuilt from the trials' files (`outputs.reader`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.outputs.reader import Experiment, records
from orchestrator.outputs.tables import differing_knobs, ordered
from orchestrator.review.summaries import asha_markdown, best_markdown, leaderboard_markdown, reached, rung_epochs
from trainables import metrics as m

STATUS_COLORS = {"completed": "tab:green", "stopped": "tab:orange", "running": "tab:blue",
                 "pending": "tab:gray", "diverged": "tab:red", "error": "tab:red"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def knob_columns(exp: Experiment, rows: list[dict[str, Any]]) -> list[str]:
    """The searched knobs (results columns `config.<key>`); else whatever differs between trials."""
    searched = [f"config.{k}" for k in exp.searched if any(f"config.{k}" in r for r in rows)]
    return searched or differing_knobs(rows)


def plot_learning_curves(exp: Experiment, rows: list[dict[str, Any]], best_trial: str | None, top: int,
                         path: Path) -> None:
    plt = _pyplot()
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    shown = [r["trial_name"] for r in ordered(rows, exp.metric)[:top]]
    for i, name in enumerate(shown):
        curve = exp.history[exp.history["trial_name"] == name].sort_values(m.EPOCH)
        if curve.empty:
            continue
        row = next(r for r in rows if r["trial_name"] == name)
        width = 2.8 if name == best_trial else 1.4
        label = f"{i + 1}. {name}" + (" (best)" if name == best_trial else "") + (
            " - stopped by ASHA" if row["status"] == "stopped" else "")
        line, = acc_ax.plot(curve[m.EPOCH], curve[m.VAL_ACCURACY], marker="o", lw=width, label=label)
        loss_ax.plot(curve[m.EPOCH], curve[m.TRAIN_LOSS], marker="o", lw=width, color=line.get_color())
        loss_ax.plot(curve[m.EPOCH], curve[m.VAL_LOSS], ls="--", lw=1, color=line.get_color())
        if row["status"] == "stopped":
            last = curve.iloc[-1]
            acc_ax.plot(last[m.EPOCH], last[m.VAL_ACCURACY], marker="X", ms=11, color=line.get_color())
    for epoch in rung_epochs(exp.config.get("asha", {}), exp.epochs)[:-1]:
        acc_ax.axvline(epoch, color="gray", ls=":", lw=1)
    acc_ax.set(title=f"validation accuracy, top {len(shown)} trials (X = stopped by ASHA, dotted = rung)",
               xlabel="epoch", ylabel="val accuracy")
    loss_ax.set(title="loss (solid train, dashed val)", xlabel="epoch", ylabel="cross-entropy")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="lower center", ncol=min(2, max(len(shown), 1)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(shown) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_knobs(exp: Experiment, rows: list[dict[str, Any]], knobs: list[str], path: Path) -> None:
    plt = _pyplot()
    panels = knobs or ["(none searched)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, knob in zip(axes[0], panels, strict=True):
        points = [(r.get(knob), r.get("best_val_accuracy"), r["status"]) for r in rows
                  if r.get(knob) is not None and r.get("best_val_accuracy") is not None]
        numeric = points and all(isinstance(v, int | float) and not isinstance(v, bool) for v, _, _ in points)
        if numeric:
            xs = [float(v) for v, _, _ in points]
            if min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:
            labels = sorted({_label(v) for v, _, _ in points}, key=lambda text: (len(text), text))
            position = {label: i for i, label in enumerate(labels)}
            # A small fixed spread keeps trials with the same category from hiding one another.
            xs = [position[_label(v)] + 0.06 * ((i % 5) - 2) for i, (v, _, _) in enumerate(points)]
            ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 3 else 0)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        for status in dict.fromkeys(s for _, _, s in points):
            chosen = [(x, acc) for x, (_, acc, s) in zip(xs, points, strict=True) if s == status]
            ax.scatter(*zip(*chosen, strict=True), s=60, alpha=0.8, color=STATUS_COLORS.get(status, "black"),
                       label=status, edgecolors="black", linewidths=0.5)
        ax.set(title=knob.removeprefix("config."), xlabel=knob.removeprefix("config."), ylabel="best val accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("best validation accuracy of each trial against each searched knob")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list) else str(value)


def plot_asha(exp: Experiment, rows: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    epochs = rung_epochs(exp.config.get("asha", {}), exp.epochs)
    max_t = epochs[-1] if epochs else max((int(r["epochs_run"] or 0) for r in rows), default=1)
    counts = reached(rows, list(range(1, max_t + 1)))
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:orange" if e in epochs[:-1] else "tab:green" if e == max_t else "tab:gray" for e in counts]
    bars = ax.bar(list(counts), list(counts.values()), color=colors, edgecolor="black")
    ax.bar_label(bars, labels=[str(c) for c in counts.values()])
    ax.set(title=f"trials that trained to each epoch ({len(rows)} trials)\n"
                 "orange = ASHA rung, green = max_t, gray = between rungs",
           xlabel="epoch", ylabel="trials", ylim=(0, max(len(rows), 1) * 1.15))
    ax.set_xticks(list(counts))
    ax.title.set_fontsize(10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


STATES = {"finished": "finished", "running": "still running (tables rebuilt from the trials' files)",
          "interrupted": "UNFINISHED: interrupted (rerun the launch command to resume); tables rebuilt from the "
          "trials' files", "failed": "finished, but no trial left a usable checkpoint",
          "unknown": "UNFINISHED (no driver has recorded an ending); tables rebuilt from the trials' files"}


def status_line(exp: Experiment, rows: list[dict[str, Any]]) -> str:
    counts = pd.Series([r["status"] for r in rows]).value_counts().to_dict() if rows else {}
    return f"Experiment `{exp.location.display}`: {STATES.get(exp.state, exp.state)}; {len(rows)} trials: " + \
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def write_report(exp: Experiment, out: Path, top: int) -> Path:
    rows = records(exp.results)
    manifest = exp.manifest
    knobs = knob_columns(exp, rows)
    out.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(exp, rows, manifest and manifest["trial_name"], top, out / "learning_curves.png")
    plot_knobs(exp, rows, knobs, out / "knobs.png")
    plot_asha(exp, rows, out / "asha.png")
    text = "\n\n".join([
        f"# Sweep report: {exp.config.get('name', exp.location.name)}", status_line(exp, rows),
        f"## Leaderboard (by {exp.metric})", leaderboard_markdown(rows, exp.metric),
        "## Best checkpoint", best_markdown(manifest),
        "## How the top trials learned", "![learning curves](learning_curves.png)",
        "## Which knobs won", "![validation accuracy per knob](knobs.png)",
        "## What early stopping cut, and when", asha_markdown(rows, exp.config), "![trials per epoch](asha.png)",
    ])
    (out / "report.md").write_text(text + "\n")
    return out / "report.md"
