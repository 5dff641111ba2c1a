"""`pull`: copy an experiment from an object store to a local directory, for TensorBoard or a backup.

    python -m orchestrator pull s3://bucket/sweeps/smoke ./smoke-copy
    tensorboard --logdir ./smoke-copy --host 127.0.0.1

TensorBoard reads local directories; `report` and `evaluate` read the store directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.fs as pafs

from orchestrator.errors import ConfigError
from orchestrator.location import RECORD, split_experiment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="the experiment's URI (storage_path/name)")
    parser.add_argument("destination", help="a local directory (created; must not exist yet)")


def run(args: argparse.Namespace) -> int:
    try:
        location = split_experiment(args.experiment)
        if not location.is_file(RECORD):
            raise ConfigError(args.experiment, "not an experiment (no experiment.json)")
        destination = Path(args.destination).expanduser()
        if str(destination).startswith("~"):  # expanduser leaves ~name alone when there is no such user
            raise ConfigError(args.destination, "unknown user in ~ (no such home directory)")
        if destination.exists():
            raise ConfigError(str(destination), "already exists; name a new directory")
    except ConfigError as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    destination.mkdir(parents=True)
    pafs.copy_files(
        location.path,
        str(destination.resolve()),
        source_filesystem=location.fs,
        destination_filesystem=pafs.LocalFileSystem(),
    )
    print(f"copied {location.display} -> {destination}")
    return 0
