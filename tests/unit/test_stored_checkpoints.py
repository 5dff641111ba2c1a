"""orchestrator/tune/tuner.py: a resumed sweep ranks the checkpoints its trials stored, registered by Tune or not.

A driver killed between a trial's checkpoint and Tune's next snapshot leaves that checkpoint on storage and
unknown to the restored Tune; a trial then cut at the rung it had reached never registers it. The end-to-end
case is tests/integration/test_reproducibility.py (a kill and resume gives the uninterrupted sweep's tables)."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.location import Location
from orchestrator.tune.tuner import _stored_checkpoints
from trainables import metrics as m
from trainables.checkpoint import METRICS_FILE


def _checkpoint(location: Location, trial: str, index: int, metrics: dict | None) -> None:
    location.makedirs(trial, f"checkpoint_{index:06d}")
    location.write_bytes(b"weights", trial, f"checkpoint_{index:06d}", "checkpoint.pt")
    if metrics is not None:
        location.write_bytes(json.dumps(metrics).encode(), trial, f"checkpoint_{index:06d}", METRICS_FILE)


def test_every_checkpoint_with_its_metrics_is_found_and_ranked(tmp_path: Path) -> None:
    location = Location._local(tmp_path / "runs", "exp")
    location.makedirs("trial_a")
    first = {m.EPOCH: 1, m.VAL_ACCURACY: 0.5, m.SELECTION_SCORE: 0.5}
    second = {m.EPOCH: 2, m.VAL_ACCURACY: 0.7, m.SELECTION_SCORE: 0.7}
    _checkpoint(location, "trial_a", 0, first)
    _checkpoint(location, "trial_a", 1, second)
    _checkpoint(location, "trial_a", 2, None)  # cut short before its metrics were written: never ranked
    location.write_bytes(b"{}", "trial_a", "result.json")

    refs = sorted(_stored_checkpoints(location, "trial_a"), key=lambda ref: ref.epoch)

    found = [(ref.path, ref.epoch) for ref in refs]
    assert found == [("trial_a/checkpoint_000000", 1), ("trial_a/checkpoint_000001", 2)]
    assert refs[1].metrics == second


def test_a_trial_without_checkpoints_or_directory_has_none(tmp_path: Path) -> None:
    location = Location._local(tmp_path / "runs", "exp")
    location.makedirs("trial_b")
    assert _stored_checkpoints(location, "trial_b") == []
    assert _stored_checkpoints(location, "missing") == []
