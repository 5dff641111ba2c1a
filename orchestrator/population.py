"""Population-based training's decisions: who copies whom, and the knob values the copy goes on with.

    decisions = decide(epoch=2, scores={0: 0.81, 1: 0.84, 2: nan, 3: 0.79}, knobs=current, rules=rules)

Pure and deterministic: the same scores give the same decisions, whatever order the results arrived
in. At an interval the members are ranked by the early-stopping metric (validation; ties to the lower
trial number). Each of the bottom `fraction`, and every member whose score is not finite (it diverged),
copies a member of the top `fraction` drawn with a generator seeded from the sweep's seed and the
epoch; each mutating knob is then drawn afresh from its search domain (with `resample_probability`) or
multiplied by one of the `perturb` factors, and clipped to the domain's bounds (a categorical knob moves
to a neighbouring value; integers are rounded). A member that did not finish is never a parent.
The Ray side (`orchestrator.tune.population`) calls this and writes the result to disk; the trial side
(`trainables.exploit`) reads it back. No Ray here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from orchestrator.config.population import PopulationConfig
from orchestrator.config.space import LIST_KINDS, dimensions, lookup

SEED_SPACE = 2**31  # a child's batch-order seed: what torch.Generator.manual_seed takes everywhere


@dataclass(frozen=True)
class Rules:
    """A population's settings with the search domains of its mutating knobs."""

    fraction: float
    mutate: tuple[str, ...]
    perturb: tuple[float, float]
    resample_probability: float
    domains: dict[str, tuple[str, list[Any]]]
    seed: int

    @classmethod
    def of(cls, population: PopulationConfig, space: dict[str, Any], seed: int) -> Rules:
        domains = dimensions({knob: space[knob] for knob in population.mutate})
        return cls(population.fraction, population.mutate, population.perturb, population.resample_probability,
                   domains, seed)  # fmt: skip


@dataclass(frozen=True)
class Exploit:
    """One member's copy at an interval: the parent it copies and the values it trains with from here."""

    member: int
    parent: int
    epoch: int
    values: dict[str, Any]
    batch_seed: int
    generation: int
    checkpoint: str = ""  # the parent's checkpoint at `epoch`, relative to the experiment

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Exploit:
        return cls(**data)


def initial_knobs(config: dict[str, Any], mutate: tuple[str, ...]) -> dict[str, Any]:
    """A member's starting values of the mutating knobs, from its sampled config."""
    return {knob: lookup(config, knob) for knob in mutate}


def ranking(scores: dict[int, float]) -> list[int]:
    """Best first; ties to the lower trial number; non-finite scores last."""
    return sorted(scores, key=lambda i: (0, -scores[i], i) if math.isfinite(scores[i]) else (1, 0.0, i))


def decide(
    epoch: int, scores: dict[int, float], knobs: dict[int, dict[str, Any]], generations: dict[int, int], rules: Rules
) -> dict[int, Exploit]:
    """The exploits at `epoch`, by member. `scores` holds every live member's score at that epoch."""
    rng = np.random.default_rng([rules.seed, epoch])
    ranked = [i for i in ranking(scores) if math.isfinite(scores[i])]
    broken = sorted(i for i in scores if not math.isfinite(scores[i]))
    count = math.floor(len(ranked) * rules.fraction) if len(ranked) >= 2 else 0
    if len(ranked) >= 2:
        count = max(1, count)
    top = ranked[:count] or ranked[:1]
    children = sorted(ranked[len(ranked) - count :] if count else []) + broken
    decisions: dict[int, Exploit] = {}
    for child in children:
        if not top:
            break
        parent = top[int(rng.integers(len(top)))]
        values = {knob: mutate(knobs[parent][knob], rules.domains[knob], rng, rules) for knob in rules.mutate}
        seed = int(rng.integers(SEED_SPACE))
        decisions[child] = Exploit(child, parent, epoch, values, seed, generations.get(parent, 0) + 1)
    return decisions


def mutate(value: Any, domain: tuple[str, list[Any]], rng: np.random.Generator, rules: Rules) -> Any:
    """A knob's next value: resampled from its domain, or perturbed and clipped to it."""
    kind, args = domain
    resample = rng.random() < rules.resample_probability
    up = int(rng.integers(2))  # which factor: draw it either way, so the stream does not depend on the branch
    if resample:
        return sample(domain, rng)
    if kind in LIST_KINDS:
        index = next((i for i, v in enumerate(args) if v == value), None)
        if index is None:
            return sample(domain, rng)
        return args[min(max(index + (1 if up else -1), 0), len(args) - 1)]
    return clip(value * rules.perturb[up], domain)


def sample(domain: tuple[str, list[Any]], rng: np.random.Generator) -> Any:
    kind, args = domain
    if kind in LIST_KINDS:
        return args[int(rng.integers(len(args)))]
    low, high = args[0], args[1]
    if kind == "randint":
        return int(rng.integers(low, high))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return clip(float(rng.uniform(low, high)), domain)


def clip(value: float, domain: tuple[str, list[Any]]) -> Any:
    """Inside the domain's bounds: randint's high is exclusive and its values whole; quniform's on its grid."""
    kind, args = domain
    low, high = args[0], args[1]
    if kind == "randint":
        return int(min(max(round(value), low), high - 1))
    if kind == "quniform":
        q = args[2]
        value = round(value / q) * q
    return float(min(max(value, low), high))
