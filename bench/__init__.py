"""The throughput benchmark and its baselines, outside the product package: `python -m orchestrator bench`."""
