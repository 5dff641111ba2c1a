"""The library versions a result depends on: recorded with every experiment and exported model."""

from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = ("torch", "torchvision", "ray", "numpy", "pyarrow", "pydantic", "optuna")


def libraries() -> dict[str, str]:
    import torch  # its own version string names the build (e.g. +cu130), which can change results

    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["torch"] = str(torch.__version__)
    found["cuda"] = str(torch.version.cuda)
    return found
