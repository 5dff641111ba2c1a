"""Resource checks that catch a trial that could never be placed, before any compute is spent.

    python -m orchestrator.launch configs/smoke.yaml --set resources.gpu=1     # on a CPU-only machine: exit 2

A trial is one Ray actor, so its `resources.cpu` and `resources.gpu` must fit on a single node; if
not, Tune would keep it PENDING forever. Local runs are checked against this machine before Ray
starts; a run that joins a cluster (`--address`, `ray.address`, RAY_ADDRESS) is checked against the
cluster's live nodes right after `ray.init`, before the Tuner is built. On a cluster that adds nodes
on demand (`resources.autoscaling: true`) the node-size check is skipped: the autoscaler may still
bring a node that fits. No Ray here: the caller passes the nodes' resources in as plain dicts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from orchestrator.config import ExperimentConfig
from orchestrator.errors import ConfigError


def joins_cluster(cfg: ExperimentConfig, address: str | None) -> bool:
    return bool(address or cfg.ray.address or os.environ.get("RAY_ADDRESS"))


def local_resources() -> dict[str, float]:
    """What a local Ray on this machine will offer (CPU affinity respects container/taskset limits)."""
    import torch  # the caller has it loaded already; kept local so this module stays light

    return {"CPU": float(len(os.sched_getaffinity(0))), "GPU": float(torch.cuda.device_count())}


def check_local(cfg: ExperimentConfig) -> None:
    """A local Ray never grows: a trial must fit on this machine."""
    _check_fits(cfg, [local_resources()], "this machine has", hint="")


def check_cluster(cfg: ExperimentConfig, nodes: Iterable[Mapping[str, float]]) -> None:
    """A trial must fit on one live node of the joined cluster, unless the cluster autoscales."""
    if cfg.resources.autoscaling:
        return
    _check_fits(cfg, list(nodes), "the largest live node of the cluster has",
                hint="; on an autoscaling cluster set resources.autoscaling: true")


def _check_fits(cfg: ExperimentConfig, nodes: list[Mapping[str, float]], where: str, hint: str) -> None:
    # gpu: auto resolves as tuning.py resolves it, from the GPUs of the whole cluster.
    gpu = cfg.resources.gpus_per_trial(sum(float(node.get("GPU", 0.0)) for node in nodes))
    wants = (("resources.gpu", "GPU", gpu), ("resources.cpu", "CPU", cfg.resources.cpu))
    for field, key, wanted in wants:
        largest = max((float(node.get(key, 0.0)) for node in nodes), default=0.0)
        if wanted > largest:
            raise ConfigError(field, f"more {key}s per trial than {where} ({largest:g}); the trial could "
                              f"never start{hint}", wanted)
