"""The library versions a result depends on: recorded with every experiment and exported model."""

from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = ("torch", "torchvision", "ray", "numpy", "pyarrow", "pydantic", "optuna")


def libraries() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
