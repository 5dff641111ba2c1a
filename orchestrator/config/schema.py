"""The experiment schema: every section, field, default and cross-field rule, in one place.

    python -m orchestrator launch configs/smoke.yaml --dry-run

Each value exists once: the early-stopping horizon *is* `trial.epochs`, metric names come from
`trainables.metrics`, caps come from `orchestrator.config.limits` and `trainables.schema`. Fields
whose validity depends on the machine or the data (a trial that fits a node, a batch that fits the
training split after loading) are checked by `resources` and `launch`, before Ray starts.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.config import limits
from orchestrator.config.population import PopulationConfig, validate_population
from orchestrator.config.rungs import rungs
from orchestrator.config.space import grid_size, validate_algorithm, validate_space
from orchestrator.errors import ConfigError
from trainables import metrics as m
from trainables.data_sources import DataConfig
from trainables.recipe import TrialConfig
from trainables.runtime_config import RuntimeConfig
from trainables.schema import MAX_EPOCHS, MAX_PARAMETERS, MAX_SEED, Section

# A plain directory name: no separators, no leading dot, no control characters, nothing a shell mangles.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class SearchConfig(Section):
    algorithm: Literal["random", "optuna"] = Field(
        default="random", description="random: grid points x random samples; optuna: TPE (seeded by `seed`)"
    )
    num_samples: int = Field(
        default=1, ge=1, le=limits.MAX_TRIALS, description="samples of the space (times every grid point)"
    )
    max_concurrent_trials: int | None = Field(
        default=None,
        ge=1,
        le=limits.MAX_TRIALS,
        description="cap on trials running at once; also how many trials the searcher proposes ahead of results",
    )
    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="dotted trial field -> {grid|choice|uniform|loguniform|randint|quniform: ...}",
    )
    objectives: tuple[
        Literal["val_accuracy", "params", "checkpoint_mb", "latency_ms", "throughput", "train_seconds"], ...
    ] = Field(
        default=(),
        description="several objectives for optuna (val_accuracy maximised, costs minimised, throughput "
        "maximised); the ended trials' Pareto front is marked in the tables and drawn in the report",
    )
    sampler: Literal["nsga2", "tpe"] = Field(
        default="nsga2", description="optuna's multi-objective sampler: nsga2 (NSGA-II) or tpe (multi-objective TPE)"
    )

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, objectives: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(objectives)) != len(objectives):
            raise ValueError("lists an objective twice")
        if len(objectives) == 1:
            raise ValueError("name two or more (one objective is the default: val_accuracy)")
        return objectives


def _ray_quantity(field: str, value: float) -> float:
    """Ray accepts fractions of a resource up to 1 in steps of 0.0001, and whole numbers above 1."""
    exact = Decimal(repr(value))
    if value > 1 and exact != exact.to_integral_value():
        raise ValueError(f"above 1 must be a whole number (Ray cannot place {value:g} of a {field})")
    if value < 1 and exact.quantize(Decimal("0.0001")) != exact:
        raise ValueError("fractions go in steps of 0.0001 (Ray's resource precision)")
    return value


class ResourcesConfig(Section):
    cpu: float = Field(default=1.0, gt=0, le=limits.MAX_CPUS_PER_TRIAL, description="CPUs per trial; its torch threads")
    gpu: float | Literal["auto"] = Field(
        default=0.0,
        description="GPUs per trial (fractions pack trials on one GPU); 'auto' = 1/trials_per_gpu when the "
        "cluster has GPUs, else CPU only",
    )
    trials_per_gpu: int = Field(default=8, ge=1, le=10_000, description="trials sharing one GPU when gpu is 'auto'")
    autoscaling: bool = Field(
        default=False,
        description="the joined cluster adds nodes on demand: allow a trial bigger than every node now alive",
    )

    @field_validator("cpu")
    @classmethod
    def _cpu_quantity(cls, cpu: float) -> float:
        return _ray_quantity("CPU", cpu)

    @field_validator("gpu")
    @classmethod
    def _gpu_quantity(cls, gpu: float | str) -> float | str:
        if isinstance(gpu, str):
            return gpu
        if not 0 <= gpu <= limits.MAX_GPUS_PER_TRIAL:
            raise ValueError(f"must be 'auto' or between 0 and {limits.MAX_GPUS_PER_TRIAL}")
        return _ray_quantity("GPU", gpu)

    def gpus_per_trial(self, cluster_gpus: float) -> float:
        """The GPU share a trial asks Ray for, once the cluster's GPU count is known."""
        if self.gpu == "auto":
            return round(1 / self.trials_per_gpu, 4) if cluster_gpus > 0 else 0.0
        return float(self.gpu)


