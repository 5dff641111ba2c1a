"""The sweep's story as text: the leaderboard and the ASHA picture, as Markdown tables. No Ray.

Shared by the TensorBoard summary run (`orchestrator.board`) and the report (`orchestrator.report`),
so both say the same thing. Rows are results.parquet rows (`selection.trial_rows`).
"""

from __future__ import annotations

import math
from typing import Any

from orchestrator.search import asha_rungs
from orchestrator.selection import differing_knobs
from trainables import metrics as m


def score_key(metric: str) -> str:
    return "best_test_accuracy" if metric == m.TEST_ACCURACY else "best_val_accuracy"


def _score(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return value if isinstance(value, int | float) and math.isfinite(value) else -1.0


def ordered(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first, by the selection metric's best value (the order of the printed leaderboard)."""
    key = score_key(metric)
    return sorted(rows, key=lambda r: -_score(r, key))


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(text.replace("|", "/") for text in row) + " |" for row in body]
    return "\n".join(lines)


def leaderboard_markdown(rows: list[dict[str, Any]], metric: str, top: int = 20) -> str:
    knobs = differing_knobs(rows)
    header = ["#", "trial", *[k.removeprefix("config.") for k in knobs], "epochs", "status",
              "best val acc", "best test acc", "best epoch"]
    body = [[str(i), str(r["trial_name"]), *[cell(r.get(k)) for k in knobs], str(r["epochs_run"]),
             str(r["status"]), cell(r.get("best_val_accuracy")), cell(r.get("best_test_accuracy")),
             cell(r.get("best_epoch"))]
            for i, r in enumerate(ordered(rows, metric)[:top], 1)]
    more = f"\n\n({len(rows) - top} more trials in results.parquet)" if len(rows) > top else ""
    return markdown_table(header, body) + more


def cell(value: Any) -> str:
    """One table cell: accuracies to 4 places, lists (numpy arrays from parquet too) as [a,b]."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if 0.01 <= abs(value) < 1 else f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def rung_epochs(config: dict[str, Any]) -> list[int]:
    """ASHA's rungs plus max_t (the trials that ran to the end), from the experiment config JSON."""
    asha, epochs = config.get("asha", {}), config.get("trial", {}).get("epochs")
    if not epochs:
        return []
    rungs = asha_rungs(asha.get("grace_period", 1), asha.get("reduction_factor", 2.0), epochs)
    return sorted(set(rungs) | {epochs})


def reached(rows: list[dict[str, Any]], epochs: list[int]) -> dict[int, int]:
    """How many trials trained at least `e` epochs, for each e."""
    return {e: sum(int(r.get("epochs_run") or 0) >= e for r in rows) for e in epochs}


def asha_markdown(rows: list[dict[str, Any]], config: dict[str, Any]) -> str:
    epochs = rung_epochs(config)
    if not epochs:
        return "ASHA: unknown (no experiment config recorded)"
    max_t = epochs[-1]
    counts = reached(rows, epochs)
    rung_table = markdown_table(
        ["epoch", "trials that reached it", "role"],
        [[str(e), f"{counts[e]} of {len(rows)}", "max_t (trial.epochs)" if e == max_t else "ASHA rung"]
         for e in epochs])
    stopped = sorted((r for r in rows if r.get("status") == "stopped"), key=lambda r: int(r["epochs_run"]))
    if not stopped:
        return rung_table + "\n\nASHA stopped no trial."
    cut_table = markdown_table(
        ["trial", "stopped after epoch", "val acc then", "best val acc"],
        [[str(r["trial_name"]), str(r["epochs_run"]), cell(r.get("final_val_accuracy")),
          cell(r.get("best_val_accuracy"))] for r in stopped])
    return f"{rung_table}\n\nTrials ASHA stopped ({len(stopped)}):\n\n{cut_table}"
