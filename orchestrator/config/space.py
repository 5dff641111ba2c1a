"""The search space as written in YAML: its kinds, its dimensions, and every rule a value must obey.

    search:
      space:
        model: {grid: [mlp, cnn]}            # every grid point, times num_samples
        lr: {loguniform: [1.0e-4, 1.0e-2]}
        mlp.hidden: {choice: [[128], [256, 128]]}   # only mlp trials use it

A key is a dotted trial field; a model-specific field is `<model>.<field>` and reaches only trials of
that model (likewise `optim.<optimizer>.<field>` and `schedule.<kind>.<field>`). A key may also name a
whole section, with partial sections as values merged over the fixed one:
`loss: {grid: [{}, {l1: 1.0e-4}, {l2: 1.0e-2}]}`. Every candidate value is validated against the trial
schema here, before Ray starts, and a key that no trial of the sweep reads is refused (it would only copy
trials).

Search algorithms: `random` (Tune's BasicVariantGenerator: grid points times random samples) or
`optuna` (TPE; sampling kinds only: a grid has no distribution for TPE to model, so it is refused
rather than silently turned into a choice, which would change the trial count and coverage).
No Ray here: `orchestrator.tune.searchers` turns these dimensions into Tune's domains.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.errors import ConfigError
from trainables.recipe import FREE_FORM, TrialConfig, deep_merge
from trainables.schema import INT64_MAX

LIST_KINDS = ("grid", "choice")
RANGE_KINDS = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}
KINDS = LIST_KINDS + tuple(RANGE_KINDS)
FLOAT_KINDS = ("uniform", "loguniform", "quniform")
# epochs is ASHA's max_t: it is set once, in trial.epochs, not searched.
NOT_SEARCHABLE = {"epochs"}
# The fields that choose which sections a trial reads (`mlp.*` only when model is mlp), as searched keys.
CHOOSERS = ("model", "optimizer", "schedule", "schedule.name")
MAX_CHOICE_COMBINATIONS = 4096  # far above any real space; bounds the work of the check below


def parse_dimension(path: str, spec: Any) -> tuple[str, list[Any]]:
    where = f"search.space.{path}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(where, f"must be a mapping with exactly one of {', '.join(KINDS)}", spec)
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(where, f"unknown search kind {kind!r} (valid: {', '.join(KINDS)})")
    if not isinstance(args, list):
        raise ConfigError(f"{where}.{kind}", "must be a list", args)
    if kind in LIST_KINDS and not args:
        raise ConfigError(f"{where}.{kind}", "must list at least one value", args)
    if kind in RANGE_KINDS:
        _check_range(f"{where}.{kind}", kind, args)
    return kind, args


def _check_range(where: str, kind: str, args: list[Any]) -> None:
    shape = "[low, high, q]" if kind == "quniform" else "[low, high]"
    if len(args) != RANGE_KINDS[kind] or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise ConfigError(where, f"must be {shape} numbers", args)
    if not all(math.isfinite(a) for a in args) or any(abs(a) > INT64_MAX for a in args):
        raise ConfigError(where, f"must be {shape} finite numbers within +-2^63", args)
    low, high = args[0], args[1]
    if not low < high:
        raise ConfigError(where, "low must be below high", args)
    if kind == "loguniform" and low <= 0:
        raise ConfigError(where, "low must be > 0 for a log scale", args)
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(where, "bounds must be integers (high is exclusive)", args)
    if kind == "quniform":
        q = args[2]
        if q <= 0:
            raise ConfigError(where, "q must be > 0", args)
        # Tune rounds samples to multiples of q: bounds off that grid yield values outside [low, high].
        if any(abs(bound / q - round(bound / q)) > 1e-9 for bound in (low, high)):
            raise ConfigError(where, "low and high must be multiples of q", args)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _check_path(path: str) -> None:
    """A dotted path through the trial schema: a field, or a whole section (searched as partial dicts)."""
    where = f"search.space.{path}"
    parts = path.split(".")
    if not all(parts):
        raise ConfigError(where, "not a dotted field path (an empty part between dots)")
    if parts[0] in NOT_SEARCHABLE:
        raise ConfigError(where, "trial.epochs is ASHA's max_t and is not searched; set it under trial:")
    if parts[0] in FREE_FORM:  # a user model's own arguments: any key, checked by the model's factory
        return
    schema: type[BaseModel] = TrialConfig
    for depth, part in enumerate(parts):
        fields = schema.model_fields
        if part not in fields:
            owner = ".".join(parts[:depth])
            what = f"a {owner} field" if owner else "a trial field"
            raise ConfigError(where, f"not {what} (valid: {', '.join(fields)})")
        annotation = fields[part].annotation
        if depth < len(parts) - 1:
            if annotation is None or not _is_section(annotation):
                raise ConfigError(where, f"{'.'.join(parts[: depth + 1])} has no sub-fields")
            schema = annotation


def lookup(values: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path of nested mappings (a trial's config), or None where it has none."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def nest(path: str, value: Any) -> dict[str, Any]:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def validate_space(space: dict[str, Any], fixed: dict[str, Any]) -> None:
    """Every candidate value must make a valid trial; raises ConfigError naming the entry."""
    for path, spec in space.items():
        _check_path(path)
        inner = next((p for p in space if p.startswith(f"{path}.")), None)
        if inner is not None:
            raise ConfigError(
                f"search.space.{path}",
                f"searches a whole section and also {inner} inside it; fold that field into the section's values",
            )
        kind, args = parse_dimension(path, spec)
        candidates = args if kind in LIST_KINDS else args[:2]
        if kind in FLOAT_KINDS:  # Tune samples these as floats, even between integer bounds
            candidates = [float(value) for value in candidates]
        for value in candidates:
            try:
                TrialConfig.resolve(fixed, nest(path, value))
            except ValidationError as exc:
                error = exc.errors(include_url=False)[0]
                if kind in FLOAT_KINDS and error["type"] == "int_type":
                    raise ConfigError(
                        f"search.space.{path}.{kind}",
                        f"{kind} samples floats and this field takes integers; use randint or choice",
                        args,
                    ) from None
                message = error["msg"].removeprefix("Value error, ")
                raise ConfigError(f"search.space.{path}", message, value) from None
        if kind == "grid":
            _check_distinct(f"search.space.{path}.grid", args)
    check_used(space, fixed)


def _check_distinct(where: str, values: list[Any]) -> None:
    """A grid value listed twice makes the same trials twice, same seed and all. (A choice may repeat a
    value on purpose: that weights it.)"""
    for index, value in enumerate(values):
        if any(_same(value, earlier) for earlier in values[:index]):
            raise ConfigError(
                where,
                "lists the same value twice: its grid points would be identical trials; list it once "
                "(repeat trials with different seeds by searching seed: {grid: [0, 1, 2]})",
                value,
            )


def _same(a: Any, b: Any) -> bool:
    """Equal as trial values: 1 and 1.0 are the same learning rate; true and 1 are not the same value."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def check_used(space: dict[str, Any], fixed: dict[str, Any]) -> None:
    """A searched knob that no trial reads (`mlp.hidden` when every trial is a cnn, `model_args.*` with a
    built-in model) would only copy trials, and a fixed `model_args` no trial reads would be ignored
    silently: both refused, naming the choices the sweep makes."""
    choosers = [path for path in CHOOSERS if path in space]
    options = [[nest(path, value) for value in candidate_values(space, path)] for path in choosers]
    read: set[str] = set()
    trials: list[TrialConfig] = []
    for combination in itertools.islice(itertools.product(*options), MAX_CHOICE_COMBINATIONS):
        overlay: dict[str, Any] = {}
        for part in combination:
            overlay = deep_merge(overlay, part)
        try:
            trial = TrialConfig.resolve(fixed, overlay)
        except ValidationError:
            continue  # a combination no trial can be (validate_space names the value at fault)
        trials.append(trial)
        read.update(trial.knobs())
    if not trials:
        return
    if fixed.get("model_args") and not any(trial.user_model for trial in trials):
        raise ConfigError(
            "trial.model_args",
            f"arguments of a user's model factory, and every trial's model is built in ({_choices(trials)}); "
            "set that model's own section instead (trial.<model>.*)",
        )
    for path in space:
        if path.split(".")[0] in FREE_FORM:
            used = any(trial.user_model for trial in trials)
        else:
            used = any(knob == path or knob.startswith(f"{path}.") for knob in read)
        if not used:
            raise ConfigError(
                f"search.space.{path}",
                f"no trial of this sweep reads it ({_choices(trials)}); drop it, or set or search the choice that "
                "uses it",
            )


