"""A store that stalls or fails, for real: moto's S3-compatible server in its own process, SIGSTOPped mid-sweep
(a stall ridden through with one warning line; an outage longer than the patience stops the sweep resumably,
exit 75, and the rerun finishes it), and a proxy in front of it failing a share of the requests (500, 503,
SlowDown, reset connections, answers lost after the work was done). Each ends with the tables an
uninterrupted sweep gives, and no traceback on the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import cli, cli_env, start_cli
from store_support import CREDENTIALS, FailingProxy, moto_process
from support import TINY, finish

BUCKET = "faults"


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with moto_process() as (proc, port):
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        s3 = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            access_key="test",
            secret_key="test",
            allow_bucket_creation=True,
        )
        s3.create_dir(BUCKET)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield proc, port
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _s3(port: int) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="test", secret_key="test")


def _env(port: int, **extra: str) -> dict[str, str]:
    return cli_env(**CREDENTIALS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", **extra)


def _config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    text = TINY.format(name=name, storage=f"s3://{BUCKET}/sweeps", epochs=3, train_limit=1500)
    path.write_text(text + "search: {space: {lr: {grid: [1.0e-3, 2.0e-3]}}}\n")
    return path


def _table(port: int, name: str) -> dict[str, tuple]:
    rows = pq.read_table(f"{BUCKET}/sweeps/{name}/results.parquet", filesystem=_s3(port)).to_pylist()
    keys = ("status", "epochs_run", "best_epoch", "best_val_accuracy", "best_test_accuracy", "final_val_loss")
    out = {}
    for row in rows:
        knobs, _, number = row["trial_name"].rpartition("-")
        out[f"{knobs}-{number.split('_')[-1]}"] = tuple(row[k] for k in keys)
    return out


def _reported(port: int, name: str) -> bool:
    selector = pafs.FileSelector(f"{BUCKET}/sweeps/{name}", recursive=True, allow_not_found=True)
    return any(info.path.endswith("/reports.jsonl") for info in _s3(port).get_file_info(selector))


def _wait_reported(port: int, name: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 600
    while not _reported(port, name):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial reported"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def uninterrupted(store: tuple[subprocess.Popen[bytes], int], tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("reference")
    done = cli("launch", str(_config(tmp, "reference")), env=_env(store[1]), cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return _table(store[1], "reference")


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text[-5000:]


def test_a_stall_of_the_store_is_ridden_through_with_one_warning(
    store: tuple[subprocess.Popen[bytes], int], uninterrupted: dict, tmp_path: Path
) -> None:
    server, port = store
    launch = start_cli("launch", str(_config(tmp_path, "stall")), cwd=tmp_path, env=_env(port))
    _wait_reported(port, "stall", launch)
    server.send_signal(signal.SIGSTOP)
    try:
        time.sleep(25)
    finally:
        server.send_signal(signal.SIGCONT)
    code, out, err = finish(launch)
    assert code == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if "storage is not answering" in line]
    assert len(warnings) == 1, err[-3000:]
    _no_traceback(out, err)
    assert _table(port, "stall") == uninterrupted


def test_an_outage_longer_than_the_patience_stops_resumably_and_the_rerun_finishes(
    store: tuple[subprocess.Popen[bytes], int], uninterrupted: dict, tmp_path: Path
) -> None:
    server, port = store
    config = _config(tmp_path, "outage")
    launch = start_cli("launch", str(config), cwd=tmp_path, env=_env(port, ORCHESTRATOR_STORE_PATIENCE_S="8"))
    _wait_reported(port, "outage", launch)
    server.send_signal(signal.SIGSTOP)
    try:
        code, out, err = finish(launch, timeout=300)
    finally:
        server.send_signal(signal.SIGCONT)
    assert code == 75, (code, err[-3000:])
    lines = [line for line in err.splitlines() if line.startswith("storage error:")]
    assert len(lines) == 1 and "the store stopped answering" in lines[0], err[-3000:]
    _no_traceback(out, err)
    rerun = cli("launch", str(config), env=_env(port), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed the experiment" in rerun.stdout
    _no_traceback(rerun.stdout, rerun.stderr)
    assert _table(port, "outage") == uninterrupted


def test_a_store_failing_a_share_of_requests_still_gives_the_uninterrupted_result(
    store: tuple[subprocess.Popen[bytes], int], uninterrupted: dict, tmp_path: Path
) -> None:
    with FailingProxy(store[1], share=0.15, seed=1) as proxy:
        done = cli("launch", str(_config(tmp_path, "flaky")), env=_env(proxy.port), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sum(proxy.counts[f] for f in FailingProxy.FAULTS) >= 10, proxy.counts  # the faults were real
    _no_traceback(done.stdout, done.stderr)
    assert _table(store[1], "flaky") == uninterrupted
