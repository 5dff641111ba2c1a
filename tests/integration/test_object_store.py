"""Object-store storage end to end, against a real S3-compatible server on 127.0.0.1 (moto's standalone
server): a sweep, report, evaluate and pull reading the store; a driver SIGKILL + rerun that resumes; a
second launch refused by the lease; --fresh; and file:// URIs. The endpoint reaches everything the way the
AWS tools read it (AWS_ENDPOINT_URL and the usual credential variables), Ray's workers included."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from conftest import cli, cli_env, start_cli
from support import SLOW_EPOCH, TINY, finish, kill_session, wait_for

BUCKET = "sweeps"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # for this process's own reads of the store
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield cli_env(**env)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def _store() -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(f"s3://{BUCKET}")[0]


def _files(prefix: str) -> set[str]:
    selector = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
    base = f"{BUCKET}/{prefix}/"
    return {
        info.path.removeprefix(base) for info in _store().get_file_info(selector) if info.type == pafs.FileType.File
    }


def _read_json(key: str) -> dict:
    with _store().open_input_stream(f"{BUCKET}/{key}") as stream:
        return json.loads(stream.read())


def _config(tmp_path: Path, name: str, epochs: int, storage: str, train_limit: int = 1500) -> Path:
    path = tmp_path / f"{name}.yaml"
    text = TINY.format(name=name, storage=storage, epochs=epochs, train_limit=train_limit)
    path.write_text(text + "search: {space: {lr: {grid: [1.0e-3, 2.0e-3]}}}\n")
    return path


def test_a_sweep_on_s3_writes_every_output_to_the_store_and_reads_back(s3_env: dict[str, str], tmp_path: Path) -> None:
    config = _config(tmp_path, "s3sweep", 2, f"s3://{BUCKET}/team")
    done = cli("launch", str(config), env=s3_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    files = _files("team/s3sweep")
    for key in (
        "results.parquet",
        "history.parquet",
        "best/model.pt",
        "best/manifest.json",
        "experiment.json",
        "status.json",
    ):
        assert key in files, (key, sorted(files))
    assert any(k.startswith("_summary/events.out.tfevents") for k in files)
    trials = {k.split("/")[0] for k in files if k.endswith("/params.json")}
    assert len(trials) == 2
    for trial in trials:
        assert any(k.startswith(f"{trial}/checkpoint_") for k in files)
        assert any(k.startswith(f"{trial}/events.out.tfevents") for k in files), trial  # the trial's own TB run
    assert _read_json("team/s3sweep/status.json")["state"] == "finished"
    assert not (tmp_path / "s3:").exists() and not list(tmp_path.glob("team*"))  # nothing under a local "s3:" dir

    uri = f"s3://{BUCKET}/team/s3sweep"
    report = cli("report", uri, "--out", str(tmp_path / "report"), env=s3_env)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "finished" in report.stdout and (tmp_path / "report" / "report.html").is_file()
    manifest = _read_json("team/s3sweep/best/manifest.json")
    evaluated = cli("evaluate", f"{uri}/best", "--json", env=s3_env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(manifest["test_accuracy"], abs=1e-6)
    copy = tmp_path / "copy"
    pulled = cli("pull", uri, str(copy), env=s3_env)
    assert pulled.returncode == 0, pulled.stderr
    assert (copy / "best" / "model.pt").read_bytes() == _store().open_input_stream(
        f"{BUCKET}/team/s3sweep/best/model.pt"
    ).read()
    assert list((copy / "_summary").glob("events.out.tfevents.*"))  # tensorboard --logdir copy works


def test_driver_sigkill_on_s3_then_rerun_resumes_and_a_second_launch_is_refused(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    config = _config(tmp_path, "s3crash", 8, f"s3://{BUCKET}/team", train_limit=SLOW_EPOCH)
    proc = start_cli("launch", str(config), "--set", "search.max_concurrent_trials=1", env=s3_env, cwd=tmp_path)
    try:

        def epochs_reported() -> int:
            keys = [k for k in _files("team/s3crash") if k.endswith("/result.json")]
            return sum(len(_store().open_input_stream(f"{BUCKET}/team/s3crash/{k}").read().splitlines()) for k in keys)

        wait_for(lambda: epochs_reported() >= 2, proc, what="two epochs on the store", timeout=600)
        second = cli("launch", str(config), "--set", "search.max_concurrent_trials=1", env=s3_env, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert "in use by another launch" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_session(proc)
    assert "results.parquet" not in _files("team/s3crash")
    code, out, err = finish(
        start_cli("launch", str(config), "--set", "search.max_concurrent_trials=1", env=s3_env, cwd=tmp_path)
    )
    assert code == 0, err[-3000:]
    assert "resumed the experiment" in out
    results = cli("report", f"s3://{BUCKET}/team/s3crash", "--out", str(tmp_path / "r"), env=s3_env)
    assert results.returncode == 0 and "2 completed" in results.stdout, results.stdout[-2000:]
    assert ".launch.lock" not in _files("team/s3crash")  # the lease is released when the launch ends

    fresh = cli(
        "launch",
        str(config),
        "--fresh",
        "--set",
        "trial.epochs=1",
        "--set",
        "asha.grace_period=1",
        env=s3_env,
        cwd=tmp_path,
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "experiment: s3crash-2 ->" in fresh.stdout
    assert "best/manifest.json" in _files("team/s3crash-2")
    assert _read_json("team/s3crash/status.json")["state"] == "finished"  # the old one untouched


def test_file_uris_are_local_directories(tmp_path: Path) -> None:
    config = _config(tmp_path, "fileuri", 1, f"file://{tmp_path}/store")
    done = cli("launch", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "store" / "fileuri" / "best" / "manifest.json").is_file()
    relative = cli("launch", str(config), "--storage-path", "file://relative/dir", cwd=tmp_path)
    assert relative.returncode == 2 and relative.stderr.startswith("config error: storage_path: a file:// URI needs")


# ------------------------------------------------------------------ store faults and the lease, for real


def test_a_store_that_never_answers_is_refused_within_its_timeout(tmp_path: Path) -> None:
    """A socket that accepts and never answers, as a firewalled or hung endpoint does; the 20 s wait is
    shortened through its test knob. The refusal comes, and the process ends, without the AWS SDK's own
    minutes of retries."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        env = cli_env(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            ORCHESTRATOR_STORE_TIMEOUT_S="2",
        )
        config = _config(tmp_path, "silent", 1, f"s3://{BUCKET}/team")
        started = time.monotonic()
        done = cli("launch", str(config), env=env, cwd=tmp_path, timeout=300)
        elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == (
        f"config error: storage_path: s3://{BUCKET}/team did not answer within 2 s "
        "(check AWS_ENDPOINT_URL and the network)\n"
    )
    # The command's start-up (imports) takes seconds on a loaded machine; a hung request held it 100 s.
    assert elapsed < 60, f"the refusal took {elapsed:.0f} s"
    assert not list(tmp_path.glob("s3*"))


