"""Faults from the world around a sweep, as the driver hears of them: one line each, no traceback.

- `TrialFaults`: a trial whose storage failed (a full disk, a store that stayed down) says so through
  Ray's key-value store and waits to be stopped (`trainables.trial`), so its failure never spends one
  of its retries or ends it as errored; the driver reads those reports here and stops the sweep the way
  an interrupt does (`storage_guard.declare`).
- `quiet_tracebacks`: Ray's own log records that carry a traceback (a trial's failure, a snapshot that
  could not be saved) go whole to a file; the terminal gets one line naming it, once per message, and
  nothing while the sweep is already stopping for a fault.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ray.experimental import internal_kv

from orchestrator import storage_guard
from trainables.entry import FAULT_KEY

POLL_S = 1.0


class TrialFaults:
    """The trials' reports of storage faults, read at most every POLL_S."""

    def __init__(self, experiment: str) -> None:
        self.prefix = FAULT_KEY.format(experiment=experiment, trial_id="")
        self.last = 0.0
        for key in self._keys():  # a report left by an earlier run on the same cluster is not news
            internal_kv._internal_kv_del(key)

    def _keys(self) -> list[bytes]:
        if not internal_kv._internal_kv_initialized():
            return []
        return list(internal_kv._internal_kv_list(self.prefix))

    def poll(self) -> None:
        now = time.monotonic()
        if now - self.last < POLL_S:
            return
        self.last = now
        for key in self._keys():
            raw = internal_kv._internal_kv_get(key)
            internal_kv._internal_kv_del(key)
            try:
                report: dict[str, Any] = json.loads(raw or b"{}")
                fault = storage_guard.StorageFault(report["kind"], report["path"], report["detail"])
            except (ValueError, KeyError, TypeError):
                continue
            storage_guard.declare(fault)


class _ToFile(logging.Filter):
    """Keeps tracebacks off the terminal: the whole record goes to `path`, one line to stderr instead."""

    def __init__(self, path: Path, stopping: Any) -> None:
        super().__init__()
        self.path, self.stopping = path, stopping
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info and "Traceback (most recent call last)" not in record.getMessage():
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as log:
                log.write(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s").format(record) + "\n")
            where = f" (details: {self.path})"
        except OSError:
            where = ""
        message = record.getMessage().strip().splitlines()[0][:200] if record.getMessage().strip() else record.name
        if message.startswith("Trial task failed"):
            return False  # the trial's own line (callbacks.Relay) names its error.txt
        if not self.stopping() and message not in self.said:
            self.said.add(message)
            print(f"warning: Ray: {message}{where}", file=sys.stderr, flush=True)
        return False


def quiet_tracebacks(log_path: Path, stopping: Any) -> None:
    """Installs the filter on every handler of Ray's loggers (set up by `ray.init`)."""
    flt = _ToFile(log_path, stopping)
    for name in ("ray", "ray.tune", "ray.train"):
        logger = logging.getLogger(name)
        logger.addFilter(flt)
        for handler in logger.handlers:
            handler.addFilter(flt)
