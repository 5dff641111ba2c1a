"""Run names a person can read: the model, the searched knobs' values, and Tune's trial id.

    cnn-adam-lr1e-3-bs128-a1b2c_00003        (model, optimizer, lr and batch_size searched)
    mlp-lr3e-3-unit-bn_on-a1b2c_00001        (lr, input_scale and mlp.batch_norm searched)
    mlp-hidden_512x512-a1b2c_00002           (mlp.hidden searched)
    mlp-l1_1e-4-a1b2c_00004                  (the loss section searched: its fields off their defaults)

Short (values, not keys, where the value says what it is), stable (a function of the config only)
and unique (the id). Used for trial directories, TensorBoard runs, progress lines and the report.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.config.space import lookup
from trainables.recipe import TrialConfig

# Knobs whose value alone is clear (a model or optimizer name); others get a short prefix.
PREFIXES = {
    "model": "",
    "optimizer": "",
    "lr": "lr",
    "batch_size": "bs",
    "weight_decay": "wd",
    "seed": "seed",
    "input_scale": "",
    "init.scheme": "",
    "schedule.name": "",
    "epochs": "ep",
}
DEFAULT_KNOBS = ("model", "optimizer", "lr", "batch_size")
MAX_LENGTH = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
DEFAULTS = TrialConfig.model_construct().model_dump(mode="json")


def number(value: float) -> str:
    """3e-3, 1e-5, 0.5, 128, 1e20: the shortest readable form."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e6):
        return str(int(value))
    if 0.01 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def short(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, list | tuple):
        return "x".join(short(v) for v in value) or "none"
    if isinstance(value, dict):
        return "-".join(f"{k}{short(v)}" for k, v in sorted(value.items())) or "default"
    return str(value)


def run_name(cfg: TrialConfig, searched: list[str] | tuple[str, ...], trial_id: str) -> str:
    values = cfg.model_dump(mode="json")
    knobs = ["model", *[k for k in searched if k != "model"]] if searched else list(DEFAULT_KNOBS)
    parts = []
    for knob in knobs:
        value = lookup(values, knob)
        if value is None or knob.split(".")[0] in ("mlp", "cnn", "lstm", "gru") and knob.split(".")[0] != cfg.model:
            continue  # another model's field: this trial does not have it
        leaf = knob.rsplit(".", 1)[-1]
        if isinstance(value, dict):  # a whole section searched: the fields that differ from their defaults
            parts.append(_changed(value, lookup(DEFAULTS, knob)) or f"{_abbreviation(leaf)}_default")
        else:
            parts.append(PREFIXES.get(knob, _abbreviation(leaf) + "_") + short(value))
    name = _UNSAFE.sub("-", "-".join(p for p in parts if p)).strip("-.")[:MAX_LENGTH]
    return f"{name}-{trial_id}" if name else str(trial_id)


def _changed(values: dict[str, Any], defaults: Any) -> str:
    """`l1_1e-4-l2_0.01`: a section's fields whose values are not the schema's defaults."""
    defaults = defaults if isinstance(defaults, dict) else {}
    parts = []
    for key, value in sorted(values.items()):
        if isinstance(value, dict):
            parts.append(_changed(value, defaults.get(key)))
        elif key not in defaults or defaults[key] != value:
            parts.append(f"{_abbreviation(key)}_{short(value)}")
    return "-".join(p for p in parts if p)


def _abbreviation(leaf: str) -> str:
    """batch_norm -> bn, hidden -> hidden, label_smoothing -> ls: initials of a multi-word name."""
    words = leaf.split("_")
    return "".join(w[0] for w in words) if len(words) > 1 else leaf


def searched_in(config: dict[str, Any]) -> list[str]:
    return list(json.loads(json.dumps(config.get("search", {}).get("space", {}))))
