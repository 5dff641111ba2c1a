"""The composition root of a sweep: Ray up, Tune run, then selection and outputs."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator import board, preflight, tuning
from orchestrator.config import ExperimentConfig
from orchestrator.experiment import HISTORY_FILE, history_rows
from orchestrator.plan import describe
from orchestrator.selection import RESULTS_FILE, export_best, leaderboard, rank, trial_rows, write_table
from trainables.data import Dataset


def run_sweep(cfg: ExperimentConfig, dataset: Dataset, storage: str, address: str | None) -> int:
    print(describe(cfg), flush=True)
    print(f"data: {dataset.source} (train {len(dataset.train)}, val {len(dataset.val)}, test {len(dataset.test)})",
          flush=True)
    tuning.start_ray(cfg, address)
    if preflight.joins_cluster(cfg, address):
        preflight.check_cluster(cfg, tuning.cluster_nodes())
    experiment_dir = Path(storage) / cfg.name
    review = not tuning.is_uri(storage)  # the driver's TensorBoard records need a local directory
    if review:
        board.start(cfg, experiment_dir)
    outcomes, resumed = tuning.run(cfg, dataset, storage)
    if resumed:
        print(f"resumed the experiment at {storage}/{cfg.name}")
    metric = cfg.selection.metric
    rows = trial_rows(outcomes, metric)
    write_table(rows, experiment_dir / RESULTS_FILE)
    write_table(history_rows(outcomes), experiment_dir / HISTORY_FILE)
    for row in rows:
        if row["error"]:  # retries exhausted: the rest of the sweep still counts
            print(f"failed: {row['trial_name']} after {row['epochs_run']} epochs: {row['error']}", file=sys.stderr)
    ranked = rank(outcomes, metric)
    if not ranked:
        if review:
            board.finish(cfg, experiment_dir, outcomes, rows, None)
        print(f"sweep failed: no trial left a checkpoint with a finite {metric}; see {experiment_dir}",
              file=sys.stderr)
        return 1
    with tuning.local_checkpoint(ranked[0].checkpoint) as directory:
        manifest = export_best(ranked[0], directory, experiment_dir, metric)
    if review:
        board.finish(cfg, experiment_dir, outcomes, rows, manifest)
    print("\nleaderboard (best checkpoint of each trial):")
    print(leaderboard(rows, metric))
    print(f"\nbest: {manifest['trial_name']} epoch {manifest['epoch']}: test_accuracy "
          f"{manifest['test_accuracy']:.4f}, val_accuracy {manifest['val_accuracy']:.4f}")
    print(f"exported: {experiment_dir / 'best'}\nresults:  {experiment_dir / RESULTS_FILE}, {HISTORY_FILE}")
    print(f"review:   tensorboard --logdir {experiment_dir} --host 127.0.0.1\n"
          f"          python -m orchestrator.report {experiment_dir}\n"
          f"          python -m orchestrator.evaluate {experiment_dir / 'best'}")
    return 0
