"""From a YAML file and `--set` overrides to a validated ExperimentConfig, or one ConfigError.

    cfg = load_config("configs/smoke.yaml", ["trial.epochs=1"])

Validation is strict and happens once, here: unknown keys name the closest valid one, every error
names its dotted field and the value it got.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.yaml_file import parse, read_yaml
from orchestrator.errors import ConfigError
from trainables.schema import strict_validate


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read YAML (safe, no duplicate keys), apply `--set key=value` overrides, validate. Raises ConfigError."""
    raw = read_yaml(Path(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not all(key.split(".")):
            raise ConfigError("--set", "expected dotted.key=value", item)
        set_dotted(raw, key, parse(text, f"--set {key}", key) if text.strip() else "")
    return validate(raw)


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: i + 1]), "is a value, not a section", child)
        node = child
    node[parts[-1]] = value


def validate(raw: dict[str, Any]) -> ExperimentConfig:
    try:
        return strict_validate(ExperimentConfig, raw)
    except ValidationError as exc:
        raise _to_config_error(exc) from None
    except ValueError as exc:  # json could not encode a value (checked earlier for files; here for callers)
        raise ConfigError("config", str(exc)) from None


# pydantic names the member of a union (`int | float`, `float | 'auto'`) after the field: one error per member.
_UNION_MEMBER = re.compile(r"int|float|str|bool|literal\[.*\]|function-.*|.*\[.*\]")
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_TYPE_MISMATCH = {
    "int_type",
    "float_type",
    "string_type",
    "bool_type",
    "literal_error",
    "dict_type",
    "list_type",
    "tuple_type",
    "model_type",
}


def _to_config_error(exc: ValidationError) -> ConfigError:
    errors = exc.errors(include_url=False)
    error = errors[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    loc = [str(part) for part in error["loc"]]
    members = [
        e
        for e in errors
        if len(e["loc"]) == len(loc)
        and [str(p) for p in e["loc"][:-1]] == loc[:-1]
        and isinstance(e["loc"][-1], str)
        and _UNION_MEMBER.fullmatch(e["loc"][-1])
    ]
    if len(members) > 1:  # the field, not its union's members; the error that says most (not "wrong type")
        loc = loc[:-1]
        error = next((e for e in members if e["type"] not in _TYPE_MISMATCH), None) or {
            **error,
            "msg": " or ".join(
                dict.fromkeys([members[0]["msg"]] + [e["msg"].removeprefix("Input should be ") for e in members[1:]])
            ),
        }
    field = ".".join(loc) or "config"
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(ExperimentConfig, loc[:-1])
        # A prefix ("grace" -> "grace_period") beats difflib's character overlap ("brackets").
        close = [k for k in valid if k.startswith(loc[-1])][:1] or difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        return ConfigError(field, f"unknown key ({hint})")
    if error["type"] == "missing":
        return ConfigError(field, "required field is missing")
    message = error["msg"].removeprefix("Value error, ")
    return ConfigError(field, message + _number_as_text(error), error.get("input"))


def _number_as_text(error: Any) -> str:
    """YAML 1.1 reads `1e-3` as text (its floats need a dot and a signed exponent): say how to write it."""
    text = error.get("input")
    if (
        error["type"] not in ("float_type", "int_type")
        or not isinstance(text, str)
        or not _EXPONENT.fullmatch(text.strip())
    ):
        return ""
    value = float(text)
    if error["type"] == "int_type" and value.is_integer() and abs(value) <= 2**63:
        written = str(int(value))
    else:
        mantissa, exponent = f"{value:e}".split("e")
        mantissa = mantissa.rstrip("0") + ("0" if mantissa.rstrip("0").endswith(".") else "")
        written = f"{mantissa}e{int(exponent):+d}"
    if written == text.strip():
        return "; write the number without quotes"
    return f"; YAML reads {text.strip()} as text: write {written}"


def _valid_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    for part in path:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        options = getattr(annotation, "__args__", (annotation,))  # `Section | None` -> Section
        section = next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if section is None:
            return []
        model = section
    return list(model.model_fields)
