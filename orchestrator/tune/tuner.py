"""Builds the Tuner (early stopping, resources, storage, checkpoint and failure policy), runs or resumes it.

What leaves this module is plain data: a `SweepRun` of `TrialRecord`s whose kept checkpoints are paths
relative to the experiment, so selection, export and review need no Ray.

Interrupts: the first SIGINT or SIGTERM asks Tune to stop the way its own Ctrl-C does (it saves the
experiment state one last time and leaves every unfinished trial resumable); later signals only say
that it is stopping. The caller reports the interrupt and exits 130 or 143.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import signal
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pyarrow.fs as pafs
from ray import tune

from orchestrator import storage_guard
from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import searched_fields
from orchestrator.location import Location
from orchestrator.records import CheckpointRef, Observer, TrialRecord
from orchestrator.review.names import run_name
from orchestrator.tune import callbacks, cluster, errored, faults, population
from orchestrator.tune.schedulers import ResumableASHA, SynchronousHalving
from orchestrator.tune.searchers import build_search_alg, param_space
from trainables import metrics as m
from trainables.checkpoint import METRICS_FILE as CHECKPOINT_METRICS
from trainables.data import Dataset
from trainables.entry import train_trial
from trainables.recipe import TrialConfig

EXPERIMENT_SYNC_S = 2  # how often the driver snapshots the experiment state a rerun resumes from
# A snapshot holds every trial created so far (about 26 kB each in Tune's state): a sweep of more than
# EXPERIMENT_SYNC_S * TRIALS_PER_SYNC_S trials snapshots less often, so that the driver's time in snapshots
# does not grow with the sweep (10,000 trials: every 20 s).
TRIALS_PER_SYNC_S = 500


def snapshot_period(trials: int) -> float:
    """Seconds between experiment-state snapshots: what a SIGKILLed driver's rerun may repeat at most."""
    return max(float(EXPERIMENT_SYNC_S), trials / TRIALS_PER_SYNC_S)


def max_pending(cfg: ExperimentConfig) -> int:
    """Trials Tune may hold created but not started (each with a directory and a resource request): two per
    slot of the cluster, at least 8. More would only cost the driver; fewer could leave a slot idle."""
    slots = cluster.cluster_cpus() / cfg.resources.cpu
    if cfg.search.max_concurrent_trials:
        slots = min(slots, cfg.search.max_concurrent_trials)
    return max(8, 2 * int(slots))


