"""The per-trial entry point: sampled config -> TrialConfig -> model -> loop -> one report + checkpoint per epoch.

With `orchestrator/tune/`, the only code that imports Ray (its reporting and checkpoint API moves between
releases). Everything besides the sampled values arrives once through `tune.with_parameters`: the fixed
recipe, the dataset (zero-copy from the object store), and the run settings.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables import checkpoint as ckpt
from trainables import costs as cost
from trainables import metrics as m
from trainables import resume
from trainables.accel import RuntimeConfig, accelerate, make_deterministic, resolve
from trainables.assemble import assemble, steps_per_epoch
from trainables.data import Dataset, input_scaling, to_device
from trainables.loop import evaluate, train_one_epoch
from trainables.recipe import TrialConfig
from trainables.tensorboard_log import TrialBoard

WARNINGS = "warnings"  # a report's warnings for the driver to show (the trial's own log is in its directory)


def trial_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (it sets CUDA_VISIBLE_DEVICES), else the CPU."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def assigned_cpus() -> int:
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(cpus))


def _restore(training: Any, generator: torch.Generator, device: torch.device) -> tuple[int, list[str], dict[str, Any]]:
    """(epochs already done, warnings for the driver, the restored epoch's report) from Ray's checkpoint of
    this trial, if any."""
    restored = tune.get_checkpoint()
    if restored is None:
        return 0, [], {}
    local = restored.filesystem.type_name == "local"  # then the older checkpoints sit beside the latest
    with warnings.catch_warnings(record=True) as caught, restored.as_directory() as directory:
        warnings.simplefilter("always", RuntimeWarning)
        state = resume.load_state(Path(restored.path if local else directory), local, device)
    done = resume.apply_state(state, training.model, training.optimizer, generator, training.schedule)
    return done, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)], state.get("metrics", {})


def train_trial(
    sampled: dict[str, Any],
    *,
    fixed: dict[str, Any],
    data: Dataset,
    board_root: str | None = None,
    histogram_every: int = 0,
    runtime: dict[str, Any] | None = None,
    selection_metric: str = m.TEST_ACCURACY,
) -> None:
    started = time.perf_counter()
    cfg = TrialConfig.resolve(fixed, sampled)
    settings = RuntimeConfig.model_validate(runtime or {})
    device = trial_device()
    # Threads = the CPUs Ray reserved: several trials on one machine must not oversubscribe it.
    torch.set_num_threads(assigned_cpus())
    make_deterministic(settings.deterministic)
    if device.type == "cuda":  # a reused worker keeps the previous trial's peak otherwise
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(cfg.seed)
    spec = cfg.model_spec(data.input_shape, data.num_classes)
    training = assemble(cfg, spec, device, steps_per_epoch(len(data.train), cfg.batch_size))
    model, optimizer, schedule = training.model, training.optimizer, training.schedule
    # `net` trains (autocast, channels_last, compile per `runtime:`); the bare `model` is checkpointed.
    net = accelerate(model, device, resolve(settings, device, cfg.model))
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    done_epochs, notes, restored = _restore(training, generator, device)

    train, val, test = (to_device(s, device) for s in (data.train, data.val, data.test))
    scaling = input_scaling(cfg.input_scale, data.mean, data.std, data.pixel_max)
    run_dir = Path(board_root) / tune.get_context().get_trial_name() if board_root else Path.cwd()
    board = TrialBoard(run_dir, cfg.knobs(), histogram_every, cfg.epochs)
    if done_epochs == 0:
        board.log_weights(0, model)
    node_id = ray.get_runtime_context().get_node_id()
    startup = time.perf_counter() - started
    # Once per trial process (a restored trial measures again: its device may be another one).
    costs: dict[str, Any] = cost.measure_costs(model, scaling, (test if len(test) else val).images, device)
    trained = float(restored.get(m.TRAIN_SECONDS, 0.0) or 0.0)
    if restored:
        # The epoch this checkpoint holds, reported once more: a driver killed just after the checkpoint was
        # stored may not have recorded it, and early stopping must see every rung result before going on.
        replay = {**restored, m.NODE_ID: node_id, m.REPLAYED: True}
        tune.report({**replay, WARNINGS: notes} if notes else replay)
        notes = []
    try:
        for epoch in range(done_epochs + 1, cfg.epochs + 1):
            fit = train_one_epoch(net, optimizer, train, cfg.batch_size, scaling, generator, training.hooks)
            trained += fit.seconds
            val_loss, val_acc = evaluate(net, val, scaling)
            test_loss, test_acc = evaluate(net, test, scaling)
            metrics: dict[str, Any] = {
                m.EPOCH: epoch,
                m.TRAIN_LOSS: fit.loss, m.TRAIN_ACCURACY: fit.accuracy,
                m.VAL_LOSS: val_loss, m.VAL_ACCURACY: val_acc,
                m.TEST_LOSS: test_loss, m.TEST_ACCURACY: test_acc,
                m.LR: optimizer.param_groups[0]["lr"],
                m.EPOCH_SECONDS: fit.seconds, m.SAMPLES_PER_SECOND: fit.samples / max(fit.seconds, 1e-9),
                m.DIVERGED: not all(math.isfinite(x) for x in (fit.loss, val_loss)),
                m.NODE_ID: node_id, m.PID: os.getpid(),
                m.STARTUP_SECONDS: startup,
                m.GPU_PEAK_GIB: torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else 0.0,
                **costs, m.TRAIN_SECONDS: trained,
            }  # fmt: skip
            metrics[m.SELECTION_SCORE] = m.selection_score(metrics, selection_metric)
            board.log_epoch(epoch, metrics, model)
            report = {**metrics, WARNINGS: notes} if notes else metrics
            notes = []
            if metrics[m.DIVERGED]:
                # Weights are NaN/inf: report so the trial is recorded, but keep no checkpoint of it.
                tune.report(report)
                return
            schedule.after_epoch(val_loss)  # after reading the lr: `lr` reports the one this epoch used
            with tempfile.TemporaryDirectory() as directory:
                ckpt.save_atomic({
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": schedule.state_dict(),
                    "epoch": epoch,
                    "rng": ckpt.rng_state(generator),
                    "model_spec": spec,
                    "trial_config": cfg.model_dump(mode="json"),
                    "input_scale": cfg.input_scale,
                    "scaling": data.scaling_record(),
                    "classes": list(data.classes),
                    "metrics": {k: v for k, v in metrics.items() if isinstance(v, float | int)},
                }, Path(directory) / ckpt.CHECKPOINT_FILE)  # fmt: skip
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        board.close()