class AshaConfig(Section):
    mode: Literal["deterministic", "async"] = Field(
        default="deterministic",
        description="deterministic: synchronous successive halving, decisions on complete rungs in a fixed "
        "order (reruns repeat); async: Ray's ASHA, decisions on whatever has arrived (no idle waits); "
        "the default under search.algorithm: optuna is async",
    )
    grace_period: int = Field(default=1, ge=1, le=MAX_EPOCHS, description="epochs every trial gets before a cut")
    reduction_factor: float = Field(
        default=2.0, gt=1, le=1_000, description="1/reduction_factor of the trials at a rung go on to the next"
    )
    brackets: int = Field(default=1, ge=1, le=limits.MAX_BRACKETS, description="brackets (Hyperband-style levels)")
    metric: Literal["val_accuracy", "val_balanced_accuracy", "val_macro_f1"] = Field(
        default="val_accuracy",
        description="validation score (higher is better) that early stopping cuts by and the searcher steers by; "
        "never a test score",
    )

    @field_validator("metric", mode="before")
    @classmethod
    def _validation_only(cls, metric: object) -> object:
        if isinstance(metric, str) and metric.startswith("test_"):
            raise ValueError(
                f"early stopping looks at validation scores only, so the test set never steers the search: "
                f"use one of {', '.join(m.EARLY_STOPPING)}"
            )
        return metric


class ConstraintsConfig(Section):
    """Budgets the selected model must meet (trainables.costs measures each trial); none set = no budget."""

    max_params: int | None = Field(
        default=None, ge=1, le=MAX_PARAMETERS, description="at most this many parameters (checked before Ray starts)"
    )
    max_checkpoint_mb: float | None = Field(
        default=None, gt=0, description="weights as saved at most this many MB (10^6 bytes)"
    )
    max_latency_ms: float | None = Field(
        default=None, gt=0, description="inference per sample at batch 1 at most this many milliseconds"
    )
    min_throughput: float | None = Field(
        default=None, gt=0, description="inference at a large batch at least this many samples per second"
    )
    max_train_seconds: float | None = Field(
        default=None, gt=0, description="training (the epochs' loops, every epoch run) at most this many seconds"
    )

    def limits(self) -> dict[str, tuple[str, float]]:
        """Cost (trainables.metrics) -> (min | max, its limit): only the budgets that are set."""
        fields = {
            m.PARAMS: self.max_params, m.CHECKPOINT_MB: self.max_checkpoint_mb, m.LATENCY_MS: self.max_latency_ms,
            m.THROUGHPUT: self.min_throughput, m.TRAIN_SECONDS: self.max_train_seconds,
        }  # fmt: skip
        return {key: (m.COST_MODES[key], float(limit)) for key, limit in fields.items() if limit is not None}


class SelectionConfig(Section):
    metric: Literal[
        "test_accuracy", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "test_balanced_accuracy",
        "test_macro_f1",
    ] = Field(
        default="test_accuracy",
        description="score that ranks every kept checkpoint for best/ (trainables.metrics); balanced accuracy "
        "and macro-F1 suit imbalanced classes",
    )  # fmt: skip
    keep_checkpoints: int = Field(
        default=2, ge=1, le=100, description="checkpoints kept per trial: the best by `metric`, plus the latest"
    )
    constraints: ConstraintsConfig = Field(
        default_factory=ConstraintsConfig,
        description="budgets: the best checkpoint among the trials that meet every one (exit 1 when none does)",
    )


class ExportConfig(Section):
    formats: tuple[Literal["pt2", "onnx"], ...] = Field(
        default=("pt2", "onnx"),
        description="runtime files best/ holds beside model.pt: pt2 (torch.export, torch alone), onnx (needs "
        "the optional onnx extra); each checked against the checkpoint on the test split; [] = model.pt only",
    )


class FailureConfig(Section):
    max_retries: int = Field(default=2, ge=0, le=100, description="restarts of a failed trial from its last checkpoint")


class TensorBoardConfig(Section):
    histogram_every: int = Field(
        default=1, ge=0, le=10_000, description="epochs between per-layer weight histograms (also at epoch 0); 0 = none"
    )


class MlflowConfig(Section):
    tracking_uri: str = Field(min_length=1, description="MLflow tracking server, e.g. http://127.0.0.1:5000")
    experiment: str | None = Field(default=None, min_length=1, description="MLflow experiment; none = the sweep's name")
    registered_model: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="register the best model under this name in the server's model registry (a new version)",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if ":" not in uri or uri.partition(":")[0].lower() not in ("http", "https", "file", "sqlite"):
            raise ValueError("must be an http://, https://, file: or sqlite: URI (e.g. http://127.0.0.1:5000)")
        return uri


