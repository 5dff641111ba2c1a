"""CLI: parse args, load and validate the config, read the data once, run the sweep, export the best.

    python -m orchestrator.launch configs/parallel.yaml [--set trial.epochs=1 ...] [--dry-run] [--fresh]

Rerunning the same command resumes the experiment at <storage_path>/<name> (same config required);
--fresh starts a new one beside it.

Exit codes: 0 success; 2 a config, data or usage error (one line on stderr, nothing started or
written); 1 the sweep itself failed (no trial produced a usable checkpoint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator import experiment_guard, preflight
from orchestrator.config import ExperimentConfig, load_config
from orchestrator.errors import ConfigError
from orchestrator.gpu_memory import check_gpu_packing
from orchestrator.plan import describe
from trainables.data import Dataset, DatasetNotFoundError, load_fashion_mnist


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.launch", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config value, e.g. --set trial.epochs=1 (repeatable)")
    parser.add_argument("--name", help="experiment name (same as --set name=...)")
    parser.add_argument("--storage-path", help="where experiments live (same as --set storage_path=...)")
    parser.add_argument("--address", help="join this Ray cluster (else RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit without starting Ray")
    parser.add_argument("--fresh", action="store_true",
                        help="start over in a new directory (<name>-2, ...) instead of resuming; the old one is kept")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> ExperimentConfig:
    overrides = list(args.set)
    if args.name is not None:
        overrides.append(f"name={args.name}")
    if args.storage_path is not None:
        overrides.append(f"storage_path={args.storage_path}")
    return load_config(args.config, overrides)


def storage_location(cfg: ExperimentConfig) -> str:
    """Ray wants absolute local paths; URIs pass through untouched."""
    return cfg.storage_path if "://" in cfg.storage_path else str(Path(cfg.storage_path).expanduser().resolve())


def load_dataset(cfg: ExperimentConfig) -> Dataset:
    try:
        return load_fashion_mnist(Path(cfg.data.root), cfg.data.download, cfg.data.val_size, cfg.seed,
                                  cfg.data.train_limit)
    except DatasetNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # unreadable or malformed IDX files
        raise DatasetNotFoundError(f"data.root: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = configure(args)
        check_gpu_packing(cfg)
        if args.dry_run:
            print(describe(cfg))
            return 0
        if not preflight.joins_cluster(cfg, args.address):
            preflight.check_local(cfg)
        dataset = load_dataset(cfg)
        storage = storage_location(cfg)
        if args.fresh:
            cfg = experiment_guard.fresh_name(cfg, storage)
        claim = experiment_guard.claim(cfg, storage)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except DatasetNotFoundError as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    from orchestrator.sweep import run_sweep  # imports Ray: only once the config is known to be good

    with claim:
        try:
            return run_sweep(cfg, dataset, storage, args.address)
        except ConfigError as exc:  # the joined cluster cannot place a trial: refused before the Tuner
            claim.abandon()
            print(f"config error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
