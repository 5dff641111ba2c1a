"""Multi-node on one machine: a real two-node Ray cluster (`ray.cluster_utils.Cluster`: a head and a
worker node, each its own raylet), the real CLI joining it with --address, storage on a path both
nodes share. Trials run on both nodes; the worker node is removed mid-sweep and no trial is lost."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster
from support import (
    SLOW_EPOCH,
    finish,
    kill_session,
    results,
    start,
    surviving_epochs,
    table,
    trial_dirs,
    wait_for,
    write_config,
)

EPOCHS = 4


@pytest.fixture
def two_nodes() -> Iterator[tuple[Cluster, object]]:
    # One CPU per node: with two trials wanting one CPU each, Ray must use both nodes.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            # Notice a vanished node within seconds, not the default ~30 s.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
        },
    )
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


def test_trials_use_both_nodes_and_survive_removing_one(tmp_path: Path, two_nodes: tuple[Cluster, object]) -> None:
    cluster, worker = two_nodes
    extra = "search: {space: {lr: {grid: [1.0e-3, 2.0e-3, 3.0e-3]}}}\nfailure: {max_retries: 2}\n"
    config = write_config(tmp_path, "nodes", EPOCHS, extra, train_limit=SLOW_EPOCH)
    exp_dir = tmp_path / "runs" / "nodes"
    worker_id = worker.node_id
    proc = start(config, "--address", cluster.address, cwd=tmp_path)
    frozen: list[int] = []
    try:

        def trial_on_worker_node() -> Path | None:
            """A trial mid-run on the worker node, its process frozen (SIGSTOP) so that it cannot finish there
            before the node is removed, however fast this machine is (removal SIGKILLs it, frozen or not)."""
            for t in trial_dirs(exp_dir):
                rows = results(t)
                if not rows or rows[-1]["node_id"] != worker_id or len(rows) >= EPOCHS:
                    continue
                try:
                    os.kill(int(rows[-1]["pid"]), signal.SIGSTOP)
                except ProcessLookupError:
                    continue  # that process ended: a later report names the one that goes on
                frozen.append(int(rows[-1]["pid"]))
                if len(results(t)) < EPOCHS:
                    return t
            return None

        moved = wait_for(trial_on_worker_node, proc, what="a trial reporting from the worker node")
        cluster.remove_node(worker, allow_graceful=False)  # preemption: no drain, no goodbye
    except BaseException:
        kill_session(proc)
        raise
    finally:
        for pid in frozen:  # a frozen worker cannot notice its node is gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, err[-3000:]
    rows = table(exp_dir)
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"completed"}, rows
    nodes_used = {r["node_id"] for t in trial_dirs(exp_dir) for r in results(t)}
    assert worker_id in nodes_used and len(nodes_used) == 2
    moved_rows = results(moved)
    assert surviving_epochs(moved_rows) == list(range(1, EPOCHS + 1))
    assert moved_rows[-1]["node_id"] != worker_id, "the trial finished on the surviving node"
    assert moved_rows[0]["epoch"] == 1 and len({r["pid"] for r in moved_rows}) >= 2


def test_trial_larger_than_every_node_is_refused_after_joining(
    tmp_path: Path, two_nodes: tuple[Cluster, object]
) -> None:
    cluster, _ = two_nodes
    config = write_config(tmp_path, "toobig", 1)
    code, out, err = finish(
        start(config, "--address", cluster.address, "--set", "resources.cpu=2", cwd=tmp_path), timeout=300
    )
    assert code == 2, err[-3000:]
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            "config error: resources.cpu: more CPUs per trial than the largest live node of the cluster has (1)"
        )
    )
    assert not (tmp_path / "runs").exists()
