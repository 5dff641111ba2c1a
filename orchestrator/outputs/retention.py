"""Which checkpoints a trial keeps: its best `selection.keep_checkpoints` by the selection score, and its
latest; the rest are deleted, by the driver, once it is safe.

    selection: {keep_checkpoints: 2}

The ranking is `records.rank_checkpoints`' (the selection score, ties to the later epoch), so the checkpoint
the final selection wants is one this retention keeps: the two are one rule. Deleting is the driver's
(Ray keeps every checkpoint) because of a resume: the experiment state a rerun restores from is a snapshot
taken every couple of seconds and names each trial's latest checkpoint then. A checkpoint that stopped
being the latest is deleted only SETTLE_S later, when every snapshot since names a newer one; when the sweep
has finished, the rest go at once. A population (`population:`) pins every checkpoint at an interval epoch
until the sweep has finished: a later copy, or a copy made again after a restart, loads its parent's.
No Ray here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from orchestrator.location import Location
from orchestrator.records import CheckpointRef, Observer, TrialRecord, rank_checkpoints

SETTLE_S = 10.0  # several experiment-state snapshots (every 2 s) after a checkpoint stopped being the latest
SETTLE_SNAPSHOTS = 5  # the same, in snapshots, for a sweep whose snapshots are further apart


def trial_checkpoints(record: TrialRecord) -> list[CheckpointRef]:
    """The checkpoints a trial reported, from its history (a report names the checkpoint it came with)."""
    return [CheckpointRef(f"{record.name}/{row['checkpoint_dir_name']}", row) for row in record.history
            if row.get("checkpoint_dir_name")]  # fmt: skip


def kept(record: TrialRecord, refs: list[CheckpointRef], metric: str, keep: int) -> set[str]:
    """The best `keep` by the selection rule, and the latest (a restarted trial continues from it)."""
    probe = TrialRecord(record.trial_id, record.name, record.config, checkpoints=refs)
    best = [ref.path for _, ref in rank_checkpoints([probe], metric)[:keep]]
    latest = max(refs, key=lambda ref: ref.epoch).path if refs else None
    return {*best, *([latest] if latest else [])}


class CheckpointRetention(Observer):
    def __init__(
        self,
        location: Location,
        metric: str,
        keep: int,
        clock: Callable[[], float] = time.monotonic,
        pinned: frozenset[int] = frozenset(),
        settle_s: float = SETTLE_S,
    ) -> None:
        self.location, self.metric, self.keep, self.clock, self.settle_s = location, metric, keep, clock, settle_s
        self.pinned = pinned  # epochs whose checkpoints stay until the sweep has finished
        self.superseded: dict[str, float] = {}  # path -> when it stopped being the latest
        self.deleted: set[str] = set()

    def trial_reported(self, record: TrialRecord) -> None:
        self._prune(record, settle=self.settle_s)

    def finish(self, records: list[TrialRecord]) -> None:
        """After the sweep: each trial down to its kept checkpoints, now."""
        for record in records:
            self._prune(record, settle=0.0)

    def _prune(self, record: TrialRecord, settle: float) -> None:
        refs = trial_checkpoints(record)
        keep = kept(record, refs, self.metric, self.keep)
        now = self.clock()
        latest = max((ref.epoch for ref in refs), default=0)
        for ref in refs:
            if ref.path in keep or ref.path in self.deleted or (settle and ref.epoch in self.pinned):
                continue
            since = self.superseded.setdefault(ref.path, now) if ref.epoch < latest else now
            if now - since >= settle:
                with contextlib.suppress(FileNotFoundError, OSError):
                    self.location.delete(ref.path)
                self.deleted.add(ref.path)
