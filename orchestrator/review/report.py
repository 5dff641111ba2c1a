"""The sweep report: Markdown and one self-contained HTML file with plots, for a finished, running or
interrupted experiment.

    python -m orchestrator report runs/smoke [--out DIR] [--top 5]

Writes DIR (default `<experiment>/report/`): report.md and report.html (the same sections; the HTML
carries its images inside), and the figures of `review.plots`:
  learning_curves.png   validation accuracy and losses per epoch of the top trials
  parallel.png          every trial across the searched knobs and the selection metric
  knobs.png             the selection metric against each searched knob
  importance.png        how much each knob mattered (Optuna's PED-ANOVA; when there are enough trials)
  confusion.png         the best model's confusion matrix and per-class accuracy (once best/ exists)
  test_vs_val.png       best test against best validation accuracy of every trial
  wall_time.png         wall time per trial
  asha.png              how many trials trained to each epoch; early stopping's rungs marked
  lineage.png           a population's members x epochs: who copied whom (`review.lineage`)
  schedule.png          the best checkpoint's hyperparameter schedule along its line (a population)
  pareto.png            best validation accuracy against each cost, the Pareto front ringed (review.pareto_report)
Paths in the report are relative (images to the report, checkpoints to the experiment), so a report
or an experiment that is moved or copied still reads the same. Before the sweep has finished, the
tables are rebuilt from the trials' files (`outputs.reader`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.errors import ConfigError
from orchestrator.location import BEST
from orchestrator.outputs import pareto
from orchestrator.outputs.reader import Experiment, records
from orchestrator.outputs.tables import cell, ordered
from orchestrator.review import budget_plots, knob_plots, lineage, pareto_report, plots
from orchestrator.review.importance import EVALUATOR, Importance, knob_importance, searched_knobs
from orchestrator.review.report_html import render_html
from orchestrator.review.summaries import (
    asha_markdown,
    best_markdown,
    leaderboard_markdown,
    markdown_table,
    rung_epochs,
)

# Figures drawn only when their section has something to show; a stale copy from an earlier run is removed.
OPTIONAL = ("importance.png", "confusion.png", "lineage.png", "schedule.png", "asha.png", "pareto.png")

STATES = {
    "finished": "finished",
    "running": "still running (tables rebuilt from the trials' files)",
    "interrupted": "UNFINISHED: interrupted (rerun the launch command to resume); tables rebuilt from the "
    "trials' files",
    "failed": "finished, but no trial left a usable checkpoint",
    "unknown": "UNFINISHED (no driver has recorded an ending); tables rebuilt from the trials' files",
}


def status_line(exp: Experiment, rows: list[dict[str, Any]], where: str | None = None) -> str:
    """`where` names the experiment (default: its directory or URI; the report passes a name, not a path)."""
    counts = pd.Series([r["status"] for r in rows]).value_counts().to_dict() if rows else {}
    return f"Experiment `{where or exp.location.display}`: {STATES.get(exp.state, exp.state)}; {len(rows)} trials: " + (
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none has reported yet"
    )


def _name(exp: Experiment) -> str:
    # A local experiment is named, not located: the report must not break when the directory moves.
    return exp.location.name if exp.location.is_local else exp.location.display


def _relative(text: str, exp: Experiment) -> str:
    """Any path inside the experiment (say, in an error message) rewritten relative to it."""
    local = exp.location.local_dir
    if local is None:
        return text
    for root in dict.fromkeys((str(local.resolve()), str(local))):
        text = text.replace(root + "/", "").replace(root, ".")
    return text


@dataclass(frozen=True)
class Scored:
    matrix: np.ndarray  # [true, predicted] counts on the test split
    classes: list[str]


def score_best(exp: Experiment) -> Scored | str:
    """best/ on its experiment's test split (what `evaluate <experiment>/best` prints), or why not."""
    if exp.manifest is None:
        return "No best checkpoint yet: best/ is exported when the whole sweep has finished."
    import torch

    from orchestrator.review.evaluation import confusion, evaluation_data, load_model, predict
    from trainables.data import DataError

    local = exp.location.local_dir
    try:
        loaded = load_model(str(local / BEST) if local is not None else exp.location.uri(BEST))
        dataset = evaluation_data(loaded, None)
    except (ConfigError, DataError) as exc:
        return f"The best model could not be scored: {exc}"
    if dataset.input_shape != loaded.input_shape or dataset.num_classes != len(loaded.classes):
        return (
            f"The best model takes {list(loaded.input_shape)} with {len(loaded.classes)} classes; its data has "
            f"{list(dataset.input_shape)} with {dataset.num_classes}."
        )
    # The split may be a read-only view of the data file; a copy is small and keeps torch from warning.
    images, labels = torch.from_numpy(np.array(dataset.test.images)), torch.from_numpy(np.array(dataset.test.labels))
    with torch.no_grad():  # scoring only: no graph to keep
        predicted = predict(loaded, images).argmax(dim=1)
    matrix = confusion(labels, predicted, len(loaded.classes))
    return Scored(matrix.numpy(), list(loaded.classes))


