"""The sweep's story as Markdown: the leaderboard, the best checkpoint, what early stopping cut.

Shared by the TensorBoard summary card (`review.tensorboard`) and the report (`review.report`), so both
say the same thing. Rows are results rows (`TrialRecord.row`). No Ray here.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config.rungs import rungs
from orchestrator.config.schema import ExperimentConfig
from orchestrator.outputs.tables import COST_HEADERS, LEADERBOARD, cell, cost_cells, differing_knobs, ordered
from trainables import metrics as m


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(text.replace("|", "/") for text in row) + " |" for row in body]
    return "\n".join(lines)


def leaderboard_markdown(rows: list[dict[str, Any]], metric: str, top: int = 20) -> str:
    knobs = differing_knobs(rows)
    header = [
        "#",
        "trial",
        *[k.removeprefix("config.") for k in knobs],
        "epochs",
        "status",
        *[f"best {name}" for name in LEADERBOARD.values()],
        "best epoch",
        *COST_HEADERS.values(),
    ]
    body = [
        [
            str(i),
            str(r["trial_name"]),
            *[cell(r.get(k)) for k in knobs],
            str(r["epochs_run"]),
            str(r["status"]),
            *[cell(r.get(f"best_{key}")) for key in LEADERBOARD],
            cell(r.get("best_epoch")),
            *cost_cells(r),
        ]
        for i, r in enumerate(ordered(rows, metric)[:top], 1)
    ]
    more = f"\n\n({len(rows) - top} more trials in results.parquet)" if len(rows) > top else ""
    return markdown_table(header, body) + more


def best_markdown(best: dict[str, Any] | None) -> str:
    if best is None:
        return "No best checkpoint exported (the driver exports it when the whole sweep has finished)."
    rows = [
        ["trial", f"`{best['trial_name']}`"],
        ["epoch", str(best["epoch"])],
        ["chosen by", str(best.get("selection_metric", "test_accuracy"))],
        ["test accuracy", cell(best.get("test_accuracy"))],
        ["validation accuracy", cell(best.get("val_accuracy"))],
        *[[name.replace("_", " "), cell(best.get(name))] for name in m.CLASS_BALANCED if name in best],
        ["checkpoint", f"`{best.get('source_checkpoint')}`"],
    ]
    lineage = best.get("population")
    if lineage:  # a population member: its line, and the values it trained with (config shows the sampled ones)
        copied = f"member {lineage['parent']} at epoch {lineage['copied_at']}" if lineage["parent"] >= 0 else "never"
        rows += [["generation", str(lineage["generation"])], ["last copied", copied]]
        rows += [[f"`{k}` trained with", cell(v)] for k, v in lineage["values"].items()]
    rows += [[f"`{k}`", cell(v)] for k, v in best.get("config", {}).items()]
    return markdown_table(["", "best checkpoint"], rows)


def rung_epochs(asha: dict[str, Any], epochs: int | None) -> list[int]:
    """Early stopping's rungs plus max_t (the trials that ran to the end), from the experiment config."""
    if not epochs:
        return []
    found = rungs(asha.get("grace_period", 1), asha.get("reduction_factor", 2.0), epochs)
    return sorted({e for e in found if e <= epochs} | {epochs})


def reached(rows: list[dict[str, Any]], epochs: list[int]) -> dict[int, int]:
    """How many trials trained at least `e` epochs, for each e."""
    return {e: sum(int(r.get("epochs_run") or 0) >= e for r in rows) for e in epochs}


def asha_markdown(rows: list[dict[str, Any]], config: dict[str, Any]) -> str:
    asha = config.get("asha", {})
    epochs = rung_epochs(asha, config.get("trial", {}).get("epochs"))
    if not epochs:
        return "Early stopping: unknown (no experiment record)."
    max_t = epochs[-1]
    counts = reached(rows, epochs)
    mode = asha.get("mode", "async")
    rung_table = markdown_table(
        ["epoch", "trials that reached it", "role"],
        [[str(e), f"{counts[e]} of {len(rows)}", "max_t (trial.epochs)" if e == max_t else "rung"] for e in epochs],
    )
    stopped = sorted((r for r in rows if r.get("status") == "stopped"), key=lambda r: int(r["epochs_run"]))
    head = f"Early stopping: {mode} successive halving on {asha.get('metric', m.ASHA_METRIC)}."
    if not stopped:
        return f"{head}\n\n{rung_table}\n\nNo trial was stopped early."
    cut_table = markdown_table(
        ["trial", "stopped after epoch", "val acc then", "best val acc"],
        [
            [
                str(r["trial_name"]),
                str(r["epochs_run"]),
                cell(r.get("final_val_accuracy")),
                cell(r.get("best_val_accuracy")),
            ]
            for r in stopped
        ],
    )
    return f"{head}\n\n{rung_table}\n\nTrials stopped early ({len(stopped)}):\n\n{cut_table}"


def best_lineage_line(manifest: dict[str, Any] | None) -> str:
    """For the summary card: the best's generation, its latest copy and the values it trained with."""
    lineage = (manifest or {}).get("population")
    if not lineage:
        return ""
    values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in lineage["values"].items())
    if lineage["parent"] < 0:
        return "The best never copied another member: it trained with its own sampled values throughout."
    return (
        f"The best is generation {lineage['generation']}: it last copied member {lineage['parent']} at epoch "
        f"{lineage['copied_at']} and trained on with {values}. The report draws its whole line."
    )


def summary_markdown(cfg: ExperimentConfig, rows: list[dict[str, Any]], best: dict[str, Any] | None, plan: str) -> str:
    config = cfg.model_dump(mode="json")
    plan_block = "\n".join("    " + line for line in plan.splitlines())
    if best is not None:  # its knobs that differ between trials first, right under its scores
        knobs = best.get("config", {})
        first = {k: knobs[k] for k in (c.removeprefix("config.") for c in differing_knobs(rows)) if k in knobs}
        best = {**best, "config": {**first, **knobs}}
    return "\n\n".join(
        [
            f"## Leaderboard (by {cfg.selection.metric})",
            leaderboard_markdown(rows, cfg.selection.metric),
            "## Best checkpoint",
            best_markdown(best),
            *(
                ["## Population", best_lineage_line(best) or "No best checkpoint yet."]
                if cfg.population
                else ["## Early stopping", asha_markdown(rows, config)]
            ),
            "## Plan",
            plan_block,
        ]
    )
