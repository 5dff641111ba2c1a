"""User-facing errors: each becomes one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

from typing import Any

_UNSET = object()
# The launch's exit code when the storage failed (a full disk, a store that stayed down): the sweep stopped
# the way an interrupt stops it and stays resumable (sysexits' EX_TEMPFAIL: try again later).
STORAGE_EXIT = 75


class ConfigError(ValueError):
    """A config or usage mistake, named by its field path."""

    def __init__(self, field: str, problem: str, value: Any = _UNSET) -> None:
        self.field, self.problem, self.value = field, problem, value
        got = "" if value is _UNSET else f" (got {_short(value)})"
        super().__init__(f"{field}: {problem}{got}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
