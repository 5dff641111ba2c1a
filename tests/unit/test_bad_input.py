"""Bad input is refused before Ray starts: exit 2, one line naming the field or path, no traceback,
nothing written, within seconds.

Every case runs the real CLI in-process (`orchestrator.commands.main.main`) from inside tmp_path, with
a small base config whose storage_path and data lie under tmp_path (a tiny .npz, so no case waits for a
dataset), and asserts the four properties with one helper, `refused`. A sample of each class runs as a
real subprocess in tests/integration/test_bad_input_cli.py.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.abc
import io
import json
import math
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from orchestrator.commands.main import main
from orchestrator.config import resources
from trainables import data_readers

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TIME_LIMIT_S = 5.0
ENTRY_MODULE = "bad_input_entry_points"
ENTRY_SOURCE = """\
import numpy as np


def good(n=64):
    x = np.zeros((n, 1, 8, 8), np.uint8)
    return {"x_train": x, "y_train": np.arange(n) % 2}


def raises():
    raise RuntimeError("the data server is down")


def returns_list():
    return [1, 2, 3]


def returns_none():
    return None


def returns_lists():
    return {"x_train": [[0, 1], [1, 0]], "y_train": [0, 1]}


def returns_objects():
    x = np.empty((4, 2), dtype=object)
    return {"x_train": x, "y_train": np.array([0, 1, 0, 1])}


def returns_no_labels():
    return {"x_train": np.zeros((4, 2), np.float32)}


OVER_THE_CAP = 5_500_000  # 28x28 bytes each: 4.02 GiB of pixels (the cap is 4 GiB)