@contextlib.contextmanager
def tune_settings(cfg: ExperimentConfig) -> Iterator[None]:
    """Tune's settings read from the environment, for this run only; a value the user set wins."""
    ours = {
        "TUNE_GLOBAL_CHECKPOINT_S": f"{snapshot_period(cfg.trial_count):g}",
        "TUNE_MAX_PENDING_TRIALS_PG": str(max_pending(cfg)),
    }
    added = [key for key in ours if key not in os.environ]
    os.environ.update({key: ours[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@dataclass
class SweepRun:
    records: list[TrialRecord]
    resumed: bool
    interrupted: int | None  # the signal that stopped it, if one did
    fault: storage_guard.StorageFault | None = None  # the storage fault that stopped it, if one did


class Interrupt:
    """SIGINT/SIGTERM -> Tune's own graceful stop (its SIGUSR1 handler), once, from the main thread. A
    storage fault (a full disk, a store that stayed down) stops the sweep the same way."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.fault: storage_guard.StorageFault | None = None
        self.forwarded = False
        self.count = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards to Tune; Tune's would replace ours
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.signal is None:  # after an interrupt ours stay: a later signal only says it is stopping
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.signal is None:
            self.signal = signum
            print(
                f"\n{signal.Signals(signum).name}: stopping the trials and saving the experiment state; it "
                "stays resumable (rerun the same command)",
                file=sys.stderr,
                flush=True,
            )
            # Tune now logs its own account of the stop (unfinished trials, how to restore them by hand);
            # the line above and the one the launch prints at the end say what a user needs.
            logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
        elif self.count >= 3:
            print(
                "stopping now without a last save; a rerun resumes from the last experiment-state snapshot "
                f"(every {EXPERIMENT_SYNC_S} s; every trials/{TRIALS_PER_SYNC_S} s in a larger sweep)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + self.signal)
        else:
            print(
                "already stopping; the experiment stays resumable (a third signal stops at once)",
                file=sys.stderr,
                flush=True,
            )
        self.forward()

    def storage_fault(self, fault: storage_guard.StorageFault) -> None:
        """Any thread: the first fault stops the sweep (forwarded to Tune from its loop); Ray's own account of
        the failing snapshots and trials is not news after the one line the launch prints."""
        if self.fault is None and self.signal is None:
            self.fault = fault
            logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
            logging.getLogger("ray.train").setLevel(logging.CRITICAL)

    def forward(self) -> None:
        """Once Tune's loop runs, hand the stop to its SIGUSR1 handler (which Tune installs for this)."""
        if not self() or self.forwarded:
            return
        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):
            self.forwarded = True
            handler(signal.SIGUSR1, None)

    def __call__(self) -> bool:
        return self.signal is not None or self.fault is not None


def trial_name(fixed: dict[str, Any], searched: list[str], trial: Any) -> str:
    """Trial directories and TensorBoard runs: the model, the searched knobs' values, Tune's id."""
    return run_name(TrialConfig.resolve(fixed, callbacks.plain(trial.config or {})), searched, trial.trial_id)


# The fixed config a sweep's trial namer names trials with, by its digest. Tune pickles the namer into every
# trial's saved state (twice: as name and directory creator) and keeps each trial's state in memory as JSON, so
# the namer pickles as the digest alone; `run` registers the config before Tune builds or restores a namer.
_FIXED: dict[str, dict[str, Any]] = {}


def register_fixed(fixed: dict[str, Any]) -> str:
    key = hashlib.sha256(json.dumps(fixed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    _FIXED.setdefault(key, fixed)
    return key


class TrialNamer:
    """`trial_name` for Tune, pickled small (the fixed config's digest and the searched fields)."""

    def __init__(self, fixed: dict[str, Any], searched: list[str]) -> None:
        self.key, self.searched = register_fixed(fixed), searched

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "searched": self.searched}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "packed" in state:  # saved by an earlier version, with the config itself
            state = {"key": register_fixed(json.loads(zlib.decompress(state["packed"]))), **state}
        self.key, self.searched = state["key"], state["searched"]

    def __call__(self, trial: Any) -> str:
        fixed = _FIXED.get(self.key)
        if fixed is None:  # only a namer unpickled outside `run` (which registers the sweep's config) meets this
            raise RuntimeError(f"trial names: no fixed config {self.key} registered in this driver")
        return trial_name(fixed, self.searched, trial)


def _trainable(cfg: ExperimentConfig, dataset: Dataset, location: Location) -> Any:
    trainable = tune.with_parameters(
        train_trial, fixed=cfg.trial.model_dump(mode="json"), data=dataset,
        board_root=str(location.local_dir) if location.local_dir is not None else None,
        histogram_every=cfg.tensorboard.histogram_every, runtime=cfg.runtime.model_dump(mode="json"),
        selection_metric=cfg.selection.metric, population=population.trial_settings(cfg, location),
    )  # fmt: skip
    gpu = cfg.resources.gpus_per_trial(cluster.cluster_gpus())
    return tune.with_resources(trainable, {"cpu": cfg.resources.cpu, "gpu": gpu})


def _scheduler(cfg: ExperimentConfig) -> Any:
    if cfg.population is not None:
        return population.scheduler(cfg)
    if cfg.asha.mode == "async":
        return ResumableASHA(
            time_attr=m.EPOCH,
            max_t=cfg.max_t,
            grace_period=cfg.asha.grace_period,
            reduction_factor=cfg.asha.reduction_factor,
            brackets=cfg.asha.brackets,
        )
    return SynchronousHalving(
        metric=cfg.asha.metric,
        time_attr=m.EPOCH,
        max_t=cfg.max_t,
        grace_period=cfg.asha.grace_period,
        reduction_factor=cfg.asha.reduction_factor,
        brackets=cfg.asha.brackets,
        total_trials=cfg.trial_count,
        max_concurrent=cfg.search.max_concurrent_trials,
        max_pending=max_pending(cfg),
    )


def _run_config(cfg: ExperimentConfig, location: Location) -> tune.RunConfig:
    return tune.RunConfig(
        name=location.name,
        # The guarded filesystem (orchestrator.storage_guard): the trials' checkpoint uploads and the
        # experiment-state snapshots get its retries, atomic writes and full-disk faults too.
        storage_path=location.root,
        storage_filesystem=location.fs,
        # Ray keeps every checkpoint: the driver deletes the ones the selection rule does not keep, once no
        # experiment-state snapshot names them (orchestrator.outputs.retention), so a resume finds its own.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        failure_config=tune.FailureConfig(max_failures=cfg.failure.max_retries),
        # TensorBoard is written by the trials and the driver (richer, and live). Ray's per-trial files
        # (result.json, progress.csv, params.json) are written by the Relay's records straight to storage: Ray's
        # loggers would stage them and re-upload every trial's at every snapshot (orchestrator.tune.trial_files).
        callbacks=[callbacks.Relay()],
        # Artifacts too: a trial's stdout/stderr (log_to_file) and, on object stores, its TensorBoard files.
        sync_config=tune.SyncConfig(sync_artifacts=True, sync_period=EXPERIMENT_SYNC_S),
        verbose=0,  # progress is ours: compact, searched knobs only
        log_to_file=True,  # each trial's stdout/stderr in its directory
    )


def _build(cfg: ExperimentConfig, dataset: Dataset, location: Location) -> tune.Tuner:
    namer = TrialNamer(cfg.trial.model_dump(mode="json"), searched_fields(cfg.search.space))
    tune_config = tune.TuneConfig(
        metric=cfg.asha.metric, mode="max", scheduler=_scheduler(cfg), search_alg=build_search_alg(cfg),
        num_samples=cfg.search.num_samples, trial_name_creator=namer, trial_dirname_creator=namer,
        reuse_actors=cfg.runtime.reuse_actors,  # measured: see README, Throughput
    )  # fmt: skip
    return tune.Tuner(
        _trainable(cfg, dataset, location),
        param_space=param_space(cfg),
        tune_config=tune_config,
        run_config=_run_config(cfg, location),
    )


def run(
    cfg: ExperimentConfig,
    dataset: Dataset,
    location: Location,
    observer: Observer,
    retry_errored: bool = False,
    interrupt: Interrupt | None = None,
) -> SweepRun:
    """Fit a new experiment, or resume the one at `location`; errored trials rerun only when asked.
    `interrupt` is the caller's, when it must cover more than the run (the outputs after it)."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # The snapshot period is ours, on purpose: Ray's "snapshotting triggered often" warning says nothing.
    os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # its experiment box and tables: the progress lines are ours
    # Ray's closing table cannot read a trial whose result.json a killed driver never flushed, and says
    # "Failed to fetch metrics" for it: not news, the records come from the driver's own log of each trial.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    experiment = location.path
    register_fixed(cfg.trial.model_dump(mode="json"))  # before Tune unpickles a restored sweep's namer
    with interrupt or Interrupt() as interrupt, tune_settings(cfg):
        storage_guard.on_fault(interrupt.storage_fault)
        faults.quiet_tracebacks(_driver_log(), interrupt)
        resumed = tune.Tuner.can_restore(experiment, storage_filesystem=location.fs)
        if resumed:
            _check_not_shrunk(cfg, location)
            if not retry_errored:
                errored.keep_errored(location)  # even where Tune's last snapshot missed the final failure
            tuner = tune.Tuner.restore(
                experiment,
                trainable=_trainable(cfg, dataset, location),
                resume_unfinished=True,
                resume_errored=retry_errored,
                storage_filesystem=location.fs,
            )
        else:
            tuner = _build(cfg, dataset, location)
        live = callbacks.LiveTrials(cfg.trial.model_dump(mode="json"), location, observer, interrupt)
        callbacks.attach(live, faults.TrialFaults(location.name))
        observer.sweep_started([], resumed)
        try:
            grid = tuner.fit()
        finally:
            callbacks.attach(None)
            storage_guard.on_fault(None)
        try:
            records = _final_records(live, grid, location, interrupted=interrupt(), resumed=resumed)
        except OSError as exc:  # the storage failed: what the driver holds is enough to say how far it got
            if (fault := storage_guard.as_fault(exc)) is None:
                raise
            interrupt.storage_fault(fault)
            records = list(live.records.values())
        observer.sweep_ended(records, interrupt())
        return SweepRun(records, resumed, interrupt.signal, interrupt.fault)


class ShrunkError(RuntimeError):
    """The saved experiment knows fewer trials than the config plans, and its searcher will create no more."""


def _check_not_shrunk(cfg: ExperimentConfig, location: Location) -> None:
    """Before a resume trains anything: a state file that lists fewer trials than planned, beside a searcher
    that has finished creating them (a damaged or old snapshot), would resume as a smaller sweep."""
    names = [info.base_name for info in location.children()]
    states = _readable(location, sorted(n for n in names if n.startswith("experiment_state-") and n.endswith(".json")))
    searchers = _readable(location, sorted(n for n in names if n.startswith("basic-variant-state-")))
    if not states or not searchers:
        return  # another searcher (its state is its own), or nothing saved yet: the check after the run holds
    try:
        known = len(location.read_json(states[-1])["trial_data"])
        # Ray's own pickle, which its restore unpickles next anyway (claim.py has checked who wrote it).
        finished = bool(pickle.loads(location.read_bytes(searchers[-1])).get("_finished"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, pickle.UnpicklingError):
        return  # unreadable: Ray's restore says so
    if finished and known < cfg.trial_count:
        raise ShrunkError(
            f"the experiment state at {location.display} knows {known} of the {cfg.trial_count} trials the config "
            "plans and its searcher will create no more (a damaged or old state file); nothing was trained or "
            "exported. Start over beside it with --fresh"
        )


def _readable(location: Location, names: list[str]) -> list[str]:
    """Those of Ray's snapshot files that read back whole; a damaged one (cut short by a full disk before
    writes were atomic) is moved aside, so Ray restores from the previous good one."""
    good = []
    for name in names:
        try:
            data = location.read_bytes(name)
            json.loads(data) if name.startswith("experiment_state-") else pickle.loads(data)
        except OSError:
            good.append(name)  # unreadable for now (the store): Ray's restore will say so
            continue
        except Exception:  # noqa: BLE001 - truncated JSON or pickle shows up as many exception types
            location.fs.move(location.join(name), location.join(name + ".damaged"))
            print(f"warning: {location.uri(name)} is damaged; resuming from the snapshot before it", file=sys.stderr)
            continue
        good.append(name)
    return good


def _driver_log() -> Any:
    """Where Ray's driver-side tracebacks go: the Ray session's log directory (never the experiment's disk,
    which may be the one that filled up)."""
    from pathlib import Path

    session = cluster.session_dir()
    return Path(session or "/tmp") / "logs" / "orchestrator-driver.log"


def _final_records(
    live: callbacks.LiveTrials, grid: Any, location: Location, interrupted: bool, resumed: bool = False
) -> list[TrialRecord]:
    """The live records, with the checkpoints Ray kept and the errors it recorded (from the result grid).

    On a resume, also the checkpoints a trial stored that Tune's restored state never registered: a driver
    killed between a trial's checkpoint and Tune's next snapshot leaves it on disk, unknown to Tune, and a
    trial cut at the rung it had reached is not run again to register it (the selection would miss it)."""
    by_name = {record.name: record for record in live.records.values()}
    records = []
    prefix = location.path.rstrip("/") + "/"
    for result in grid:
        name = result.path.rstrip("/").rsplit("/", 1)[-1]
        record = by_name.get(name) or live.record_from_result(name, result)
        refs = [CheckpointRef(c.path.removeprefix(prefix), callbacks.plain(metrics))
                for c, metrics in (result.best_checkpoints or [])]  # fmt: skip
        record.checkpoints = [ref for ref in refs if location.exists(ref.path)]  # retention deleted the rest
        if resumed:
            # One checkpoint per epoch: an epoch the restored trial trained again is Tune's, under a new index.
            known, epochs = {ref.path for ref in refs}, {ref.epoch for ref in record.checkpoints}
            record.checkpoints += [
                ref for ref in _stored_checkpoints(location, name) if ref.path not in known and ref.epoch not in epochs
            ]
        if result.error is not None and not interrupted:
            record.error, record.state = f"{type(result.error).__name__}: {result.error}".splitlines()[0][:500], "ended"
        records.append(record)
    return records


def _stored_checkpoints(location: Location, trial: str) -> list[CheckpointRef]:
    """The trial's checkpoint directories on storage, each with the metrics its trial wrote beside it."""
    refs = []
    for info in location.children(trial):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        path = f"{trial}/{info.base_name}"
        try:
            metrics = location.read_json(path, CHECKPOINT_METRICS)
        except (OSError, ValueError):
            continue  # written before this file existed, or cut short: not a checkpoint to rank
        if isinstance(metrics, dict) and m.EPOCH in metrics:
            refs.append(CheckpointRef(path, metrics))
    return refs
