"""GPU memory preflight: refuse a packing of trials per GPU that cannot fit, before Ray starts.

    python -m orchestrator launch configs/parallel.yaml          # runs once the data is loaded

Only when `resources.gpu > 0`. Ray packs floor(1 / resources.gpu) trials on one GPU; each is its own
process, so each pays a CUDA context besides its tensors. A trial's estimate (the worst over the values
its search space can take for model, model fields, optimizer and batch size):

  CUDA context + cuBLAS/cuDNN workspaces      CONTEXT_BYTES per process (an estimate, not measured here)
  parameters + gradients + optimizer state     4 bytes each; state per optimizer from OPTIMIZER_STATE
  training activations for one batch           every layer's output, kept for backward and its gradient
  evaluation activations for a 4096 batch      no backward, but a wider batch
  the resident dataset                         every split's samples and labels, as loaded

times ALLOCATOR_SLACK for the caching allocator's rounding and fragmentation. The GPU's size is
`runtime.gpu_memory_gb` when set, else the driver's smallest GPU, else ASSUMED_GPU_GB (an 80 GB H100):
a driver without a GPU (a laptop submitting to a cluster) still gets a check, against a stated
assumption that the message names. The estimate is conservative and unmeasured on a GPU so far;
`python -m orchestrator.bench --device cuda` reports each trial's measured peak to compare with it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import dimensions, nest
from orchestrator.errors import ConfigError
from trainables.loop import EVAL_BATCH
from trainables.models import MODELS, build_model
from trainables.recipe import TrialConfig, deep_merge

GIB = 1024**3
CONTEXT_BYTES = 1 * GIB
ALLOCATOR_SLACK = 1.25
HEADROOM = 0.9  # never plan to fill a GPU: other processes and the allocator's reserve need some
ASSUMED_GPU_GB = 80.0
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adagrad": 1, "adam": 2, "adamw": 2, "adadelta": 2}
RNN_GATES = {nn.LSTM: 4, nn.GRU: 3}
MAX_COMBINATIONS = 512
# Fields whose value changes a trial's memory; lr, seed, weight decay etc. do not.
MEMORY_FIELDS = {"model", "model_args", "batch_size", "optimizer", *MODELS}


@dataclass(frozen=True)
class Estimate:
    label: str
    weights: int  # parameters + gradients + optimizer state
    activations: int
    dataset: int

    @property
    def total(self) -> int:
        return CONTEXT_BYTES + int((self.weights + self.activations + self.dataset) * ALLOCATOR_SLACK)


def per_sample_activations(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Elements every leaf module outputs for one sample (recurrent layers: all steps and gates), measured
    with a forward pass, so a user's model is measured like a built-in one."""
    counts: list[int] = []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        gates = next((g for kind, g in RNN_GATES.items() if isinstance(module, kind)), 0)
        if gates:
            layers = int(getattr(module, "num_layers", 1))
            counts.append(out.numel() * layers * (gates + 1))
        else:
            counts.append(out.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return sum(counts) + math.prod(input_shape)  # + the float input batch


def estimate(trial: TrialConfig, input_shape: tuple[int, ...], num_classes: int, data_bytes: int) -> Estimate:
    model = build_model(trial.model_spec(input_shape, num_classes))
    params = sum(p.numel() for p in model.parameters())
    weights = params * 4 * (2 + OPTIMIZER_STATE[trial.optimizer])
    per_sample = per_sample_activations(model, input_shape) * 4
    train = trial.batch_size * per_sample * 2  # outputs saved for backward, and their gradients
    evaluation = EVAL_BATCH * per_sample
    label = f"model {trial.model}, batch_size {trial.batch_size}, optimizer {trial.optimizer}"
    return Estimate(label, weights, max(train, evaluation), data_bytes)


def _worst_value(kind: str, args: list[Any]) -> list[Any]:
    """The values to try for one dimension: every listed one, or a range's top (memory grows with it)."""
    if kind in ("grid", "choice"):
        return args
    high = args[1] - 1 if kind == "randint" else args[1]
    return [high]


def candidate_trials(cfg: ExperimentConfig, fields: set[str] = MEMORY_FIELDS) -> list[TrialConfig]:
    """Every combination of the searched values of these fields (capped; a range at its top, where memory
    and size are largest), resolved as trials would be."""
    fixed = cfg.trial.model_dump(mode="json")
    dims = {p: _worst_value(*d) for p, d in dimensions(cfg.search.space).items() if p.split(".")[0] in fields}
    combos = itertools.islice(itertools.product(*dims.values()), MAX_COMBINATIONS)
    trials = []
    for values in combos:
        override: dict[str, Any] = {}
        for path, value in zip(dims, values, strict=True):
            override = deep_merge(override, nest(path, value))
        try:
            trials.append(TrialConfig.resolve(fixed, override))
        except ValidationError:
            continue  # e.g. a randint top that the schema refuses; each listed value was validated already
    return trials or [cfg.trial]


def gpu_memory_gb(cfg: ExperimentConfig) -> tuple[float, str]:
    """(GiB per GPU, where the figure came from)."""
    if cfg.runtime.gpu_memory_gb is not None:  # explicit wins: the cluster's GPUs may differ from the driver's
        return cfg.runtime.gpu_memory_gb, "runtime.gpu_memory_gb"
    if torch.cuda.is_available() and torch.cuda.device_count():
        total = min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
        return total / GIB, "this machine's GPU"
    return ASSUMED_GPU_GB, "assumed; set runtime.gpu_memory_gb"


def trials_per_gpu(gpu: float) -> int:
    return 1 if gpu >= 1 else math.floor(1 / gpu + 1e-9)


def check_gpu_packing(
    cfg: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int, data_bytes: int
) -> Estimate | None:
    """Raises ConfigError when floor(1/resources.gpu) trials cannot share one GPU; None on a CPU sweep."""
    auto = cfg.resources.gpu == "auto"  # check the packing a GPU cluster would get
    gpu = 1 / cfg.resources.trials_per_gpu if auto else float(cfg.resources.gpu)
    if gpu <= 0:
        return None
    worst = max(
        (estimate(t, input_shape, num_classes, data_bytes) for t in candidate_trials(cfg)), key=lambda e: e.total
    )
    capacity_gb, source = gpu_memory_gb(cfg)
    usable = capacity_gb * GIB * HEADROOM
    packed = trials_per_gpu(gpu)
    if packed * worst.total > usable:
        fit = int(usable // worst.total)
        if fit < 1:
            advice = "use a smaller model or batch_size"
        else:
            advice = f"use resources.trials_per_gpu <= {fit}" if auto else f"use resources.gpu >= {1 / fit:.3g}"
        raise ConfigError(
            "resources.trials_per_gpu" if auto else "resources.gpu",
            f"{packed} trials per GPU need ~{packed * worst.total / GIB:.1f} GiB ({worst.total / GIB:.2f} GiB each "
            f"for {worst.label}) but a GPU has {capacity_gb:g} GiB ({source}, {HEADROOM:.0%} usable); "
            f"{fit} fit: {advice}",
            cfg.resources.trials_per_gpu if auto else gpu,
        )
    return worst