def too_big(n=OVER_THE_CAP):
    # over the cap without the memory: every sample is a view of one (zero strides)
    x = np.broadcast_to(np.zeros((1, 1, 28, 28), np.uint8), (n, 1, 28, 28))
    return {"x_train": x, "y_train": np.broadcast_to(np.arange(2), (n // 2, 2)).reshape(-1)}


def mapped(path, n=OVER_THE_CAP):
    # over the cap as a memory-mapped file (sparse on disk, never read)
    with open(path, "wb") as f:
        f.truncate(n * 28 * 28)
    x = np.memmap(path, np.uint8, mode="r", shape=(n, 28, 28))
    return {"x_train": x, "y_train": np.arange(n) % 2}


def takes_nothing():
    return {"x_train": np.zeros((4, 2), np.float32), "y_train": np.array([0, 1, 0, 1])}
"""


# ------------------------------------------------------------------ the helper every case goes through


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under root: its kind, size and mtime; any write shows as a difference."""
    entries: dict[str, tuple[int, int, int]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            entries[os.path.relpath(path, root)] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
    return entries


def refused(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    argv: list[str],
    fragments: list[str],
    prefix: str = "config error: ",
    limit_s: float = TIME_LIMIT_S,
) -> str:
    """Runs the CLI; asserts exit 2, one stderr line naming the field (`fragments`), no traceback,
    nothing written under root, and an answer within limit_s. Returns the line."""
    capsys.readouterr()
    before = snapshot(root)
    cli_modules()  # once per session, not timed
    start = time.monotonic()
    with ray_blocked() as ray_imports:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code  # type: ignore[assignment]
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one line on stderr, got: {err!r}"
    assert out == "", out
    line = lines[0]
    assert line.startswith(prefix), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert snapshot(root) == before, "something was written"
    assert elapsed < limit_s, f"took {elapsed:.1f} s"
    assert not ray_imports, f"the refusal imported {ray_imports[0]}: bad input must be refused before Ray starts"
    return line


# ------------------------------------------------------------------ "before Ray starts", checked for real
#
# Other test modules import ray (and the modules of ours that use it) at collection, so "ray" in
# sys.modules says nothing. Each refusal runs with Ray unimportable instead: every ray module, and every
# module of ours that a fresh `import orchestrator.commands.main` does not load (the ones that may import
# ray), is hidden from sys.modules for the call, and a meta-path finder records (and refuses) any import
# of ray. Everything is put back afterwards, so later tests see the modules they imported.

PROJECT = ("orchestrator", "trainables")


@functools.cache
def cli_modules() -> frozenset[str]:
    """Our modules that the CLI's entry point loads in a fresh interpreter (none of them imports ray)."""
    code = "import json, sys, orchestrator.commands.main; print(json.dumps(sorted(sys.modules)))"
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "ray" not in loaded, "the CLI's entry point imports ray"
    return frozenset(name for name in loaded if name.split(".")[0] in PROJECT)


def _ray(name: str) -> bool:
    return name == "ray" or name.startswith("ray.")


class _NoRay(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: Any = None) -> None:
        if _ray(name):
            self.attempts.append(name)  # recorded: a caller's `except ImportError` cannot hide it
            raise ImportError(f"{name} imported while refusing bad input")
        return None


@contextlib.contextmanager
def ray_blocked() -> Iterator[list[str]]:
    """Ray made unimportable for the block; yields the ray modules it tried to import."""
    keep = cli_modules()
    hidden = {
        name: module
        for name, module in sys.modules.items()
        if (_ray(name) or (name.split(".")[0] in PROJECT and name not in keep)) and not isinstance(module, _NoSweep)
    }
    for name in hidden:
        del sys.modules[name]
    visible = set(sys.modules)
    finder = _NoRay()
    sys.meta_path.insert(0, finder)
    try:
        yield finder.attempts
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n not in visible and (_ray(n) or n.split(".")[0] in PROJECT)]:
            del sys.modules[name]  # imported during the block, possibly against a hidden module's twin
        sys.modules.update(hidden)
        for name, module in hidden.items():
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)  # the package attribute, as it was


def test_the_guard_sees_a_refusal_that_imports_ray() -> None:
    """The check above is real: with another module having imported ray long before, an import of it (or of
    a module of ours that imports it) in the block is caught."""
    import orchestrator.tune.schedulers  # noqa: F401 - imports ray, as tests/unit/test_schedulers.py does

    schedulers = sys.modules["orchestrator.tune.schedulers"]
    with ray_blocked() as attempts, contextlib.suppress(ImportError):
        import orchestrator.tune.schedulers  # noqa: F401
    assert attempts and attempts[0].startswith("ray")
    assert sys.modules["orchestrator.tune.schedulers"] is schedulers and "ray.tune" in sys.modules  # put back
    assert sys.modules["orchestrator.tune"].schedulers is schedulers


# ------------------------------------------------------------------ fixtures: a base config and tiny data


def _tiny_npz(path: Path, n: int = 600, shape: tuple[int, ...] = (28, 28), **extra: Any) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "y_train": np.arange(n) % 10,
        "x_test": rng.integers(0, 256, (100, *shape), dtype=np.uint8),
        "y_test": np.arange(100) % 10,
    }
    arrays.update(extra)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only inputs shared by the cases: tiny datasets and an entry-point module."""
    import torchvision.datasets  # noqa: F401 - a one-time import (seconds on a loaded machine) is not the refusal's time

    root = tmp_path_factory.mktemp("bad-input-shared")
    _tiny_npz(root / "tiny.npz")
    _tiny_npz(root / "small-images.npz", shape=(8, 8))
    _tiny_npz(root / "flat.npz", shape=(20,))
    (root / f"{ENTRY_MODULE}.py").write_text(ENTRY_SOURCE)
    return root


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: Path) -> None:
    """Each case runs inside its tmp_path (a stray relative write lands there and is caught), with no
    cluster address from the environment and no `ray start` cluster visible."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))  # where `auto` looks for `ray start`'s note
    monkeypatch.syspath_prepend(str(shared))
    # A case that got past every check would start a sweep: make that fail loudly instead of running Ray.
    monkeypatch.setitem(sys.modules, "orchestrator.sweep", _NoSweep("orchestrator.sweep"))


class _NoSweep(types.ModuleType):
    def run_sweep(self, *args: Any, **kwargs: Any) -> int:
        raise AssertionError("the launch was accepted and a sweep would have started")


def base(tmp_path: Path, shared: Path) -> dict[str, Any]:
    return {
        "name": "bad",
        "storage_path": str(tmp_path / "runs"),
        "data": {"source": "npz", "path": str(shared / "tiny.npz"), "val_size": 100},
        "trial": {"model": "mlp", "mlp": {"hidden": [8]}, "epochs": 2, "batch_size": 32},
    }


def deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(into)
    for key, value in extra.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def write_config(tmp_path: Path, shared: Path, extra: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> Path:
    config = deep_merge(base(tmp_path, shared), extra or {})
    for key in drop:
        config.pop(key)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def base_text(tmp_path: Path, shared: Path) -> str:
    return (
        f"name: bad\nstorage_path: {tmp_path / 'runs'}\n"
        f"data: {{source: npz, path: {shared / 'tiny.npz'}, val_size: 100}}\n"
    )


# ------------------------------------------------------------------ YAML: the file and its syntax


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def _mapping_bomb(levels: int = 8) -> str:
    lines = ["m0: &m0 {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x}"]
    for level in range(1, levels):
        refs = ", ".join(f"k{i}: *m{level - 1}" for i in range(10))
        lines.append(f"m{level}: &m{level} {{{refs}}}")
    return "\n".join(lines) + "\n"


# (id, the file's text after the base lines, fragments). Text is appended to a base holding name,
# storage_path and data only, so each case adds its own sections.
YAML_CASES = [
    ("duplicate-top-level", "name: again\n", ["duplicate key 'name'"]),
    ("duplicate-in-section", "trial:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", ["duplicate key 'lr'", ":7"]),
    ("duplicate-in-flow-mapping", "trial: {epochs: 2, epochs: 3}\n", ["duplicate key 'epochs'"]),
    ("duplicate-section", "trial: {epochs: 2}\ntrial: {epochs: 3}\n", ["duplicate key 'trial'"]),
    ("duplicate-deep-in-space", "search: {space: {lr: {grid: [0.1], grid: [0.2]}}}\n", ["duplicate key 'grid'"]),
    ("duplicate-inside-list-item", "search: {space: {loss: {grid: [{l1: 0.1, l1: 0.2}]}}}\n", ["duplicate key 'l1'"]),
    ("alias-bomb-lists", _alias_bomb(), ["aliases are expanded", "alias bomb"]),
    ("alias-bomb-mappings", _mapping_bomb(), ["aliases are expanded"]),
    (
        "alias-bomb-inside-a-field",
        "trial:\n  model_args:\n" + "".join("    " + line + "\n" for line in _alias_bomb().splitlines()),
        ["aliases are expanded"],
    ),
    ("nesting-past-the-cap", f"trial: {{model_args: {{x: {_nested(40)}}}}}\n", ["nested more than 32 levels"]),
    ("nesting-deep-lists", f"deep: {_nested(100_000)}\n", ["nested more than 32 levels"]),
    ("nesting-deep-mappings", "deep: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n", ["nested more than 32"]),
    (
        "nesting-deep-block-style",
        "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n",
        ["nested more than 32 levels"],
    ),
    ("tag-python-object", "seed: !!python/object/apply:os.system ['touch pwned']\n", ["YAML tags are not allowed"]),
    ("tag-python-name", "seed: !!python/name:os.system\n", ["YAML tags are not allowed"]),
    ("tag-custom", "seed: !secret 3\n", ["YAML tags are not allowed"]),
    ("tag-binary", "trial: {model: !!binary aGVsbG8=}\n", ["trial.model", "bytes values are not allowed"]),
    ("tag-set", "trial: {mlp: {hidden: !!set {8: null}}}\n", ["trial.mlp.hidden", "set values are not allowed"]),
    ("date-value", "seed: 2024-01-01\n", ["seed", "date values are not allowed", "quote dates"]),
    ("integer-key", "trial: {1: 2}\n", ["keys must be text"]),
    ("null-key", "trial: {null: 2}\n", ["keys must be text"]),
    ("list-as-key", "trial:\n  ? [a, b]\n  : 1\n", ["a mapping key must be a plain value"]),
    ("two-documents", "---\nseed: 1\n", ["YAML syntax error"]),
    ("tab-indentation", "trial:\n\tlr: 0.1\n", ["YAML syntax error"]),
    ("unclosed-bracket", "trial: {lr: [1e-3\n", ["YAML syntax error"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_yaml_refused(
    text: str, fragments: list[str], tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(base_text(tmp_path, shared) + text)
    line = refused(capsys, tmp_path, ["launch", str(path)], fragments)
    assert str(path) in line or "--set" in line or line.split(": ")[1].split(".")[0] in text
    assert not (tmp_path / "pwned").exists()


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return str(path)


def _directory(tmp_path: Path) -> str:
    (tmp_path / "dir.yaml").mkdir()
    return str(tmp_path / "dir.yaml")


def _large(tmp_path: Path) -> str:
    path = tmp_path / "large.yaml"
    path.write_text("name: big\n" + "# padding\n" * 200_000)
    return str(path)


def _sparse(tmp_path: Path) -> str:
    path = tmp_path / "sparse.yaml"
    with open(path, "wb") as f:
        f.truncate(50 << 30)  # 50 GiB that takes no disk
    return str(path)


def _write(name: str, data: bytes) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        (tmp_path / name).write_bytes(data)
        return str(tmp_path / name)

    return make


# (id, makes the config path, fragments naming the path and the problem)
FILE_CASES: list[tuple[str, Callable[[Path], str], list[str]]] = [
    ("fifo", _fifo, ["fifo.yaml", "not a regular file"]),
    ("dev-zero", lambda _: "/dev/zero", ["/dev/zero", "not a regular file"]),
    ("directory", _directory, ["dir.yaml", "a directory"]),
    ("above-size-cap", _large, ["large.yaml", "byte cap"]),
    ("sparse-50-GiB", _sparse, ["sparse.yaml", "byte cap"]),
    ("missing", lambda tmp_path: str(tmp_path / "missing.yaml"), ["missing.yaml", "No such file"]),
    ("nul-in-path", lambda tmp_path: str(tmp_path / "a\x00b.yaml"), ["NUL byte"]),
    ("not-utf8", _write("latin1.yaml", "name: café\n".encode("latin-1")), ["latin1.yaml", "not UTF-8"]),
    ("utf16", _write("utf16.yaml", "name: x\n".encode("utf-16")), ["utf16.yaml", "not UTF-8"]),
    ("binary", _write("model.yaml", b"\x80\x04\x95\xff\xfe binary"), ["model.yaml", "not UTF-8"]),
    ("empty", _write("empty.yaml", b""), ["empty.yaml", "must be a YAML mapping", "NoneType"]),
    ("comments-only", _write("comments.yaml", b"# nothing here\n\n"), ["comments.yaml", "YAML mapping"]),
    ("a-list", _write("list.yaml", b"- name: x\n- seed: 1\n"), ["list.yaml", "YAML mapping", "list"]),
    ("a-scalar", _write("scalar.yaml", b"just text\n"), ["scalar.yaml", "YAML mapping", "str"]),
]


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_config_file_refused(
    make: Callable[[Path], str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(capsys, tmp_path, ["launch", make(tmp_path)], fragments)


# ------------------------------------------------------------------ values: numbers, sizes, spaces, names

NAN, INF = float("nan"), float("inf")

# (id, merged into the base config, --set overrides, fragments). Either or both may be given: a YAML
# file's value and a --set value go through the same validation.
# A population of four members, one copy per interval, two epochs (interval 1).
PBT: dict[str, Any] = {
    "search": {"num_samples": 4, "space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}}},
    "population": {"interval": 1, "mutate": ["lr"]},
}
VALUE_CASES: list[tuple[str, dict[str, Any], list[str], list[str]]] = [
    # non-finite floats wherever a float is accepted
    ("nan-lr", {"trial": {"lr": NAN}}, [], ["trial.lr", "finite"]),
    ("inf-lr-set", {}, ["trial.lr=.inf"], ["trial.lr", "finite"]),
    ("neg-inf-weight-decay", {"trial": {"weight_decay": -INF}}, [], ["trial.weight_decay"]),
    ("nan-weight-decay-set", {}, ["trial.weight_decay=.nan"], ["trial.weight_decay"]),
    ("nan-init-bound", {"trial": {"init": {"scheme": "uniform", "bound": NAN}}}, [], ["trial.init.bound"]),
    ("inf-init-bound", {}, ["trial.init.bound=.inf"], ["trial.init.bound"]),
    ("huge-init-bound", {}, ["trial.init.bound=1.0e+300"], ["trial.init.bound", "less than or equal to 1000"]),
    (
        "nan-uniform-bound",
        {"search": {"space": {"mlp.dropout": {"uniform": [0.0, NAN]}}}},
        [],
        ["search.space.mlp.dropout.uniform", "finite"],
    ),
    (
        "inf-loguniform-bound",
        {"search": {"space": {"lr": {"loguniform": [1e-4, INF]}}}},
        [],
        ["search.space.lr.loguniform", "finite"],
    ),
    ("nan-grid-value", {"search": {"space": {"lr": {"grid": [0.1, NAN]}}}}, [], ["search.space.lr", "finite"]),
    ("inf-choice-value", {}, ["search.space={lr: {choice: [.inf]}}"], ["search.space.lr", "finite"]),
    ("nan-cpu", {"resources": {"cpu": NAN}}, [], ["resources.cpu"]),
    ("inf-gpu", {}, ["resources.gpu=.inf"], ["resources.gpu"]),
    ("nan-reduction-factor", {"asha": {"reduction_factor": NAN}}, [], ["asha.reduction_factor"]),
    ("inf-reduction-factor", {}, ["asha.reduction_factor=.inf"], ["asha.reduction_factor"]),
    (
        "nan-step-gamma",
        {"trial": {"schedule": {"name": "step", "step": {"gamma": NAN}}}},
        [],
        ["trial.schedule.step.gamma"],
    ),
    ("inf-plateau-threshold", {}, ["trial.schedule.plateau.threshold=.inf"], ["trial.schedule.plateau.threshold"]),
    (
        "inf-onecycle-div-factor",
        {},
        ["trial.schedule.onecycle.div_factor=.inf"],
        ["trial.schedule.onecycle.div_factor"],
    ),
    ("nan-warmup-epochs", {}, ["trial.schedule.warmup_epochs=.nan"], ["trial.schedule.warmup_epochs"]),
    ("nan-augment-rotate", {"trial": {"augment": {"rotate": NAN}}}, [], ["trial.augment.rotate"]),
    ("inf-augment-translate", {}, ["trial.augment.translate=.inf"], ["trial.augment.translate"]),
    ("nan-label-smoothing", {}, ["trial.loss.label_smoothing=.nan"], ["trial.loss.label_smoothing"]),
    ("inf-clip-threshold", {}, ["trial.clip.threshold=.inf"], ["trial.clip.threshold"]),
    ("nan-val-size", {"data": {"val_size": NAN}}, [], ["data.val_size"]),
    ("inf-val-size", {}, ["data.val_size=.inf"], ["data.val_size"]),
    ("inf-test-size", {}, ["data.test_size=-.inf"], ["data.test_size"]),
    ("inf-gpu-memory", {}, ["runtime.gpu_memory_gb=.inf"], ["runtime.gpu_memory_gb"]),
    # a bool where a number is expected
    ("bool-batch-size", {"trial": {"batch_size": True}}, [], ["trial.batch_size", "valid integer", "True"]),
    ("bool-epochs-set", {}, ["trial.epochs=false"], ["trial.epochs", "valid integer"]),
    ("bool-seed", {"seed": True}, [], ["seed", "valid integer"]),
    ("bool-lr", {}, ["trial.lr=true"], ["trial.lr", "valid number"]),
    ("bool-hidden-width", {}, ["trial.mlp.hidden=[true]"], ["trial.mlp.hidden.0", "valid integer"]),
    ("bool-train-limit", {"data": {"train_limit": True}}, [], ["data.train_limit"]),
    ("bool-val-size", {}, ["data.val_size=true"], ["data.val_size"]),
    ("bool-cpu", {}, ["resources.cpu=true"], ["resources.cpu"]),
    ("bool-randint-bound", {"search": {"space": {"seed": {"randint": [True, 5]}}}}, [], ["search.space"]),
    ("string-number", {}, ["trial.lr='0.1'"], ["trial.lr", "valid number"]),
    ("exponent-without-dot", {}, ["trial.lr=1e-3"], ["trial.lr", "YAML reads 1e-3 as text: write 1.0e-3"]),
    ("exponent-for-an-int", {}, ["trial.epochs=1e3"], ["trial.epochs", "write 1000"]),
    # integers beyond what a consumer takes
    ("seed-above-32-bits", {}, ["seed=4294967296"], ["seed", "less than or equal to 4294967295"]),
    ("trial-seed-above-32-bits", {"trial": {"seed": 2**32}}, [], ["trial.seed", "4294967295"]),
    ("seed-negative", {}, ["seed=-1"], ["seed", "greater than or equal to 0"]),
    ("seed-beyond-int64", {}, ["seed=9223372036854775808"], ["seed", "beyond 64 bits"]),
    ("huge-int-in-yaml", {"trial": {"epochs": 10**30}}, [], ["trial.epochs", "beyond 64 bits"]),
    (
        "huge-int-in-model-args",
        {},
        ["trial.model_args={w: 100000000000000000000000}"],
        ["trial.model_args.w", "beyond 64 bits"],
    ),
    (
        "randint-seed-above-32-bits",
        {"search": {"space": {"seed": {"randint": [0, 2**40]}}}},
        [],
        ["search.space.seed", "4294967295"],
    ),
    (
        "randint-beyond-int64",
        {},
        ["search.space={seed: {randint: [0, 18446744073709551616]}}"],
        ["search.space.seed.randint[1]", "beyond 64 bits"],
    ),
    ("batch-size-huge", {}, ["trial.batch_size=4611686018427387904"], ["trial.batch_size", "10000000"]),
    ("train-limit-huge", {}, ["data.train_limit=4611686018427387904"], ["data.train_limit"]),
    ("max-retries-huge", {}, ["failure.max_retries=1000000000"], ["failure.max_retries"]),
    ("histogram-every-huge", {}, ["tensorboard.histogram_every=10000000000"], ["tensorboard.histogram_every"]),
    ("trials-per-gpu-huge", {}, ["resources.trials_per_gpu=10000000000"], ["resources.trials_per_gpu"]),
    ("plateau-patience-huge", {}, ["trial.schedule.plateau.patience=10000000000"], ["trial.schedule.plateau.patience"]),
    # CPU and GPU amounts Ray cannot represent
    ("cpu-too-fine", {}, ["resources.cpu=0.00001"], ["resources.cpu", "steps of 0.0001"]),
    ("cpu-fraction-above-one", {}, ["resources.cpu=1.5"], ["resources.cpu", "whole number"]),
    ("cpu-third", {"resources": {"cpu": 1 / 3}}, [], ["resources.cpu", "steps of 0.0001"]),
    ("gpu-too-fine", {}, ["resources.gpu=0.00001"], ["resources.gpu", "steps of 0.0001"]),
    ("gpu-fraction-above-one", {}, ["resources.gpu=2.5"], ["resources.gpu", "whole number"]),
    ("gpu-negative", {}, ["resources.gpu=-1"], ["resources.gpu"]),
    ("cpu-above-cap", {}, ["resources.cpu=5000"], ["resources.cpu", "1024"]),
    ("cpu-more-than-machine", {}, ["resources.cpu=1024"], ["resources.cpu", "more CPUs per trial than this machine"]),
    ("gpu-more-than-machine", {}, ["resources.gpu=64"], ["resources.gpu", "more GPUs per trial than this machine"]),
    # sizes
    (
        "trials-above-cap",
        {"search": {"num_samples": 5001, "space": {"lr": {"grid": [0.1, 0.01]}}}},
        [],
        ["search.num_samples", "10002 trials", "10000"],
    ),
    (
        "grid-product-above-cap",
        {
            "search": {
                "num_samples": 10,
                "space": {
                    "lr": {"grid": [round(0.001 * (i + 1), 3) for i in range(40)]},
                    "seed": {"grid": list(range(30))},
                },
            }
        },
        [],
        ["search.num_samples", "12000 trials"],
    ),
    ("num-samples-above-cap", {}, ["search.num_samples=10001"], ["search.num_samples", "10000"]),
    ("epochs-above-cap", {}, ["trial.epochs=10001"], ["trial.epochs", "10000"]),
    ("epochs-zero", {}, ["trial.epochs=0"], ["trial.epochs", "greater than 0"]),
    ("brackets-above-cap", {}, ["asha.brackets=9"], ["asha.brackets", "8"]),
    ("brackets-above-rungs", {"asha": {"brackets": 3}}, [], ["asha.brackets", "at most"]),
    ("grace-above-epochs", {}, ["asha.grace_period=3"], ["asha.grace_period", "trial.epochs (2)"]),
    ("batch-size-above-cap", {}, ["trial.batch_size=10000001"], ["trial.batch_size", "10000000"]),
    ("hidden-width-above-cap", {}, ["trial.mlp.hidden=[65537]"], ["trial.mlp.hidden.0", "65536"]),
    ("too-many-hidden-layers", {}, ["trial.mlp.hidden=[8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8]"], ["trial.mlp.hidden"]),
    ("too-many-cnn-blocks-schema", {}, ["trial.model=cnn", "trial.cnn.channels=[8,8,8,8,8]"], ["trial.cnn.channels"]),
    ("rnn-layers-above-cap", {}, ["trial.model=lstm", "trial.lstm.layers=5"], ["trial.lstm.layers"]),
    ("max-concurrent-zero", {}, ["search.max_concurrent_trials=0"], ["search.max_concurrent_trials"]),
    # search spaces
    (
        "inverted-bounds",
        {"search": {"space": {"lr": {"uniform": [0.1, 0.01]}}}},
        [],
        ["search.space.lr.uniform", "low must be below high"],
    ),
    ("equal-bounds", {}, ["search.space={lr: {loguniform: [0.1, 0.1]}}"], ["search.space.lr.loguniform", "below"]),
    ("loguniform-low-zero", {}, ["search.space={lr: {loguniform: [0, 0.1]}}"], ["search.space.lr.loguniform", "> 0"]),
    (
        "quniform-off-grid",
        {"search": {"space": {"mlp.dropout": {"quniform": [0.05, 0.5, 0.1]}}}},
        [],
        ["search.space.mlp.dropout.quniform", "multiples of q"],
    ),
    ("quniform-q-zero", {}, ["search.space={mlp.dropout: {quniform: [0.0, 0.5, 0.0]}}"], ["q must be > 0"]),
    (
        "quniform-wrong-arity",
        {},
        ["search.space={mlp.dropout: {quniform: [0.0, 0.5]}}"],
        ["search.space.mlp.dropout.quniform", "[low, high, q]"],
    ),
    ("uniform-wrong-arity", {}, ["search.space={lr: {uniform: [0.1]}}"], ["search.space.lr.uniform", "[low, high]"]),
    ("uniform-three-bounds", {}, ["search.space={lr: {uniform: [0.1, 0.2, 0.3]}}"], ["search.space.lr.uniform"]),
    ("uniform-text-bounds", {}, ["search.space={lr: {uniform: [a, b]}}"], ["search.space.lr.uniform", "numbers"]),
    (
        "randint-float-bounds",
        {},
        ["search.space={seed: {randint: [0.5, 3]}}"],
        ["search.space.seed.randint", "integers"],
    ),
    (
        "uniform-on-int-field",
        {"search": {"space": {"batch_size": {"uniform": [16, 64]}}}},
        [],
        ["search.space.batch_size.uniform", "integer", "randint"],
    ),
    (
        "quniform-int-field",
        {"search": {"space": {"batch_size": {"quniform": [16, 64, 16]}}}},
        [],
        ["search.space.batch_size.quniform", "integer"],
    ),
    ("empty-grid", {}, ["search.space={lr: {grid: []}}"], ["search.space.lr.grid", "at least one value"]),
    ("empty-choice", {"search": {"space": {"lr": {"choice": []}}}}, [], ["search.space.lr.choice"]),
    ("unknown-kind", {}, ["search.space={lr: {normal: [0, 1]}}"], ["search.space.lr", "unknown search kind"]),
    ("two-kinds", {}, ["search.space={lr: {grid: [0.1], choice: [0.2]}}"], ["search.space.lr", "exactly one"]),
    ("kind-not-a-list", {}, ["search.space={lr: {grid: 0.1}}"], ["search.space.lr.grid", "must be a list"]),
    ("spec-not-a-mapping", {}, ["search.space={lr: [0.1, 0.2]}"], ["search.space.lr"]),
    ("space-not-a-mapping", {}, ["search.space=[lr]"], ["search.space"]),
    (
        "section-and-field",
        {"search": {"space": {"loss": {"grid": [{}, {"l1": 0.001}]}, "loss.l2": {"grid": [0.1]}}}},
        [],
        ["search.space.loss", "loss.l2 inside it"],
    ),
    ("epochs-searched", {}, ["search.space={epochs: {grid: [1, 2]}}"], ["search.space.epochs", "not searched"]),
    (
        "grid-under-optuna",
        {"search": {"algorithm": "optuna", "space": {"lr": {"grid": [0.1, 0.01]}}}},
        [],
        ["search.space.lr", "grid is not searchable by optuna"],
    ),
    (
        "deterministic-asha-under-optuna",
        {"search": {"algorithm": "optuna", "space": {"lr": {"choice": [0.1]}}}, "asha": {"mode": "deterministic"}},
        [],
        ["asha.mode", "optuna", "async"],
    ),
    ("unknown-field", {}, ["search.space={learning_rate: {grid: [0.1]}}"], ["search.space.learning_rate"]),
    ("field-of-a-value", {}, ["search.space={lr.x: {grid: [0.1]}}"], ["search.space.lr.x", "no sub-fields"]),
    ("empty-path-part", {}, ["search.space={mlp..hidden: {grid: [[8]]}}"], ["search.space.mlp..hidden"]),
    ("bad-candidate", {}, ["search.space={batch_size: {choice: [32, 0]}}"], ["search.space.batch_size", "got 0"]),
    ("unknown-model-candidate", {}, ["search.space={model: {grid: [mlp, vit]}}"], ["search.space.model", "'vit'"]),
    # a searched knob that no trial of the sweep reads would only copy trials
    (
        "other-models-knob",
        {},
        ["search.space={cnn.channels: {grid: [[8], [16]]}}"],
        ["search.space.cnn.channels", "no trial"],
    ),
    (
        "other-optimizers-knob",
        {},
        ["search.space={optim.sgd.momentum: {grid: [0.5, 0.9]}}"],
        ["optim.sgd.momentum", "model mlp"],
    ),
    (
        "other-schedules-knob",
        {},
        ["search.space={schedule.cosine: {grid: [{min_factor: 0.1}]}}"],
        ["schedule.cosine", "none"],
    ),
    (
        "factory-args-on-a-built-in",
        {},
        ["search.space={model_args.width: {grid: [8, 16]}}"],
        ["model_args.width", "no trial"],
    ),
    ("grid-lists-a-value-twice", {}, ["search.space={lr: {grid: [0.001, 0.003, 1.0e-3]}}"], ["lr.grid", "twice"]),
    (
        "grid-lists-a-section-twice",
        {"search": {"space": {"loss": {"grid": [{"l1": 0.001}, {}, {"l1": 0.001}]}}}},
        [],
        ["search.space.loss.grid", "identical trials"],
    ),
    ("factory-args-fixed-on-a-built-in", {}, ["trial.model_args={width: 3}"], ["trial.model_args", "built in"]),
    (
        "knob-of-a-model-no-grid-point-picks",
        {"search": {"space": {"model": {"grid": ["mlp"]}, "cnn.channels": {"grid": [[8], [16]]}}}},
        [],
        ["search.space.cnn.channels", "model mlp"],
    ),
    # population-based training (orchestrator/config/population.py)
    ("population-and-asha", {**PBT, "asha": {"grace_period": 1}}, [], ["population", "not both"]),
    ("population-with-optuna", PBT, ["search.algorithm=optuna"], ["search.algorithm", "search algorithm", "'optuna'"]),
    (
        "population-mutates-an-architecture-knob",
        PBT,
        ["population.mutate=[mlp.hidden]"],
        ["population.mutate", "mlp.hidden cannot change mid-training", "'mlp.hidden'"],
    ),
    ("population-mutates-the-optimizer", PBT, ["population.mutate=[optimizer]"], ["population.mutate", "optimizer"]),
    (
        "population-mutates-an-unsearched-knob",
        PBT,
        ["population.mutate=[weight_decay]"],
        ["population.mutate", "weight_decay is not searched"],
    ),
    ("population-mutates-nothing", PBT, ["population.mutate=[]"], ["population.mutate", "at least 1"]),
    ("population-mutates-a-knob-twice", PBT, ["population.mutate=[lr, lr]"], ["population.mutate", "twice"]),
    ("population-interval-zero", PBT, ["population.interval=0"], ["population.interval", "greater than or equal to 1"]),
    ("population-interval-at-the-end", PBT, ["population.interval=2"], ["population.interval", "below trial.epochs"]),
    ("population-interval-text", PBT, ["population.interval=often"], ["population.interval", "valid integer"]),
    ("population-fraction-above-half", PBT, ["population.fraction=0.6"], ["population.fraction", "0.5"]),
    (
        "population-fraction-replaces-none",
        PBT,
        ["population.fraction=0.1"],
        ["population.fraction", "replaces no member"],
    ),
    ("population-perturb-equal", PBT, ["population.perturb=[1.0, 1.0]"], ["population.perturb", "two different"]),
    ("population-perturb-negative", PBT, ["population.perturb=[-0.8, 1.2]"], ["population.perturb", "above 0"]),
    (
        "population-resample-above-one",
        PBT,
        ["population.resample_probability=1.5"],
        ["population.resample_probability", "less than or equal to 1"],
    ),
    ("population-unknown-key", PBT, ["population.intervals=1"], ["population.intervals", "did you mean 'interval'"]),
    (
        "population-of-one",
        {**PBT, "search": {"num_samples": 1}},
        ["population.fraction=0.5"],
        ["population.fraction", "population of 1"],
    ),
    # types, ranges and names the schema knows (the earlier suite's cases)
    ("unknown-top-level-key", {"seeds": 1}, [], ["seeds: unknown key (did you mean 'seed'?)"]),
    ("unknown-nested-key", {"asha": {"grace": 1}}, [], ["asha.grace: unknown key (did you mean 'grace_period'?)"]),
    ("text-lr", {}, ["trial.lr=fast"], ["trial.lr", "valid number", "'fast'"]),
    ("list-epochs", {}, ["trial.epochs=[1]"], ["trial.epochs", "valid integer"]),
    ("lr-zero", {}, ["trial.lr=0"], ["trial.lr", "greater than 0"]),
    ("lr-negative", {"trial": {"lr": -0.1}}, [], ["trial.lr", "greater than 0", "got -0.1"]),
    ("lr-above-cap", {}, ["trial.lr=1.0e+6"], ["trial.lr", "less than or equal to 1000"]),
    ("batch-size-zero", {}, ["trial.batch_size=0"], ["trial.batch_size", "greater than 0"]),
    ("reduction-factor-one", {}, ["asha.reduction_factor=1"], ["asha.reduction_factor", "greater than 1"]),
    ("reduction-factor-half", {"asha": {"reduction_factor": 0.5}}, [], ["asha.reduction_factor"]),
    ("unknown-model", {}, ["trial.model=resnet"], ["trial.model", "unknown model 'resnet'"]),
    ("unknown-optimizer", {}, ["trial.optimizer=lion"], ["trial.optimizer", "'adam'"]),
    ("unknown-activation", {}, ["trial.mlp.activation=swish"], ["trial.mlp.activation", "'relu'"]),
    (
        "space-wrong-model-field",
        {},
        ["search.space={mlp.channels: {grid: [[8]]}}"],
        ["search.space.mlp.channels", "not a mlp field"],
    ),
    ("space-negative-lr", {"search": {"space": {"lr": {"grid": [0.1, -1]}}}}, [], ["search.space.lr", "got -1"]),
    ("num-samples-zero", {}, ["search.num_samples=0"], ["search.num_samples", "greater than or equal to 1"]),
    ("keep-checkpoints-zero", {}, ["selection.keep_checkpoints=0"], ["selection.keep_checkpoints"]),
    ("max-retries-negative", {}, ["failure.max_retries=-1"], ["failure.max_retries"]),
    ("metric-not-reported", {}, ["selection.metric=train_accuracy"], ["selection.metric", "'train_accuracy'"]),
    # budgets and exports
    (
        "max-params-below-every-model",
        {"selection": {"constraints": {"max_params": 100}}},
        [],
        ["selection.constraints.max_params", "no trial of the search space can meet it", "6,370 parameters (mlp)"],
    ),
    (
        "max-params-below-every-grid-model",
        {"search": {"space": {"mlp.hidden": {"grid": [[8], [4]]}}}, "selection": {"constraints": {"max_params": 3000}}},
        [],
        ["selection.constraints.max_params", "smallest model has 3,190 parameters (mlp.hidden=[4])"],
    ),
    ("max-params-zero", {}, ["selection.constraints.max_params=0"], ["selection.constraints.max_params", "got 0"]),
    ("max-params-bool", {"selection": {"constraints": {"max_params": True}}}, [], ["selection.constraints.max_params"]),
    ("max-params-float", {}, ["selection.constraints.max_params=1.5e4"], ["selection.constraints.max_params"]),
    ("max-latency-negative", {}, ["selection.constraints.max_latency_ms=-1"], ["selection.constraints.max_latency_ms"]),
    ("max-latency-nan", {}, ["selection.constraints.max_latency_ms=.nan"], ["selection.constraints.max_latency_ms"]),
    ("max-latency-text", {}, ["selection.constraints.max_latency_ms='2ms'"], ["selection.constraints.max_latency_ms"]),
    ("min-throughput-zero", {}, ["selection.constraints.min_throughput=0"], ["selection.constraints.min_throughput"]),
    ("constraint-unknown", {"selection": {"constraints": {"max_flops": 1}}}, [], ["selection.constraints.max_flops"]),
    ("export-unknown-format", {"export": {"formats": ["tflite"]}}, [], ["export.formats", "'pt2'"]),
    ("export-formats-text", {}, ["export.formats=pt2"], ["export.formats"]),
    (
        "objectives-without-optuna",
        {"search": {"objectives": ["val_accuracy", "params"]}},
        [],
        ["search.objectives", "need search.algorithm: optuna"],
    ),
    ("objectives-one", {}, ["search.objectives=[params]"], ["search.objectives", "two or more"]),
    ("objectives-twice", {}, ["search.objectives=[params, params]"], ["search.objectives", "twice"]),
    ("objectives-test-set", {}, ["search.objectives=[test_accuracy, params]"], ["search.objectives", "'val_accuracy'"]),
    ("sampler-unknown", {}, ["search.sampler=moead"], ["search.sampler", "'nsga2'"]),
    ("sampler-without-objectives", {}, ["search.sampler=tpe"], ["search.sampler", "set search.objectives too"]),
    ("cpu-zero", {}, ["resources.cpu=0"], ["resources.cpu", "greater than 0"]),
    ("name-dotdot-prefix", {}, ["name=..x"], ["name", "plain directory name"]),
    # names and paths
    ("name-trailing-newline", {"name": "bad\n"}, [], ["name", "plain directory name"]),
    ("name-control-character", {"name": "bad\x1b[31m"}, [], ["name", "plain directory name"]),
    ("name-control-character-set", {}, ["name=bad\x1b[31m"], ["--set name", "special characters are not allowed"]),
    ("name-tab", {"name": "a\tb"}, [], ["name", "plain directory name"]),
    ("name-nul", {"name": "a\x00b"}, [], ["name", "plain directory name"]),
    ("name-too-long", {"name": "x" * 101}, [], ["name", "longer than 100"]),
    ("name-far-too-long", {}, ["name=" + "y" * 5000], ["name", "longer than 100"]),
    ("name-empty", {}, ["name="], ["name"]),
    ("name-slash", {}, ["name=a/b"], ["name", "plain directory name"]),
    ("name-dotdot", {"name": ".."}, [], ["name", "plain directory name"]),
    ("name-not-text", {"name": 12}, [], ["name", "valid string"]),
    ("storage-path-empty", {"storage_path": ""}, [], ["storage_path", "must not be empty"]),
    ("storage-path-blank", {}, ["storage_path='  '"], ["storage_path", "must not be empty"]),
    ("storage-path-nul", {"storage_path": "runs\x00x"}, [], ["storage_path", "NUL"]),
    ("storage-path-newline", {"storage_path": "runs\n"}, [], ["storage_path", "control character"]),
    ("storage-path-unknown-user", {"storage_path": "~nosuchuser_bad_input/runs"}, [], ["storage_path", "unknown user"]),
    ("storage-path-ftp", {"storage_path": "ftp://example.com/runs"}, [], ["storage_path", "'ftp'"]),
    ("storage-path-foo", {}, ["storage_path=foo://bar"], ["storage_path", "unknown URI scheme 'foo'"]),
    ("storage-path-s3-no-bucket", {"storage_path": "s3://"}, [], ["storage_path", "bucket"]),
    ("storage-path-gs-no-bucket", {}, ["storage_path=gs:///"], ["storage_path", "bucket"]),
    ("storage-path-file-relative", {"storage_path": "file://runs"}, [], ["storage_path", "absolute path"]),
    ("storage-path-file-no-path", {}, ["storage_path=file://"], ["storage_path", "absolute path"]),
    # early stopping never looks at the test set; selection ranks by the known scores only
    ("asha-metric-test", {"asha": {"metric": "test_balanced_accuracy"}}, [], ["asha.metric", "validation scores only"]),
    ("asha-metric-unknown", {}, ["asha.metric=val_f1"], ["asha.metric", "'val_macro_f1'"]),
    ("selection-metric-unknown", {}, ["selection.metric=balanced_accuracy"], ["selection.metric", "'val_macro_f1'"]),
]


@pytest.mark.parametrize(("extra", "sets", "fragments"), [c[1:] for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES])
def test_value_refused(
    extra: dict[str, Any],
    sets: list[str],
    fragments: list[str],
    tmp_path: Path,
    shared: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(tmp_path, shared, extra)
    refused(capsys, tmp_path, ["launch", str(path), *(f"--set={s}" for s in sets)], fragments)


def test_name_missing(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, shared, drop=("name",))
    refused(capsys, tmp_path, ["launch", str(path)], ["name: required field is missing"])


# storage_path that names something unusable on disk
def test_storage_path_is_a_file(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs").write_text("not a directory\n")
    path = write_config(tmp_path, shared)
    refused(capsys, tmp_path, ["launch", str(path)], ["storage_path", "is a file", str(tmp_path / "runs")])


def test_storage_path_under_a_file(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x\n")
    path = write_config(tmp_path, shared, {"storage_path": str(tmp_path / "file" / "runs")})
    refused(capsys, tmp_path, ["launch", str(path)], ["storage_path", "not writable"])


@pytest.mark.parametrize(
    ("option", "value", "fragments"),
    [
        ("--name", "bad\n", ["name", "plain directory name", "'bad\\n'"]),
        ("--name", "a: b", ["name", "plain directory name"]),
        ("--name", "[x]", ["name", "plain directory name"]),
        ("--storage-path", "runs\x00", ["storage_path", "NUL"]),
        ("--storage-path", "~nosuchuser_bad_input", ["storage_path", "unknown user"]),
    ],
    ids=["name-newline", "name-yaml-mapping", "name-yaml-list", "storage-path-nul", "storage-path-unknown-user"],
)
def test_command_line_values_are_text(
    option: str, value: str, fragments: list[str], tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--name and --storage-path are taken as given, not read as YAML (which would trim or reshape them)."""
    path = write_config(tmp_path, shared)
    refused(capsys, tmp_path, ["launch", str(path), option, value], fragments)


def test_storage_path_from_the_command_line(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, shared)
    refused(capsys, tmp_path, ["launch", str(path), "--storage-path", ""], ["storage_path", "must not be empty"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits: a 0o500 directory cannot refuse it")
def test_storage_path_not_writable(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        path = write_config(tmp_path, shared, {"storage_path": str(locked / "runs")})
        refused(capsys, tmp_path, ["launch", str(path)], ["storage_path", "not writable"])
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------ the cluster address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once this returns: nothing listens there


# (id, where the address comes from: cli | config | env, the address, fragments)
ADDRESS_CASES = [
    ("closed-port", "cli", "127.0.0.1:{closed}", ["--address/ray.address/RAY_ADDRESS", "no Ray cluster answers"]),
    ("closed-port-ray-scheme", "config", "ray://127.0.0.1:{closed}", ["no Ray cluster answers"]),
    ("closed-port-env", "env", "127.0.0.1:{closed}", ["no Ray cluster answers"]),
    ("garbage", "cli", "not an address", ["not a Ray address", "'not an address'"]),
    ("port-out-of-range", "cli", "host:99999", ["not a Ray address", "host:99999"]),
    ("no-host", "cli", ":123", ["not a Ray address"]),
    ("no-port", "env", "localhost", ["not a Ray address"]),
    ("port-zero", "config", "localhost:0", ["not a Ray address"]),
    ("newline", "cli", "127.0.0.1:6379\n", ["not a Ray address"]),
    ("unknown-host", "cli", "no-such-host.invalid:6379", ["no Ray cluster answers"]),
    ("auto-without-cluster", "cli", "auto", ["'auto' but no Ray cluster was started on this machine"]),
    ("auto-from-env-without-cluster", "env", "auto", ["'auto' but no Ray cluster"]),
]


@pytest.mark.parametrize(
    ("source", "address", "fragments"), [c[1:] for c in ADDRESS_CASES], ids=[c[0] for c in ADDRESS_CASES]
)
def test_address_refused(
    source: str,
    address: str,
    fragments: list[str],
    tmp_path: Path,
    shared: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = address.format(closed=_closed_port())
    if ".invalid:" in address:  # no name server in the loop (none may answer within the time limit here)
        monkeypatch.setattr(socket, "getaddrinfo", _resolver_without_dns(socket.getaddrinfo))
    argv = ["launch"]
    if source == "config":
        argv.append(str(write_config(tmp_path, shared, {"ray": {"address": address}})))
    else:
        argv.append(str(write_config(tmp_path, shared)))
    if source == "cli":
        argv += ["--address", address]
    if source == "env":
        monkeypatch.setenv("RAY_ADDRESS", address)
    refused(capsys, tmp_path, argv, ["--address/ray.address/RAY_ADDRESS", *fragments])


def _resolver_without_dns(real: Callable[..., Any]) -> Callable[..., Any]:
    """getaddrinfo answering for `.invalid` names (RFC 6761: never registered) as a resolver does, at once."""

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    return resolve


def test_auto_with_a_stale_cluster_file(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ray start` left its address behind, but the cluster is gone."""
    note = resources.current_cluster_file()
    note.parent.mkdir(parents=True)
    note.write_text(f"127.0.0.1:{_closed_port()}\n")
    assert note.is_relative_to(tmp_path)
    path = write_config(tmp_path, shared)
    refused(capsys, tmp_path, ["launch", str(path), "--address", "auto"], ["no Ray cluster answers"])


# ------------------------------------------------------------------ data: every source's bad arrays


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _fifo_at(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _npy(path: Path) -> Path:
    np.save(path, X)
    return path


def _npz_at(path: Path) -> dict[str, Any]:
    return {"source": "npz", "path": str(path)}


def _npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npz(**arrays: Any) -> Callable[[Path], dict[str, Any]]:
    def make(tmp_path: Path) -> dict[str, Any]:
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        return {"source": "npz", "path": str(path)}

    return make


def _npz_data(data: dict[str, Any], **arrays: Any) -> Callable[[Path], dict[str, Any]]:
    """A .npz of these arrays, with more of the data section (val_size, train_limit, layout, ...)."""

    def make(tmp_path: Path) -> dict[str, Any]:
        return {**_npz(**arrays)(tmp_path), **data}

    return make


def _npz_raw(data: bytes) -> Callable[[Path], dict[str, Any]]:
    def make(tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "bad.npz").write_bytes(data)
        return {"source": "npz", "path": str(tmp_path / "bad.npz")}

    return make


def _npz_objects(tmp_path: Path) -> dict[str, Any]:
    x = np.empty((4, 2), dtype=object)
    x[:] = [[{"a": 1}, "b"]] * 4
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.array([0, 1, 0, 1]), allow_pickle=True)
    return {"source": "npz", "path": str(tmp_path / "bad.npz")}


def _npz_huge_header(tmp_path: Path) -> dict[str, Any]:
    """A .npz whose array header declares 2**50 bytes (a few bytes on disk): refused before allocating."""
    import zipfile

    header = {"descr": "|u1", "fortran_order": False, "shape": (2**30, 1024, 1)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        archive.writestr("x_train.npy", buffer.getvalue() + b"\0" * 64)
        labels = io.BytesIO()
        np.save(labels, np.zeros(4, np.int64))
        archive.writestr("y_train.npy", labels.getvalue())
    return {"source": "npz", "path": str(tmp_path / "bad.npz")}


def _fashion_copy(damage: Callable[[Path], None]) -> Callable[[Path], dict[str, Any]]:
    """A data.root holding a copy of the real Fashion-MNIST files, one of them damaged."""

    def make(tmp_path: Path) -> dict[str, Any]:
        root = tmp_path / "fmnist"
        root.mkdir()
        for stem in data_readers.IDX_NAMES.values():
            shutil.copy(FASHION_DIR / f"{stem}.gz", root / f"{stem}.gz")
        damage(root)
        return {"root": str(root)}

    return make


def _small_idx(damage: Callable[[Path], None]) -> Callable[[Path], dict[str, Any]]:
    """A data.root holding small IDX files in Fashion-MNIST's layout (quick to read), one of them damaged."""

    def make(tmp_path: Path) -> dict[str, Any]:
        root = tmp_path / "fmnist"
        root.mkdir()
        sizes = {"x_train": (600, 28, 28), "y_train": (600,), "x_test": (100, 28, 28), "y_test": (100,)}
        for key, stem in data_readers.IDX_NAMES.items():
            body = (np.arange(math.prod(sizes[key])) % 10).astype(np.uint8).tobytes()
            (root / f"{stem}.gz").write_bytes(gzip.compress(_idx(sizes[key], body), compresslevel=1))
        damage(root)
        return {"root": str(root)}

    return make


def _truncate(name: str, size: int) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        with open(root / f"{name}.gz", "r+b") as f:
            f.truncate(size)

    return damage


def _replace(name: str, payload: bytes, compress: bool = True) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        (root / f"{name}.gz").unlink()
        if compress:
            (root / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (root / name).write_bytes(payload)

    return damage


def _idx(shape: tuple[int, ...], body: bytes) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape) + body


def _torchvision_layout(damage: tuple[str, bytes]) -> Callable[[Path], dict[str, Any]]:
    """A data.root in torchvision's own layout for FashionMNIST (raw IDX files), one of them damaged."""

    def make(tmp_path: Path) -> dict[str, Any]:
        raw = tmp_path / "tv" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        sizes = {"x_train": (60, 28, 28), "y_train": (60,), "x_test": (10, 28, 28), "y_test": (10,)}
        for key, stem in data_readers.IDX_NAMES.items():
            (raw / stem).write_bytes(_idx(sizes[key], bytes(math.prod(sizes[key]))))
        (raw / damage[0]).write_bytes(damage[1])
        return {"source": "torchvision", "dataset": "FashionMNIST", "root": str(tmp_path / "tv")}

    return make


LABELS = np.arange(600) % 10
X = np.zeros((600, 28, 28), np.uint8)

# (id, makes the data section, fragments; the line starts with "data error: " unless it names a config field)
DATA_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], list[str]]] = [
    ("npz-mismatched-lengths", _npz(x_train=X, y_train=LABELS[:500]), ["one label per sample (600)", "[500]"]),
    ("npz-negative-label", _npz(x_train=X, y_train=LABELS - 1), ["y_train labels must be in", "-1"]),
    (
        "npz-label-above-classes",
        _npz(x_train=X, y_train=LABELS, classes=np.array(["a", "b", "c"])),
        ["y_train has label 9 but there are 3 classes"],
    ),
    ("npz-float-labels", _npz(x_train=X, y_train=LABELS.astype(np.float32)), ["integer class indices", "float32"]),
    ("npz-bool-labels", _npz(x_train=X, y_train=LABELS % 2 == 0), ["integer class indices", "bool"]),
    ("npz-2d-labels", _npz(x_train=X, y_train=LABELS.reshape(600, 1)), ["one label per sample"]),
    ("npz-single-class", _npz(x_train=X, y_train=np.zeros(600, np.int64)), ["single class"]),
    ("npz-nan-pixels", _npz(x_train=np.full((600, 28, 28), np.nan, np.float32), y_train=LABELS), ["NaN"]),
    ("npz-inf-pixels", _npz(x_train=np.full((600, 4), np.inf), y_train=LABELS), ["infinite"]),
    ("npz-string-pixels", _npz(x_train=np.array([["a", "b"]] * 600), y_train=LABELS), ["uint8", "<U1"]),
    ("npz-int64-pixels", _npz(x_train=X.astype(np.int64), y_train=LABELS), ["uint8 pixels or floating", "int64"]),
    ("npz-complex-pixels", _npz(x_train=X.astype(np.complex64), y_train=LABELS), ["complex64"]),
    ("npz-object-array", _npz_objects, ["not a readable .npz", "pickle"]),
    ("npz-1d-images", _npz(x_train=np.zeros(600, np.uint8), y_train=LABELS), ["(N, D)", "[600]"]),
    ("npz-5d-images", _npz(x_train=np.zeros((600, 1, 1, 2, 2), np.uint8), y_train=LABELS), ["(N, C, H, W)"]),
    (
        "npz-layout-ambiguous",
        _npz(x_train=np.zeros((600, 3, 8, 3), np.uint8), y_train=LABELS),
        ["x_train of shape [600, 3, 8, 3]", "could be channels first", "declare data.layout"],
    ),
    (
        "npz-layout-no-channel-axis",
        _npz(x_train=np.zeros((600, 16, 16, 16), np.uint8), y_train=LABELS),
        ["[600, 16, 16, 16]", "declare data.layout: channels_first or channels_last"],
    ),
    (
        "npz-layout-ambiguous-test-split",
        _npz(x_train=X, y_train=LABELS, x_test=np.zeros((10, 4, 7, 4), np.uint8), y_test=LABELS[:10]),
        ["x_test of shape [10, 4, 7, 4]", "declare data.layout"],
    ),
    (
        "npz-value-range-exceeded",
        _npz_data({"val_size": 100, "value_range": [0, 1]}, x_train=np.full((600, 4), 2.5, np.float32), y_train=LABELS),
        ["data.value_range", "x_train holds values 2.5..2.5", "outside the declared [0, 1]"],
    ),
    (
        "npz-value-range-exceeded-by-test",
        _npz_data(
            {"val_size": 100, "value_range": [0, 255]},
            x_train=np.full((600, 4), 3.0, np.float32),
            y_train=LABELS,
            x_test=np.full((10, 4), -1.0, np.float32),
            y_test=LABELS[:10],
        ),
        ["data.value_range", "x_test holds values -1..-1"],
    ),
    (
        "npz-train-limit-below-the-classes",
        _npz_data({"val_size": 100, "train_limit": 5}, x_train=X, y_train=LABELS),
        ["data.train_limit", "5 samples cannot hold one of each of the 10 classes", "at least 10"],
    ),
    (
        "npz-val-size-below-the-classes",
        _npz_data({"val_size": 5}, x_train=X, y_train=LABELS),
        ["data.val_size", "cannot keep each of the 10 classes"],
    ),
    (
        "npz-test-class-never-trained",
        _npz_data(
            {"val_size": 100},
            x_train=X,
            y_train=LABELS % 9,
            x_test=X[:10],
            y_test=np.arange(10),
            classes=np.array(list("abcdefghij")),
        ),
        ["the test split has class 'j', which the training split", "never has"],
    ),
    ("npz-empty", _npz(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.int64)), ["N > 0"]),
    ("npz-missing-labels", _npz(x_train=X), ["missing array y_train"]),
    ("npz-missing-images", _npz(y_train=LABELS), ["missing array x_train"]),
    ("npz-test-without-labels", _npz(x_train=X, y_train=LABELS, x_test=X[:10]), ["y_test"]),
    (
        "npz-test-shape-differs",
        _npz(x_train=X, y_train=LABELS, x_test=np.zeros((10, 14, 14), np.uint8), y_test=LABELS[:10]),
        ["x_test samples are"],
    ),
    ("npz-classes-not-text", _npz(x_train=X, y_train=LABELS, classes=np.arange(10)), ["classes"]),
    ("npz-classes-repeated", _npz(x_train=X, y_train=LABELS, classes=np.array(["a"] * 10)), ["distinct"]),
    ("npz-not-a-zip", _npz_raw(b"this is not an archive\n" * 10), ["data.path", "not a .npz archive"]),
    (
        "npz-truncated",
        lambda tmp_path: _npz_raw(_npz_bytes(x_train=X, y_train=LABELS)[:3000])(tmp_path),
        ["not a readable .npz"],
    ),
    ("npz-huge-header", _npz_huge_header, ["data.path", "x_train"]),
    ("npz-is-a-npy", lambda tmp_path: _npz_at(_npy(tmp_path / "x.npy")), ["data.path", "x.npy", "not a .npz archive"]),
    (
        "npz-unknown-user",
        lambda _: {"source": "npz", "path": "~nosuchuser_bad_input/x.npz"},
        ["data.path", "unknown user"],
    ),
    (
        "npz-missing-file",
        lambda tmp_path: {"source": "npz", "path": str(tmp_path / "nope.npz")},
        ["data.path", "nope.npz"],
    ),
    (
        "npz-empty-directory",
        lambda tmp_path: _npz_at(_dir(tmp_path / "empty")),
        ["data.path", "directory holding .npz"],
    ),
    ("npz-fifo", lambda tmp_path: _npz_at(_fifo_at(tmp_path / "x.npz")), ["data.path", "x.npz"]),
    (
        "fashion-mnist-not-found",
        lambda tmp_path: {"root": str(tmp_path / "nowhere")},
        ["data.root", "Fashion-MNIST IDX files not found", "data.download: true"],
    ),
    ("val-size-whole-split", lambda tmp_path: {"val_size": 10_000}, ["data.val_size", "at least one"]),
    (
        "test-size-whole-split",
        lambda tmp_path: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:good", "test_size": 64},
        ["data.test_size"],
    ),
    (
        "entry-point-raises",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:raises"},
        ["data.entry_point", "RuntimeError: the data server is down"],
    ),
    (
        "entry-point-missing-module",
        lambda _: {"source": "entry_point", "entry_point": "no_such_module_xyz:load"},
        ["data.entry_point", "ModuleNotFoundError"],
    ),
    (
        "entry-point-missing-function",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:nope"},
        ["data.entry_point", "nope"],
    ),
    (
        "entry-point-returns-list",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:returns_list"},
        ["data.entry_point", "returned list"],
    ),
    (
        "entry-point-returns-none",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:returns_none"},
        ["returned NoneType"],
    ),
    (
        "entry-point-returns-lists",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:returns_lists"},
        ["numpy arrays"],
    ),
    (
        "entry-point-returns-objects",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:returns_objects"},
        ["object"],
    ),
    (
        "entry-point-no-labels",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:returns_no_labels"},
        ["y_train"],
    ),
    (
        "entry-point-bad-args",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:takes_nothing", "args": {"n": 3}},
        ["data.entry_point", "TypeError"],
    ),
    (
        "entry-point-over-the-4-gib-cap",
        lambda _: {"source": "entry_point", "entry_point": f"{ENTRY_MODULE}:too_big"},
        ["data: 4.1 GiB is above the 4 GiB a trial keeps resident on its device"],
    ),
    (
        "entry-point-memory-mapped-over-the-cap",
        lambda tmp_path: {
            "source": "entry_point",
            "entry_point": f"{ENTRY_MODULE}:mapped",
            "args": {"path": str(tmp_path.parent / f"{tmp_path.name}-mapped.u8")},  # outside the watched tree
        },
        ["data: 4.1 GiB is above the 4 GiB"],
    ),
    (
        "entry-point-no-colon",
        lambda _: {"source": "entry_point", "entry_point": "module_only"},
        ["data.entry_point", "package.module:function"],
    ),
    (
        "idx-truncated-gz",
        _fashion_copy(_truncate("train-images-idx3-ubyte", 1024)),
        ["data.root", "train-images-idx3-ubyte.gz", "unreadable"],
    ),
    (
        "torchvision-truncated-file",
        _torchvision_layout(("train-images-idx3-ubyte", _idx((60, 28, 28), b"\0" * 100))),
        ["data.root", "FashionMNIST", "could not be read", "truncated or corrupt"],
    ),
    (
        "torchvision-not-idx",
        _torchvision_layout(("t10k-labels-idx1-ubyte", b"<html>502 Bad Gateway</html>")),
        ["data.root", "FashionMNIST", "could not be read"],
    ),
    (
        "idx-truncated-raw",
        _small_idx(_replace("train-labels-idx1-ubyte", _idx((60000,), b"\1" * 10), False)),
        ["data.root", "truncated IDX file", "[60000]"],
    ),
    (
        "idx-bad-magic",
        _small_idx(_replace("t10k-labels-idx1-ubyte", b"PK\3\4 not idx")),
        ["data.root", "not an IDX file"],
    ),
    (
        "idx-overflowing-shape",
        _small_idx(_replace("train-labels-idx1-ubyte", _idx((2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1), b""))),
        ["data.root", "truncated IDX file"],
    ),
    (
        "idx-counts-differ",
        _small_idx(_replace("train-labels-idx1-ubyte", _idx((10,), bytes(range(10))))),
        ["one label per sample (600)"],
    ),
    (
        "idx-label-out-of-range",
        _small_idx(_replace("t10k-labels-idx1-ubyte", _idx((100,), b"\xc8" * 100))),
        ["y_test has label 200 but there are 10 classes"],
    ),
]


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_data_refused(
    make: Callable[[Path], dict[str, Any]],
    fragments: list[str],
    tmp_path: Path,
    shared: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if make.__qualname__.startswith("_fashion_copy") and not FASHION_DIR.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    monkeypatch.setattr(data_readers, "DEBIAN_DIR", tmp_path / "no-debian-package")  # only the damaged copy
    section = make(tmp_path)
    replace = "source" in section or "root" in section
    path = tmp_path / "experiment.yaml"
    config = base(tmp_path, shared)
    config["data"] = section if replace else {**config["data"], **section}
    path.write_text(yaml.safe_dump(config))
    line = refused(capsys, tmp_path, ["launch", str(path)], fragments, prefix="")
    prefixes = ("data error: data.", "data error: data: ", f"data error: {tmp_path}", "config error: data")
    assert line.startswith(prefixes), line


# (id, the data section as YAML, fragments): fields that do not apply to the source, unknown sources
SOURCE_CASES = [
    ("npz-without-path", "{source: npz}", ["data", "source npz needs data.path"]),
    ("path-with-fashion-mnist", "{path: x.npz}", ["data", "data.path does not apply to source fashion_mnist"]),
    ("entry-point-with-npz", "{source: npz, path: x.npz, entry_point: 'a:b'}", ["data.entry_point does not apply"]),
    ("dataset-with-fashion-mnist", "{dataset: MNIST}", ["data.dataset does not apply"]),
    ("args-with-torchvision", "{source: torchvision, dataset: MNIST, args: {a: 1}}", ["data.args does not apply"]),
    (
        "torchvision-unknown-dataset",
        "{source: torchvision, dataset: ImageNet}",
        ["unknown torchvision dataset", "'ImageNet'"],
    ),
    ("torchvision-without-dataset", "{source: torchvision}", ["needs data.dataset"]),
    ("entry-point-without-target", "{source: entry_point}", ["needs data.entry_point"]),
    ("unknown-source", "{source: hdf5}", ["data.source"]),
    ("val-size-fraction-one", "{val_size: 1.0}", ["data.val_size", "below 1"]),
    ("val-size-zero", "{val_size: 0}", ["data.val_size", "greater than 0"]),
    ("test-size-fraction-above-one", "{test_size: 1.5}", ["data.test_size"]),
    ("train-limit-zero", "{train_limit: 0}", ["data.train_limit"]),
    ("layout-unknown", "{source: npz, path: x.npz, layout: nhwc}", ["data.layout", "channels_last"]),
    ("layout-with-fashion-mnist", "{layout: channels_last}", ["data.layout applies to npz and entry_point"]),
    ("value-range-reversed", "{value_range: [255, 0]}", ["data.value_range", "low < high", "[255.0, 0.0]"]),
    ("value-range-one-number", "{value_range: 255}", ["data.value_range"]),
    ("value-range-text", "{value_range: ['0', '1']}", ["data.value_range"]),
    ("root-empty", "{root: ''}", ["data.root"]),
    ("unknown-data-key", "{sorce: npz}", ["data.sorce", "unknown key"]),
]


@pytest.mark.parametrize(("section", "fragments"), [c[1:] for c in SOURCE_CASES], ids=[c[0] for c in SOURCE_CASES])
def test_source_fields_refused(
    section: str, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(f"name: bad\nstorage_path: {tmp_path / 'runs'}\ndata: {section}\n")
    refused(capsys, tmp_path, ["launch", str(path)], fragments)


# ------------------------------------------------------------------ checks that need the loaded data

# (id, merged into the base config, fragments)
FIT_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "batch-size-above-train-limit",
        {"data": {"train_limit": 50}, "trial": {"batch_size": 64}},
        ["trial.batch_size", "larger than the training split (50 samples)", "64"],
    ),
    ("batch-size-above-split", {"trial": {"batch_size": 5000}}, ["trial.batch_size", "(500 samples)"]),
    (
        "searched-batch-size-above-split",
        {"data": {"train_limit": 100}, "search": {"space": {"batch_size": {"choice": [32, 128]}}}},
        ["search.space.batch_size", "128"],
    ),
    (
        "randint-batch-size-above-split",
        {"data": {"train_limit": 100}, "search": {"space": {"batch_size": {"randint": [16, 200]}}}},
        ["search.space.batch_size", "199"],
    ),
    (
        "mlp-above-parameter-cap",
        {"trial": {"mlp": {"hidden": [60000, 60000]}}},
        ["trial.model", "parameters", "above the cap of 100,000,000"],
    ),
    (
        "cnn-above-parameter-cap",
        {"trial": {"model": "cnn", "cnn": {"channels": [65536, 65536], "hidden": 8}}},
        ["trial.model", "above the cap"],
    ),
    (
        "lstm-above-parameter-cap",
        {"trial": {"model": "lstm", "lstm": {"hidden_size": 65536, "layers": 4}}},
        ["trial.model", "above the cap"],
    ),
    (
        "searched-model-above-cap",
        {"search": {"space": {"mlp.hidden": {"choice": [[8], [30000, 30000]]}}}},
        ["trial.model", "above the cap"],
    ),
    (
        "cnn-blocks-beyond-the-image",
        {"data": {"path": "{shared}/small-images.npz"}, "trial": {"model": "cnn", "cnn": {"channels": [8, 8, 8, 8]}}},
        ["trial.model", "4 blocks halve a 8x8 image to nothing", "at most 3"],
    ),
    (
        "cnn-on-flat-features",
        {"data": {"path": "{shared}/flat.npz"}, "trial": {"model": "cnn"}},
        ["trial.model", "cnn needs images"],
    ),
    (
        "augment-on-flat-features",
        {"data": {"path": "{shared}/flat.npz"}, "trial": {"augment": {"flip": True}}},
        ["trial.augment", "flat features"],
    ),
    ("factory-missing", {"trial": {"model": "no_such_pkg_xyz.nets:build"}}, ["trial.model", "cannot import"]),
    ("factory-returns-wrong-thing", {"trial": {"model": f"{ENTRY_MODULE}:good"}}, ["trial.model"]),
    (
        "gpu-packing-above-memory",
        {"resources": {"cpu": 1, "gpu": 0.0001}, "runtime": {"gpu_memory_gb": 1}},
        ["resources"],
    ),
]


@pytest.mark.parametrize(("extra", "fragments"), [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_refused(
    extra: dict[str, Any],
    fragments: list[str],
    tmp_path: Path,
    shared: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "gpu" in extra.get("resources", {}):
        monkeypatch.setattr(resources, "local_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    text = yaml.safe_dump(extra).replace("{shared}", str(shared))
    path = write_config(tmp_path, shared, yaml.safe_load(text))
    refused(capsys, tmp_path, ["launch", str(path)], fragments)


FLOAT_PIXELS = np.random.default_rng(0).integers(0, 256, (600, 8, 8)).astype(np.float32)  # 0..255 as floats

# (id, the data section's extra fields, the trial and search sections, fragments): a scale that assumes 0..1
SCALE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("unit-on-float-pixels-0-255", {}, {}, ["trial.input_scale", "unit assumes floats on 0..1", "0..255", "[0, 255]"]),
    ("tiny-on-float-pixels-0-255", {}, {"trial": {"input_scale": "tiny"}}, ["trial.input_scale", "tiny assumes"]),
    (
        "searched-unit-on-float-pixels",
        {},
        {"trial": {"input_scale": "standard"}, "search": {"space": {"input_scale": {"choice": ["standard", "unit"]}}}},
        ["search.space.input_scale", "unit assumes floats on 0..1"],
    ),
]


@pytest.mark.parametrize(
    ("data", "sections", "fragments"), [c[1:] for c in SCALE_CASES], ids=[c[0] for c in SCALE_CASES]
)
def test_scale_without_a_value_range_refused(
    data: dict[str, Any],
    sections: dict[str, Any],
    fragments: list[str],
    tmp_path: Path,
    shared: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Float pixels 0..255 under `unit` would feed the model 254 where evaluate --predict feeds 0.996."""
    np.savez(tmp_path / "floats.npz", x_train=FLOAT_PIXELS, y_train=LABELS)
    extra = {"data": {"path": str(tmp_path / "floats.npz"), **data}, **sections}
    refused(capsys, tmp_path, ["launch", str(write_config(tmp_path, shared, extra))], fragments)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_batch_size_above_the_real_training_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fashion-MNIST itself (read in about a second): 50,000 training samples, cut to 1,000."""
    path = tmp_path / "experiment.yaml"
    path.write_text(
        f"name: bad\nstorage_path: {tmp_path / 'runs'}\ndata: {{train_limit: 1000}}\n"
        "trial: {batch_size: 1024, epochs: 2}\n"
    )
    refused(capsys, tmp_path, ["launch", str(path)], ["trial.batch_size", "(1000 samples)"])


# ------------------------------------------------------------------ the experiment directory's state


def _state(kind: str, experiment: Path) -> None:
    experiment.mkdir(parents=True)
    record = experiment / "experiment.json"
    if kind == "record-not-json":
        record.write_text("{not json")
    elif kind == "record-empty":
        record.write_text("")
    elif kind == "record-a-list":
        record.write_text("[1, 2]\n")
    elif kind == "record-without-config":
        record.write_text('{"sha256": "x", "config": 3}\n')
    elif kind == "record-not-utf8":
        record.write_bytes(b"\xff\xfe\x00{")
    elif kind == "record-a-directory":
        record.mkdir()
    elif kind == "lock-a-directory":
        (experiment / ".launch.lock").mkdir()


STATE_CASES = [
    ("record-not-json", ["experiment.json", "unreadable experiment record", "--fresh"]),
    ("record-empty", ["experiment.json", "unreadable experiment record"]),
    ("record-a-list", ["experiment.json", "not an experiment record"]),
    ("record-without-config", ["experiment.json", "not an experiment record"]),
    ("record-not-utf8", ["experiment.json", "unreadable"]),
    ("record-a-directory", ["experiment.json", "is not a file"]),
    ("lock-a-directory", [".launch.lock", "is not a file"]),
]


@pytest.mark.parametrize(("kind", "fragments"), STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_experiment_state_refused(
    kind: str, fragments: list[str], tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _state(kind, tmp_path / "runs" / "bad")
    path = write_config(tmp_path, shared)
    refused(capsys, tmp_path, ["launch", str(path)], [str(tmp_path / "runs" / "bad"), *fragments])


# ------------------------------------------------------------------ report: what it reads back


def _experiment(root: Path, status: Any = None, results: bytes | None = None, record: Any = None) -> Path:
    import json

    experiment = root / "runs" / "done"
    experiment.mkdir(parents=True)
    (experiment / "experiment.json").write_text(json.dumps(record if record is not None else {"config": {}}))
    if status is not None:
        (experiment / "status.json").write_text(json.dumps(status))
    if results is not None:
        (experiment / "results.parquet").write_bytes(results)
    return experiment


def _parquet() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"trial_name": ["a", "b"] * 100, "test_accuracy": [0.5, 0.6] * 100}), buffer)
    return buffer.getvalue()


FINISHED = {"state": "finished", "trials": {}}
REPORT_CASES: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    (
        "truncated-results",
        lambda t: [str(_experiment(t, FINISHED, _parquet()[:200]))],
        ["results.parquet", "unreadable table"],
    ),
    (
        "results-not-parquet",
        lambda t: [str(_experiment(t, FINISHED, b"trial,acc\na,1\n"))],
        ["results.parquet", "unreadable table"],
    ),
    ("results-empty", lambda t: [str(_experiment(t, FINISHED, b""))], ["results.parquet", "unreadable table"]),
    (
        "truncated-history",
        lambda t: [str(_with_file(_experiment(t, FINISHED, _parquet()), "history.parquet", _parquet()[-100:]))],
        ["history.parquet", "unreadable table"],
    ),
    (
        "record-corrupt",
        lambda t: [str(_with_file(_experiment(t, FINISHED, _parquet()), "experiment.json", b"{truncated"))],
        ["experiment.json", "unreadable"],
    ),
    (
        "record-a-list",
        lambda t: [str(_experiment(t, FINISHED, _parquet(), record=[1]))],
        ["experiment.json", "not an experiment record"],
    ),
    ("record-a-directory", lambda t: [str(_record_directory(t))], ["experiment.json", "is not a file"]),
    ("not-an-experiment", lambda t: [str(_dir(t / "plain"))], ["not an experiment directory"]),
    ("missing", lambda t: [str(t / "runs" / "nope")], ["nope", "no such experiment directory"]),
    ("a-file", lambda t: [str((t / "file").write_text("x") and t / "file")], ["file", "a file, not an experiment"]),
    ("nul-in-path", lambda t: [str(t / "a\x00b")], ["not an experiment path"]),
    ("unknown-scheme", lambda _: ["ftp://host/sweeps/smoke"], ["ftp://host/sweeps/smoke", "unknown URI scheme 'ftp'"]),
    ("unknown-user", lambda _: ["~nosuchuser_bad_input/runs/smoke"], ["~nosuchuser_bad_input", "unknown user"]),
    ("bucket-only", lambda _: ["s3://bucket"], ["name the experiment inside the bucket"]),
    ("top-zero", lambda t: [str(_experiment(t, FINISHED, _parquet())), "--top", "0"], ["--top", "between 1"]),
    (
        "top-huge",
        lambda t: [str(_experiment(t, FINISHED, _parquet())), "--top", "10000000000000000000000"],
        ["--top", "between 1"],
    ),
]


def _with_file(experiment: Path, name: str, data: bytes) -> Path:
    (experiment / name).write_bytes(data)
    return experiment


def _record_directory(root: Path) -> Path:
    experiment = root / "runs" / "done"
    (experiment / "experiment.json").mkdir(parents=True)
    return experiment


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in REPORT_CASES], ids=[c[0] for c in REPORT_CASES])
def test_report_refused(
    make: Callable[[Path], list[str]], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = make(tmp_path)
    refused(capsys, tmp_path, ["report", *args], fragments, prefix="data error: ")


# ------------------------------------------------------------------ evaluate: checkpoints, manifests, images

TINY_SPEC = {"name": "mlp", "args": {"hidden": [8]}, "input_shape": [1, 28, 28], "num_classes": 10}


def _checkpoint(path: Path, **changes: Any) -> Path:
    import torch

    from trainables.models import build_model

    spec = changes.pop("model_spec", TINY_SPEC)
    weights = build_model(TINY_SPEC).state_dict()
    state = {
        "model": weights,
        "model_spec": spec,
        "input_scale": "standard",
        "scaling": {"mean": [0.3], "std": [0.3], "pixel_max": 255.0},
        **changes,
    }
    state = {k: v for k, v in state.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _best(tmp_path: Path, manifest: bytes | None = None, **changes: Any) -> Path:
    best = tmp_path / "runs" / "exp" / "best"
    _checkpoint(best / "model.pt", **changes)
    if manifest is not None:
        (best / "manifest.json").write_bytes(manifest)
    return best


def _png(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels: the header says so, the data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _image(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def _real_png(tmp_path: Path, size: tuple[int, int] = (28, 28)) -> str:
    from PIL import Image

    Image.new("L", size).save(tmp_path / "shoe.png")
    return str(tmp_path / "shoe.png")


EVALUATE_CASES: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    (
        "scaling-std-zero",
        lambda t: [
            str(_checkpoint(t / "ck" / "checkpoint.pt", scaling={"mean": [0.3], "std": [0.0], "pixel_max": 255.0}))
        ],
        ["checkpoint.pt", "input scaling", "std > 0"],
    ),
    (
        "scaling-std-nan",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", scaling={"mean": [0.3], "std": [math.nan]}))],
        ["std > 0"],
    ),
    (
        "scaling-pixel-max-zero",
        lambda t: [
            str(
                _checkpoint(
                    t / "ck" / "checkpoint.pt",
                    input_scale="unit",
                    scaling={"mean": [0.3], "std": [0.3], "pixel_max": 0.0},
                )
            )
        ],
        ["checkpoint.pt", "pixel_max"],
    ),
    (
        "scaling-pixel-max-text",
        lambda t: [
            str(_checkpoint(t / "ck" / "checkpoint.pt", scaling={"mean": [0.3], "std": [0.3], "pixel_max": "x"}))
        ],
        ["checkpoint.pt"],
    ),
    (
        "scaling-not-a-mapping",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", scaling=[1, 2]))],
        ["checkpoint.pt", "scaling: must be a mapping"],
    ),
    (
        "unknown-input-scale",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", input_scale="log"))],
        ["checkpoint.pt", "unknown scaling 'log'"],
    ),
    (
        "huge-model-spec",
        lambda t: [
            str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec={**TINY_SPEC, "args": {"hidden": [60000, 60000]}}))
        ],
        ["checkpoint.pt", "above the cap"],
    ),
    (
        "huge-input-shape",
        lambda t: [
            str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec={**TINY_SPEC, "input_shape": [1, 1048576, 1048576]}))
        ],
        ["checkpoint.pt", "above the cap"],
    ),
    (
        "spec-not-a-mapping",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec="mlp"))],
        ["checkpoint.pt", "model spec"],
    ),
    (
        "spec-unknown-model",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec={**TINY_SPEC, "name": "resnet"}))],
        ["checkpoint.pt", "unknown model 'resnet'"],
    ),
    (
        "spec-bool-classes",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec={**TINY_SPEC, "num_classes": True}))],
        ["checkpoint.pt", "num_classes"],
    ),
    (
        "weights-do-not-fit",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec={**TINY_SPEC, "args": {"hidden": [16]}}))],
        ["checkpoint.pt", "does not rebuild"],
    ),
    (
        "no-spec",
        lambda t: [str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec=None))],
        ["checkpoint.pt", "not a model checkpoint"],
    ),
    ("garbage-file", lambda t: [_image(t, "model.pt", b"\x80\x02garbage" * 10)], ["model.pt", "not a readable"]),
    ("empty-file", lambda t: [_image(t, "model.pt", b"")], ["model.pt", "not a readable"]),
    (
        "truncated-checkpoint",
        lambda t: [_image(t, "model.pt", _checkpoint(t / "ck" / "whole.pt").read_bytes()[:500])],
        ["model.pt", "not a readable"],
    ),
    ("huge-sparse-file", lambda t: [_sparse_model(t)], ["model.pt", "larger than 2048 MiB"]),
    ("missing", lambda t: [str(t / "nope")], ["nope", "no such checkpoint"]),
    ("directory-without-model", lambda t: [str(_dir(t / "empty"))], ["no model.pt"]),
    ("manifest-not-json", lambda t: [str(_best(t, manifest=b"{oops"))], ["manifest.json"]),
    ("manifest-a-list", lambda t: [str(_best(t, manifest=b"[1, 2]"))], ["manifest.json"]),
    (
        "manifest-accuracy-text",
        lambda t: [str(_best(t, manifest=b'{"trial_name": "a", "test_accuracy": "high"}'))],
        ["manifest.json", "test_accuracy"],
    ),
    (
        "manifest-accuracy-list",
        lambda t: [str(_best(t, manifest=b'{"trial_name": "a", "test_accuracy": [1]}'))],
        ["manifest.json", "test_accuracy"],
    ),
    (
        "record-seed-text",
        lambda t: [str(_best_with_record(t, {"config": {"seed": "zero"}}))],
        ["experiment.json", "config.seed must be an integer"],
    ),
    (
        "record-data-not-a-mapping",
        lambda t: [str(_best_with_record(t, {"config": {"data": 5}}))],
        ["experiment.json", "config.data must be a mapping"],
    ),
    (
        "record-data-unknown-key",
        lambda t: [str(_best_with_record(t, {"config": {"data": {"x": 1}}}))],
        ["data.x", "data section is unusable"],
    ),
    (
        "record-data-missing-path",
        lambda t: [str(_best_with_record(t, {"config": {"data": {"source": "npz"}}}))],
        ["data", "needs data.path"],
    ),
    ("top-k-zero", lambda t: [str(_best(t)), "--top-k", "0"], ["--top-k"]),
    ("top-k-negative", lambda t: [str(_best(t)), "--top-k", "-3", "--predict", _real_png(t)], ["--top-k"]),
    (
        "image-decompression-bomb",
        lambda t: [str(_best(t)), "--predict", _image(t, "bomb.png", _png(30000, 30000))],
        ["bomb.png", "cannot read the image"],
    ),
    (
        "image-above-pixel-cap",
        lambda t: [str(_best(t)), "--predict", _image(t, "big.png", _png(8000, 8000))],
        ["big.png", "cannot read the image"],
    ),
    (
        "image-not-an-image",
        lambda t: [str(_best(t)), "--predict", _image(t, "note.png", b"hello\n")],
        ["note.png", "cannot read the image"],
    ),
    (
        "image-truncated",
        lambda t: [str(_best(t)), "--predict", _image(t, "cut.png", Path(_real_png(t, (64, 64))).read_bytes()[:60])],
        ["cut.png", "cannot read the image"],
    ),
    ("image-missing", lambda t: [str(_best(t)), "--predict", str(t / "nope.png")], ["nope.png"]),
    ("image-directory", lambda t: [str(_best(t)), "--predict", str(_dir(t / "d.png"))], ["d.png"]),
    ("image-fifo", lambda t: [str(_best(t)), "--predict", str(_fifo_at(t / "f.png"))], ["f.png", "regular file"]),
    ("image-device", lambda t: [str(_best(t)), "--predict", "/dev/zero"], ["/dev/zero"]),
    (
        "image-for-a-flat-model",
        lambda t: [
            str(_checkpoint(t / "ck" / "checkpoint.pt", model_spec={**TINY_SPEC, "input_shape": [784]})),
            "--predict",
            _real_png(t),
        ],
        ["--predict", "feature vectors"],
    ),
]