def _choices(trials: list[TrialConfig]) -> str:
    """The sweep's choices of sections, as `model cnn, optimizer adam/sgd, schedule.name none`."""
    picks: dict[str, set[str]] = {
        "model": {str(t.model) for t in trials},
        "optimizer": {str(t.optimizer) for t in trials},
        "schedule.name": {str(t.schedule.name) for t in trials},
    }
    return ", ".join(f"{name} {'/'.join(sorted(values))}" for name, values in picks.items())


def candidate_values(space: dict[str, Any], path: str) -> list[Any]:
    """The values a dimension can take that matter for a bound: every listed one, or a range's ends."""
    kind, args = parse_dimension(path, space[path])
    if kind in LIST_KINDS:
        return list(args)
    return [args[0], args[1] - 1 if kind == "randint" else args[1]]


def validate_algorithm(algorithm: str, space: dict[str, Any]) -> None:
    """Optuna needs its package and sampling kinds only; checked before Ray starts."""
    if algorithm != "optuna":
        return
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("search.algorithm", "optuna is not installed (pip install optuna)", algorithm)
    for path, spec in space.items():
        kind, args = parse_dimension(path, spec)
        if kind == "grid":
            raise ConfigError(
                f"search.space.{path}",
                "grid is not searchable by optuna (TPE samples "
                "distributions): write choice, or use search.algorithm: random",
                {kind: args},
            )


def grid_size(space: dict[str, Any]) -> int:
    return math.prod(len(args) for kind, args in (parse_dimension(p, s) for p, s in space.items()) if kind == "grid")


def searched_fields(space: dict[str, Any]) -> list[str]:
    """The dotted fields a search varies: a searched section stands for the fields its candidates set
    (`schedule: {grid: [{name: none}, {name: onecycle}]}` varies `schedule.name`)."""
    fields: list[str] = []
    for path, spec in space.items():
        kind, args = parse_dimension(path, spec)
        if kind in LIST_KINDS and args and all(isinstance(v, dict) for v in args):
            fields += [f"{path}.{key}" for key in dict.fromkeys(k for v in args for k in v)]
        else:
            fields.append(path)
    return list(dict.fromkeys(fields))


def dimensions(space: dict[str, Any]) -> dict[str, tuple[str, list[Any]]]:
    return {path: parse_dimension(path, spec) for path, spec in space.items()}
