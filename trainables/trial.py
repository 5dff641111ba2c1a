"""The per-trial entry point: sampled config -> TrialConfig -> model -> loop -> one report + checkpoint per epoch.

With `orchestrator/tune/`, the only code that imports Ray (its reporting and checkpoint API moves between
releases). Everything besides the sampled values arrives once through `tune.with_parameters`: the fixed
recipe, the dataset (zero-copy from the object store), and the run settings.
"""

from __future__ import annotations

import errno
import json
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
from trainables import exploit, resume
from trainables import metrics as m
from trainables.accel import RuntimeConfig, accelerate, make_deterministic, resolve
from trainables.assemble import assemble, steps_per_epoch
from trainables.data import Dataset, input_scaling, to_device
from trainables.entry import FAULT_KEY
from trainables.loop import score, train_one_epoch
from trainables.recipe import TrialConfig, deep_merge
from trainables.tensorboard_log import TrialBoard

WARNINGS = "warnings"  # a report's warnings for the driver to show (the trial's own log is in its directory)
# Where a trial tells the driver its storage failed (Ray's key-value store; orchestrator.tune.faults reads it).
FAULT_WAIT_S = 900.0  # how long a trial whose storage failed waits for the driver to stop the sweep


def trial_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (it sets CUDA_VISIBLE_DEVICES), else the CPU."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def assigned_cpus() -> int:
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(cpus))


def _own_state(device: torch.device) -> tuple[dict[str, Any] | None, list[str]]:
    """This trial's latest usable checkpoint from Ray, if any, and warnings for the driver."""
    restored = tune.get_checkpoint()
    if restored is None:
        return None, []
    # Local (or the driver's guarded local filesystem): then the older checkpoints sit beside the latest.
    local = restored.filesystem.type_name.split("+")[-1] == "local"
    with warnings.catch_warnings(record=True) as caught, restored.as_directory() as directory:
        warnings.simplefilter("always", RuntimeWarning)
        state = resume.load_state(Path(restored.path if local else directory), local, device)
    return state, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _member(population: dict[str, Any], own: dict[str, Any] | None, device: torch.device) -> exploit.Copy | None:
    """A population member's copy of its parent, when the driver's decision for this epoch names it."""
    member = int(tune.get_context().get_trial_id().rsplit("_", 1)[-1])
    done = int(own["epoch"]) if own else 0
    return exploit.pending_copy(population["root"], member, done, population["interval"], population["epochs"], device)


def _storage_fault(exc: OSError) -> bool:
    return bool(getattr(exc, "storage_fault", False)) or exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _replaced_at(population: dict[str, Any] | None, epoch: int, exc: Exception) -> int | None:
    """The interval epoch where the population replaces a member whose epoch raised, if it will: a member
    that errors is replaced like one that diverged (retrying the same checkpoint with the same seed would
    raise again). Not a storage fault (the driver's to handle), nor an error after the last interval."""
    if population is None or (isinstance(exc, OSError) and _storage_fault(exc)):
        return None
    return exploit.target_epoch(epoch, population["interval"], population["epochs"])


def _failed_epoch(epoch: int, exc: Exception, replaced_at: int, lineage: dict[str, Any]) -> dict[str, Any]:
    """The report of an epoch that raised: no scores (so it ranks last), flagged like a divergence."""
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    nan = float("nan")
    scores = (m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.VAL_LOSS, m.TEST_LOSS, *m.SELECTABLE, m.SELECTION_SCORE)
    return {
        m.EPOCH: epoch, **dict.fromkeys(scores, nan), m.DIVERGED: True,
        m.NODE_ID: ray.get_runtime_context().get_node_id(), m.PID: os.getpid(),
        **lineage,
        WARNINGS: [f"epoch {epoch} failed ({reason}); the population replaces this member at epoch {replaced_at}"],
    }  # fmt: skip


def train_trial(sampled: dict[str, Any], **kwargs: Any) -> None:
    """The trial; a storage fault (a full disk, a store that stayed down) is the driver's to handle: this
    trial tells it and waits to be stopped, resumable from its last complete checkpoint, rather than failing
    (which would spend a retry, or end it as errored, for what is no fault of the trial)."""
    try:
        _train_trial(sampled, **kwargs)
    except OSError as exc:
        if not _storage_fault(exc):
            raise
        report = {
            "kind": getattr(exc, "kind", "full"),
            "path": getattr(exc, "path", None) or str(exc.filename or "?"),
            "detail": getattr(exc, "detail", None) or os.strerror(exc.errno or errno.ENOSPC),
        }
        context = tune.get_context()
        key = FAULT_KEY.format(experiment=context.get_experiment_name(), trial_id=context.get_trial_id())
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(key, json.dumps(report))
        print(f"storage fault: {exc}; waiting for the driver to stop the sweep", flush=True)
        deadline = time.monotonic() + FAULT_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
        raise


