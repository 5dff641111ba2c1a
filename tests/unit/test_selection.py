"""Ranking picks the best checkpoint by one score over all trials and epochs; retention keeps by the same rule."""

from __future__ import annotations

from pathlib import Path

from orchestrator.location import Location
from orchestrator.outputs.retention import SETTLE_S, CheckpointRetention, kept, trial_checkpoints
from orchestrator.outputs.tables import leaderboard
from orchestrator.records import CheckpointRef, TrialRecord, rank_checkpoints
from trainables import metrics as m
from trainables.recipe import TrialConfig


def _record(trial_id: str, tests: list[float], vals: list[float] | None = None, **kw: object) -> TrialRecord:
    record = TrialRecord(trial_id, f"t-{trial_id}", TrialConfig(epochs=3), **kw)  # type: ignore[arg-type]
    vals = vals or [t - 0.01 for t in tests]
    for epoch, (test, val) in enumerate(zip(tests, vals, strict=True), 1):
        row = {m.EPOCH: epoch, m.TEST_ACCURACY: test, m.VAL_ACCURACY: val, m.DIVERGED: False}
        row[m.SELECTION_SCORE] = m.selection_score(row, m.TEST_ACCURACY)
        row["checkpoint_dir_name"] = f"checkpoint_{epoch - 1:06d}"
        record.report(row)
        record.checkpoints.append(CheckpointRef(f"t-{trial_id}/checkpoint_{epoch - 1:06d}", row))
    record.state = "ended"
    return record


def test_best_epoch_not_last_epoch_of_best_trial() -> None:
    records = [_record("a", [0.80, 0.90, 0.85]), _record("b", [0.70, 0.88, 0.89])]
    best, ref = rank_checkpoints(records, m.TEST_ACCURACY)[0]
    assert (best.trial_id, ref.epoch, ref.path) == ("a", 2, "t-a/checkpoint_000001")


def test_val_metric_selection_and_nan_and_diverged_never_win() -> None:
    nan = _record("nan", [float("nan")])
    diverged = _record("div", [0.99])
    diverged.history[-1][m.DIVERGED] = True
    fine = _record("ok", [0.5])
    assert [r.trial_id for r, _ in rank_checkpoints([nan, diverged, fine], m.VAL_ACCURACY)] == ["ok"]


def test_status_and_rows() -> None:
    stopped, done = _record("s", [0.6]), _record("d", [0.7, 0.8, 0.9])
    failed = _record("e", [0.5], error="RuntimeError: boom")
    rows = {r["trial_id"]: r for r in (x.row(m.TEST_ACCURACY) for x in (stopped, done, failed))}
    assert rows["s"]["status"] == "stopped" and rows["s"]["stopped_early"]
    assert rows["d"]["status"] == "completed" and rows["d"]["best_epoch"] == 3
    assert rows["e"]["status"] == "error" and rows["e"]["error"] == "RuntimeError: boom"
    assert rows["d"]["best_checkpoint"] == "t-d/checkpoint_000002"  # relative to the experiment
    assert leaderboard(list(rows.values()), m.TEST_ACCURACY).splitlines()[1].split()[1] == "t-d"


def _kept_epochs(record: TrialRecord, keep: int) -> list[int]:
    refs = trial_checkpoints(record)
    return sorted(
        int(ref.path.rsplit("_", 1)[-1]) + 1 for ref in refs if ref.path in kept(record, refs, m.TEST_ACCURACY, keep)
    )


def test_ties_go_where_retention_goes_so_the_chosen_checkpoint_still_exists() -> None:
    # Equal test accuracy at three epochs; epoch 1 has the best validation accuracy: it is the best, and kept.
    record = _record("tie", [0.9, 0.9, 0.9], vals=[0.88, 0.85, 0.86])
    assert rank_checkpoints([record], m.TEST_ACCURACY)[0][1].epoch == 1
    assert _kept_epochs(record, 2) == [1, 3]  # the best two (1, then 3 over 2 by validation), the latest is 3
    assert _kept_epochs(record, 1) == [1, 3]  # the best, and the latest
    # A full tie (same test and validation accuracy): the later epoch wins, in the ranking and in retention.
    full = _record("full", [0.9, 0.9, 0.9], vals=[0.88, 0.88, 0.88])
    assert rank_checkpoints([full], m.TEST_ACCURACY)[0][1].epoch == 3
    assert _kept_epochs(full, 1) == [3]
    for keep in (1, 2, 3):
        for rec in (record, full):
            assert rank_checkpoints([rec], m.TEST_ACCURACY)[0][1].epoch in _kept_epochs(rec, keep)


def test_retention_deletes_only_what_no_snapshot_can_name(tmp_path: Path) -> None:
    location = Location.parse(str(tmp_path), "exp")
    record = _record("r", [0.5, 0.9, 0.6, 0.7])
    for ref in trial_checkpoints(record):
        (tmp_path / "exp" / ref.path).mkdir(parents=True)
    now = [0.0]
    retention = CheckpointRetention(location, m.TEST_ACCURACY, keep=1, clock=lambda: now[0])
    retention.trial_reported(record)  # epochs 1 and 3 are neither the best (2) nor the latest (4) ...
    on_disk = lambda: sorted(p.name for p in (tmp_path / "exp" / "t-r").iterdir())  # noqa: E731
    assert on_disk() == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    now[0] = SETTLE_S  # ... and are deleted once no experiment-state snapshot can still name them
    retention.trial_reported(record)
    assert on_disk() == ["checkpoint_000001", "checkpoint_000003"]
    retention.finish([record])
    assert on_disk() == ["checkpoint_000001", "checkpoint_000003"]


def test_the_tie_break_never_outranks_a_better_primary_metric() -> None:
    low = {m.TEST_ACCURACY: 0.9000, m.VAL_ACCURACY: 1.0}
    high = {m.TEST_ACCURACY: 0.9001, m.VAL_ACCURACY: 0.0}
    assert m.selection_score(high, m.TEST_ACCURACY) > m.selection_score(low, m.TEST_ACCURACY)
    one_more_right = {m.TEST_ACCURACY: 1 / 10_000, m.VAL_ACCURACY: 0.0}
    assert m.selection_score(one_more_right, m.TEST_ACCURACY) > m.selection_score(
        {m.TEST_ACCURACY: 0.0, m.VAL_ACCURACY: 1.0}, m.TEST_ACCURACY
    )