def _sparse_model(tmp_path: Path) -> str:
    with open(tmp_path / "model.pt", "wb") as f:
        f.truncate(3 << 30)
    return str(tmp_path / "model.pt")


def _best_with_record(tmp_path: Path, record: dict[str, Any]) -> Path:
    import json

    best = _best(tmp_path)
    (best.parent / "experiment.json").write_text(json.dumps(record))
    return best


@pytest.mark.parametrize(("make", "fragments"), [c[1:] for c in EVALUATE_CASES], ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_refused(
    make: Callable[[Path], list[str]], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = make(tmp_path)
    refused(capsys, tmp_path, ["evaluate", *args], fragments, prefix="data error: ")


# ------------------------------------------------------------------ usage errors: one line too


USAGE_CASES = [
    ("no-command", [], ["usage error", "required"]),
    ("unknown-command", ["train"], ["usage error", "invalid choice"]),
    ("unknown-option", ["launch", "x.yaml", "--frsh"], ["usage error", "--frsh"]),
    ("set-without-equals", ["launch", "{config}", "--set", "trial.lr"], ["--set", "expected dotted.key=value"]),
    ("set-empty-part", ["launch", "{config}", "--set", "trial..lr=1"], ["--set", "expected dotted.key=value"]),
    ("set-into-a-value", ["launch", "{config}", "--set", "trial.epochs.x=1"], ["trial.epochs", "not a section"]),
    ("set-unknown-key", ["launch", "{config}", "--set", "trial.lrr=0.1"], ["trial.lrr", "did you mean 'lr'"]),
    ("set-bad-yaml", ["launch", "{config}", "--set", "trial.mlp.hidden=[8"], ["--set trial.mlp.hidden", "YAML"]),
    ("set-duplicate-key", ["launch", "{config}", "--set", "trial={lr: 1, lr: 2}"], ["duplicate key 'lr'"]),
    (
        "set-alias-bomb",
        ["launch", "{config}", "--set", "trial.model_args={" + ", ".join(_alias_bomb().splitlines()) + "}"],
        ["--set trial.model_args", "aliases are expanded"],
    ),
    (
        "set-deep-nesting",
        ["launch", "{config}", "--set", f"trial.model_args={{x: {_nested(100_000)}}}"],
        ["--set trial.model_args", "nested more than 32 levels"],
    ),
    ("top-k-not-a-number", ["evaluate", "x", "--top-k", "many"], ["usage error", "--top-k"]),
]


@pytest.mark.parametrize(("argv", "fragments"), [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES])
def test_usage_refused(
    argv: list[str], fragments: list[str], tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path, shared))
    argv = [a.replace("{config}", config) for a in argv]
    refused(capsys, tmp_path, argv, fragments, prefix="")


# ------------------------------------------------------------------ accepted on purpose

# YAML anchors, aliases and merge keys used the ordinary way are accepted, not refused: they are how a
# long config avoids repeating itself, and `<<: *defaults` followed by a key is YAML's own way to override
# one value (the duplicate-key rule skips merges for that reason). Only an expansion past MAX_CONFIG_NODES
# (an alias bomb) is refused; a key written twice in one mapping still is.
ANCHORS = """\
name: anchored
storage_path: {storage}
data: {{source: npz, path: {npz}, val_size: 100}}
trial:
  <<: &defaults {{epochs: 2, batch_size: 32, mlp: {{hidden: [8]}}}}
  batch_size: 16
search:
  space:
    lr: {{grid: &rates [0.001, 0.01]}}
    optimizer: {{grid: [adam, sgd]}}
    weight_decay: {{choice: *rates}}
"""


def test_plain_anchors_and_merges_are_accepted(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(ANCHORS.format(storage=tmp_path / "runs", npz=shared / "tiny.npz"))
    before = snapshot(tmp_path)
    assert main(["launch", str(path), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "trials: 4" in out and err == ""
    assert "batch_size=16" in out and "epochs=2" in out
    assert snapshot(tmp_path) == before