def test_a_missing_bucket_is_refused_before_ray_starts(s3_env: dict[str, str], tmp_path: Path) -> None:
    config = _config(tmp_path, "nobucket", 1, "s3://no-such-bucket/team")
    done = cli("launch", str(config), env=s3_env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == (
        "config error: storage_path: bucket 'no-such-bucket' does not exist; create it first "
        "(got 's3://no-such-bucket/team')\n"
    )
    assert "Ray" not in done.stdout + done.stderr
    report = cli("report", "s3://no-such-bucket/team/nobucket", env=s3_env)
    assert report.returncode == 2 and "bucket 'no-such-bucket' does not exist" in report.stderr, report.stderr


def _put_lease(key: str, **fields: object) -> None:
    lease = {"token": "theirs", "pid": 4242, "host": "elsewhere.example", "renewed": time.time(), "session": None}
    with _store().open_output_stream(f"{BUCKET}/{key}") as stream:
        stream.write(json.dumps({**lease, **fields}).encode())


def test_a_lease_from_another_machine_is_honoured_for_60_s_then_taken_over(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    """The lease's age is what its holder last wrote: one renewed moments ago (its age when the launch reads
    it: the command's start-up) refuses the launch; one renewed 61 s ago (its holder gone for more than the
    60 s) is taken over, and the sweep runs. The 60 s boundary itself: tests/unit/test_lock.py."""
    config = _config(tmp_path, "s3lease", 1, f"s3://{BUCKET}/team", train_limit=300)
    _put_lease("team/s3lease/.launch.lock")
    refused = cli("launch", str(config), env=s3_env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert re.fullmatch(
        r"config error: name: experiment s3://sweeps/team/s3lease is in use by another launch \(pid 4242 on "
        r"elsewhere\.example, lease renewed \d+ s ago\); wait for it to finish, rerun after 60 s if it died, "
        r"or use --fresh \(got 's3lease'\)\n",
        refused.stderr,
    ), refused.stderr
    assert _files("team/s3lease") == {".launch.lock"}  # nothing else written

    _put_lease("team/s3lease/.launch.lock", renewed=time.time() - 61)
    taken = cli("launch", str(config), env=s3_env, cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr[-3000:]
    assert _read_json("team/s3lease/status.json")["state"] == "finished"
    assert ".launch.lock" not in _files("team/s3lease")  # released at the end


def test_two_launches_racing_on_the_store_one_runs_the_other_is_refused(s3_env: dict[str, str], tmp_path: Path) -> None:
    config = _config(tmp_path, "s3race", 1, f"s3://{BUCKET}/team", train_limit=300)
    procs = [start_cli("launch", str(config), env=s3_env, cwd=tmp_path) for _ in range(2)]
    outcomes = [finish(proc, timeout=600) for proc in procs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], [(code, err[-1500:]) for code, _, err in outcomes]
    loser = next(err for code, _, err in outcomes if code == 2)
    assert len(loser.splitlines()) == 1 and loser.startswith("config error: name: experiment s3://sweeps/team/s3race")
    assert "in use by another launch" in loser or "claimed by another launch at the same moment" in loser, loser
    assert _read_json("team/s3race/status.json")["state"] == "finished"
    assert ".launch.lock" not in _files("team/s3race")