def _train_trial(
    sampled: dict[str, Any],
    *,
    fixed: dict[str, Any],
    data: Dataset,
    board_root: str | None = None,
    histogram_every: int = 0,
    runtime: dict[str, Any] | None = None,
    selection_metric: str = m.TEST_ACCURACY,
    population: dict[str, Any] | None = None,
) -> None:
    """`population`: {root, interval, epochs, mutate} when the sweep is a population (trainables.exploit)."""
    started = time.perf_counter()
    settings = RuntimeConfig.model_validate(runtime or {})
    device = trial_device()
    own, notes = _own_state(device)
    copy = _member(population, own, device) if population else None
    lineage = copy.lineage if copy else exploit.Lineage.of(own)
    cfg = TrialConfig.resolve(fixed, deep_merge(sampled, lineage.overlay()))
    # Threads = the CPUs Ray reserved: several trials on one machine must not oversubscribe it.
    torch.set_num_threads(assigned_cpus())
    make_deterministic(settings.deterministic)
    if device.type == "cuda":  # a reused worker keeps the previous trial's peak otherwise
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(cfg.seed)
    spec = cfg.model_spec(data.input_shape, data.num_classes)
    steps = steps_per_epoch(len(data.train), cfg.batch_size)
    training = assemble(cfg, spec, device, steps)
    model, optimizer, schedule = training.model, training.optimizer, training.schedule
    # `net` trains (autocast, channels_last, compile per `runtime:`); the bare `model` is checkpointed.
    plan = resolve(settings, device, cfg.model)
    net = accelerate(model, device, plan)
    # How the trial scored (device, autocast): `evaluate` scores a checkpoint the same way, or says how not.
    scored = {"device": device.type, "autocast": str(plan.autocast).removeprefix("torch.") if plan.autocast else None}
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    fresh = exploit.hyperparameters(optimizer)
    state = copy.state if copy else own
    done_epochs = resume.apply_state(state, model, optimizer, generator, schedule) if state else 0
    if copy:
        exploit.retune(optimizer, schedule, fresh, float(copy.state["trial_config"]["lr"]), done_epochs, steps)
        exploit.reseed(generator, copy.batch_seed)
    restored = own.get("metrics", {}) if own else {}

    train, val, test = (to_device(s, device) for s in (data.train, data.val, data.test))
    scaling = input_scaling(cfg.input_scale, data.mean, data.std, data.pixel_max, data.pixel_min)
    run_dir = Path(board_root) / tune.get_context().get_trial_name() if board_root else Path.cwd()
    board = TrialBoard(run_dir, cfg.knobs(), histogram_every, cfg.epochs)
    if done_epochs == 0:
        board.log_weights(0, model)
    if copy:
        board.writer.text("population/exploit", f"copied member {lineage.parent} at epoch {done_epochs}: "
                          f"generation {lineage.generation}, {json.dumps(lineage.values)}", done_epochs)  # fmt: skip
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
            try:
                fit = train_one_epoch(net, optimizer, train, cfg.batch_size, scaling, generator, training.hooks)
                v, t = (score(net, split, scaling, data.num_classes) for split in (val, test))
            except Exception as exc:
                replaced_at = _replaced_at(population, epoch, exc)
                if population is None or replaced_at is None:
                    raise
                tune.report(_failed_epoch(epoch, exc, replaced_at, lineage.report(cfg, population["mutate"])))
                return
            trained += fit.seconds
            val_loss = v.loss
            metrics: dict[str, Any] = {
                m.EPOCH: epoch,
                m.TRAIN_LOSS: fit.loss, m.TRAIN_ACCURACY: fit.accuracy,
                m.VAL_LOSS: v.loss, m.VAL_ACCURACY: v.accuracy,
                m.VAL_BALANCED_ACCURACY: v.balanced_accuracy, m.VAL_MACRO_F1: v.macro_f1,
                m.TEST_LOSS: t.loss, m.TEST_ACCURACY: t.accuracy,
                m.TEST_BALANCED_ACCURACY: t.balanced_accuracy, m.TEST_MACRO_F1: t.macro_f1,
                m.LR: fit.lr, m.LR_LAST: fit.lr_last,  # what the epoch's first and last steps trained with
                m.EPOCH_SECONDS: fit.seconds, m.SAMPLES_PER_SECOND: fit.samples / max(fit.seconds, 1e-9),
                m.DIVERGED: not all(math.isfinite(x) for x in (fit.loss, val_loss)),
                m.NODE_ID: node_id, m.PID: os.getpid(),
                m.STARTUP_SECONDS: startup,
                m.GPU_PEAK_GIB: torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else 0.0,
                **costs, m.TRAIN_SECONDS: trained,
            }  # fmt: skip
            metrics[m.SELECTION_SCORE] = m.selection_score(metrics, selection_metric)
            if population:
                metrics.update(lineage.report(cfg, population["mutate"]))
                board.writer.scalars({f"population/{k.removeprefix(exploit.PREFIX)}": v for k, v in metrics.items()
                                      if k.startswith(exploit.PREFIX) and m.finite(v)}, epoch)  # fmt: skip
            board.log_epoch(epoch, metrics, model)
            report = {**metrics, WARNINGS: notes} if notes else metrics
            notes = []
            if metrics[m.DIVERGED]:
                # Weights are NaN/inf: report so the trial is recorded, but keep no checkpoint of it.
                tune.report(report)
                return
            schedule.after_epoch(val_loss)
            numeric = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
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
                    "runtime": scored,
                    "metrics": numeric,
                    exploit.STATE: lineage.to_json(),
                }, Path(directory) / ckpt.CHECKPOINT_FILE)  # fmt: skip
                ckpt.write_bytes_atomic(Path(directory) / ckpt.METRICS_FILE, json.dumps(numeric).encode())
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        board.close()
