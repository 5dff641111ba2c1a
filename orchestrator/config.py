"""The experiment schema and every validation rule; the only module that reads YAML.

    python -m orchestrator.launch configs/smoke.yaml --dry-run

A config is refused before Ray starts, with one line naming the field: unknown keys (with the closest
valid one), wrong types, out-of-range values, search-space entries that cannot apply. Each value
exists once: ASHA's max_t *is* `trial.epochs`; metric names come from `trainables.metrics`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import ConfigError
from orchestrator.search import validate_algorithm, validate_space
from trainables import metrics
from trainables.accel import RuntimeConfig
from trainables.recipe import TrialConfig

TRAIN_SET_SIZE = 60_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Strict):
    root: str = Field(default="./data", description="directory searched first for the IDX files")
    download: bool = Field(default=False, description="download with torchvision when not found")
    val_size: int = Field(default=10_000, ge=1, le=TRAIN_SET_SIZE - 1,
                          description="validation samples carved from the 60k training set")
    train_limit: int | None = Field(default=None, ge=1, description="train on the first N samples of the "
                                    "training split only (quick looks and tests); none = all")


class SearchConfig(Strict):
    algorithm: Literal["random", "optuna"] = Field(
        default="random", description="random: grid points x random samples; optuna: TPE (seeded by `seed`)")
    num_samples: int = Field(default=1, ge=1, description="samples of the space (times every grid point)")
    max_concurrent_trials: int | None = Field(default=None, ge=1, description="cap on trials running at once; "
                                              "also how many trials the searcher proposes ahead of results")
    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="dotted trial field -> {grid|choice|uniform|loguniform|randint|quniform: ...}"
    )


class ResourcesConfig(Strict):
    cpu: float = Field(default=1.0, gt=0, description="CPUs per trial; also its torch threads")
    gpu: float | Literal["auto"] = Field(
        default=0.0, description="GPUs per trial (fractions pack trials on one GPU); 'auto' = "
        "1/trials_per_gpu when the cluster has GPUs, else CPU only")
    trials_per_gpu: int = Field(default=8, ge=1, description="trials sharing one GPU when gpu is 'auto'")
    autoscaling: bool = Field(default=False, description="the joined cluster adds nodes on demand: allow a "
                              "trial bigger than every node now alive")

    @field_validator("gpu")
    @classmethod
    def _non_negative(cls, gpu: float | str) -> float | str:
        if isinstance(gpu, float) and gpu < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return gpu

    def gpus_per_trial(self, cluster_gpus: float) -> float:
        """The GPU share a trial asks Ray for, once the cluster's GPU count is known."""
        if self.gpu == "auto":
            return 1 / self.trials_per_gpu if cluster_gpus > 0 else 0.0
        return float(self.gpu)


class AshaConfig(Strict):
    grace_period: int = Field(default=1, ge=1, description="epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(default=2.0, gt=1, description="1/reduction_factor of trials survive a rung")
    brackets: int = Field(default=1, ge=1, description="ASHA brackets (hyperband-style aggressiveness levels)")


class SelectionConfig(Strict):
    metric: Literal["test_accuracy", "val_accuracy"] = Field(
        default=metrics.TEST_ACCURACY, description="score that ranks every reported checkpoint for best/"
    )
    keep_checkpoints: int = Field(default=2, ge=1,
                                  description="checkpoints kept per trial: the best by `metric`, plus the latest")


class FailureConfig(Strict):
    max_retries: int = Field(default=2, ge=0, description="restarts of a failed trial from its last checkpoint")


class TensorBoardConfig(Strict):
    histogram_every: int = Field(default=1, ge=0, description="epochs between per-layer weight histograms "
                                 "(also written at epoch 0); 0 = none")


class RayConfig(Strict):
    address: str | None = Field(default=None, description="existing cluster to join; none = local Ray")
    dashboard: bool = Field(default=False, description="start the dashboard (bound to 127.0.0.1) locally")


class ExperimentConfig(Strict):
    name: str = Field(description="experiment directory name under storage_path")
    storage_path: str = Field(default="./runs", description="local path, shared mount or URI for results")
    seed: int = Field(default=0, ge=0, description="seeds the validation split and the search")
    data: DataConfig = DataConfig()
    trial: TrialConfig = TrialConfig()
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    asha: AshaConfig = AshaConfig()
    selection: SelectionConfig = SelectionConfig()
    failure: FailureConfig = FailureConfig()
    tensorboard: TensorBoardConfig = TensorBoardConfig()
    ray: RayConfig = RayConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME.match(name) or ".." in name:
            raise ValueError("must be a plain directory name: letters, digits, '.', '_', '-', no '/' or '..'")
        return name

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        if self.asha.grace_period > self.trial.epochs:
            raise ConfigError("asha.grace_period", f"must not exceed trial.epochs ({self.trial.epochs})",
                              self.asha.grace_period)
        train_size = TRAIN_SET_SIZE - self.data.val_size
        if self.trial.batch_size > train_size:
            raise ConfigError("trial.batch_size", f"larger than the training split ({train_size})",
                              self.trial.batch_size)
        validate_space(self.search.space, self.trial.model_dump(mode="json"), train_size)
        validate_algorithm(self.search.algorithm, self.search.space)
        return self

    @property
    def max_t(self) -> int:
        """ASHA's horizon, derived: never configured twice."""
        return self.trial.epochs

    @property
    def experiment_dir(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read YAML (safe_load only), apply `--set key=value` overrides, validate. Raises ConfigError."""
    raw = read_yaml(Path(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", "expected dotted.key=value", item)
        set_dotted(raw, key.strip(), _parse_value(key, text))
    return validate(raw)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "cannot read config file: not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "the config must be a YAML mapping of sections", type(raw).__name__)
    return raw


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        return ConfigError(where, f"YAML tags are not allowed ({problem}); write plain values")
    return ConfigError(where, f"YAML syntax error: {problem}")


def _parse_value(key: str, text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}", "value is not valid YAML", text) from None


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
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise _to_config_error(exc) from None


def _to_config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    loc = [str(part) for part in error["loc"]]
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
    return ConfigError(field, message, error.get("input"))


def _valid_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    for part in path:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
