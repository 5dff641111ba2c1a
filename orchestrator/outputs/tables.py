"""The sweep's tables: results.parquet (a row per trial), history.parquet (a row per trial per epoch), and
the leaderboard text the launch and `report` print. Rows come from `TrialRecord.row` / `.history_rows`.

    leaderboard(rows, "test_accuracy")     # the knobs that differ between trials as columns
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.location import HISTORY, RESULTS, Location
from orchestrator.records import HISTORY_COLUMNS, TrialRecord
from trainables import metrics as m
from trainables.metrics import finite

# The leaderboard's score columns (each trial's best over its epochs): metric -> header.
LEADERBOARD = {
    m.VAL_ACCURACY: "val_acc", m.VAL_BALANCED_ACCURACY: "val_bacc", m.VAL_MACRO_F1: "val_f1",
    m.TEST_ACCURACY: "test_acc", m.TEST_BALANCED_ACCURACY: "test_bacc", m.TEST_MACRO_F1: "test_f1",
}  # fmt: skip


def write_tables(
    records: list[TrialRecord], location: Location, metric: str, extra: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """results.parquet and history.parquet, each written whole or not at all; returns the results rows.
    `extra`: trial name -> more results columns (what the selection worked out: constraints, the front)."""
    rows = [{**record.row(metric), **(extra or {}).get(record.name, {})} for record in records]
    location.write_bytes(_parquet(rows), RESULTS)
    history = [row for record in records for row in record.history_rows()]
    lineage = tuple(dict.fromkeys(k for row in history for k in row if k not in HISTORY_COLUMNS))
    location.write_bytes(_parquet(history, HISTORY_COLUMNS + lineage), HISTORY)
    return rows


def _parquet(rows: list[dict[str, Any]], columns: tuple[str, ...] = ()) -> bytes:
    # from_pylist takes its columns from the first row: pad every row to the union of keys, or knobs
    # that only later trials have (a cnn's cnn.* after an mlp) would be dropped.
    keys = list(columns) or list(dict.fromkeys(k for row in rows for k in row))
    table = (
        pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])
        if rows
        else pa.table({k: pa.array([], pa.null()) for k in keys})
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def score_key(metric: str) -> str:
    """The results column holding a trial's best value of a selection metric (`best_<metric>`)."""
    return f"best_{metric}"


def ordered(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first, by the selection metric's best value (the order of every leaderboard)."""
    key = score_key(metric)
    return sorted(rows, key=lambda r: -(r[key] if finite(r.get(key)) else -1.0))


def differing_knobs(rows: list[dict[str, Any]]) -> list[str]:
    """Config columns whose values differ between trials: the ones worth a leaderboard column."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("config.")))
    # A model-specific knob counts only among the trials that have it (a cnn row has no mlp.hidden).
    return [k for k in keys if len({json.dumps(_plain(r[k])) for r in rows if r.get(k) is not None}) > 1]


# The cost columns of every leaderboard: results column -> header.
COST_HEADERS = {
    m.PARAMS: "params", m.CHECKPOINT_MB: "MB", m.LATENCY_MS: "ms@1", m.THROUGHPUT: "samples/s",
    m.TRAIN_SECONDS: "train_s",
}  # fmt: skip


def cost_cells(row: dict[str, Any]) -> list[str]:
    """params with thousands separators, the rest to 3 significant figures; '-' when not measured."""
    cells = []
    for key in COST_HEADERS:
        value = _plain(row.get(key))
        if not finite(value):
            cells.append("-")
        elif key == m.PARAMS:
            cells.append(f"{int(value):,}")
        else:
            cells.append(f"{float(value):.3g}")
    return cells


def leaderboard(rows: list[dict[str, Any]], metric: str, top: int = 10) -> str:
    knobs = differing_knobs(rows)
    header = ["#", "trial", *[k.removeprefix("config.") for k in knobs], "epochs", "status", *LEADERBOARD.values()]
    header += list(COST_HEADERS.values())
    table = [header]
    for i, row in enumerate(ordered(rows, metric)[:top], 1):
        table.append(
            [
                str(i),
                str(row["trial_name"]),
                *[cell(row.get(k)) for k in knobs],
                str(row["epochs_run"]),
                str(row["status"]),
                *[cell(row.get(f"best_{k}")) for k in LEADERBOARD],
                *cost_cells(row),
            ]
        )
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    return "\n".join("  ".join(text.ljust(w) for text, w in zip(r, widths, strict=True)).rstrip() for r in table)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def cell(value: Any) -> str:
    """One table cell: accuracies to 4 places, lists (numpy arrays from parquet too) as [a,b]."""
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if 0.01 <= abs(value) < 1 else f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
