"""A module imported on first use, for the driver's sake.

The driver (config, the Tune loop, records, outputs) uses a few of torch's functions in a few places, but
importing torch costs about 630 MB of resident memory (this CUDA build's libraries and operator tables),
more than everything else the driver holds at ten thousand trials. Modules the driver imports name torch
through `lazy`, so that torch loads only in the processes that run a model: the trials, and the helpers
the driver starts for the checks and the export (orchestrator.isolated). Not put in `sys.modules`: other
libraries look there to decide whether torch is in use.

    if TYPE_CHECKING:
        import torch
    else:
        torch = lazy("torch")
"""

from __future__ import annotations

import importlib
from typing import Any


class lazy:  # noqa: N801 - stands in for a module name
    def __init__(self, name: str) -> None:
        self.__name = name

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(importlib.import_module(self.__name), attribute)
        setattr(self, attribute, value)  # later look-ups are plain attribute reads
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__name!r}>"
