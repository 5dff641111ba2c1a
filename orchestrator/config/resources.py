"""Checks that catch a trial that could never be placed, or a cluster that is not there, before any
compute is spent.

    python -m orchestrator launch configs/smoke.yaml --set resources.gpu=1     # on a CPU-only machine: exit 2
    python -m orchestrator launch configs/smoke.yaml --address 10.9.9.9:6379   # nothing there: exit 2

A trial is one Ray actor, so its `resources.cpu` and `resources.gpu` must fit on a single node; if
not, Tune would keep it PENDING forever. Local runs are checked against this machine before Ray
starts; a run that joins a cluster (`--address`, `ray.address`, RAY_ADDRESS) is checked against the
cluster's live nodes right after `ray.init`, before the Tuner is built. On a cluster that adds nodes
on demand (`resources.autoscaling: true`) the node-size check is skipped: the autoscaler may still
bring a node that fits. The address comes from `--address`, else `ray.address`, else RAY_ADDRESS;
`auto` needs a cluster started on this machine, and `host:port` / `ray://host:port` must accept a
connection within CONNECT_TIMEOUT_S. No Ray here: the caller passes the nodes' resources as plain dicts.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

from orchestrator.config.schema import ExperimentConfig
from orchestrator.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0
ADDRESS_FIELD = "--address/ray.address/RAY_ADDRESS"


def resolve_address(cli: str | None, cfg: ExperimentConfig) -> str | None:
    return cli or cfg.ray.address or os.environ.get("RAY_ADDRESS") or None


def current_cluster_file() -> Path:
    """The file `ray start` writes and `auto` reads, in Ray's temp directory as Ray finds it: RAY_TMPDIR, else
    TMPDIR, else /tmp."""
    base = os.environ["RAY_TMPDIR"] if "RAY_TMPDIR" in os.environ else os.environ.get("TMPDIR", "/tmp")
    return Path(base) / "ray" / "ray_current_cluster"


def check_address(address: str) -> None:
    """Refuse an address that names nothing reachable, in one line, before anything is claimed."""
    target = address
    if address == "auto":
        note = current_cluster_file()
        try:
            target = note.read_text().strip()
        except OSError:
            raise ConfigError(
                ADDRESS_FIELD,
                f"'auto' but no Ray cluster was started on this machine (no {note}; "
                "`ray start --head` writes it); leave the address unset for a private local Ray",
                address,
            ) from None
    host, port = _host_port(target.removeprefix("ray://"), address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(
            ADDRESS_FIELD,
            f"no Ray cluster answers at {host}:{port} ({exc.strerror or exc}); check "
            "the address, or leave it unset for a private local Ray",
            address,
        ) from None


def _host_port(text: str, original: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if (
        not sep
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() or ord(c) < 32 for c in text)
    ):
        raise ConfigError(ADDRESS_FIELD, "not a Ray address (host:port, ray://host:port, or auto)", original)
    return host.strip("[]"), int(port)


def local_resources() -> dict[str, float]:
    """What a local Ray on this machine will offer (CPU affinity respects container/taskset limits)."""
    return {"CPU": float(len(os.sched_getaffinity(0))), "GPU": float(local_gpus())}


def local_gpus() -> int:
    """The GPUs a local Ray offers, counted the way Ray counts them, without importing Ray or torch (the driver
    never loads torch: orchestrator.isolated): CUDA_VISIBLE_DEVICES when it is set, else the NVIDIA driver's
    device count (NVML; none without the driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return 0 if visible == "NoDevFiles" else len([part for part in visible.split(",") if part.strip()])
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    count = ctypes.c_uint(0)
    if nvml.nvmlInit_v2() != 0:
        return 0
    try:
        return int(count.value) if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 else 0
    finally:
        nvml.nvmlShutdown()


def check_local(cfg: ExperimentConfig) -> None:
    """A local Ray never grows: a trial must fit on this machine."""
    _check_fits(cfg, [local_resources()], "this machine has", hint="")


def check_cluster(cfg: ExperimentConfig, nodes: Iterable[Mapping[str, float]]) -> None:
    """A trial must fit on one live node of the joined cluster, unless the cluster autoscales."""
    if cfg.resources.autoscaling:
        return
    _check_fits(
        cfg,
        list(nodes),
        "the largest live node of the cluster has",
        hint="; on an autoscaling cluster set resources.autoscaling: true",
    )


def _check_fits(cfg: ExperimentConfig, nodes: list[Mapping[str, float]], where: str, hint: str) -> None:
    # gpu: auto resolves as tuning.py resolves it, from the GPUs of the whole cluster.
    gpu = cfg.resources.gpus_per_trial(sum(float(node.get("GPU", 0.0)) for node in nodes))
    wants = (("resources.gpu", "GPU", gpu), ("resources.cpu", "CPU", cfg.resources.cpu))
    for field, key, wanted in wants:
        largest = max((float(node.get(key, 0.0)) for node in nodes), default=0.0)
        if wanted > largest:
            raise ConfigError(
                field, f"more {key}s per trial than {where} ({largest:g}); the trial could never start{hint}", wanted
            )
