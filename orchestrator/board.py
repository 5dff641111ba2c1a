"""Driver-side TensorBoard: the `_summary` run, and the last word on each trial's HParams session.

    tensorboard --logdir runs/smoke --host 127.0.0.1

Trials write their own runs while they train (`trainables.tensorboard_log`). What only the driver
knows is written here: before the first trial, the HParams experiment record (which knobs are columns,
with their domains; which metrics) and the plan; when a trial ends, its final HParams metrics and
status (a trial cannot know that ASHA stopped it); after the sweep, the leaderboard and the ASHA
picture as text, and `asha/trials_reaching_epoch` as a scalar over epochs. `finish` rewrites every
trial's final state from the result tables, so a driver that was killed and resumed still ends right.
Only local experiment directories are written; URI storage keeps the trials' own runs only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig
from orchestrator.experiment import EXPERIMENT_FILE, SUMMARY_RUN, trial_outcome
from orchestrator.plan import describe
from orchestrator.search import dimensions
from orchestrator.selection import TrialOutcome
from orchestrator.summaries import asha_markdown, leaderboard_markdown, reached
from trainables import hparams
from trainables.models import MODELS
from trainables.recipe import TrialConfig
from trainables.tensorboard_log import TrialBoard


def hparam_domains(cfg: ExperimentConfig) -> dict[str, list[Any] | tuple[float, float]]:
    """Every knob any trial of this sweep can have, with the values it can take."""
    fixed = cfg.trial.model_dump(mode="json")
    dims = dimensions(cfg.search.space)
    models = dims["model"][1] if "model" in dims else [cfg.trial.model]
    domains: dict[str, list[Any] | tuple[float, float]] = {}
    for model in models:
        for key, value in TrialConfig.resolve(fixed, {"model": model}).knobs().items():
            values = domains.setdefault(key, [])
            if isinstance(values, list) and value not in values:
                values.append(value)
    for path, (kind, args) in dims.items():
        if kind in ("grid", "choice"):
            domains[path] = list(args)
        else:
            domains[path] = (float(args[0]), float(args[1]))
    # A model-specific field searched for a model the sweep never builds has no column.
    return {k: v for k, v in domains.items() if k.split(".")[0] not in MODELS or k.split(".")[0] in models}


def start(cfg: ExperimentConfig, experiment_dir: Path) -> None:
    """Before any trial: the config record the report reads, the HParams experiment and the plan."""
    run = experiment_dir / SUMMARY_RUN
    run.mkdir(parents=True, exist_ok=True)
    (run / EXPERIMENT_FILE).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    board = TrialBoard(run)
    try:
        board.add_summary(hparams.experiment(hparam_domains(cfg), f"sweep {cfg.name}"), 0)
        board.writer.add_text("plan", _pre(describe(cfg)), 0)
    finally:
        board.close()


def _pre(text: str) -> str:
    """Markdown code block: keeps the plan's alignment in TensorBoard's text tab."""
    return "\n".join("    " + line for line in text.splitlines())


def finish_trial(outcome: TrialOutcome, trial_dir: Path) -> None:
    """A trial's final HParams metrics and, unless it errored (it may be resumed), its end record."""
    status = outcome.status
    values = hparams.running_metrics(outcome.history, status, stopped_early=status == "stopped")
    board = TrialBoard(trial_dir)
    try:
        board.log_hparams_metrics(outcome.epochs_run, values)
        if status != "error":
            board.end_session(status)
    finally:
        board.close()


def trial_ended(trial_dir: Path, config: dict[str, Any], error: bool) -> None:
    """Called on the driver as soon as Ray reports a trial done or failed (Tune callback)."""
    outcome = trial_outcome(trial_dir, config.get("trial", {}))
    if error:
        outcome.error = "failed"
    finish_trial(outcome, trial_dir)


def finish(cfg: ExperimentConfig, experiment_dir: Path, outcomes: list[TrialOutcome],
           rows: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
    """After the sweep: every trial's final state, the leaderboard, the ASHA picture, the best checkpoint."""
    for outcome in outcomes:
        if (experiment_dir / outcome.name).is_dir():
            finish_trial(outcome, experiment_dir / outcome.name)
    config = cfg.model_dump(mode="json")
    step = sum(int(r["epochs_run"]) for r in rows)  # grows with every resume that trains more
    board = TrialBoard(experiment_dir / SUMMARY_RUN)
    try:
        board.writer.add_text("leaderboard", leaderboard_markdown(rows, cfg.selection.metric), step)
        board.writer.add_text("asha", asha_markdown(rows, config), step)
        if best is not None:
            board.writer.add_text("best", _pre(json.dumps(best, indent=2)), step)
        for epoch, count in reached(rows, list(range(1, cfg.max_t + 1))).items():
            board.writer.add_scalar("asha/trials_reaching_epoch", count, epoch)
    finally:
        board.close()
