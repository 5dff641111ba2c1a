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
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from orchestrator.config import ExperimentConfig
from orchestrator.search import dimensions
from orchestrator.selection import TrialOutcome
from trainables import metrics as m
from trainables.data import Dataset
from trainables.recipe import TrialConfig
from trainables.trial import train_fashion_mnist

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
        runtime=cfg.runtime.model_dump(mode="json"),
    )
    return tune.with_resources(trainable, {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})


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
        callbacks=[tune.logger.CSVLoggerCallback(), tune.logger.JsonLoggerCallback()],
        sync_config=tune.SyncConfig(sync_artifacts=is_uri(storage)),
        verbose=1,
    )


def build_tuner(cfg: ExperimentConfig, dataset: Dataset, storage: str) -> tune.Tuner:
    fixed = cfg.trial.model_dump(mode="json")
    namer = functools.partial(trial_name, fixed)
    scheduler = ASHAScheduler(
        time_attr=m.EPOCH, max_t=cfg.max_t, grace_period=cfg.asha.grace_period,
        reduction_factor=cfg.asha.reduction_factor, brackets=cfg.asha.brackets,
    )
    tune_config = tune.TuneConfig(
        metric=m.ASHA_METRIC, mode="max", scheduler=scheduler,
        search_alg=BasicVariantGenerator(random_state=cfg.seed),
        num_samples=cfg.search.num_samples, max_concurrent_trials=cfg.search.max_concurrent_trials,
        trial_name_creator=namer, trial_dirname_creator=namer,
        # Measured with `python -m orchestrator.bench --compare-reuse` (see README: Throughput).
        reuse_actors=cfg.runtime.reuse_actors,
    )
    return tune.Tuner(_trainable(cfg, dataset, storage), param_space=param_space(cfg),
                      tune_config=tune_config, run_config=_run_config(cfg, storage))


def run(cfg: ExperimentConfig, dataset: Dataset, storage: str) -> tuple[list[TrialOutcome], bool]:
    """Fit a new experiment, or resume the one already at storage/name. Returns (outcomes, resumed)."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
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
    history = frame.to_dict("records") if frame is not None else []
    trial_dir = Path(result.path).name
    trial_id = str(result.metrics.get("trial_id", trial_dir.rsplit("-", 1)[-1]))
    return TrialOutcome(
        trial_id=trial_id, name=trial_dir, config=TrialConfig.resolve(fixed, result.config or {}),
        history=history, checkpoints=list(result.best_checkpoints or []),
        error=None if result.error is None else f"{type(result.error).__name__}: {result.error}",
    )


@contextlib.contextmanager
def local_checkpoint(checkpoint: Any) -> Iterator[Path]:
    """A local directory holding the checkpoint's files, wherever storage lives."""
    with checkpoint.as_directory() as directory:
        yield Path(directory)
