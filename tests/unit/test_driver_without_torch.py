"""The driver never imports torch (about 630 MB it would hold for the whole sweep): its modules name torch
through `trainables.lazy`, and the work that needs torch runs in a forked child (`orchestrator.isolated`)
whose answer (a value, or the error as the driver would have raised it) comes back through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import isolated
from orchestrator.errors import ConfigError
from trainables.data import DataError
from trainables.lazy import lazy

ROOT = Path(__file__).resolve().parents[2]
DRIVER_MODULES = (
    "orchestrator.commands.main",  # every command's parser, launch included
    "orchestrator.sweep",  # the Tune loop, the observers, the outputs
    "orchestrator.tune.tuner",
    "orchestrator.review.tracking",
    "orchestrator.review.report",
    "orchestrator.outputs.export",
    "bench.scale",
)


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=False)


def test_the_driver_modules_import_without_torch() -> None:
    imports = "; ".join(f"import {name}" for name in DRIVER_MODULES)
    done = _fresh(f"import sys; {imports}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"torch was imported by the driver's modules: {done.stdout.strip()[:300]}"


def test_a_config_validates_and_the_versions_are_read_without_torch() -> None:
    code = (
        "import sys\n"
        "from orchestrator.config import load_config\n"
        "from orchestrator import versions\n"
        "cfg = load_config('configs/parallel.yaml', [])\n"
        "found = versions.libraries()\n"
        "assert '+' in found['torch'] or found['torch'][0].isdigit(), found\n"
        "print(found['torch'], 'torch' in sys.modules)\n"
    )
    done = _fresh(code)
    assert done.returncode == 0, done.stderr
    version, loaded = done.stdout.split()
    import torch

    assert version == torch.__version__  # read from torch/version.py: the build's own string (+cu130 and all)
    assert loaded == "False"


def test_the_child_returns_the_value_and_leaves_torch_out_of_this_process() -> None:
    code = (
        "import sys\n"
        "from orchestrator import isolated\n"
        "def norm():\n"
        "    import torch\n"
        "    return float(torch.linalg.vector_norm(torch.tensor([3.0, 4.0])))\n"
        "print(isolated.call(norm), 'torch' in sys.modules)\n"
    )
    done = _fresh(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5.0", "False"]


def _refuse_config() -> None:
    raise ConfigError("trial.cnn.channels", "too many blocks for a 28x28 image", [8, 8, 8, 8, 8])


def _refuse_data() -> None:
    raise DataError("data.path: x_train holds NaN")


def _crash() -> None:
    os._exit(3)


def _bug() -> None:
    raise KeyError("no such knob")


@pytest.mark.parametrize(
    ("function", "kind", "message"),
    [
        ("_refuse_config", "ConfigError", "trial.cnn.channels: too many blocks for a 28x28 image (got [8, 8, 8, 8,"),
        ("_refuse_data", "DataError", "data.path: x_train holds NaN"),
        ("_bug", "ChildFailed", "KeyError: 'no such knob'"),
        ("_crash", "ChildFailed", "died in its process"),
    ],
)
def test_what_the_child_raises_reaches_the_driver(function: str, kind: str, message: str) -> None:
    code = (
        "import sys\n"
        "from orchestrator import isolated\n"
        f"from tests.unit.test_driver_without_torch import {function}\n"
        "try:\n"
        f"    isolated.call({function})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__); print(str(exc).splitlines()[0])\n"
    )
    done = _fresh(code)
    assert done.returncode == 0, done.stderr
    got_kind, got_message = done.stdout.splitlines()[:2]
    assert got_kind == kind
    assert message in got_message


def test_with_torch_loaded_the_call_runs_here() -> None:
    import torch  # noqa: F401 - loaded, as in this test process

    with pytest.raises(ConfigError, match="too many blocks"):
        isolated.call(_refuse_config)
    assert isolated.call(os.getpid) == os.getpid()


def test_a_lazy_module_loads_on_first_use_and_then_is_the_module() -> None:
    proxy = lazy("json")
    assert proxy.dumps({"a": 1}) == '{"a": 1}'
    import json

    assert proxy.dumps is json.dumps
    with pytest.raises(AttributeError):
        _ = proxy.no_such_function
