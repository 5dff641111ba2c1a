"""status.json: whether the sweep is running, interrupted or finished, and how each ended trial ended.

    {"state": "finished", "updated": 1764590000.0, "trials": {"cnn-adam-...-00003": {"status": "stopped", ...}}}

Written by the driver as trials end (at most every WRITE_EVERY_S; an early stop is only known to it: on
disk a stopped trial and an interrupted one look alike) and when the sweep ends. `report` reads it to say "finished" or
"unfinished" and to tell a trial early stopping cut from one an interrupt left mid-run.
"""

from __future__ import annotations

import math
import time
from typing import Any

from orchestrator.location import STATUS, Location
from orchestrator.records import Observer, TrialRecord

RUNNING, INTERRUPTED, FINISHED, FAILED = "running", "interrupted", "finished", "failed"
WRITE_EVERY_S = 2.0  # as trials end; as often as the experiment-state snapshots of a small sweep


def read_status(location: Location) -> dict[str, Any]:
    """The status record, or an empty one (no sweep has run the driver this far; or unreadable)."""
    try:
        status = location.read_json(STATUS)
    except (OSError, ValueError):
        return {"state": None, "trials": {}}
    if not isinstance(status, dict) or not isinstance(status.get("trials"), dict):
        return {"state": None, "trials": {}}
    return status


class StatusWriter(Observer):
    """Rewrites the whole file, so as trials end it writes at most every `every_s` seconds (a sweep of ten
    thousand trials would otherwise write ten thousand growing files); the sweep's end writes at once."""

    def __init__(self, location: Location, every_s: float = WRITE_EVERY_S, clock: Any = time.monotonic) -> None:
        self.location, self.every_s, self.clock = location, every_s, clock
        self.status = read_status(location)  # a resumed sweep keeps what earlier runs recorded
        self.written_at = -math.inf
        self.dirty = False

    def _write(self, state: str) -> None:
        self.status.update(state=state, updated=time.time())
        self.location.write_json(self.status, STATUS)
        self.written_at, self.dirty = self.clock(), False

    def _soon(self) -> None:
        self.dirty = True
        if self.clock() - self.written_at >= self.every_s:
            self._write(RUNNING)

    def heartbeat(self, records: list[TrialRecord]) -> None:
        if self.dirty:
            self._soon()

    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        self._write(RUNNING)

    def trial_ended(self, record: TrialRecord) -> None:
        self.status["trials"][record.name] = {
            "status": record.status,
            "epochs_run": record.epochs_run,
            "error": record.error,
        }
        self._soon()

    def sweep_ended(self, records: list[TrialRecord], interrupted: bool) -> None:
        for record in records:
            if record.ended:
                self.status["trials"][record.name] = {
                    "status": record.status,
                    "epochs_run": record.epochs_run,
                    "error": record.error,
                }
        self._write(INTERRUPTED if interrupted else RUNNING)  # the sweep says FINISHED once outputs exist

    def finish(self, state: str) -> None:
        self._write(state)
