"""Several objectives at once: Optuna's NSGA-II or multi-objective TPE through Ray's OptunaSearch.

    search: {algorithm: optuna, objectives: [val_accuracy, params], sampler: nsga2, num_samples: 20}

Imported only when `search.objectives` is set (optuna is an optional dependency). The classes live at
module level because Tune pickles the searcher, by reference, into the experiment state a resume restores.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from trainables import metrics as m


class NSGAII(optuna.samplers.NSGAIISampler):
    """NSGA-II that pickles: its thread lock cannot be pickled, so a restored sampler makes a new one."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_thread_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


class MultiObjective(OptunaSearch):
    """Keeps its own metric and mode lists: the Tuner's metric (validation accuracy, for early stopping)
    would otherwise replace them when it hands the search space over. The trials report every objective
    (the costs included) with every epoch, so the result Optuna is told at a trial's end has them all."""

    def set_search_properties(self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any) -> bool:
        return bool(super().set_search_properties(None, None, config, **spec))


def searcher(objectives: tuple[str, ...], sampler: str, seed: int) -> MultiObjective:
    chosen = NSGAII(seed=seed) if sampler == "nsga2" else optuna.samplers.TPESampler(seed=seed)
    return MultiObjective(metric=list(objectives), mode=[m.OBJECTIVE_MODES[o] for o in objectives], sampler=chosen)
