"""Outputs: the exported best model, the Parquet tables and leaderboard, status.json, and reading them back."""
