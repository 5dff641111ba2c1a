"""Ranks every kept checkpoint of every trial, exports best/, writes results.parquet and the leaderboard.

Plain data in, files out: no Ray here. "Best" is the highest selection-metric score among all
checkpoints of all trials (ASHA-stopped ones included), never the latest epoch of the best trial.
Ties go to the higher validation accuracy, then the earlier epoch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trainables import checkpoint as ckpt
from trainables import metrics as m
from trainables.recipe import TrialConfig

BEST_DIR = "best"
RESULTS_FILE = "results.parquet"


@dataclass
class TrialOutcome:
    """What one trial left behind, as plain data."""

    trial_id: str
    name: str
    config: TrialConfig
    history: list[dict[str, Any]]
    checkpoints: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)  # (checkpoint, metrics)
    error: str | None = None

    @property
    def epochs_run(self) -> int:
        return max((int(row[m.EPOCH]) for row in self.history if _finite(row.get(m.EPOCH))), default=0)

    @property
    def diverged(self) -> bool:
        return any(bool(row.get(m.DIVERGED)) for row in self.history)

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.diverged:
            return "diverged"
        return "completed" if self.epochs_run >= self.config.epochs else "stopped"


@dataclass(frozen=True)
class Candidate:
    outcome: TrialOutcome
    checkpoint: Any
    metrics: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.metrics[m.EPOCH])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def rank(outcomes: list[TrialOutcome], metric: str) -> list[Candidate]:
    """Every kept checkpoint with a finite score, best first; diverged and failed trials never qualify."""
    candidates = [
        Candidate(outcome, checkpoint, metrics)
        for outcome in outcomes if not outcome.diverged and not outcome.error
        for checkpoint, metrics in outcome.checkpoints
        if _finite(metrics.get(metric)) and not metrics.get(m.DIVERGED)
    ]
    return sorted(candidates, key=lambda c: (-c.metrics[metric], -c.metrics.get(m.VAL_ACCURACY, 0.0), c.epoch))


def _replace_dir(staged: Path, target: Path) -> None:
    """Swap a fully written directory into place so a reader never sees a half-written best/."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def export_best(best: Candidate, checkpoint_dir: Path, experiment_dir: Path, metric: str) -> dict[str, Any]:
    """best/model.pt (state dict + model spec + input scaling) and best/manifest.json."""
    state = ckpt.load(checkpoint_dir / ckpt.CHECKPOINT_FILE)
    manifest = {
        "trial_id": best.outcome.trial_id,
        "trial_name": best.outcome.name,
        "epoch": best.epoch,
        "selection_metric": metric,
        "test_accuracy": best.metrics.get(m.TEST_ACCURACY),
        "val_accuracy": best.metrics.get(m.VAL_ACCURACY),
        "config": best.outcome.config.knobs(),
        "model_spec": state["model_spec"],
        "source_checkpoint": str(getattr(best.checkpoint, "path", checkpoint_dir)),
    }
    staged = Path(tempfile.mkdtemp(prefix=".best.", dir=experiment_dir))
    ckpt.save_atomic({
        "state_dict": state["model"], "model_spec": state["model_spec"],
        "input_scale": state["input_scale"], "scaling": state["scaling"], "metrics": state["metrics"],
    }, staged / "model.pt")
    (staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _replace_dir(staged, experiment_dir / BEST_DIR)
    return manifest


def trial_rows(outcomes: list[TrialOutcome], metric: str) -> list[dict[str, Any]]:
    """One row per trial: knobs (config.*), final and best metrics, status, best checkpoint path."""
    rows = []
    for outcome in outcomes:
        last = outcome.history[-1] if outcome.history else {}
        ranked = rank([outcome], metric)
        vals = [r[m.VAL_ACCURACY] for r in outcome.history if _finite(r.get(m.VAL_ACCURACY))]
        tests = [r[m.TEST_ACCURACY] for r in outcome.history if _finite(r.get(m.TEST_ACCURACY))]
        row: dict[str, Any] = {
            "trial_id": outcome.trial_id, "trial_name": outcome.name, "status": outcome.status,
            "stopped_early": outcome.status == "stopped", "epochs_run": outcome.epochs_run,
            "error": outcome.error,
            "final_train_loss": last.get(m.TRAIN_LOSS), "final_train_accuracy": last.get(m.TRAIN_ACCURACY),
            "final_val_loss": last.get(m.VAL_LOSS), "final_val_accuracy": last.get(m.VAL_ACCURACY),
            "final_test_accuracy": last.get(m.TEST_ACCURACY),
            "best_val_accuracy": max(vals, default=None), "best_test_accuracy": max(tests, default=None),
            "best_epoch": ranked[0].epoch if ranked else None,
            "best_checkpoint": str(getattr(ranked[0].checkpoint, "path", "")) if ranked else None,
        }
        row.update({f"config.{k}": v for k, v in outcome.config.knobs().items()})
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Parquet via a temp file and rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        # from_pylist takes its columns from the first row: pad every row to the union of keys, or
        # knobs that only later trials have (a cnn's cnn.* after an mlp) would be dropped.
        keys = list(dict.fromkeys(k for row in rows for k in row))
        pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows]), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def differing_knobs(rows: list[dict[str, Any]]) -> list[str]:
    """Config columns whose values differ between trials: the ones worth a leaderboard column."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("config.")))
    # A model-specific knob counts only among the trials that have it (a cnn row has no mlp.hidden).
    return [k for k in keys if len({json.dumps(r[k]) for r in rows if r.get(k) is not None}) > 1]


def leaderboard(rows: list[dict[str, Any]], metric: str, top: int = 10) -> str:
    best_key = "best_test_accuracy" if metric == m.TEST_ACCURACY else "best_val_accuracy"
    ordered = sorted(rows, key=lambda r: -(r[best_key] if _finite(r[best_key]) else -1.0))[:top]
    knobs = differing_knobs(rows)
    header = ["#", "trial", *[k.removeprefix("config.") for k in knobs], "epochs", "status", "val_acc", "test_acc"]
    table = [header]
    for i, row in enumerate(ordered, 1):
        table.append([str(i), row["trial_name"], *[_cell(row.get(k)) for k in knobs], str(row["epochs_run"]),
                      row["status"], _cell(row["best_val_accuracy"]), _cell(row["best_test_accuracy"])])
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if 0.01 <= abs(value) < 1 else f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
