"""Starting or joining Ray: a private local instance by default, or a named cluster, checked before use.

    python -m orchestrator launch configs/smoke.yaml                            # a private local Ray
    python -m orchestrator launch configs/smoke.yaml --address 10.0.0.5:6379    # join that cluster

The address was checked before anything was claimed (`orchestrator.config.resources.check_address`).
`ray.init` itself gets JOIN_TIMEOUT_S: a cluster that accepts the connection but never answers is refused
then, rather than hanging the launch.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import ray

JOIN_TIMEOUT_S = 15.0


def start(address: str | None, dashboard: bool, on_timeout: Callable[[], None]) -> None:
    """Join `address`, or start a private local Ray (dashboard on 127.0.0.1 or off); quiet unless it matters."""
    timer = threading.Timer(JOIN_TIMEOUT_S, _give_up, args=(address, on_timeout))
    timer.daemon = True
    if address:
        timer.start()
    # Ray says, at every start, that it turned token authentication on: that is the default we want, not news.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
        if address:
            ray.init(address=address, **common)
        else:
            # "local": a fresh Ray of our own, never a leftover `ray start` cluster found on this machine.
            ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1", **common)
    finally:
        timer.cancel()


def _give_up(address: str | None, on_timeout: Callable[[], None]) -> None:
    on_timeout()
    print(
        f"config error: --address: the Ray cluster at {address} accepted a connection but did not answer "
        f"within {JOIN_TIMEOUT_S:g} s; check that it is a Ray head node",
        file=sys.stderr,
        flush=True,
    )
    os._exit(2)  # ray.init cannot be interrupted from another thread


def session_dir() -> str | None:
    """The local Ray session's directory, so a later launch can clean up after a driver that was killed."""
    try:
        node = ray._private.worker._global_node  # no public API for it
        return str(node.get_session_dir_path()) if node is not None else None
    except AttributeError:
        return None


def nodes() -> list[dict[str, float]]:
    """Resources of every live node of the joined cluster, for the preflight check."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def cluster_cpus() -> float:
    """The cluster's CPUs (this machine's before Ray is up)."""
    if not ray.is_initialized():
        return float(os.cpu_count() or 1)
    return float(ray.cluster_resources().get("CPU", 1.0))


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def stop() -> None:
    """Shut Ray down, keeping the process's SIGTERM handler (Ray's shutdown resets it to the OS default)."""
    handler = signal.getsignal(signal.SIGTERM)
    ray.shutdown()
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)
