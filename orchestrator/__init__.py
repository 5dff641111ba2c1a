"""Sweep orchestration: CLI, config schema, Tune wiring, checkpoint selection and export."""
