"""The search algorithm a sweep uses, from `search.algorithm`: random/grid or Optuna's TPE.

    search: {algorithm: optuna, num_samples: 20, max_concurrent_trials: 2, space: {lr: {loguniform: [1.0e-4, 1.0e-1]}}}

Both are seeded by the experiment's `seed`, so one config proposes the same trials every run (for TPE,
the first suggestions exactly; later ones depend on results, which arrive in an order that concurrent
trials can change: `max_concurrent_trials: 1` makes a TPE search fully repeatable). ASHA stops trials
either way: TPE learns from each trial's last reported validation accuracy. Imports Ray and Optuna, so
only tuning.py uses it; config validation (orchestrator/search.py) has already refused grids for TPE.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator

from orchestrator.config import SearchConfig


def build_search_alg(search: SearchConfig, seed: int) -> Any:
    """The Tune search algorithm, with the concurrency cap applied by the searcher itself."""
    if search.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch  # optional dependency: imported only when chosen

        searcher = OptunaSearch(seed=seed)
        return ConcurrencyLimiter(searcher, search.max_concurrent_trials) if search.max_concurrent_trials \
            else searcher
    # Tune ignores TuneConfig.max_concurrent_trials for a generator like this one; it must be told here.
    return BasicVariantGenerator(random_state=seed, max_concurrent=search.max_concurrent_trials or 0)
