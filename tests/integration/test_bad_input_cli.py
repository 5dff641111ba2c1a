"""Bad input through the real command (`python -m orchestrator ...` in a subprocess): a sample of every
class that tests/unit/test_bad_input.py covers in-process, for what only a real process shows: the exit
status itself, stderr as a terminal would see it (warnings and tracebacks included), imports, a FIFO or
device that would block a process, a cluster address that would hang it, and output into a closed pipe.

Each case asserts the same four properties: exit 2, exactly one line on stderr naming the field or path,
no traceback, nothing written under tmp_path (the command runs there, with storage_path under it).
"""

from __future__ import annotations

import functools
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import FASHION_DIR, REPO, cli, cli_env

ADDRESS_LIMIT_S = 15.0


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    entries: dict[str, tuple[int, int, int]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            entries[os.path.relpath(path, root)] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
    return entries


def refused(
    tmp_path: Path,
    args: list[str],
    fragments: list[str],
    prefix: str = "config error: ",
    env: dict[str, str] | None = None,
    limit_s: float = 120.0,
) -> str:
    """The real command: exit 2, one stderr line naming the field, no traceback, nothing written."""
    before = snapshot(tmp_path)
    start = time.monotonic()
    done = cli(*args, cwd=tmp_path, timeout=limit_s + 30, env=env or _env(tmp_path))
    elapsed = time.monotonic() - start
    assert done.returncode == 2, f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {done.stderr!r}"
    assert done.stdout == "", done.stdout
    line = lines[0]
    assert line.startswith(prefix), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert snapshot(tmp_path) == before, "something was written"
    assert elapsed < limit_s, f"took {elapsed:.1f} s"
    return line


# Loaded by every command these tests start (a sitecustomize on PYTHONPATH): an import of ray, anywhere in
# the process, ends it at once with exit 99 and says so, so "refused before Ray starts" fails loudly.
_NO_RAY = """\
import os
import sys


class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            sys.stderr.write(f"{name} imported: bad input must be refused before Ray starts\\n")
            sys.stderr.flush()
            os._exit(99)
        return None


sys.meta_path.insert(0, _NoRay())
"""


@functools.cache
def _no_ray_dir() -> str:
    directory = tempfile.mkdtemp(prefix="no-ray-")  # outside every tmp_path a case watches
    Path(directory, "sitecustomize.py").write_text(_NO_RAY)
    return directory


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The runner's environment (no RAY_ADDRESS), with Ray's temp directory (where `auto` looks for a cluster
    that `ray start` noted) inside tmp_path, so a cluster started elsewhere on this machine is not seen, and
    Ray unimportable."""
    pythonpath = os.pathsep.join([_no_ray_dir(), str(REPO)])
    return {**cli_env(), "PYTHONPATH": pythonpath, "RAY_TMPDIR": str(tmp_path / "ray-tmp"), **extra}


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad-input-cli") / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (600, 28, 28), dtype=np.uint8), y_train=np.arange(600) % 10)
    return path


def write_config(tmp_path: Path, npz: Path, extra: dict[str, Any] | None = None) -> Path:
    config: dict[str, Any] = {
        "name": "bad",
        "storage_path": str(tmp_path / "runs"),
        "data": {"source": "npz", "path": str(npz), "val_size": 100},
        "trial": {"model": "mlp", "mlp": {"hidden": [8]}, "epochs": 2, "batch_size": 32},
    }
    for key, value in (extra or {}).items():
        config[key] = (
            {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) else value
        )
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ------------------------------------------------------------------ the config file and its values


def _text(text: str) -> Callable[[Path, Path], str]:
    def make(tmp_path: Path, npz: Path) -> str:
        path = tmp_path / "experiment.yaml"
        path.write_text(f"name: bad\nstorage_path: {tmp_path / 'runs'}\n" + text)
        return str(path)

    return make


def _bytes(data: bytes) -> Callable[[Path, Path], str]:
    def make(tmp_path: Path, npz: Path) -> str:
        (tmp_path / "experiment.yaml").write_bytes(data)
        return str(tmp_path / "experiment.yaml")

    return make


def _fifo(tmp_path: Path, npz: Path) -> str:
    os.mkfifo(tmp_path / "fifo.yaml")
    return str(tmp_path / "fifo.yaml")


BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)
)

# (id, makes the config path, extra command-line arguments, fragments)
CONFIG_CASES: list[tuple[str, Callable[[Path, Path], str], list[str], list[str]]] = [
    ("yaml-duplicate-key", _text("trial:\n  lr: 0.1\n  lr: 0.2\n"), [], ["experiment.yaml:5", "duplicate key 'lr'"]),
    ("yaml-alias-bomb", _text(BOMB), [], ["aliases are expanded"]),
    ("yaml-deep-nesting", _text("x: " + "[" * 50_000 + "]" * 50_000 + "\n"), [], ["nested more than 32 levels"]),
    (
        "yaml-python-tag",
        _text("seed: !!python/object/apply:os.system ['touch pwned']\n"),
        [],
        ["YAML tags are not allowed"],
    ),
    ("yaml-a-list", _bytes(b"- name: x\n"), [], ["experiment.yaml", "YAML mapping"]),
    ("yaml-empty", _bytes(b""), [], ["experiment.yaml", "YAML mapping"]),
    ("yaml-not-utf8", _bytes("name: café\n".encode("latin-1")), [], ["experiment.yaml", "not UTF-8"]),
    ("config-fifo", _fifo, [], ["fifo.yaml", "not a regular file"]),
    ("config-dev-zero", lambda tmp_path, npz: "/dev/zero", [], ["/dev/zero", "not a regular file"]),
    ("config-directory", lambda tmp_path, npz: str(tmp_path), [], ["cannot read config file: a directory"]),
    ("nan-lr", lambda t, n: str(write_config(t, n)), ["--set", "trial.lr=.nan"], ["trial.lr", "finite"]),
    (
        "inf-augment",
        lambda t, n: str(write_config(t, n, {"trial": {"augment": {"rotate": float("inf")}}})),
        [],
        ["trial.augment.rotate", "finite"],
    ),
    (
        "bool-batch-size",
        lambda t, n: str(write_config(t, n, {"trial": {"batch_size": True}})),
        [],
        ["trial.batch_size", "valid integer"],
    ),
    ("seed-above-32-bits", lambda t, n: str(write_config(t, n)), ["--set", "seed=4294967296"], ["seed", "4294967295"]),
    (
        "cpu-too-fine",
        lambda t, n: str(write_config(t, n)),
        ["--set", "resources.cpu=0.00001"],
        ["resources.cpu", "0.0001"],
    ),
    (
        "gpu-more-than-machine",
        lambda t, n: str(write_config(t, n)),
        ["--set", "resources.gpu=64"],
        ["resources.gpu", "more GPUs per trial than this machine"],
    ),
    (
        "reduction-factor-below-one",
        lambda t, n: str(write_config(t, n)),
        ["--set", "asha.reduction_factor=0.5"],
        ["asha.reduction_factor", "greater than 1"],
    ),
    (
        "exponent-without-dot",
        lambda t, n: str(write_config(t, n)),
        ["--set", "trial.lr=1e-3"],
        ["trial.lr", "write 1.0e-3"],
    ),
    (
        "trials-above-cap",
        lambda t, n: str(
            write_config(t, n, {"search": {"num_samples": 10_000, "space": {"lr": {"grid": [0.1, 0.01]}}}})
        ),
        [],
        ["search.num_samples", "20000"],
    ),
    (
        "mlp-above-parameter-cap",
        lambda t, n: str(write_config(t, n, {"trial": {"mlp": {"hidden": [60000, 60000]}}})),
        [],
        ["trial.model", "above the cap"],
    ),
    (
        "batch-size-above-train-limit",
        lambda t, n: str(write_config(t, n, {"data": {"train_limit": 50}, "trial": {"batch_size": 64}})),
        [],
        ["trial.batch_size", "(50 samples)"],
    ),
    (
        "quniform-off-grid",
        lambda t, n: str(write_config(t, n)),
        ["--set", "search.space={mlp.dropout: {quniform: [0.05, 0.5, 0.1]}}"],
        ["multiples of q"],
    ),
    (
        "deterministic-asha-under-optuna",
        lambda t, n: str(
            write_config(
                t,
                n,
                {
                    "search": {"algorithm": "optuna", "space": {"lr": {"loguniform": [0.001, 0.1]}}},
                    "asha": {"mode": "deterministic"},
                },
            )
        ),
        [],
        ["asha.mode", "async"],
    ),
    ("name-trailing-newline", lambda t, n: str(write_config(t, n)), ["--name", "bad\n"], ["name", "plain directory"]),
    (
        "storage-path-ftp",
        lambda t, n: str(write_config(t, n)),
        ["--storage-path", "ftp://host/runs"],
        ["storage_path", "'ftp'"],
    ),
    (
        "storage-path-s3-no-bucket",
        lambda t, n: str(write_config(t, n)),
        ["--storage-path", "s3://"],
        ["storage_path", "bucket"],
    ),
    (
        "storage-path-unknown-user",
        lambda t, n: str(write_config(t, n)),
        ["--storage-path", "~nosuchuser_x/runs"],
        ["storage_path", "unknown user"],
    ),
    ("npz-without-path", _text("data: {source: npz}\n"), [], ["needs data.path"]),
    (
        "torchvision-unknown-dataset",
        _text("data: {source: torchvision, dataset: ImageNet}\n"),
        [],
        ["unknown torchvision dataset 'ImageNet'"],
    ),
]


@pytest.mark.parametrize(("make", "args", "fragments"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_refused(
    make: Callable[[Path, Path], str], args: list[str], fragments: list[str], tmp_path: Path, npz: Path
) -> None:
    refused(tmp_path, ["launch", make(tmp_path, npz), *args], fragments)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------ data


def _npz_case(**arrays: Any) -> Callable[[Path], dict[str, Any]]:
    def make(tmp_path: Path) -> dict[str, Any]:
        np.savez(tmp_path / "bad.npz", **arrays)
        return {"source": "npz", "path": str(tmp_path / "bad.npz")}

    return make


def _truncated_fashion(tmp_path: Path) -> dict[str, Any]:
    import shutil

    root = tmp_path / "fmnist"
    root.mkdir()
    for source in FASHION_DIR.glob("*.gz"):
        shutil.copy(source, root / source.name)
    with open(root / "t10k-images-idx3-ubyte.gz", "r+b") as f:
        f.truncate(4096)
    return {"root": str(root)}


X = np.zeros((600, 28, 28), np.uint8)
DATA_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], list[str]]] = [
    ("npz-mismatched-lengths", _npz_case(x_train=X, y_train=np.arange(500) % 10), ["one label per sample"]),
    ("npz-float-labels", _npz_case(x_train=X, y_train=np.ones(600, np.float64)), ["integer class indices"]),
    ("npz-nan-pixels", _npz_case(x_train=np.full((600, 4), np.nan), y_train=np.arange(600) % 2), ["NaN"]),
    (
        "entry-point-raises",
        lambda _: {"source": "entry_point", "entry_point": "json:loads", "args": {"s": "{"}},
        ["data.entry_point", "JSONDecodeError"],
    ),
    ("truncated-idx", _truncated_fashion, ["data.root", "t10k-images-idx3-ubyte.gz", "unreadable"]),
]


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_data_refused(make: Callable[[Path], dict[str, Any]], fragments: list[str], tmp_path: Path, npz: Path) -> None:
    if make is _truncated_fashion and not FASHION_DIR.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    path = write_config(tmp_path, npz)
    config = yaml.safe_load(path.read_text())
    config["data"] = make(tmp_path)
    path.write_text(yaml.safe_dump(config))
    # The copy of the IDX files is the only one: Debian's directory is searched after data.root.
    refused(tmp_path, ["launch", str(path)], fragments, prefix="data error: ")


# ------------------------------------------------------------------ the cluster address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ADDRESS_CASES = [
    ("closed-port", "--address", "127.0.0.1:{port}", ["no Ray cluster answers"]),
    ("garbage", "--address", "not an address", ["not a Ray address"]),
    ("port-out-of-range-env", "RAY_ADDRESS", "host:99999", ["not a Ray address"]),
    ("no-host-env", "RAY_ADDRESS", ":123", ["not a Ray address"]),
    ("auto-without-cluster", "--address", "auto", ["'auto' but no Ray cluster"]),
    ("unroutable", "--address", "192.0.2.1:6379", ["no Ray cluster answers"]),  # TEST-NET-1: nothing answers
]


@pytest.mark.parametrize(
    ("via", "address", "fragments"), [c[1:] for c in ADDRESS_CASES], ids=[c[0] for c in ADDRESS_CASES]
)
def test_address_refused(via: str, address: str, fragments: list[str], tmp_path: Path, npz: Path) -> None:
    address = address.format(port=_closed_port())
    args = ["launch", str(write_config(tmp_path, npz))]
    env = _env(tmp_path)
    if via == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = address
    else:
        args += [via, address]
    refused(tmp_path, args, ["--address/ray.address/RAY_ADDRESS", *fragments], env=env, limit_s=ADDRESS_LIMIT_S)


# ------------------------------------------------------------------ the experiment directory, report, evaluate


def test_corrupt_experiment_record_refused(tmp_path: Path, npz: Path) -> None:
    (tmp_path / "runs" / "bad").mkdir(parents=True)
    (tmp_path / "runs" / "bad" / "experiment.json").write_text("[1, 2, 3]\n")
    refused(tmp_path, ["launch", str(write_config(tmp_path, npz))], ["experiment.json", "not an experiment record"])


def test_lock_path_that_is_a_directory_refused(tmp_path: Path, npz: Path) -> None:
    (tmp_path / "runs" / "bad" / ".launch.lock").mkdir(parents=True)
    refused(tmp_path, ["launch", str(write_config(tmp_path, npz))], [".launch.lock", "is not a file"])


def test_truncated_results_refused_by_report(tmp_path: Path) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    experiment = tmp_path / "runs" / "done"
    experiment.mkdir(parents=True)
    (experiment / "experiment.json").write_text('{"config": {}}\n')
    (experiment / "status.json").write_text('{"state": "finished", "trials": {}}\n')
    buffer = io.BytesIO()
    pq.write_table(pa.table({"trial_name": ["a"] * 50, "test_accuracy": [0.5] * 50}), buffer)
    (experiment / "results.parquet").write_bytes(buffer.getvalue()[:300])
    refused(tmp_path, ["report", str(experiment)], ["results.parquet", "unreadable table"], prefix="data error: ")


def _checkpoint(path: Path, **changes: Any) -> Path:
    import torch

    from trainables.models import build_model

    spec = {"name": "mlp", "args": {"hidden": [8]}, "input_shape": [1, 28, 28], "num_classes": 10}
    state = {
        "model": build_model(spec).state_dict(),
        "model_spec": spec,
        "input_scale": "standard",
        "scaling": {"mean": [0.3], "std": [0.3], "pixel_max": 255.0},
        **changes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_checkpoint_with_zero_std_refused_by_evaluate(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "ck" / "checkpoint.pt", scaling={"mean": [0.3], "std": [0.0], "pixel_max": 255.0})
    refused(tmp_path, ["evaluate", str(model)], ["checkpoint.pt", "std > 0"], prefix="data error: ")


def test_huge_model_spec_refused_before_allocating(tmp_path: Path) -> None:
    spec = {"name": "mlp", "args": {"hidden": [60000, 60000]}, "input_shape": [1, 28, 28], "num_classes": 10}
    model = _checkpoint(tmp_path / "ck" / "checkpoint.pt", model_spec=spec)
    refused(tmp_path, ["evaluate", str(model)], ["checkpoint.pt", "above the cap"], prefix="data error: ", limit_s=30)


def test_malformed_manifest_refused_by_evaluate(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "runs" / "exp" / "best" / "model.pt")
    (model.parent / "manifest.json").write_text('{"trial_name": "a", "test_accuracy": "high"}')
    refused(tmp_path, ["evaluate", str(model.parent)], ["manifest.json", "test_accuracy"], prefix="data error: ")


def test_decompression_bomb_refused_by_evaluate(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "bomb.png").write_bytes(png)
    model = _checkpoint(tmp_path / "ck" / "checkpoint.pt")
    refused(
        tmp_path,
        ["evaluate", str(model), "--predict", str(tmp_path / "bomb.png")],
        ["bomb.png", "cannot read the image"],
        prefix="data error: ",
    )


def test_image_fifo_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "shoe.png")
    model = _checkpoint(tmp_path / "ck" / "checkpoint.pt")
    refused(
        tmp_path,
        ["evaluate", str(model), "--predict", str(tmp_path / "shoe.png")],
        ["shoe.png", "not a regular file"],
        prefix="data error: ",
        limit_s=60,
    )


# ------------------------------------------------------------------ output into a pipe the reader closed


def _buffered_env() -> dict[str, str]:
    """As a user's shell runs it: stdout block-buffered (PYTHONUNBUFFERED would hide a failure at exit's flush)."""
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _into_closed_pipe(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrator ARGS | head -0`, deterministically: the reader is gone before anything is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=_buffered_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=300), "", stderr)


PIPE_CASES = [
    ("evaluate-help", ["evaluate", "model", "--help"]),
    ("root-help", ["--help"]),
    ("launch-help", ["launch", "--help"]),
]


@pytest.mark.parametrize("args", [c[1] for c in PIPE_CASES], ids=[c[0] for c in PIPE_CASES])
def test_closed_pipe_ends_quietly(args: list[str], tmp_path: Path) -> None:
    done = _into_closed_pipe(args, tmp_path)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.stderr == "", done.stderr
    assert done.returncode == 0, done.stderr
    assert not any(tmp_path.iterdir())


def test_dry_run_into_a_closed_pipe_ends_quietly(tmp_path: Path, npz: Path) -> None:
    config = write_config(tmp_path, npz)
    done = _into_closed_pipe(["launch", str(config), "--dry-run"], tmp_path)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.stderr == "", done.stderr
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.yaml"]


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_evaluation_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """A real evaluation (the test split of Fashion-MNIST) whose reader left: `evaluate ... | head -1`."""
    model = _checkpoint(tmp_path / "ck" / "checkpoint.pt")
    done = _into_closed_pipe(["evaluate", str(model)], tmp_path)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr


def test_head_closing_the_pipe_ends_quietly(tmp_path: Path) -> None:
    """The shell's own `| head -1`."""
    command = f"{sys.executable} -m orchestrator evaluate model --help | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=tmp_path,
        env=_buffered_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.startswith("usage:"), done.stdout
    assert done.stderr == "", done.stderr
