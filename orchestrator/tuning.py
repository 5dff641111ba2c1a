"""Builds the Tuner (ASHA, resources, storage, checkpoint and failure policy) and runs or restores it.

With `trainables/trial.py`, the only module that imports Ray: its Tune API moves between releases.
What leaves this module is plain data (`TrialOutcome`), so selection and reporting need no Ray.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from ray import tune

from orchestrator import board
from orchestrator.asha import ResumableASHA
from orchestrator.config import ExperimentConfig
from orchestrator.progress import Progress, TrialView
from orchestrator.search import dimensions
from orchestrator.searchers import build_search_alg
from orchestrator.selection import TrialOutcome
from trainables import metrics as m
from trainables.data import Dataset
from trainables.recipe import TrialConfig
from trainables.trial import train_fashion_mnist

EXPERIMENT_SYNC_S = 2
_DOMAINS = {
    "grid": tune.grid_search, "choice": tune.choice, "uniform": tune.uniform,
    "loguniform": tune.loguniform, "randint": tune.randint, "quniform": tune.quniform,
}


def is_uri(path: str) -> bool:
    return "://" in path


def start_ray(cfg: ExperimentConfig, address: str | None) -> None:
    """Join `address` (or RAY_ADDRESS) when given; otherwise a local Ray, dashboard on 127.0.0.1 or off."""
    address = address or cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": a fresh Ray of our own, never a leftover `ray start` cluster found on this machine.
        ray.init(address="local", include_dashboard=cfg.ray.dashboard, dashboard_host="127.0.0.1",
                 log_to_driver=False)


def cluster_nodes() -> list[dict[str, float]]:
    """Resources of every live node of the joined cluster, for the preflight check."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def param_space(cfg: ExperimentConfig) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for path, (kind, args) in dimensions(cfg.search.space).items():
        domain = _DOMAINS[kind](args) if kind in ("grid", "choice") else _DOMAINS[kind](*args)
        *parents, leaf = path.split(".")
        node = space
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = domain
    return space


def trial_name(fixed: dict[str, Any], trial: Any) -> str:
    """Readable run names for TensorBoard and the trial directory: cnn-adam-lr1e-3-bs32-<id>."""
    cfg = TrialConfig.resolve(fixed, trial.config)
    mantissa, exponent = f"{cfg.lr:.1e}".split("e")
    lr = f"{mantissa.removesuffix('.0')}e{int(exponent)}"
    return f"{cfg.model}-{cfg.optimizer}-lr{lr}-bs{cfg.batch_size}-{trial.trial_id}"


def _trainable(cfg: ExperimentConfig, dataset: Dataset, storage: str) -> Any:
    board_root = None if is_uri(storage) else str(Path(storage) / cfg.name)
    trainable = tune.with_parameters(
        train_fashion_mnist, fixed=cfg.trial.model_dump(mode="json"), data=dataset, board_root=board_root,
        histogram_every=cfg.tensorboard.histogram_every,
        runtime=cfg.runtime.model_dump(mode="json"),
    )
    gpu = cfg.resources.gpus_per_trial(ray.cluster_resources().get("GPU", 0.0))
    return tune.with_resources(trainable, {"cpu": cfg.resources.cpu, "gpu": gpu})


def _run_config(cfg: ExperimentConfig, storage: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=cfg.name,
        storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=cfg.selection.keep_checkpoints,
            # Ray always keeps the latest too; ranking by the selection metric guarantees the
            # checkpoint that the final selection needs is never deleted.
            checkpoint_score_attribute=cfg.selection.metric,
            checkpoint_score_order="max",
        ),
        failure_config=tune.FailureConfig(max_failures=cfg.failure.max_retries),
        # TensorBoard is written by the trials themselves (richer, and live while they run); only
        # Ray's CSV/JSON loggers stay, which its result tables read back.
        # The watcher comes last: it reads the result.json the JSON logger has just written.
        callbacks=[tune.logger.CSVLoggerCallback(), tune.logger.JsonLoggerCallback(), SweepWatcher(cfg, storage)],
        # The experiment state on storage is what a rerun resumes from: keep it seconds, not minutes
        # (Ray's default sync period), behind, so a killed driver loses little.
        sync_config=tune.SyncConfig(sync_artifacts=is_uri(storage), sync_period=EXPERIMENT_SYNC_S),
        verbose=0,  # progress is SweepWatcher's: compact, searched knobs only
    )


