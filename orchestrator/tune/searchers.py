"""The search algorithm from `search.algorithm`, and the search space as Tune's domains.

    search: {algorithm: optuna, num_samples: 20, max_concurrent_trials: 2, space: {lr: {loguniform: [1.0e-4, 1.0e-1]}}}

With `search.objectives`, optuna searches several objectives at once (NSGA-II by default, multi-objective TPE
with `search.sampler: tpe`) through OptunaSearch's metric and mode lists. Both algorithms are seeded by the
experiment's `seed`, so one config proposes the same trials every run
(for TPE: the first suggestions exactly; later ones depend on the order results arrive in, which
concurrent trials can change: `max_concurrent_trials: 1` makes a TPE search repeatable). Config
validation (`orchestrator.config.space`) has already refused grids for TPE.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator

from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import dimensions

_DOMAINS: dict[str, Any] = {
    "grid": tune.grid_search, "choice": tune.choice, "uniform": tune.uniform,
    "loguniform": tune.loguniform, "randint": tune.randint, "quniform": tune.quniform,
}  # fmt: skip


def param_space(cfg: ExperimentConfig) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for path, (kind, args) in dimensions(cfg.search.space).items():
        domain = _DOMAINS[kind](args) if kind in ("grid", "choice") else _DOMAINS[kind](*args)
        *parents, leaf = path.split(".")
        node = space
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = domain
    return space


class PacedVariantGenerator(BasicVariantGenerator):
    """Tune's random/grid generator, creating trials only while the scheduler asks for more (`hold`).

    Tune asks for new trials until it holds `TUNE_MAX_PENDING_TRIALS_PG` PENDING ones; deterministic early
    stopping keeps new trials PAUSED (it alone starts them), so Tune would create every trial of the sweep,
    with its directory, at its first step. The scheduler holds creation while enough created trials wait to
    start; the generator's state (the next trial's number and the sampler) is saved with the experiment as
    before, so a resume creates the rest exactly as an uninterrupted run would."""

    hold = False

    def next_trial(self) -> Any:
        return None if self.hold else super().next_trial()

    def get_state(self) -> Any:
        state = super().get_state()
        if isinstance(state, dict):
            state.pop("hold", None)
        return state


def build_search_alg(cfg: ExperimentConfig) -> Any:
    """The Tune search algorithm. Its concurrency cap is applied by the searcher itself in async mode; in
    deterministic mode the scheduler applies it (a searcher would count trials paused at a rung as running
    and never propose the trials the rung is waiting for)."""
    search = cfg.search
    cap = search.max_concurrent_trials if cfg.asha.mode == "async" else None
    if search.algorithm == "optuna":
        if search.objectives:
            from orchestrator.tune import multi_objective  # optuna: an optional dependency

            searcher: Any = multi_objective.searcher(search.objectives, search.sampler, cfg.seed)
        else:
            from ray.tune.search.optuna import OptunaSearch  # optional dependency: imported only when chosen

            searcher = OptunaSearch(seed=cfg.seed)
        return ConcurrencyLimiter(searcher, cap) if cap else searcher
    # Tune ignores TuneConfig.max_concurrent_trials for a generator like this one; it must be told here.
    if cfg.asha.mode == "deterministic":
        return PacedVariantGenerator(random_state=cfg.seed)
    return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cap or 0)
