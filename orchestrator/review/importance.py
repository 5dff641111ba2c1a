"""The searched knobs of a sweep, trial by trial, and how much each mattered (Optuna's PED-ANOVA).

    python -m orchestrator report runs/smoke      # the report's parallel coordinates and "Which knobs mattered"

`searched_knobs` reads each search-space key back from the results rows (a whole searched section, such as
`loss`, from its `config.loss.*` columns). `knob_importance` builds an Optuna study from the ended trials
(their knobs as params, distributions from the search space, the selection metric's best value as the
objective) and asks Optuna's PED-ANOVA evaluator for the importances: PED-ANOVA needs nothing beyond
Optuna itself (fANOVA would need scikit-learn). No statistics are computed here. No Ray here.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

from orchestrator.config.space import LIST_KINDS, parse_dimension
from orchestrator.errors import ConfigError
from orchestrator.outputs.tables import differing_knobs, score_key
from trainables.metrics import finite

MIN_TRIALS = 4  # fewer ended trials than this say nothing about which knob mattered
TOP_QUANTILE = 0.1  # PED-ANOVA's default: the importance of reaching the best 10% of trials
MIN_TOP = 2  # ...but at least 2 trials in that group, or a small sweep's "best 10%" is the winner alone
LOG_SPAN = 20.0  # a positive numeric knob spanning this factor or more is read on a log scale
IMPORTANCE_STATUSES = ("completed", "stopped", "diverged")  # ended with a score; failed trials left out
EVALUATOR = "PED-ANOVA"


@dataclass(frozen=True)
class Knob:
    name: str  # the search-space key: `lr`, `mlp.hidden`, or a whole section such as `loss`
    kind: str  # grid | choice | uniform | loguniform | randint | quniform | observed (no recorded space) | metric
    args: list[Any]  # the space's arguments (candidates, or [low, high(, q)])
    values: list[Any]  # one per results row; None where the trial does not use the knob

    @property
    def used(self) -> list[Any]:
        return [v for v in self.values if v is not None]

    @property
    def numeric(self) -> bool:
        return bool(self.used) and all(finite(v) for v in self.used)

    @property
    def log(self) -> bool:
        if self.kind == "loguniform":
            return True
        if not self.numeric or self.kind == "metric":  # accuracies read best on a linear axis
            return False
        low, high = min(self.bounds), max(self.bounds)
        return low > 0 and high / low >= LOG_SPAN

    @property
    def bounds(self) -> tuple[float, float]:
        """The axis range: the searched range for a sampled knob (wider if a value fell outside), else the values'."""
        values = [float(v) for v in self.used]
        if self.kind in ("uniform", "loguniform", "quniform", "randint"):
            values += [float(self.args[0]), float(self.args[1] - 1 if self.kind == "randint" else self.args[1])]
        return min(values), max(values)

    @property
    def categories(self) -> list[str]:
        """Labels in the space's order, then any value the space did not list (a section's merged values)."""
        listed = [label(v) for v in self.args] if self.kind in LIST_KINDS else []
        seen = {label(v) for v in self.used}
        observed = sorted(seen - set(listed), key=lambda text: (len(text), text))
        return [text for text in listed if text in seen] + observed


def label(value: Any) -> str:
    """How a knob value is shown and compared: lists and sections as compact JSON, the rest as text."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else str(value)


def _row_value(row: dict[str, Any], key: str) -> Any:
    value = row.get(f"config.{key}")
    if value is not None:
        return value
    # A searched section has no column of its own: its fields are the config.<key>.* columns.
    section = {
        k.removeprefix(f"config.{key}."): v for k, v in row.items() if k.startswith(f"config.{key}.") and v is not None
    }
    return section or None


def _only_differing(values: list[Any]) -> list[Any]:
    """A section's values cut to the fields that differ between trials (the rest is the same everywhere)."""
    dicts = [v for v in values if isinstance(v, dict)]
    if len(dicts) != len([v for v in values if v is not None]):
        return values
    fields = {k for d in dicts for k in d}
    differ = {k for k in fields if len({label(d.get(k)) for d in dicts}) > 1}
    if not differ:
        return values
    return [{k: v[k] for k in sorted(differ) if k in v} if isinstance(v, dict) else v for v in values]


