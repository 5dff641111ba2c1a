"""The human-readable plan of a sweep: what --dry-run prints and what a launch shows first."""

from __future__ import annotations

from orchestrator.config.rungs import rungs
from orchestrator.config.schema import ExperimentConfig
from orchestrator.config.space import dimensions
from trainables import metrics as m
from trainables.models import MODELS
from trainables.recipe import TrialConfig

RECIPE_SECTIONS = ("init", "optim", "loss", "clip", "schedule", "augment")


def _default_recipe(cfg: ExperimentConfig) -> set[str]:
    """Recipe-section knobs left at their defaults: not worth a place on the plan's `fixed:` line."""
    choices = {
        "model": cfg.trial.model,
        "optimizer": cfg.trial.optimizer,
        "schedule": {"name": cfg.trial.schedule.name},
    }
    default = TrialConfig.model_validate(choices).knobs()
    return {
        k
        for k, v in cfg.trial.knobs().items()
        if k.split(".")[0] in RECIPE_SECTIONS and k != "schedule.name" and default.get(k) == v
    }


def describe(cfg: ExperimentConfig, location: str) -> str:
    dims = dimensions(cfg.search.space)
    grid = cfg.trial_count // cfg.search.num_samples
    lines = [
        f"experiment: {cfg.name} -> {location}",
        f"trials: {cfg.trial_count} (grid points {grid} x num_samples {cfg.search.num_samples})",
        "search space:" if dims else "search space: none (every trial uses the fixed recipe)",
    ]
    width = max((len(p) for p in dims), default=0)
    lines += [f"  {path.ljust(width)}  {kind} {args}" for path, (kind, args) in dims.items()]
    searched = set(dims)
    if "model" in dims:  # each model's own fields are shown by its trials, not as one fixed recipe
        searched |= {k for k in cfg.trial.knobs() if k.split(".")[0] in MODELS}
    fixed = {k: v for k, v in cfg.trial.knobs().items() if k not in searched and k not in _default_recipe(cfg)}
    lines.append("fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    concurrency = cfg.search.max_concurrent_trials or "as many as resources allow"
    algorithm = "optuna TPE" if cfg.search.algorithm == "optuna" else "random/grid"
    lines.append(f"search algorithm: {algorithm}, seed {cfg.seed}")
    gpu = cfg.resources.gpu
    gpu_text = f"1/{cfg.resources.trials_per_gpu} GPU if the cluster has GPUs" if gpu == "auto" else f"{gpu:g} GPU"
    lines.append(f"resources per trial: {cfg.resources.cpu:g} CPU, {gpu_text}; concurrent trials: {concurrency}")
    population = cfg.population
    if population is not None:
        exploits = list(range(population.interval, cfg.max_t, population.interval))
        lines.append(
            f"population: {cfg.trial_count} members to epoch {cfg.max_t}, ranked on {m.ASHA_METRIC} at epochs "
            f"{exploits}; the bottom {population.fraction:g} copies the top {population.fraction:g}, mutating "
            f"{', '.join(population.mutate)} (x{population.perturb[0]:g} or x{population.perturb[1]:g}, "
            f"resampled with p {population.resample_probability:g})"
        )
    else:
        milestones = rungs(cfg.asha.grace_period, cfg.asha.reduction_factor, cfg.max_t)
        mode = "deterministic (synchronous rungs)" if cfg.asha.mode == "deterministic" else "async"
        lines.append(
            f"ASHA: {mode} on {cfg.asha.metric} (max), max_t = trial.epochs = {cfg.max_t}, grace "
            f"{cfg.asha.grace_period}, reduction {cfg.asha.reduction_factor:g}, brackets {cfg.asha.brackets}, "
            f"rungs at epochs {milestones}"
        )
    lines.append(
        f"selection: best {cfg.selection.metric} over every kept checkpoint "
        f"({cfg.selection.keep_checkpoints} best + latest kept per trial)"
    )
    budgets = cfg.selection.constraints.limits()
    if budgets:
        lines.append(
            "  among trials within: "
            + ", ".join(f"{key} {'<=' if mode == 'min' else '>='} {limit:g}" for key, (mode, limit) in budgets.items())
        )
    if cfg.search.objectives:
        lines.append(f"objectives: {', '.join(cfg.search.objectives)} (optuna {cfg.search.sampler})")
    lines.append(f"exports: best/model.pt{''.join(f', model.{f}' for f in cfg.export.formats)}")
    return "\n".join(lines)