class SweepWatcher(tune.Callback):
    """On the driver: progress lines and table, and each ended trial's final TensorBoard state."""

    def __init__(self, cfg: ExperimentConfig, storage: str) -> None:
        self.progress = Progress(cfg.trial.epochs, list(cfg.search.space))
        self.config = cfg.model_dump(mode="json")
        self.experiment_dir = None if is_uri(storage) else Path(storage) / cfg.name

    def setup(self, **info: Any) -> None:
        self.progress.restart()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.progress.started(_view(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        self.progress.result(_view(trial), result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, failed=True)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.progress.tick([_view(t) for t in trials])

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.progress.tick([_view(t) for t in trials], force=True)

    def _ended(self, trial: Any, failed: bool) -> None:
        self.progress.ended(_view(trial), failed)
        if self.experiment_dir is None:
            return
        try:
            board.trial_ended(self.experiment_dir / Path(trial.path).name, self.config, failed)
        except Exception as exc:  # a review aid must never end a sweep; `board.finish` rewrites it at the end
            print(f"warning: TensorBoard update for {trial} failed: {exc}", flush=True)


def _view(trial: Any) -> TrialView:
    return TrialView(name=str(trial), state=str(trial.status), config=dict(trial.config or {}),
                     last=dict(trial.last_result or {}))


def build_tuner(cfg: ExperimentConfig, dataset: Dataset, storage: str) -> tune.Tuner:
    fixed = cfg.trial.model_dump(mode="json")
    namer = functools.partial(trial_name, fixed)
    scheduler = ResumableASHA(
        time_attr=m.EPOCH, max_t=cfg.max_t, grace_period=cfg.asha.grace_period,
        reduction_factor=cfg.asha.reduction_factor, brackets=cfg.asha.brackets,
    )
    tune_config = tune.TuneConfig(
        metric=m.ASHA_METRIC, mode="max", scheduler=scheduler,
        # the searcher applies search.max_concurrent_trials itself (see searchers.py)
        search_alg=build_search_alg(cfg.search, cfg.seed), num_samples=cfg.search.num_samples,
        trial_name_creator=namer, trial_dirname_creator=namer,
        # Measured with `python -m orchestrator.bench --compare-reuse` (see README: Throughput).
        reuse_actors=cfg.runtime.reuse_actors,
    )
    return tune.Tuner(_trainable(cfg, dataset, storage), param_space=param_space(cfg),
                      tune_config=tune_config, run_config=_run_config(cfg, storage))


def run(cfg: ExperimentConfig, dataset: Dataset, storage: str) -> tuple[list[TrialOutcome], bool]:
    """Fit a new experiment, or resume the one already at storage/name. Returns (outcomes, resumed)."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # How often the driver snapshots the experiment state (trial statuses, latest checkpoints).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(EXPERIMENT_SYNC_S))
    experiment = f"{storage.rstrip('/')}/{cfg.name}"
    resumed = tune.Tuner.can_restore(experiment)
    if resumed:
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(cfg, dataset, storage),
                                   resume_unfinished=True, resume_errored=True)
    else:
        tuner = build_tuner(cfg, dataset, storage)
    grid = tuner.fit()
    fixed = cfg.trial.model_dump(mode="json")
    return [_outcome(result, fixed) for result in grid], resumed


def _outcome(result: Any, fixed: dict[str, Any]) -> TrialOutcome:
    frame = result.metrics_dataframe
    history = surviving_history(frame.to_dict("records") if frame is not None else [])
    trial_dir = Path(result.path).name
    trial_id = str(result.metrics.get("trial_id", trial_dir.rsplit("-", 1)[-1]))
    return TrialOutcome(
        trial_id=trial_id, name=trial_dir, config=TrialConfig.resolve(fixed, result.config or {}),
        history=history, checkpoints=list(result.best_checkpoints or []),
        error=None if result.error is None else f"{type(result.error).__name__}: {result.error}",
    )


def surviving_history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch, the last one reported: a trial restored from an older checkpoint re-runs the
    epochs after it, and those re-runs replace the rows of the timeline that was lost."""
    by_epoch = {row.get(m.EPOCH): row for row in rows}
    return sorted(by_epoch.values(), key=lambda row: row.get(m.EPOCH) or 0)


@contextlib.contextmanager
def local_checkpoint(checkpoint: Any) -> Iterator[Path]:
    """A local directory holding the checkpoint's files, wherever storage lives."""
    with checkpoint.as_directory() as directory:
        yield Path(directory)