def searched_knobs(config: dict[str, Any], rows: list[dict[str, Any]]) -> list[Knob]:
    """One Knob per search-space key that some trial used; without a recorded space, the columns that differ."""
    space = config.get("search", {}).get("space", {})
    knobs = []
    for key, spec in space.items():
        try:
            kind, args = parse_dimension(key, spec)
        except ConfigError:
            kind, args = "observed", []
        values = _only_differing([_row_value(row, key) for row in rows])
        if any(v is not None for v in values):
            knobs.append(Knob(key, kind, list(args), values))
    if not space:
        knobs = [
            Knob(c.removeprefix("config."), "observed", [], [row.get(c) for row in rows]) for c in differing_knobs(rows)
        ]
    return knobs


@dataclass(frozen=True)
class Importance:
    scores: dict[str, float]  # knob -> importance (normalized to sum 1), highest first; {} when skipped
    reason: str | None  # why it was not computed
    trials: int  # ended trials the study was built from
    quantile: float = TOP_QUANTILE  # the top fraction of trials whose knobs PED-ANOVA compared with all

    @property
    def top(self) -> int:
        """How many trials form the top group (ties at the cut included by Optuna)."""
        return max(1, math.ceil(self.quantile * self.trials))


def _choice(value: Any) -> Any:
    # Optuna's categorical choices must be None, bool, int, float or str: lists and sections go as JSON.
    return value if value is None or isinstance(value, bool | int | float | str) else label(value)


def _distribution(knob: Knob, used: list[Any]) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if knob.kind in ("uniform", "loguniform", "quniform") and all(finite(v) for v in used):
        low, high = min(float(knob.args[0]), *map(float, used)), max(float(knob.args[1]), *map(float, used))
        return FloatDistribution(low, high, log=knob.kind == "loguniform")
    # An integer column with gaps (a conditional knob) comes back from Parquet as floats: 3.0 is still 3.
    if knob.kind == "randint" and all(finite(v) and float(v).is_integer() for v in used):
        ints = [int(v) for v in used]
        return IntDistribution(min(int(knob.args[0]), *ints), max(int(knob.args[1]) - 1, *ints))
    listed = [_choice(v) for v in knob.args] if knob.kind in LIST_KINDS else []
    return CategoricalDistribution(list(dict.fromkeys([*listed, *(_choice(v) for v in used)])))


def _param(distribution: Any, value: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return _choice(value)
    return int(value) if isinstance(distribution, IntDistribution) else float(value)


def knob_importance(knobs: list[Knob], rows: list[dict[str, Any]], metric: str) -> Importance:
    """PED-ANOVA importances of the knobs that varied among the ended trials, or the reason there are none."""
    key = score_key(metric)
    ended = [i for i, row in enumerate(rows) if row.get("status") in IMPORTANCE_STATUSES and finite(row.get(key))]
    varied = [k for k in knobs if len({label(k.values[i]) for i in ended if k.values[i] is not None}) > 1]
    if len(ended) < MIN_TRIALS:
        return Importance(
            {},
            f"needs at least {MIN_TRIALS} ended trials with a {metric}; this experiment has {len(ended)}",
            len(ended),
        )
    if len(varied) < 2:
        names = ", ".join(f"`{k.name}`" for k in varied) or "none"
        return Importance(
            {}, f"needs at least 2 searched knobs that vary between the ended trials; varied: {names}", len(ended)
        )
    if len({float(rows[i][key]) for i in ended}) < 2:
        return Importance({}, f"every ended trial scored the same {metric}", len(ended))
    try:
        import optuna
    except ImportError:
        return Importance({}, "Optuna is not installed (pip install optuna)", len(ended))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    quantile = max(TOP_QUANTILE, MIN_TOP / len(ended))
    try:
        distributions = {
            k.name: _distribution(k, [k.values[i] for i in ended if k.values[i] is not None]) for k in varied
        }
        study = optuna.create_study(direction="maximize")
        for i in ended:
            # A conditional knob (mlp.hidden on a cnn trial) is simply absent from that trial's params.
            params = {k.name: _param(distributions[k.name], k.values[i]) for k in varied if k.values[i] is not None}
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions={n: distributions[n] for n in params}, value=float(rows[i][key])
                )
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature and few-trials notes; the report says it
            scores = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
            )
    except (ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return Importance({}, f"Optuna could not compute it ({first})", len(ended))
    ranked = dict(sorted(((name, float(v)) for name, v in scores.items()), key=lambda item: -item[1]))
    return Importance(ranked, None, len(ended), quantile)
