"""The composition root of a sweep: Ray up, Tune run, then selection, outputs and review.

    code = run_sweep(cfg, dataset, location, claim, address, retry_errored=False)

Everything on the driver side meets here once, in order: the observers (progress, TensorBoard, the
status record, MLflow) watch the plain trial records the Tune adapter produces; when the sweep has
finished, every kept checkpoint is ranked, the best exported and the tables written. An interrupted
sweep writes none of that: it says how far it got and exits 130 (SIGINT) or 143 (SIGTERM), resumable.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator import claim as claims
from orchestrator import storage_guard, versions
from orchestrator.config.resources import check_cluster
from orchestrator.config.schema import ExperimentConfig
from orchestrator.errors import STORAGE_EXIT, ConfigError
from orchestrator.location import Location
from orchestrator.outputs import constraints as constraint_rules
from orchestrator.outputs import pareto
from orchestrator.outputs.export import export_best
from orchestrator.outputs.retention import SETTLE_S, SETTLE_SNAPSHOTS, CheckpointRetention
from orchestrator.outputs.status import FAILED, FINISHED, StatusWriter
from orchestrator.outputs.tables import leaderboard, write_tables
from orchestrator.records import Observer, Observers, TrialRecord, rank_checkpoints
from orchestrator.review.progress import Progress
from orchestrator.review.tensorboard import DriverBoard
from orchestrator.tune import cluster, tuner
from trainables.data import Dataset
from trainables.exploit import interval_epochs

if TYPE_CHECKING:
    from orchestrator.review.tracking import MlflowTracker


@dataclass
class Watchers:
    """The observers of a sweep; the ones the outputs step speaks to again are named."""

    status: StatusWriter
    board: DriverBoard
    retention: CheckpointRetention
    tracker: MlflowTracker | None
    all: list[Observer]


def _watchers(cfg: ExperimentConfig, location: Location, plan: str) -> Watchers:
    status, board = StatusWriter(location), DriverBoard(cfg, location, plan)
    population = cfg.population
    pinned = frozenset(interval_epochs(population.interval, cfg.trial.epochs)) if population else frozenset()
    settle = max(SETTLE_S, SETTLE_SNAPSHOTS * tuner.snapshot_period(cfg.trial_count))
    retention = CheckpointRetention(
        location, cfg.selection.metric, cfg.selection.keep_checkpoints, pinned=pinned, settle_s=settle
    )
    observers: list[Observer] = [Progress(cfg), status, board, retention]
    tracker = None
    if cfg.tracking.mlflow is not None:
        from orchestrator.review.tracking import MlflowTracker  # optional dependency

        tracker = MlflowTracker(cfg, location)
        observers.append(tracker)
    return Watchers(status, board, retention, tracker, observers)


def run_sweep(
    cfg: ExperimentConfig,
    dataset: Dataset,
    location: Location,
    claim: claims.Claim,
    address: str | None,
    plan: str,
    data_line: str,
    retry_errored: bool = False,
) -> int:
    print(plan, flush=True)
    print(data_line, flush=True)
    try:
        cluster.start(address, cfg.ray.dashboard, on_timeout=claim.abandon)
    except Exception as exc:  # noqa: BLE001 - Ray's many ways to fail to start; one line, and nothing kept
        claim.abandon()
        print(
            f"error: Ray did not start: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}", file=sys.stderr
        )
        return 1
    # Installed after Ray's start (which sets its own SIGTERM handler) and kept through the outputs.
    with tuner.Interrupt() as interrupt:
        try:
            if address:
                try:
                    check_cluster(cfg, cluster.nodes())
                except ConfigError as exc:  # the joined cluster cannot place a trial: refused before the Tuner
                    claim.abandon()
                    print(f"config error: {exc}", file=sys.stderr)
                    return 2
            elif (session := cluster.session_dir()) is not None:
                claim.note_session(session)
            watchers = _watchers(cfg, location, plan)
            try:
                run = tuner.run(cfg, dataset, location, Observers(watchers.all), retry_errored, interrupt)
            except tuner.ShrunkError as exc:
                print(f"resume error: {exc}", file=sys.stderr)
                return 1
            except OSError as exc:  # before Tune's loop (restoring from a store that stayed down)
                if (fault := storage_guard.as_fault(exc)) is None:
                    raise
                return _stopped_by(fault, None, cfg)
        finally:
            cluster.stop()
        if run.resumed:
            print(f"resumed the experiment at {location.display}")
        if run.interrupted is not None:
            finished = sum(record.ended for record in run.records)
            print(
                f"interrupted: {finished} of {cfg.trial_count} trials finished; rerun the same command to resume",
                file=sys.stderr,
                flush=True,
            )
            return 128 + run.interrupted
        if run.fault is not None:
            return _stopped_by(run.fault, run.records, cfg)
        if len(run.records) < cfg.trial_count:  # a damaged or old experiment state: never a subset as the answer
            print(
                f"resume error: the experiment state at {location.display} knows {len(run.records)} of the "
                f"{cfg.trial_count} trials the config plans (damaged or from an older run); nothing was exported. "
                "Start over beside it with --fresh",
                file=sys.stderr,
            )
            return 1
        try:
            return _outputs(cfg, run.records, location, watchers, dataset)
        except OSError as exc:
            if (fault := storage_guard.as_fault(exc)) is None:
                raise
            return _stopped_by(fault, run.records, cfg)


def _stopped_by(fault: storage_guard.StorageFault, records: list[TrialRecord] | None, cfg: ExperimentConfig) -> int:
    """A full disk or a store that stayed down: stopped like an interrupt, resumable, one line."""
    how_far = ""
    if records is not None:
        how_far = f" with {sum(record.ended for record in records)} of {cfg.trial_count} trials finished"
    fix = "make room" if fault.kind == "full" else "once the store answers again"
    print(
        f"storage error: {fault.line()}; the sweep stopped{how_far} and stays resumable: {fix}, then rerun the "
        "same command",
        file=sys.stderr,
        flush=True,
    )
    return STORAGE_EXIT


def _outputs(
    cfg: ExperimentConfig, records: list[TrialRecord], location: Location, watchers: Watchers, dataset: Dataset
) -> int:
    metric, constraints = cfg.selection.metric, cfg.selection.constraints
    feasible = {record.name: constraint_rules.meets(record, constraints) for record in records}
    plain = [record.row(metric) for record in records]
    on_front = pareto.front(plain, pareto.objectives(cfg.model_dump(mode="json")))
    extra = {
        r.name: {"meets_constraints": feasible[r.name], "pareto": f} for r, f in zip(records, on_front, strict=True)
    }
    rows = write_tables(records, location, metric, extra)
    for record in records:
        if record.error:  # retries exhausted: the rest of the sweep still counts
            print(f"failed: {record.name} after {record.epochs_run} epochs: {record.error}", file=sys.stderr)
    usable = rank_checkpoints(records, metric)
    ranked = rank_checkpoints([record for record in records if feasible[record.name]], metric)
    watchers.retention.finish(records)  # the kept checkpoints include every one `ranked` can choose
    if not ranked:
        watchers.board.finish(rows, None)
        if watchers.tracker is not None:
            watchers.tracker.finish(None)
        watchers.status.finish(FAILED)
        if usable:  # checkpoints there are, but none within the budgets
            print(f"sweep failed: {constraint_rules.closest_miss(records, constraints)}", file=sys.stderr)
        else:
            print(
                f"sweep failed: no trial left a checkpoint with a finite {metric}; see {location.display}",
                file=sys.stderr,
            )
        return 1
    best, ref = ranked[0]
    manifest = export_best(best, ref, location, _context(cfg), dataset.test, cfg.export.formats)
    watchers.board.finish(rows, manifest)
    if watchers.tracker is not None:  # after the export: best/ goes to the sweep's MLflow run
        watchers.tracker.finish(manifest)
    watchers.status.finish(FINISHED)
    _print_summary(rows, manifest, location, metric)
    return 0


def _context(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a rerun needs to repeat the result, and what a reader needs to use it."""
    record = claims.fingerprint(cfg)
    return {
        "selection_metric": cfg.selection.metric,
        "constraints": {key: limit for key, (_, limit) in cfg.selection.constraints.limits().items()},
        "config_sha256": record["sha256"],
        "seed": cfg.seed,
        "early_stopping": cfg.asha.mode,
        "data": cfg.data.model_dump(mode="json"),
        "versions": versions.libraries(),
    }


def _print_summary(rows: list[dict[str, Any]], manifest: dict[str, Any], location: Location, metric: str) -> None:
    print("\nleaderboard (best checkpoint of each trial):")
    print(leaderboard(rows, metric))
    print(
        f"\nbest: {manifest['trial_name']} epoch {manifest['epoch']}: test_accuracy "
        f"{manifest['test_accuracy']:.4f}, val_accuracy {manifest['val_accuracy']:.4f}"
    )
    print(f"exported: {location.uri('best')}\nresults:  {location.uri('results.parquet')}, history.parquet")
    review = (
        location.display if location.is_local else f"<local copy> (python -m orchestrator pull {location.display} DIR)"
    )
    print(
        f"review:   tensorboard --logdir {review} --host 127.0.0.1\n"
        f"          python -m orchestrator report {location.display}\n"
        f"          python -m orchestrator evaluate {location.uri('best')}"
    )
