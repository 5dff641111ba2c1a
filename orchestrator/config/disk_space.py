"""Before Ray starts: will the checkpoints the sweep plans to keep fit in the storage's free space?

    warning: the checkpoints this sweep keeps need about 1.4 GiB (12 trials x 3 kept x up to 118 MiB),
    more than the 0.9 GiB free at /data/runs; it stops resumably if the disk fills (make room, rerun)

A checkpoint holds the weights, the optimizer's state (Adam: two more copies, momentum: one) and a little
more; each trial keeps `selection.keep_checkpoints` plus its latest, and one more is written before an
older one is deleted. A warning, not a refusal: trials stopped early keep fewer, and room can be made
while the sweep runs. Local and mounted storage only (an object store reports no free space). No Ray.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from orchestrator.config.gpu_memory import MEMORY_FIELDS, OPTIMIZER_STATE, candidate_trials
from orchestrator.config.schema import ExperimentConfig
from trainables.models import ModelError, count_parameters

OVERHEAD_BYTES = 64 * 1024  # the RNG states, the trial config, the scaling record, the zip container
MIB, GIB = 2**20, 2**30


def checkpoint_bytes(cfg: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int) -> int:
    """The largest checkpoint any trial of the sweep writes (fp32 weights + optimizer state)."""
    largest = 0
    for trial in candidate_trials(cfg, MEMORY_FIELDS):
        try:
            params = count_parameters(trial.model_spec(input_shape, num_classes))
        except ModelError:
            continue  # refused elsewhere (data_fit), with its own message
        copies = 1 + OPTIMIZER_STATE.get(trial.optimizer, 2)
        largest = max(largest, params * 4 * copies + OVERHEAD_BYTES)
    return largest


def free_bytes(directory: Path) -> int | None:
    probe = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if probe is None:
        return None
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def space_warning(
    cfg: ExperimentConfig, directory: Path | None, input_shape: tuple[int, ...], num_classes: int
) -> str | None:
    """The warning line when the planned checkpoints cannot fit the free space; None when they can."""
    if directory is None:
        return None
    free = free_bytes(directory)
    if free is None:
        return None
    size = checkpoint_bytes(cfg, input_shape, num_classes)
    kept = cfg.selection.keep_checkpoints + 2  # the kept ones, the latest, and the next being written
    needed = cfg.trial_count * kept * size
    if needed <= free:
        return None
    return (
        f"warning: the checkpoints this sweep keeps need about {_size(needed)} ({cfg.trial_count} trials x "
        f"{kept} checkpoints x up to {_size(size)}), more than the {_size(free)} free at {os.fspath(directory)}; "
        "if the disk fills, the sweep stops resumably (make room, then rerun the same command)"
    )


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"
