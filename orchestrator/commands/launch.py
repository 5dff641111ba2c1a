"""`launch`: validate the config, read the data once, claim the experiment, run the sweep, export the best.

    python -m orchestrator launch configs/parallel.yaml [--set trial.epochs=1 ...] [--dry-run] [--fresh]

Rerunning the same command resumes the experiment at <storage_path>/<name> (same config required);
--fresh starts a new one beside it; --retry-errored also reruns trials that failed past their retries.
Every refusal comes before Ray starts: one line naming the field, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from orchestrator import claim as claims
from orchestrator import isolated
from orchestrator.config import ExperimentConfig, load_config
from orchestrator.config.plan import describe
from orchestrator.config.resources import check_address, check_local, resolve_address
from orchestrator.errors import ConfigError
from orchestrator.location import Location
from trainables.data import DataError, Dataset
from trainables.data_sources import load_dataset

EXAMPLES = """\
examples:
  python -m orchestrator launch configs/smoke.yaml                  # run, or resume runs/smoke
  python -m orchestrator launch configs/smoke.yaml --dry-run        # the plan; nothing starts
  python -m orchestrator launch configs/smoke.yaml --set trial.epochs=1 --name quick
  python -m orchestrator launch configs/smoke.yaml --storage-path s3://bucket/sweeps

exit codes:
  0    the sweep finished and best/ was exported
  1    the sweep ran but no trial left a usable checkpoint
  2    a config, data or usage error (one line on stderr; nothing started or written)
  75   the storage failed (the disk is full, or the store stopped answering for longer than
       ORCHESTRATOR_STORE_PATIENCE_S, default 300 s): the sweep stopped as an interrupt stops it; make
       room (or wait for the store), then rerun the same command to resume
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM: rerun the same command to resume
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config value, e.g. --set trial.epochs=1 (repeatable)",
    )
    parser.add_argument("--name", help="experiment name (same as --set name=...)")
    parser.add_argument("--storage-path", help="where experiments live: a directory or an s3:// gs:// file:// URI")
    parser.add_argument(
        "--address", help="join this Ray cluster (else ray.address, else RAY_ADDRESS, else a private local Ray)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit without starting Ray")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over in a new experiment (<name>-2, ...) instead of resuming; the old one is kept",
    )
    parser.add_argument(
        "--retry-errored",
        action="store_true",
        help="on a resume, also rerun trials that failed past their retries (from their checkpoints)",
    )


def configure(args: argparse.Namespace) -> ExperimentConfig:
    overrides = list(args.set)
    # Plain text, not YAML: a JSON string is a YAML double-quoted scalar, so `--name $'x\n'` stays "x\n"
    # (and is refused) instead of being read as YAML and trimmed to "x".
    if args.name is not None:
        overrides.append(f"name={json.dumps(args.name)}")
    if args.storage_path is not None:
        overrides.append(f"storage_path={json.dumps(args.storage_path)}")
    return load_config(args.config, overrides)


def prepare(args: argparse.Namespace) -> tuple[ExperimentConfig, Location, str | None, Dataset] | int:
    """Everything that can refuse the launch, in order; nothing written. An int is the exit code.
    A dry run checks the config against the data too, but not against this machine or cluster: the plan
    may be for elsewhere."""
    cfg = configure(args)
    location = Location.parse(cfg.storage_path, cfg.name)
    address = None
    if not args.dry_run:
        address = resolve_address(args.address, cfg)
        if address:
            check_address(address)
        else:
            check_local(cfg)
        location.check_reachable()
        if cfg.tracking.mlflow is not None:
            from orchestrator.review.tracking_values import check_reachable  # the tracking server answers before Ray

            check_reachable(cfg)
    dataset = load_dataset(cfg.data, cfg.seed)
    warning = isolated.call(model_checks, cfg, dataset, location.local_dir, args.dry_run)
    if args.dry_run:
        print(describe(cfg, location.display))
        print(data_line(dataset))
        return 0
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    return cfg, location, address, dataset


def model_checks(cfg: ExperimentConfig, dataset: Dataset, directory: Path | None, dry_run: bool) -> str | None:
    """The checks that build models, so need torch (run in a child: orchestrator.isolated): every trial's
    model on the data, the GPU packing, then (for a real launch) the disk space warning, if any."""
    from orchestrator.config.data_fit import check_fits
    from orchestrator.config.disk_space import space_warning
    from orchestrator.config.gpu_memory import check_gpu_packing

    check_fits(cfg, dataset)
    check_gpu_packing(cfg, dataset.input_shape, dataset.num_classes, dataset.nbytes)
    return None if dry_run else space_warning(cfg, directory, dataset.input_shape, dataset.num_classes)


def data_line(dataset: Dataset) -> str:
    return (
        f"data: {dataset.source} (train {len(dataset.train)}, val {len(dataset.val)}, test {len(dataset.test)}, "
        f"input {list(dataset.input_shape)}, {dataset.num_classes} classes, {dataset.nbytes / 2**20:.0f} MiB "
        "resident per trial)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        prepared = prepare(args)
        if isinstance(prepared, int):
            return prepared
        cfg, location, address, dataset = prepared
        if args.fresh:
            location = claims.fresh(location)
            cfg = cfg.model_copy(update={"name": location.name})
        os.umask(os.umask(0) | 0o022)  # nothing this launch (or Ray) creates is writable by other users
        claim = claims.claim(cfg, location)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    from orchestrator.sweep import run_sweep  # imports Ray: only once the launch is known to be good

    with claim:
        return run_sweep(
            cfg,
            dataset,
            location,
            claim,
            address,
            describe(cfg, location.display),
            data_line(dataset),
            retry_errored=args.retry_errored,
        )
