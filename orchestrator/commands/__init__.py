"""The commands: parse arguments, hand over to the packages, return an exit code (see `main`)."""
