"""Config and plan: the schema, the YAML reader, the search space, the caps, and the checks that run
before Ray starts. Nothing here imports Ray."""

from orchestrator.config.load import load_config, validate
from orchestrator.config.schema import ExperimentConfig

__all__ = ["ExperimentConfig", "load_config", "validate"]
