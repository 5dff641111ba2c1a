"""The launcher against a real multi-node Ray cluster, then against a *new* cluster on the same storage.

This is what a RayJob does on Kubernetes: the entrypoint joins a cluster of separate nodes, and a retry
reruns it on a fresh cluster that only shares the experiment directory. Here both nodes are `ray start`
processes on this machine (1 CPU each), the shared volume is a temporary directory, and a cluster is
"lost" by killing its processes, as a deleted pod would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "cluster-test"
# Two one-epoch trials: one per 1-CPU node, at the same time. No actor reuse: a loaded machine can start the
# worker node's actor after the head's trial has ended, and Tune would hand the second trial that idle actor.
BUDGET = [
    "--set",
    "runtime.reuse_actors=false",
    "--set",
    "trial.epochs=1",
    "--set",
    "data.train_limit=5000",
    "--set",
    "search.space.model={grid: [mlp]}",
    "--set",
    "search.space.lr={grid: [3.0e-3, 1.0e-3]}",
]
LAUNCH_TIMEOUT_S = 300
# The CLI installed beside this interpreter, so the nodes run the same Ray as the launcher.
RAY_CLI = (
    str(Path(sys.executable).with_name("ray"))
    if Path(sys.executable).with_name("ray").exists()
    else shutil.which("ray") or "ray"
)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _mentions(pid: int, marker: str) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class LocalCluster:
    """A head and one worker node, each its own `ray start --block` process tree."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.procs: list[subprocess.Popen[bytes]] = []
        gcs, client, dashboard, *agents = free_ports(5)
        self.address = f"127.0.0.1:{gcs}"
        common = [
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            "1",
            "--num-gpus",
            "0",
            "--object-store-memory",
            str(300 * 2**20),
            "--disable-usage-stats",
        ]
        self._start(
            "head",
            [
                "--head",
                "--port",
                str(gcs),
                "--include-dashboard=false",
                "--dashboard-host=127.0.0.1",
                "--dashboard-port",
                str(dashboard),
                "--ray-client-server-port",
                str(client),
                "--dashboard-agent-listen-port",
                str(agents[0]),
                *common,
            ],
        )
        # The worker retries until the head's GCS answers, so no wait in between.
        self._start("worker", ["--address", self.address, "--dashboard-agent-listen-port", str(agents[1]), *common])
        self._wait_for_nodes(2)

    def _start(self, role: str, args: list[str]) -> None:
        log = (self.root / f"{role}.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [RAY_CLI, "start", "--temp-dir", str(self.root / role), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        )

    def _wait_for_nodes(self, count: int, timeout_s: float = 90) -> None:
        probe = (
            f"import ray; ray.init(address={self.address!r}, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in self.procs), self.logs()
            done = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, env=self.env, timeout=60, check=False
            )
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        pytest.fail(f"the cluster did not reach {count} nodes\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.root.glob("*.log"))

    def kill(self) -> None:
        """SIGKILL our own process trees (never `ray stop`, which would hit every Ray on the machine)."""
        tree, doomed, stack = _children(), set(), [p.pid for p in self.procs]
        while stack:
            pid = stack.pop()
            doomed.add(pid)
            stack.extend(tree.get(pid, []))
        # Anything that slipped out of the tree still names our private temp dir on its command line.
        doomed |= {pid for pids in tree.values() for pid in pids if _mentions(pid, str(self.root))}
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=30)


def launch(address: str, storage: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "orchestrator.launch",
        "configs/smoke.yaml",
        "--address",
        address,
        "--storage-path",
        str(storage),
        "--name",
        NAME,
        *BUDGET,
    ]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, check=False
    )


def trial_records(experiment: Path) -> dict[str, list[dict[str, object]]]:
    """Every reported row of every trial, from Ray's per-trial result.json."""
    return {
        path.parent.name: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for path in sorted(experiment.glob("*/result.json"))
    }


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short path: Ray's unix sockets live under the temp dir and must stay under 108 characters.
    path = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sweep_spans_nodes_and_resumes_on_a_new_cluster(workdir: Path) -> None:
    assert shutil.which(RAY_CLI), f"the ray CLI is missing ({RAY_CLI})"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # Token auth as on the cluster, with a private token so no other Ray on this machine can join.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    storage = workdir / "shared"
    experiment = storage / NAME

    (workdir / "c1").mkdir()
    first = LocalCluster(workdir / "c1", env)
    try:
        done = launch(first.address, storage, env)
        assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}\n{first.logs()}"
    finally:
        first.kill()
    records = trial_records(experiment)
    assert len(records) == 2
    nodes = {row["node_id"] for rows in records.values() for row in rows}
    assert len(nodes) >= 2, f"every trial ran on one node: {nodes}"
    for output in ("best/model.pt", "best/manifest.json", "results.parquet"):
        assert (experiment / output).is_file(), output
    exported = (experiment / "best" / "model.pt").read_bytes()
    manifest = json.loads((experiment / "best" / "manifest.json").read_text())

    (workdir / "c2").mkdir()
    second = LocalCluster(workdir / "c2", env)
    try:
        again = launch(second.address, storage, env)
        assert again.returncode == 0, f"{again.stdout[-4000:]}\n{again.stderr[-4000:]}\n{second.logs()}"
    finally:
        second.kill()
    assert "resumed the experiment" in again.stdout, again.stdout[-4000:]
    # Restored, not restarted: the same trials, and none of them trained again.
    assert trial_records(experiment) == records
    # The resumed launch selects again from the same kept checkpoints: the very same export.
    assert (experiment / "best" / "model.pt").read_bytes() == exported
    assert (
        json.loads((experiment / "best" / "manifest.json").read_text())["source_checkpoint"]
        == manifest["source_checkpoint"]
    )
