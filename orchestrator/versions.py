"""The library versions a result depends on: recorded with every experiment and exported model."""

from __future__ import annotations

import ast
import importlib.util
import platform
import sys
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "torchvision", "ray", "numpy", "pyarrow", "pydantic", "optuna")


def libraries() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    build = torch_build()  # its own version string names the build (e.g. +cu130), which can change results
    found["torch"], found["cuda"] = str(build.get("__version__")), str(build.get("cuda"))
    return found


def torch_build() -> dict[str, object]:
    """torch's `__version__` and `cuda`, as torch/version.py states them: read, not imported, so that the
    driver never loads torch (orchestrator.isolated)."""
    if (loaded := sys.modules.get("torch")) is not None:
        return {"__version__": loaded.__version__, "cuda": loaded.version.cuda}
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return {}
    values: dict[str, object] = {}
    for node in ast.parse(Path(spec.origin).with_name("version.py").read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    return values
