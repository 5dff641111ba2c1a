"""The driver side of the orchestrator: config and plan, the Tune adapter, records and outputs, review,
and the commands (`python -m orchestrator COMMAND`). See ARCHITECTURE.md for the map."""
