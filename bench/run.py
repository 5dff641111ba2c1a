"""Throughput benchmark: the orchestrator against a bare loop and a tutorial-style sweep, in one run.

    python -m orchestrator bench                       # 6 trials x 3 epochs on 10k samples, mlp
    python -m orchestrator bench --epochs 1 --trials 3 --train-limit 2000 --output /tmp/bench.json

Parts (one process, one Ray instance, whatever device it finds):
  startup   import of the trial module (fresh interpreter), dataset attach, model build
  raw       a bare loop over resident tensors (`bench.loops.raw_epochs`): the floor on this device;
            measured before and after the Ray parts, median over every timed epoch
  trial     one trial through the real Tuner: its reported train epoch_seconds (median, first epoch
            left out as warm-up), and its wall time per epoch including evaluation, checkpoint, report
  sweep     N trials mixing --batch-sizes through the real Tuner: wall time, trial-epochs/s; on a GPU
            also trials per GPU, utilization (nvidia-smi), and the same sweep with one trial per GPU
  tutorial  the same N trials, torchvision Dataset + DataLoader, one at a time on the whole device
Ratios come from the same run, so a shared, noisy machine moves both sides; medians and warm-ups keep
single hiccups out. Early stopping is set to stop no trial, so every side trains the same epochs.
Ray is reached through the product's own adapter (`orchestrator.tune`), as a sweep reaches it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.loops import raw_epochs, scaled_float, torchvision_root, tutorial_trial, vision_splits
from bench.table import GpuSampler, print_table, targets
from orchestrator.config import ExperimentConfig, validate
from orchestrator.config.gpu_memory import CONTEXT_BYTES, GIB, check_gpu_packing
from orchestrator.location import Location
from orchestrator.records import Observer, TrialRecord
from trainables import metrics as m
from trainables.accel import RuntimeConfig, accelerate, resolve
from trainables.data import Dataset, to_device
from trainables.data_sources import load_dataset
from trainables.models import build_model
from trainables.optimizers import build_optimizer
from trainables.recipe import TrialConfig


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda but torch sees no GPU")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def experiment(
    args: argparse.Namespace,
    device: torch.device,
    storage: Path,
    name: str,
    space: dict[str, Any],
    gpu: float,
    reuse: bool,
) -> ExperimentConfig:
    return validate(
        {
            "name": name,
            "storage_path": str(storage),
            "seed": 0,
            "data": {"train_limit": args.train_limit},
            "trial": {"model": args.model, "batch_size": args.batch_size, "epochs": args.epochs},
            "search": {"space": space},
            "resources": {"cpu": args.cpus, "gpu": gpu if device.type == "cuda" else 0},
            "asha": {"grace_period": args.epochs, "mode": "async"},  # no rung before the last epoch: nobody stopped
            "runtime": {"precision": args.precision, "compile": args.compile, "reuse_actors": reuse},
        }
    )


def sweep_space(args: argparse.Namespace) -> tuple[dict[str, Any], list[int], int]:
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    seeds = math.ceil(args.trials / len(sizes))
    return {"batch_size": {"grid": sizes}, "seed": {"grid": list(range(seeds))}}, sizes, seeds


def measure_import() -> float:
    """Seconds to import the trial module in a fresh interpreter: what every new Ray worker pays."""
    code = "import time; t = time.perf_counter(); import trainables.trial; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def measure_startup(dataset: Dataset, trial: TrialConfig, device: torch.device) -> dict[str, float]:
    imports = statistics.median(measure_import() for _ in range(2))
    start = time.perf_counter()
    for split in (dataset.train, dataset.val, dataset.test):
        to_device(split, device)
    attach = time.perf_counter() - start
    start = time.perf_counter()
    model = build_model(trial.model_spec(dataset.input_shape, dataset.num_classes)).to(device)
    build_optimizer(trial.optimizer, model, trial.lr, trial.weight_decay)
    return {"import_s": imports, "attach_s": attach, "build_s": time.perf_counter() - start}


def raw_loop(
    dataset: Dataset, trial: TrialConfig, runtime: RuntimeConfig, device: torch.device, epochs: int, warmup: int
) -> list[float]:
    torch.manual_seed(trial.seed)
    model = build_model(trial.model_spec(dataset.input_shape, dataset.num_classes)).to(device)
    net = accelerate(model, device, resolve(runtime, device, trial.model))
    optimizer = build_optimizer(trial.optimizer, model, trial.lr, trial.weight_decay)
    images, labels = scaled_float(dataset.train, device)
    return raw_epochs(net, optimizer, images, labels, trial.batch_size, warmup + epochs, trial.seed)[warmup:]


def run_tuner(cfg: ExperimentConfig, dataset: Dataset) -> tuple[float, list[TrialRecord]]:
    from orchestrator.tune import tuner

    start = time.perf_counter()
    run = tuner.run(cfg, dataset, Location.parse(cfg.storage_path, cfg.name), Observer())
    wall = time.perf_counter() - start
    failed = [r.error for r in run.records if r.error]
    if failed or run.interrupted:
        raise RuntimeError(f"bench: {len(failed)} trial(s) failed: {failed[:1]}; interrupted: {run.interrupted}")
    return wall, run.records


def single_trial(cfg: ExperimentConfig, dataset: Dataset) -> dict[str, Any]:
    wall, records = run_tuner(cfg, dataset)
    history = records[0].history
    timed = history[1:] or history  # the first epoch carries one-off warm-up costs
    return {
        "fit_wall_s": wall,
        "epoch_s": statistics.median(h[m.EPOCH_SECONDS] for h in timed),
        "epoch_with_eval_s": statistics.median(h["time_this_iter_s"] for h in timed),
        "wall_per_epoch_s": wall / len(history),
        "startup_s": history[0][m.STARTUP_SECONDS],
        "outside_epochs_s": wall - sum(h["time_this_iter_s"] for h in history),
        "test_accuracy": history[-1][m.TEST_ACCURACY],
    }


def sweep(cfg: ExperimentConfig, dataset: Dataset, device: torch.device) -> dict[str, Any]:
    sampler = GpuSampler() if device.type == "cuda" else None
    wall, records = run_tuner(cfg, dataset)
    gpu = sampler.stop() if sampler else {}
    trial_epochs = sum(len(o.history) for o in records)
    result = {
        "trials": len(records),
        "fit_wall_s": wall,
        "trial_epochs": trial_epochs,
        "trial_epochs_per_s": trial_epochs / wall,
        "test_accuracy": {o.name: o.history[-1][m.TEST_ACCURACY] for o in records},
        **gpu,
    }
    if device.type == "cuda":
        result["trials_per_gpu"] = min(len(records), int(1 / cfg.resources.gpus_per_trial(1.0) + 1e-9))
        # Tensors only (no CUDA context): compare with the preflight's estimate minus CONTEXT_BYTES.
        result["gpu_peak_gib_per_trial"] = max(h[m.GPU_PEAK_GIB] for o in records for h in o.history)
        estimate = check_gpu_packing(cfg, dataset.input_shape, dataset.num_classes, dataset.nbytes)
        result["preflight_tensors_gib_per_trial"] = (estimate.total - CONTEXT_BYTES) / GIB if estimate else None
    return result


def tutorial(
    args: argparse.Namespace, dataset: Dataset, device: torch.device, sizes: list[int], seeds: int, scratch: Path
) -> dict[str, Any]:
    splits = vision_splits(dataset, torchvision_root(dataset, scratch / "torchvision"))
    if device.type == "cpu":  # one trial at a time owns the whole machine
        torch.set_num_threads(args.tutorial_threads or os.cpu_count() or 1)
    start = time.perf_counter()
    runs = []
    for size in sizes:
        for seed in range(seeds):
            trial = TrialConfig(model=args.model, batch_size=size, epochs=args.epochs, seed=seed)
            runs.append((size, seed, tutorial_trial(trial, splits, device, args.tutorial_workers)))
    wall = time.perf_counter() - start
    trial_epochs = sum(r.epochs for _, _, r in runs)
    return {
        "trials": len(runs),
        "wall_s": wall,
        "trial_epochs": trial_epochs,
        "trial_epochs_per_s": trial_epochs / wall,
        "threads": torch.get_num_threads(),
        "test_accuracy": {f"bs{size}-seed{seed}": r.test_accuracy for size, seed, r in runs},
    }


def hardware(device: torch.device) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
        "load_average": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def progress(out: dict[str, Any], part: str) -> None:
    """Each part's figures as soon as they exist: a long run interrupted still leaves its numbers."""
    print(f"bench: {part}: {json.dumps(out[part], default=str)}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    device = pick_device(args.device)
    torch.set_num_threads(max(1, int(args.cpus)))  # the raw loop gets the threads a trial gets
    reuse = not args.no_reuse_actors
    single_cfg = experiment(args, device, scratch, "bench-trial", {}, args.gpu_fraction, reuse)
    dataset = load_dataset(single_cfg.data, single_cfg.seed)
    runtime, trial = single_cfg.runtime, single_cfg.trial
    out: dict[str, Any] = {"hardware": hardware(device), "settings": vars(args)}
    out["startup"] = measure_startup(dataset, trial, device)
    progress(out, "startup")
    raw = raw_loop(dataset, trial, runtime, device, args.epochs, warmup=1)

    from orchestrator.tune import cluster

    start = time.perf_counter()
    cluster.start(None, dashboard=False, on_timeout=lambda: None)
    out["ray_start_s"] = time.perf_counter() - start
    try:
        out["trial"] = single_trial(single_cfg, dataset)
        progress(out, "trial")
        raw += raw_loop(dataset, trial, runtime, device, args.epochs, warmup=1)
        space, sizes, seeds = sweep_space(args)
        out["sweep"] = sweep(
            experiment(args, device, scratch, "bench-sweep", space, args.gpu_fraction, reuse), dataset, device
        )
        progress(out, "sweep")
        if device.type == "cuda":
            whole = experiment(args, device, scratch, "bench-sweep-whole-gpu", space, 1.0, reuse)
            out["sweep_one_per_gpu"] = sweep(whole, dataset, device)
            progress(out, "sweep_one_per_gpu")
        if args.compare_reuse:
            other = experiment(args, device, scratch, "bench-sweep-reuse", space, args.gpu_fraction, not reuse)
            out[f"sweep_reuse_actors_{not reuse}"] = sweep(other, dataset, device)
            progress(out, f"sweep_reuse_actors_{not reuse}")
    finally:
        cluster.stop()
    out["raw"] = {"epoch_s": statistics.median(raw), "epochs_s": raw}
    progress(out, "raw")
    out["tutorial"] = tutorial(args, dataset, device, sizes, seeds, scratch)
    out["targets"] = targets(out, device)
    return out


def run_command(args: argparse.Namespace) -> int:
    if args.scale:
        from bench.scale import run_scale

        return run_scale(args)
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=args.scratch))
    try:
        results = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(results)
    Path(args.output).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten: {args.output}")
    return 0
