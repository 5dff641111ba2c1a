"""What a model costs to keep and to run: parameters, checkpoint size, latency at batch 1, throughput.

    costs = measure_costs(model, scaling, sample_images, device)   # once per trial, before its first epoch

Measured on the trial's own device with the model in eval mode and the trial's input scaling in front of it
(what the exported program runs): a few warm-up passes, then the median of several timed passes, so a
one-off stall (a page fault, another trial's burst) does not decide the figure. Latency and throughput are
timings: they vary with the machine and its load, and two runs of one config need not agree on them.
Plain PyTorch, no Ray.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from trainables import metrics as m

WARMUP = 2
LATENCY_PASSES = 15  # batch 1 is cheap: more passes steady the median
THROUGHPUT_PASSES = 3
THROUGHPUT_BATCH = 256  # "a large batch": fills a CPU's vector units, and stays cheap to time in every trial


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def checkpoint_mb(model: nn.Module) -> float:
    """The model's weights as torch.save writes them (what best/model.pt holds, less its metadata), in MB (10^6)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def _median_seconds(run: Callable[[], object], device: torch.device, passes: int) -> float:
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(passes):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_costs(
    model: nn.Module, scaling: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device
) -> dict[str, float | int]:
    """`images`: samples as the dataset stores them, already on `device` (a batch is cycled to fill
    THROUGHPUT_BATCH when there are fewer). The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        one = images[:1]
        big = images[:THROUGHPUT_BATCH]
        if big.shape[0] < THROUGHPUT_BATCH:
            repeats = -(-THROUGHPUT_BATCH // big.shape[0])
            big = big.repeat(repeats, *([1] * (big.dim() - 1)))[:THROUGHPUT_BATCH]
        # A copy per pass, timed with the rest: scaling works in place on float inputs (they may be the dataset).
        latency = _median_seconds(lambda: model(scaling(one.clone())), device, LATENCY_PASSES)
        batch = _median_seconds(lambda: model(scaling(big.clone())), device, THROUGHPUT_PASSES)
    finally:
        model.train(was_training)
    return {
        m.PARAMS: parameter_count(model),
        m.CHECKPOINT_MB: checkpoint_mb(model),
        m.LATENCY_MS: latency * 1000,
        m.THROUGHPUT: big.shape[0] / max(batch, 1e-9),
    }
