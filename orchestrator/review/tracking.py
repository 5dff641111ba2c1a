"""MLflow tracking: one parent run per sweep, one child run per trial, the best model on the parent.

    tracking:
      mlflow:
        tracking_uri: http://127.0.0.1:5000   # http(s)://, file: or sqlite:
        experiment: fashion                   # optional; default: the sweep's name

Everything is driver-side, from the plain trial records the observers already see; the trainables do not
know MLflow exists. What each hook sends:
- sweep_started: gets or creates the MLflow experiment and the sweep's parent run (the whole resolved
  config as flat dotted params; the config hash, the experiment directory and the trial count as tags),
  and records the parent's run id and each trial's child run id in `mlflow.json` in the experiment
  directory, so that the rerun resuming an interrupted sweep logs into the same runs;
- trial_started: creates the trial's child run (run name = trial name, `mlflow.parentRunId`), its knobs as
  params; a trial restarted after a pause, a failure or a resume reopens its existing child run;
- trial_reported: the new epoch's metrics at `step=epoch`, one `log_batch` request;
- trial_ended: tags `outcome` (completed | stopped | diverged | error), `stopped_early`, `epochs_run`,
  metrics best_<metric> for the accuracies, balanced accuracies and macro-F1s; the child ends FINISHED,
  or FAILED when it diverged or failed past its retries;
- sweep_ended: after an interrupt, the parent and the children still open are marked KILLED (MLflow's
  status for a run stopped from outside); the rerun that resumes the sweep reopens them as RUNNING and
  logs on into the same runs. A finished sweep is closed by `finish`, once best/ is exported;
- finish(manifest): best/model.pt and best/manifest.json as artifacts of the parent (under `best/`),
  tag `best_trial`, and the parent ends FINISHED; `finish(None)` (no usable checkpoint) ends it FAILED.

Every epoch is logged once per child run, whatever path leads to it (a report, a child created late and
backfilled, a trial restored or trained again after a restart): the steps a run holds are kept in memory,
and read once from the server when a resumed sweep reopens the run. MLflow cannot replace a point, so an
epoch trained again after a restart keeps its first point (with a seed, the same numbers on the CPU).
A trial that already ended before the resume is not touched.

Tracking never stops training: the first request that cannot reach the server turns the tracker off
with one warning line (errors the server answers with are printed, and turn it off after a few), and
each request gives up after a couple of short retries. `tracking_values.check_reachable` refuses an http(s)
URI that does not answer before Ray starts.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator import isolated
from orchestrator.config.schema import ExperimentConfig
from orchestrator.location import BEST, BEST_MANIFEST, BEST_MODEL, MLFLOW, Location
from orchestrator.records import Observer, TrialRecord
from orchestrator.review.tracking_values import MAX_TAG_VALUE, flatten, key, one_line, text
from trainables import metrics as m
from trainables.metrics import finite

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# The epoch metrics a child run gets, each at step=epoch.
EPOCH_METRICS = (m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.VAL_LOSS, m.VAL_ACCURACY, m.TEST_LOSS, m.TEST_ACCURACY,
                 *m.CLASS_BALANCED, m.LR, m.LR_LAST, m.EPOCH_SECONDS, m.SAMPLES_PER_SECOND)  # fmt: skip
# Each trial's best over its epochs, on its child run when it ends.
BEST_METRICS = (m.VAL_ACCURACY, m.TEST_ACCURACY, *m.CLASS_BALANCED)
# MLflow's limits per log_batch request (mlflow.utils.validation); per value: tracking_values.
MAX_PARAMS_PER_BATCH, MAX_METRICS_PER_BATCH = 100, 1000
ANSWERED_ERRORS_BEFORE_OFF = 5  # errors the server answered with (bad request, permission) before giving up
# A request blocks Tune's loop while it waits, so the client's defaults (7 retries with backoff, 120 s
# timeout: minutes per request) are cut to seconds; a value the user exported wins.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # a "View run" line per run would drown the progress lines
}

Hook = TypeVar("Hook", bound=Callable[..., None])


def _guarded(hook: Hook) -> Hook:
    """A hook that is skipped once the tracker is off, and turns it off when the server cannot be reached."""

    @functools.wraps(hook)
    def wrapper(self: MlflowTracker, *args: Any) -> None:
        if self.off:
            return
        try:
            hook(self, *args)
        except Exception as exc:
            self.failed(exc, hook.__name__)

    return wrapper  # type: ignore[return-value]


STATE_EVERY_S = 2.0  # mlflow.json as child runs are made (a resume reopens the ones it lists)


class MlflowTracker(Observer):
    def __init__(self, cfg: ExperimentConfig, location: Location) -> None:
        from mlflow.tracking import MlflowClient

        assert cfg.tracking.mlflow is not None
        for name, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self.cfg, self.location = cfg, location
        self.uri = cfg.tracking.mlflow.tracking_uri
        self.registered_model = cfg.tracking.mlflow.registered_model
        self.experiment_name = cfg.tracking.mlflow.experiment or cfg.name
        self.client: MlflowClient = MlflowClient(tracking_uri=self.uri)
        self.off = False
        self.answered_errors = 0
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.children: dict[str, str] = {}  # trial name -> child run id (kept in mlflow.json)
        self.checked: set[str] = set()  # child runs known open in this run of the driver
        self.open: set[str] = set()  # child runs started and not yet ended (closed KILLED on an interrupt)
        self.steps: dict[str, set[int]] = {}  # child run id -> epochs it holds: each is logged once
        self.state_written_at = -math.inf  # mlflow.json lists every child: rewritten at most every STATE_EVERY_S
        self.state_dirty = False

    # ------------------------------------------------------------------ failures

    def failed(self, exc: Exception, hook: str) -> None:
        """The server answered with an error: re-raised (the observers print it), off after a few. Anything
        else (it did not answer): off now, with one line, for the rest of the sweep."""
        from mlflow.exceptions import RestException

        if isinstance(exc, RestException):
            self.answered_errors += 1
            if self.answered_errors < ANSWERED_ERRORS_BEFORE_OFF:
                raise exc
            self.off = True
            print(
                f"warning: MLflow tracking off for the rest of the sweep after {self.answered_errors} errors "
                f"from {self.uri}: {one_line(exc)}",
                file=sys.stderr,
                flush=True,
            )
            return
        self.off = True  # unreachable (or an unexpected failure): one line, not one per hook from now on
        print(
            f"warning: MLflow tracking off for the rest of the sweep ({self.uri}, in {hook}): "
            f"{type(exc).__name__}: {one_line(exc)}",
            file=sys.stderr,
            flush=True,
        )

    # ------------------------------------------------------------------ state on storage

    def _read_state(self) -> dict[str, Any]:
        try:
            state = self.location.read_json(MLFLOW)
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self) -> None:
        self.location.write_json(
            {
                "tracking_uri": self.uri,
                "experiment": self.experiment_name,
                "experiment_id": self.experiment_id,
                "parent_run_id": self.parent_id,
                "children": self.children,
            },
            MLFLOW,
        )

    def _write_state_soon(self) -> None:
        self.state_dirty = True
        if time.monotonic() - self.state_written_at >= STATE_EVERY_S:
            self._write_state()
            self.state_written_at, self.state_dirty = time.monotonic(), False

    @_guarded
    def heartbeat(self, records: list[TrialRecord]) -> None:
        if self.state_dirty:
            self._write_state_soon()

    # ------------------------------------------------------------------ runs

    def _experiment(self) -> str:
        from mlflow.exceptions import RestException

        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            try:
                return self.client.create_experiment(self.experiment_name)
            except RestException:  # another sweep created it a moment ago
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":  # in the trash: its name cannot be reused otherwise
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _reopen(self, run_id: str | None) -> bool:
        """A run recorded by an earlier run of the driver: True when it still exists (reopened if it was
        closed); False when it was deleted on the server."""
        from mlflow.exceptions import RestException

        if not run_id:
            return False
        try:
            run = self.client.get_run(run_id)
        except RestException:
            return False
        if run.info.lifecycle_stage != "active" or run.info.experiment_id != self.experiment_id:
            return False
        if run.info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        return True

    def _log(
        self, run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = ()
    ) -> None:
        """As few log_batch requests as MLflow's per-request limits allow (usually one)."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self.client.log_batch(
                run_id,
                metrics=metrics[:MAX_METRICS_PER_BATCH],
                params=params[:MAX_PARAMS_PER_BATCH],
                tags=tags[:MAX_PARAMS_PER_BATCH],
            )
            metrics, params = metrics[MAX_METRICS_PER_BATCH:], params[MAX_PARAMS_PER_BATCH:]
            tags = tags[MAX_PARAMS_PER_BATCH:]

    @staticmethod
    def _params(values: dict[str, Any]) -> list[Any]:
        from mlflow.entities import Param

        return [Param(key(name), text(value)) for name, value in values.items()]

    @staticmethod
    def _tags(values: dict[str, Any]) -> list[Any]:
        from mlflow.entities import RunTag

        return [RunTag(key(name), text(value, MAX_TAG_VALUE)) for name, value in values.items()]

    @staticmethod
    def _metrics(row: dict[str, Any], step: int) -> list[Any]:
        from mlflow.entities import Metric

        stamp = row.get("timestamp")  # Ray's report time (seconds): the epoch's own time, also when backfilled
        millis = (
            int(float(stamp) * 1000) if isinstance(stamp, int | float) and finite(stamp) else int(time.time() * 1000)
        )
        return [Metric(name, float(row[name]), millis, step) for name in EPOCH_METRICS if finite(row.get(name))]

    def _log_epochs(self, run_id: str, rows: list[dict[str, Any]], params: Sequence[Any] = ()) -> None:
        """The epochs in `rows` that the run does not hold yet (each once), then held once the server took them."""
        held = self.steps.setdefault(run_id, set())
        new = {int(row[m.EPOCH]): row for row in rows if finite(row.get(m.EPOCH)) and int(row[m.EPOCH]) not in held}
        metrics = [metric for epoch, row in new.items() for metric in self._metrics(row, epoch)]
        self._log(run_id, metrics=metrics, params=params)
        held.update(new)

    def _child(self, record: TrialRecord) -> str:
        """The trial's child run: reopened when an earlier run of the driver made it, else created (with its
        params, and the epochs it already has when it comes back from storage)."""
        run_id = self.children.get(record.name)
        if run_id is not None and run_id in self.checked:
            return run_id
        if run_id is None or not self._reopen(run_id):
            run = self.client.create_run(
                str(self.experiment_id),
                run_name=record.name,
                tags={"mlflow.parentRunId": str(self.parent_id), "trial_id": record.trial_id, "sweep": self.cfg.name},
            )
            run_id = run.info.run_id
            self.steps[run_id] = set()
            self._log_epochs(run_id, record.history, params=self._params(record.config.knobs()))
            self.children[record.name] = run_id
            self._write_state_soon()
        elif run_id not in self.steps:  # reopened: the epochs an earlier run of the driver logged
            history = self.client.get_metric_history(run_id, m.VAL_ACCURACY)
            self.steps[run_id] = {int(point.step) for point in history}
        self.checked.add(run_id)
        self.open.add(run_id)
        return run_id

    # ------------------------------------------------------------------ hooks

    @_guarded
    def sweep_started(self, records: list[TrialRecord], resumed: bool) -> None:
        from orchestrator.claim import fingerprint

        self.experiment_id = self._experiment()
        state = self._read_state()
        same_server = state.get("tracking_uri") == self.uri and state.get("experiment") == self.experiment_name
        if same_server and self._reopen(state.get("parent_run_id")):
            self.parent_id = str(state["parent_run_id"])
            self.children = {str(k): str(v) for k, v in (state.get("children") or {}).items()}
            how = "resumed"
        else:
            tags = {
                "config_sha256": fingerprint(self.cfg)["sha256"],
                "experiment_dir": self.location.display,
                "trials": str(self.cfg.trial_count),  # create_run takes string tags only
                "role": "sweep",
            }
            run = self.client.create_run(self.experiment_id, run_name=self.cfg.name, tags=tags)
            self.parent_id = run.info.run_id
            params = flatten(self.cfg.model_dump(mode="json", exclude={"tracking"}))
            self._log(self.parent_id, params=self._params(params))
            self.children = {}
            how = "started"
        self._write_state()
        print(f"mlflow: {how} run {self.parent_id} in experiment {self.experiment_name!r} at {self.uri}", flush=True)

    @_guarded
    def trial_started(self, record: TrialRecord) -> None:
        if self.parent_id is not None:
            self._child(record)

    @_guarded
    def trial_reported(self, record: TrialRecord) -> None:
        if self.parent_id is None or not finite(record.last.get(m.EPOCH)):
            return
        run_id = self._child(record)
        self._log_epochs(run_id, [record.last])

    @_guarded
    def trial_ended(self, record: TrialRecord) -> None:
        from mlflow.entities import Metric

        if self.parent_id is None:
            return
        run_id = self._child(record)
        status = record.status
        tags = {"outcome": status, "stopped_early": status == "stopped", "epochs_run": record.epochs_run}
        if record.error:
            tags["error"] = record.error
        now = int(time.time() * 1000)
        best = [
            Metric(f"best_{name}", float(value), now, record.epochs_run)
            for name in BEST_METRICS
            if (value := record.best(name)) is not None
        ]
        self._log(run_id, metrics=best, tags=self._tags(tags))
        self.client.set_terminated(run_id, "FINISHED" if status in ("completed", "stopped") else "FAILED")
        self.open.discard(run_id)

    @_guarded
    def sweep_ended(self, records: list[TrialRecord], interrupted: bool) -> None:
        if self.state_dirty:
            self._write_state()
            self.state_dirty = False
        if not interrupted or self.parent_id is None:
            return  # a finished sweep is closed by `finish`, once best/ exists
        for run_id in sorted(self.open):
            self.client.set_terminated(run_id, "KILLED")
        self.open.clear()
        self.client.set_terminated(self.parent_id, "KILLED")

    def finish(self, manifest: dict[str, Any] | None) -> None:
        """After the export: best/ on the parent run and the parent FINISHED; None (nothing to export) ends it
        FAILED. Never raises: the sweep's outputs are written by now, and its exit code stays theirs."""
        if self.off or self.parent_id is None:
            return
        try:
            if manifest is not None:
                self._log_best(manifest)
            self.client.set_terminated(self.parent_id, "FINISHED" if manifest is not None else "FAILED")
        except Exception as exc:  # noqa: BLE001 - a tracking problem must not fail a finished sweep
            print(
                f"warning: MLflow: could not close run {self.parent_id} at {self.uri}: "
                f"{type(exc).__name__}: {one_line(exc)}",
                file=sys.stderr,
                flush=True,
            )

    def _log_model(self, parent: str, manifest: dict[str, Any]) -> None:
        """The best model as an MLflow model (review.tracking_model, in a child: it loads the model with torch,
        which the driver never imports; orchestrator.isolated); a failure is one warning line."""
        from orchestrator.review.tracking_model import log_best_model

        try:
            isolated.call(log_best_model, self.uri, parent, self.location, manifest, self.registered_model)
        except Exception as exc:  # noqa: BLE001 - the artifacts and the run's status still go on
            print(
                f"warning: MLflow: the best model was not logged as an MLflow model: {type(exc).__name__}: "
                f"{one_line(exc)}",
                file=sys.stderr,
                flush=True,
            )

    def _log_best(self, manifest: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(f"best_{name}", float(manifest[name]), now, int(manifest.get("epoch") or 0))
            for name in BEST_METRICS
            if finite(manifest.get(name))
        ]
        best, parent = str(manifest.get("trial_name")), self.parent_id
        assert parent is not None
        self._log(parent, metrics=metrics, tags=self._tags({"best_trial": best, "best_epoch": manifest.get("epoch")}))
        if best in self.children:  # the selected trial's own run says so too
            self._log(self.children[best], tags=self._tags({"selected": True}))
        self._log_model(parent, manifest)
        if self.location.local_dir is not None:
            for name in (BEST_MODEL, BEST_MANIFEST):
                self.client.log_artifact(parent, str(self.location.local_dir / BEST / name), BEST)
            return
        with tempfile.TemporaryDirectory(prefix="mlflow-best-") as staging:  # object store: through a local copy
            for name in (BEST_MODEL, BEST_MANIFEST):
                path = Path(staging) / name
                path.write_bytes(self.location.read_bytes(BEST, name))
                self.client.log_artifact(parent, str(path), BEST)
