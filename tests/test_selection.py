"""Ranking picks the best checkpoint by score over all trials and epochs, never 'the latest'."""

from __future__ import annotations

from orchestrator.selection import TrialOutcome, leaderboard, rank, trial_rows
from trainables import metrics as m
from trainables.recipe import TrialConfig


def _outcome(trial_id: str, scores: list[float], **kw: object) -> TrialOutcome:
    history = [{m.EPOCH: i + 1, m.TEST_ACCURACY: s, m.VAL_ACCURACY: s - 0.01, m.DIVERGED: False}
               for i, s in enumerate(scores)]
    return TrialOutcome(trial_id, f"t-{trial_id}", TrialConfig(epochs=3), history,
                        checkpoints=[(f"ckpt-{trial_id}-{r[m.EPOCH]}", r) for r in history], **kw)  # type: ignore[arg-type]


def test_best_epoch_not_last_epoch_of_best_trial() -> None:
    outcomes = [_outcome("a", [0.80, 0.90, 0.85]), _outcome("b", [0.70, 0.88, 0.89])]
    best = rank(outcomes, m.TEST_ACCURACY)[0]
    assert (best.outcome.trial_id, best.epoch, best.checkpoint) == ("a", 2, "ckpt-a-2")


def test_val_metric_selection_and_nan_and_diverged_never_win() -> None:
    nan = _outcome("nan", [float("nan")])
    diverged = _outcome("div", [0.99])
    diverged.history[-1][m.DIVERGED] = True
    fine = _outcome("ok", [0.5])
    ranked = rank([nan, diverged, fine], m.VAL_ACCURACY)
    assert [c.outcome.trial_id for c in ranked] == ["ok"]


def test_status_and_rows() -> None:
    stopped, done = _outcome("s", [0.6]), _outcome("d", [0.7, 0.8, 0.9])
    failed = _outcome("e", [0.5], error="RuntimeError: boom")
    rows = {r["trial_id"]: r for r in trial_rows([stopped, done, failed], m.TEST_ACCURACY)}
    assert rows["s"]["status"] == "stopped" and rows["s"]["stopped_early"]
    assert rows["d"]["status"] == "completed" and rows["d"]["best_epoch"] == 3
    assert rows["e"]["status"] == "error" and rows["e"]["error"] == "RuntimeError: boom"
    assert leaderboard(list(rows.values()), m.TEST_ACCURACY).splitlines()[1].split()[1] == "t-d"