def per_class_markdown(scored: Scored) -> str:
    body = []
    for i, name in enumerate(scored.classes):
        support = int(scored.matrix[i].sum())
        wrong = scored.matrix[i].astype(float)
        wrong[i] = -1  # the most frequent mistake, not the right answer
        j = int(wrong.argmax())
        mistaken = f"{scored.classes[j]} ({int(scored.matrix[i, j])})" if scored.matrix[i, j] else "-"
        body.append([name, f"{scored.matrix[i, i] / max(support, 1):.4f}", str(support), mistaken])
    total = int(scored.matrix.sum())
    return f"Test accuracy {np.trace(scored.matrix) / max(total, 1):.4f} on {total} test images.\n\n" + markdown_table(
        ["class", "accuracy", "images", "most often mistaken for"], body
    )


def importance_markdown(importance: Importance) -> str:
    if not importance.scores:
        return f"Hyperparameter importance skipped: {importance.reason}."
    table = markdown_table(["knob", "importance"], [[f"`{k}`", f"{v:.3f}"] for k, v in importance.scores.items()])
    return (
        f"Optuna's {EVALUATOR} importance on the {importance.trials} ended trials: how differently each knob is "
        f"distributed among the best {importance.top} trials (top {importance.quantile:.0%}) than among all of "
        "them. Importances sum to 1; with few trials, read them as a hint.\n\n" + table
    )


def test_vs_val_markdown(rows: list[dict[str, Any]], metric: str, best: str | None) -> str:
    ranked = ordered(rows, metric)
    body = []
    gaps = []
    for i, r in enumerate(ranked, 1):
        val, test = r.get("best_val_accuracy"), r.get("best_test_accuracy")
        gap = test - val if val is not None and test is not None else None
        if gap is not None:
            gaps.append(gap)
        body.append(
            [
                str(i),
                str(r["trial_name"]),
                str(r["status"]),
                cell(val),
                cell(test),
                f"{gap:+.4f}" if gap is not None else "-",
            ]
        )
    if metric.startswith("test_"):
        why = (
            f"The winner was chosen by its {metric}, so its test figure is an optimistic estimate: among "
            "many trials, the highest test score is partly luck of the test split. The spread of test - "
            "validation across trials shows how large that luck can be; `selection.metric: val_accuracy` "
            "keeps the test figure clean."
        )
    else:
        why = (
            f"The winner was chosen by {metric}, a validation score, so its test figure is a clean held-out "
            "estimate; its validation figure is the optimistic one."
        )
    spread = f" Test - validation ranges from {min(gaps):+.4f} to {max(gaps):+.4f}." if gaps else ""
    return (
        why
        + spread
        + "\n\n"
        + markdown_table(["#", "trial", "status", "best val acc", "best test acc", "test - val"], body)
    )


def wall_markdown(rows: list[dict[str, Any]], history: pd.DataFrame) -> str:
    times = [(budget_plots.wall_seconds(r, history)[0], r["trial_name"]) for r in rows]
    known = [(t, name) for t, name in times if t is not None]
    if not known:
        return "No trial has reported a time yet."
    longest = max(known)
    return (
        f"{len(known)} trials took {sum(t for t, _ in known):.1f} s of trial time in all; the longest, "
        f"`{longest[1]}`, {longest[0]:.1f} s. Times are Ray's `time_total_s` at each trial's last epoch."
    )