class TrackingConfig(Section):
    mlflow: MlflowConfig | None = Field(default=None, description="send every trial to MLflow (child runs of one run)")


class RayConfig(Section):
    address: str | None = Field(default=None, min_length=1, description="existing cluster to join; none = local Ray")
    dashboard: bool = Field(default=False, description="start the dashboard (bound to 127.0.0.1) locally")


class ExperimentConfig(Section):
    name: str = Field(description="experiment directory name under storage_path")
    storage_path: str = Field(default="./runs", description="local path, shared mount, or s3:// gs:// file:// URI")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="seeds the validation split and the search")
    data: DataConfig = DataConfig()
    trial: TrialConfig = TrialConfig()
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    asha: AshaConfig = AshaConfig()
    population: PopulationConfig | None = Field(
        default=None, description="population-based training instead of early stopping (orchestrator/config/population)"
    )
    selection: SelectionConfig = SelectionConfig()
    failure: FailureConfig = FailureConfig()
    export: ExportConfig = ExportConfig()
    tensorboard: TensorBoardConfig = TensorBoardConfig()
    tracking: TrackingConfig = TrackingConfig()
    ray: RayConfig = RayConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name) or ".." in name:
            raise ValueError(
                "must be a plain directory name: letters, digits, '.', '_', '-'; no '/', '..', "
                "spaces or control characters"
            )
        if len(name) > limits.MAX_NAME_LENGTH:
            raise ValueError(f"longer than {limits.MAX_NAME_LENGTH} characters")
        return name

    @field_validator("storage_path")
    @classmethod
    def _storage_text(cls, path: str) -> str:
        if not path.strip():
            raise ValueError("must not be empty (a directory such as ./runs, or an s3:// gs:// file:// URI)")
        if any(ord(c) < 32 or c == "\x7f" for c in path):
            raise ValueError("contains a control character or NUL")
        return path

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        if self.population is not None and "asha" in self.model_fields_set:
            raise ConfigError(
                "population", "a sweep is early-stopped (asha:) or a population (population:), not both; drop one"
            )
        if self.search.algorithm == "optuna" and "mode" not in self.asha.model_fields_set:
            # TPE proposes from finished trials, which synchronous rungs hold back: async unless told otherwise.
            object.__setattr__(self, "asha", self.asha.model_copy(update={"mode": "async"}))
        if self.search.algorithm == "optuna" and self.asha.mode == "deterministic":
            raise ConfigError(
                "asha.mode",
                "deterministic rungs hold trials back until a whole rung is done, and optuna's TPE "
                "proposes from finished trials; use asha.mode: async with search.algorithm: optuna",
                self.asha.mode,
            )
        if self.asha.grace_period > self.trial.epochs:
            raise ConfigError(
                "asha.grace_period", f"must not exceed trial.epochs ({self.trial.epochs})", self.asha.grace_period
            )
        validate_space(self.search.space, self.trial.model_dump(mode="json"))
        validate_algorithm(self.search.algorithm, self.search.space)
        if self.search.objectives and self.search.algorithm != "optuna":
            raise ConfigError(
                "search.objectives",
                "several objectives need search.algorithm: optuna (NSGA-II or multi-objective TPE)",
                list(self.search.objectives),
            )
        if "sampler" in self.search.model_fields_set and not self.search.objectives:
            raise ConfigError(
                "search.sampler", "chooses a multi-objective sampler: set search.objectives too", self.search.sampler
            )
        trials = grid_size(self.search.space) * self.search.num_samples
        if trials > limits.MAX_TRIALS:
            raise ConfigError(
                "search.num_samples",
                f"grid points x num_samples = {trials} trials, above the cap of {limits.MAX_TRIALS}",
                self.search.num_samples,
            )
        if self.population is not None:
            validate_population(self.population, self.search.space, self.trial.epochs, trials, self.search.algorithm)
        levels = len(rungs(self.asha.grace_period, self.asha.reduction_factor, self.trial.epochs))
        if self.asha.brackets > max(levels, 1):
            raise ConfigError(
                "asha.brackets",
                f"at most {max(levels, 1)} with these epochs, grace period and reduction factor (one per rung)",
                self.asha.brackets,
            )
        return self

    @property
    def max_t(self) -> int:
        """The early-stopping horizon, derived: never configured twice."""
        return self.trial.epochs

    @property
    def trial_count(self) -> int:
        return grid_size(self.search.space) * self.search.num_samples
