"""Population-based training on Tune: a synchronous barrier at every interval, decisions written to disk.

    population: {interval: 2, fraction: 0.25, mutate: [lr]}      # instead of asha:

Every member pauses at each interval epoch (Tune keeps its checkpoint) until every live member has
reported that epoch, or diverged before it. Then `orchestrator.population.decide` ranks them and picks,
for each member of the bottom fraction (and each one that diverged), a parent and new knob values; the
decisions go to `population/epoch_<E>.json` in the experiment, once, before any member moves on. A copy
is then restarted by Tune from its own checkpoint, and the trial itself (`trainables.exploit`) reads its
decision and loads its parent's checkpoint of that epoch (weights, optimizer state, schedule position)
with the new values. The decisions live on disk, not in Tune's experiment state, so a driver killed at
any moment rebuilds them on a rerun: a decision file that exists is read back, a missing one is derived
again from the recorded results, which give the same decision. This is Ray's own exploit mechanism
(pause, then restore from another trial's checkpoint) without its unsaved scheduler state, its
arrival-order randomness and its unbounded perturbations.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.config.schema import ExperimentConfig
from orchestrator.location import Location
from orchestrator.population import Exploit, Rules, decide, initial_knobs
from orchestrator.tune.callbacks import plain
from orchestrator.tune.schedulers import name_trial, recorded_results, trial_index
from trainables import metrics as m
from trainables.checkpoint import CHECKPOINT_FILE
from trainables.exploit import DECISIONS, decision_file, interval_epochs, parent_file, target_epoch

CHECKPOINT_DIR = "checkpoint_dir_name"  # Ray's key, in a result, for the checkpoint it came with


class PopulationScheduler(FIFOScheduler):
    def __init__(self, *, rules: Rules, interval: int, epochs: int, members: int, max_concurrent: int | None) -> None:
        super().__init__()
        self.rules, self.interval, self.epochs, self.members = rules, interval, epochs, members
        self.max_concurrent = max_concurrent
        self.intervals = interval_epochs(interval, epochs)
        self._reset()

    def _reset(self) -> None:
        self.trials: dict[int, Any] = {}
        self.scores: dict[int, dict[int, float]] = {}  # member -> {interval epoch: score}
        self.checkpoints: dict[int, dict[int, str]] = {}  # member -> {interval epoch: checkpoint dir}
        self.waiting: dict[int, int] = {}  # member -> the interval epoch it waits at
        self.ended: set[int] = set()
        self.decisions: dict[int, dict[int, Exploit]] = {}  # interval epoch -> {member: exploit}
        self.knobs: dict[int, dict[str, Any]] = {}
        self.generations: dict[int, int] = {}
        self.on_disk: dict[int, dict[int, Exploit]] | None = None  # decisions an earlier run wrote, read once

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)  # pickled with the Tuner: the live state is rebuilt from disk on a resume
        state.update(trials={}, scores={}, checkpoints={}, waiting={}, ended=set(), decisions={}, knobs={},
                     generations={}, on_disk=None)  # fmt: skip
        return state

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    # ------------------------------------------------------------------ bookkeeping

    def _record(self, index: int, result: dict[str, Any]) -> None:
        epoch = int(result[m.EPOCH])
        value = result.get(m.ASHA_METRIC)
        diverged = bool(result.get(m.DIVERGED)) or not m.finite(value)
        at = target_epoch(epoch, self.interval, self.epochs) if diverged else epoch
        self.waiting.pop(index, None)
        if at is None or at not in self.intervals:
            return
        self.scores.setdefault(index, {})[at] = -math.inf if diverged else float(value)  # type: ignore[arg-type]
        if not diverged and result.get(CHECKPOINT_DIR):
            self.checkpoints.setdefault(index, {})[at] = str(result[CHECKPOINT_DIR])
        self.waiting[index] = at

    def _decide(self) -> None:
        """Every interval whose barrier is complete, in order; each decided once and kept on disk."""
        if not self.trials:
            return
        if self.on_disk is None:  # once per driver: not a storage read per event
            self.on_disk = {e: d for e in self.intervals if (d := self._read(e)) is not None}
        for epoch in self.intervals:
            if epoch in self.decisions:
                continue
            stored = self.on_disk.get(epoch)
            if stored is None:
                live = [i for i in range(self.members) if i not in self.ended]  # an errored member is never copied
                if any(epoch not in self.scores.get(i, {}) for i in live):
                    return  # a member (perhaps not created yet) has still to get here
                scores = {i: self.scores[i][epoch] for i in live}
                knobs = {i: self._knobs(i) for i in live}
                stored = decide(epoch, scores, knobs, self.generations, self.rules)
                stored = {i: self._with_checkpoint(e) for i, e in stored.items()}
                self._write(epoch, stored)
            self.decisions[epoch] = stored
            for member, exploit in stored.items():
                self.knobs[member] = dict(exploit.values)
                self.generations[member] = exploit.generation

    def _knobs(self, index: int) -> dict[str, Any]:
        if index not in self.knobs:
            self.knobs[index] = initial_knobs(plain(self.trials[index].config or {}), self.rules.mutate)
        return self.knobs[index]

    def _with_checkpoint(self, exploit: Exploit) -> Exploit:
        trial = self.trials[exploit.parent]
        directory = self.checkpoints.get(exploit.parent, {}).get(exploit.epoch)
        if directory is None:
            # Its report of this epoch came back only as a restored trial's replay (no checkpoint named): the
            # parent waits here, so Tune's latest checkpoint of it is the one of this epoch.
            latest = getattr(trial, "checkpoint", None)
            if latest is None:
                raise RuntimeError(f"no checkpoint of member {exploit.parent} at epoch {exploit.epoch} to copy")
            directory = str(latest.path).rstrip("/").rsplit("/", 1)[-1]
        path = f"{trial.storage.trial_dir_name}/{directory}"
        return Exploit(**{**exploit.to_json(), "checkpoint": path})

    def _storage(self) -> Any:
        return next(iter(self.trials.values())).storage

    def _read(self, epoch: int) -> dict[int, Exploit] | None:
        storage = self._storage()
        try:
            with storage.storage_filesystem.open_input_stream(
                f"{storage.experiment_fs_path}/{decision_file(epoch)}"
            ) as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return {int(k): Exploit.from_json(v) for k, v in data["exploits"].items()}

    def _write(self, epoch: int, decisions: dict[int, Exploit]) -> None:
        storage = self._storage()
        fs, root = storage.storage_filesystem, f"{storage.experiment_fs_path}/{DECISIONS}"
        fs.create_dir(root, recursive=True)
        # The parents' checkpoints first, then the decision that names them: a decision on disk has its copies.
        base = storage.experiment_fs_path
        for exploit in decisions.values():
            kept = f"{base}/{parent_file(epoch, exploit.parent)}"
            fs.create_dir(kept.rsplit("/", 1)[0], recursive=True)
            fs.copy_file(f"{base}/{exploit.checkpoint}/{CHECKPOINT_FILE}", f"{kept}.tmp")
            fs.move(f"{kept}.tmp", kept)
        payload = {
            "epoch": epoch,
            "seed": self.rules.seed,
            "exploits": {str(k): e.to_json() for k, e in decisions.items()},
        }
        temporary = f"{storage.experiment_fs_path}/{decision_file(epoch)}.tmp"
        with fs.open_output_stream(temporary) as f:
            f.write(json.dumps(payload, indent=2, sort_keys=True).encode())
        fs.move(temporary, f"{storage.experiment_fs_path}/{decision_file(epoch)}")

    def _verdict(self, index: int) -> str | None:
        """CONTINUE, PAUSE (go on after a restart: the copy happens there) or None (waiting)."""
        if index not in self.waiting:
            return TrialScheduler.CONTINUE
        decision = self.decisions.get(self.waiting[index])
        if decision is None:
            return None
        return TrialScheduler.PAUSE if index in decision else TrialScheduler.CONTINUE

    # ------------------------------------------------------------------ Tune's hooks

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        name_trial(trial)
        index = trial_index(trial)
        if index in self.trials:
            return  # a failed trial Tune retries from its checkpoint
        self.trials[index] = trial
        for row in recorded_results(trial):
            if m.EPOCH in row:
                self._record(index, row)
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            self.ended.add(index)
            return
        self._decide()
        trial.set_status(Trial.PAUSED)  # this scheduler alone decides what runs when

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        index = trial_index(trial)
        if m.EPOCH not in result:
            return TrialScheduler.CONTINUE
        self._record(index, result)
        if result.get(m.DIVERGED) and index not in self.waiting:
            self.ended.add(index)  # diverged after the last interval: nothing left to copy into it
            self._decide()
            return TrialScheduler.STOP
        self._decide()
        verdict = self._verdict(index)
        if verdict is not None and result.get(m.REPLAYED):
            # The epoch a restarted trial restored, sent again: a copy has already been made at its start.
            verdict = TrialScheduler.CONTINUE
        if verdict == TrialScheduler.CONTINUE:
            self.waiting.pop(index, None)
        return TrialScheduler.PAUSE if verdict is None else verdict

    def _ended(self, trial: Any) -> None:
        self.ended.add(trial_index(trial))
        self._decide()

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._ended(trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        if trial.status == Trial.RUNNING and trial.should_recover():
            return  # Tune retries it from its checkpoint
        self._ended(trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._ended(trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """The lowest-numbered paused member that may go on, within the cap."""
        self._decide()
        busy = sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in tune_controller.get_trials())
        if busy >= (self.max_concurrent or self.members):
            return None
        for index, trial in sorted(self.trials.items()):
            if trial.status == Trial.PAUSED and index not in self.ended and self._verdict(index) is not None:
                self.waiting.pop(index, None)
                return trial
        return None

    def debug_string(self) -> str:
        return f"Population: intervals {self.intervals}, decisions {len(self.decisions)}"


def scheduler(cfg: ExperimentConfig) -> PopulationScheduler:
    if cfg.population is None:
        raise ValueError("not a population sweep")
    return PopulationScheduler(
        rules=Rules.of(cfg.population, cfg.search.space, cfg.seed),
        interval=cfg.population.interval,
        epochs=cfg.trial.epochs,
        members=cfg.trial_count,
        max_concurrent=cfg.search.max_concurrent_trials,
    )


def trial_settings(cfg: ExperimentConfig, location: Location) -> dict[str, Any] | None:
    """What each member needs to find the decisions and its parents' checkpoints (trainables.exploit)."""
    if cfg.population is None:
        return None
    return {"root": f"{location.storage}/{location.name}", "interval": cfg.population.interval,
            "epochs": cfg.trial.epochs, "mutate": list(cfg.population.mutate)}  # fmt: skip