def write_report(exp: Experiment, out: Path, top: int) -> Path:
    rows = records(exp.results)
    manifest = exp.manifest
    best = manifest["trial_name"] if manifest else None
    # Before best/ exists, the leaderboard's leader is drawn thick instead, as the best so far.
    leader = best or (ordered(rows, exp.metric)[0]["trial_name"] if rows else None)
    knobs = searched_knobs(exp.config, rows)
    is_population = bool(exp.config.get("population"))  # no early stopping: no rungs, nothing cut
    rungs = [] if is_population else rung_epochs(exp.config.get("asha", {}), exp.epochs)
    out.mkdir(parents=True, exist_ok=True)
    for name in OPTIONAL:
        (out / name).unlink(missing_ok=True)
    plots.plot_learning_curves(rows, exp.history, exp.metric, best, rungs, top, out / "learning_curves.png")
    knob_plots.plot_parallel(knobs, rows, exp.metric, leader, out / "parallel.png", "best" if best else "best so far")
    knob_plots.plot_knobs(knobs, rows, exp.metric, out / "knobs.png")
    importance = knob_importance(knobs, rows, exp.metric)
    if importance.scores:
        knob_plots.plot_importance(importance, out / "importance.png")
    scored = score_best(exp)
    if isinstance(scored, Scored):
        plots.plot_confusion(scored.matrix, scored.classes, out / "confusion.png")
    plots.plot_test_vs_val(rows, exp.metric, best, out / "test_vs_val.png")
    budget_plots.plot_wall_time(rows, exp.history, exp.metric, out / "wall_time.png")
    if not is_population:
        budget_plots.plot_asha(rows, exp.config.get("asha", {}), exp.epochs, out / "asha.png")
    population = lineage.lineage_sections(exp.location, exp.history, manifest, exp.epochs or 0, out)
    objectives = pareto.objectives(exp.config)
    drew_front = pareto_report.plot_front(rows, objectives, out / "pareto.png")
    title = f"Sweep report: {exp.config.get('name', exp.location.name)}"
    text = "\n\n".join(
        [
            f"# {title}",
            status_line(exp, rows, _name(exp)),
            f"## Leaderboard (by {exp.metric})",
            leaderboard_markdown(rows, exp.metric),
            "## Best checkpoint",
            best_markdown(manifest)
            + ("\n\nThe checkpoint path is relative to the experiment directory." if manifest else ""),
            "## How the top trials learned",
            "![learning curves](learning_curves.png)",
            *population,
            "## Searched knobs and the selection metric",
            "Each line is a trial, coloured by how it ended; the thick line is the best. Knobs searched on a log scale "
            "(or spanning 20x or more) have log axes.",
            "![parallel coordinates](parallel.png)",
            f"![best {exp.metric} per knob](knobs.png)",
            "## Which knobs mattered",
            importance_markdown(importance),
            *(["![hyperparameter importance](importance.png)"] if importance.scores else []),
            "## Accuracy against cost: the Pareto front",
            pareto_report.front_markdown(rows, objectives),
            *(["![accuracy against each cost](pareto.png)"] if drew_front else []),
            "## The best model on the test split",
            *(
                [per_class_markdown(scored), "![confusion matrix and per-class accuracy](confusion.png)"]
                if isinstance(scored, Scored)
                else [scored]
            ),
            "## Test vs validation accuracy of every trial",
            test_vs_val_markdown(rows, exp.metric, best),
            "![test vs validation accuracy](test_vs_val.png)",
            "## Wall time per trial",
            wall_markdown(rows, exp.history),
            "![wall time per trial](wall_time.png)",
            *(
                []
                if is_population
                else [
                    "## What early stopping cut, and when",
                    asha_markdown(rows, exp.config),
                    "![trials per epoch](asha.png)",
                ]
            ),
        ]
    )
    text = _relative(text, exp)
    (out / "report.md").write_text(text + "\n")
    (out / "report.html").write_text(render_html(text, out, title))
    return out / "report.md"
