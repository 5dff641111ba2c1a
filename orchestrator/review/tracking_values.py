"""What reaches MLflow, in the forms it accepts: keys and values within its limits, a nested config as flat
dotted params; and the check, before Ray starts, that an http(s) tracking server answers. No MLflow import
here: the launch runs this check whether or not the sweep ends up tracking anything.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from orchestrator.config.schema import ExperimentConfig
from orchestrator.errors import ConfigError

FIELD = "tracking.mlflow.tracking_uri"
REACH_TIMEOUT_S = 5.0
# MLflow's limits on one value (mlflow.utils.validation).
MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_KEY = 6000, 8000, 250
_KEY_UNSAFE = re.compile(r"[^\w./\- :]")


def check_reachable(cfg: ExperimentConfig) -> None:
    """Before Ray starts: an http(s) tracking server answers within REACH_TIMEOUT_S (any HTTP status
    counts: a server behind authentication still answers); file: and sqlite: need no server."""
    if cfg.tracking.mlflow is None:
        return
    uri = cfg.tracking.mlflow.tracking_uri
    if urlsplit(uri).scheme.lower() not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(
            FIELD,
            f"no MLflow server answered at {uri} within {REACH_TIMEOUT_S:g} s "
            f"({one_line(reason)}); start it or fix the URI",
        ) from None


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def text(value: Any, limit: int = MAX_PARAM_VALUE) -> str:
    """A param or tag value: strings as they are, everything else as JSON (lists, null, true), cut to fit."""
    out = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def key(name: str) -> str:
    """A key MLflow accepts: letters, digits, _ - . / space and colon; 250 characters at most."""
    return _KEY_UNSAFE.sub("_", name)[:MAX_KEY]


def one_line(value: Any) -> str:
    lines = str(value).strip().splitlines()
    return (lines[0] if lines else type(value).__name__)[:300]
