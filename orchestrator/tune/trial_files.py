"""Ray's files of each trial (params.json, params.pkl, result.json, progress.csv), written by the driver
straight into the trial's directory on storage, in Ray's formats.

Ray's own logger callbacks write them into the driver's staging directory, and Tune uploads that whole
directory at every experiment-state snapshot: every file of every trial created so far, each time. At a
thousand tiny trials that upload was most of the driver's time (a 1 MiB copy buffer, a temporary file, an
fsync and a rename per file, per snapshot) and it grew with the sweep. Written once where they belong,
a snapshot uploads only the experiment's own files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from typing import Any

import cloudpickle
from ray.tune.utils import flatten_dict
from ray.tune.utils.util import SafeFallbackEncoder

from orchestrator.location import PARAMS_JSON, PARAMS_PKL, PROGRESS_CSV, RESULT_JSON, Location


def _json(value: Any, **options: Any) -> str:
    return json.dumps(value, cls=SafeFallbackEncoder, **options)


class TrialFiles:
    """Writes each trial's files as its events arrive; keeps only the CSV columns of the trials that may still
    report (a progress.csv keeps the columns of its header, as Ray's does)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.columns: dict[str, tuple[str, ...]] = {}
        self._shared: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per distinct header

    def started(self, name: str, config: dict[str, Any]) -> None:
        """params.json and params.pkl: the trial's sampled values, as Ray writes them at every start."""
        self.location.write_bytes(_json(config, indent=2, sort_keys=True).encode(), name, PARAMS_JSON)
        self.location.write_bytes(cloudpickle.dumps(config), name, PARAMS_PKL)

    def reported(self, trial_id: str, name: str, result: dict[str, Any]) -> None:
        """One line of result.json (the whole result) and one row of progress.csv (flattened, no config)."""
        self.location.append_line(_json(result), name, RESULT_JSON)
        flat = flatten_dict({k: v for k, v in result.items() if k != "config"}, delimiter="/")
        columns = self.columns.get(trial_id) or self._header(name)
        lines = []
        if columns is None:
            columns = tuple(flat)
            lines.append(_csv_line(columns))
        self.columns[trial_id] = self._shared.setdefault(columns, columns)
        lines.append(_csv_line([flat.get(column, "") for column in columns]))
        self.location.append_line("\n".join(lines), name, PROGRESS_CSV)

    def _header(self, name: str) -> tuple[str, ...] | None:
        """The columns of a progress.csv an earlier run of this trial began (a resume), if any."""
        if not self.location.is_file(name, PROGRESS_CSV):
            return None
        first = self.location.read_bytes(name, PROGRESS_CSV).decode(errors="replace").partition("\n")[0]
        rows = list(csv.reader([first]))
        return tuple(rows[0]) if rows and rows[0] else None

    def ended(self, trial_id: str, staging: str | None) -> None:
        """Forget the trial's columns; drop its empty staging directory, which every later snapshot would
        otherwise upload again (Ray writes an error file there: such a directory is not empty and stays)."""
        self.columns.pop(trial_id, None)
        if staging:
            with contextlib.suppress(OSError):
                os.rmdir(staging)


def _csv_line(values: Any) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(list(values))
    return out.getvalue()
