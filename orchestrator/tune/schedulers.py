"""Early stopping: deterministic successive halving with rung barriers, or Ray's asynchronous ASHA.

    asha: {mode: deterministic, grace_period: 1, reduction_factor: 3}     # the default
    asha: {mode: async, ...}

**deterministic** (`SynchronousHalving`): a trial that reaches a rung waits (Tune pauses it, keeping its
checkpoint) until every trial of its bracket has reached that rung or ended before it. Then the
participants are ranked by validation accuracy (ties: the earlier trial) and the best
max(1, floor(n / reduction_factor)) go on; the rest are stopped. The decision sees complete rungs in a
fixed order, so the same config and seed give the same cuts on every run, and after a driver restart:
the rungs are rebuilt from each trial's recorded results, decisions taken are re-derived identically,
and a trial that was waiting at a rung waits again. A paused trial resumes from its checkpoint exactly
where it stopped (model, optimizer, schedule, RNG), so pausing changes no metric. The price is idle
slots while a rung fills.

**async** (`ResumableASHA`): Ray's ASHA, which decides on whatever results have arrived: no waiting, but
which trials are cut depends on timing. Ray pickles the scheduler before the sweep and does not save its
state after, so after a restart every restored trial replays its recorded results into its bracket first.

Both read a trial's recorded results from the driver's report log (and Ray's `result.json`), through Ray's
storage filesystem.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from orchestrator.config.rungs import rungs as rung_epochs
from orchestrator.location import REPORTS, RESULT_JSON
from orchestrator.records import merge_history, read_jsonl


def recorded_results(trial: Any) -> list[dict[str, Any]]:
    """What the trial reported before the driver stopped, one row per epoch; nothing for a trial that never ran."""
    storage = getattr(trial, "storage", None)
    if storage is None or getattr(storage, "trial_dir_name", None) is None:
        return []
    rows: list[dict[str, Any]] = []
    for name in (RESULT_JSON, REPORTS):
        try:
            with storage.storage_filesystem.open_input_stream(f"{storage.trial_fs_path}/{name}") as f:
                rows += read_jsonl(f.read().decode(errors="replace"))
        except (OSError, ValueError):
            continue
    return merge_history(rows)


def name_trial(trial: Any) -> None:
    """Give a new trial its directory name now: Tune would at its first start, and a sweep interrupted
    before then cannot otherwise list the trial in its results."""
    if getattr(trial.storage, "trial_dir_name", None) is None:
        trial.init_local_path()


class ResumableASHA(ASHAScheduler):
    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        name_trial(trial)
        super().on_trial_add(tune_controller, trial)
        bracket = self._trial_info[trial.trial_id]
        for result in recorded_results(trial):
            if self._time_attr in result and self._metric in result:
                bracket.on_result(trial, result[self._time_attr], self._metric_op * result[self._metric])


def trial_index(trial: Any) -> int:
    """Tune numbers trials in creation order (`<experiment>_00007`); the order every tie is broken by."""
    return int(str(trial.trial_id).rsplit("_", 1)[-1])


class SynchronousHalving(FIFOScheduler):
    def __init__(
        self,
        *,
        metric: str,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        brackets: int,
        total_trials: int,
        max_concurrent: int | None,
    ) -> None:
        super().__init__()
        self._metric, self.time_attr, self.max_t = metric, time_attr, max_t
        self.reduction_factor, self.brackets, self.total_trials = reduction_factor, brackets, total_trials
        self.max_concurrent = max_concurrent
        self.rungs = [
            [r for r in rung_epochs(grace_period, reduction_factor, max_t, b) if r < max_t] for b in range(brackets)
        ]
        self._reset()

    def _reset(self) -> None:
        self.trials: dict[int, Any] = {}  # index -> Trial
        self.values: dict[int, dict[int, float]] = {}  # index -> {rung epoch: metric}
        self.last_epoch: dict[int, int] = {}
        self.ended: set[int] = set()  # completed, errored or stopped
        self.decisions: dict[tuple[int, int], set[int]] = {}  # (bracket, rung) -> indices that go on

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the Tuner before the sweep: the live state is rebuilt from results on a resume.
        state = dict(self.__dict__)
        state.update(trials={}, values={}, last_epoch={}, ended=set(), decisions={})
        return state

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    # ------------------------------------------------------------------ bookkeeping

    def bracket(self, index: int) -> int:
        return index % self.brackets

    def _record(self, index: int, epoch: int, value: Any) -> None:
        self.last_epoch[index] = max(self.last_epoch.get(index, 0), epoch)
        if epoch in self.rungs[self.bracket(index)]:
            number = float(value) if isinstance(value, int | float) else math.nan
            self.values.setdefault(index, {})[epoch] = number if math.isfinite(number) else -math.inf

    def _decide(self) -> None:
        """Take every rung decision whose barrier is complete, lowest rung first."""
        for bracket in range(self.brackets):
            alive = set(range(bracket, self.total_trials, self.brackets))
            for rung in self.rungs[bracket]:
                key = (bracket, rung)
                if key not in self.decisions:
                    arrived = {i for i in alive if rung in self.values.get(i, {})}
                    gone = {i for i in alive - arrived if self._gone(i)}
                    if len(arrived) + len(gone) < len(alive):
                        break  # some trial of the bracket (perhaps not created yet) has still to get here
                    ranked = sorted(arrived, key=lambda i: (-self.values[i][rung], i))
                    keep = max(1, math.floor(len(ranked) / self.reduction_factor)) if ranked else 0
                    self.decisions[key] = set(ranked[:keep])
                alive = self.decisions[key]

    def _verdict(self, index: int) -> str | None:
        """CONTINUE, STOP, or None (waiting) for a trial that has just reported its last epoch."""
        bracket = self.bracket(index)
        epoch = self.last_epoch.get(index, 0)
        if epoch not in self.rungs[bracket]:
            return TrialScheduler.CONTINUE
        decision = self.decisions.get((bracket, epoch))
        if decision is None:
            return None
        return TrialScheduler.CONTINUE if index in decision else TrialScheduler.STOP

    # ------------------------------------------------------------------ Tune's hooks

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        name_trial(trial)
        index = trial_index(trial)
        if index in self.trials:
            # A failed trial Tune retries (already PENDING in Tune's books): it restarts from its checkpoint
            # and reports that epoch again first, so a rung it stood at holds it again.
            return
        self.trials[index] = trial
        for result in recorded_results(trial):
            if self.time_attr in result:
                self._record(index, int(result[self.time_attr]), result.get(self._metric or ""))
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            self.ended.add(index)
            return
        self._decide()
        # Tune starts every PENDING trial by itself; a PAUSED one only when `choose_trial_to_run` picks it.
        # So every trial waits here, new or restored, and this scheduler alone decides what runs when.
        trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        index = trial_index(trial)
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        self._record(index, int(result[self.time_attr]), result.get(self._metric or ""))
        self._decide()
        verdict = self._verdict(index)
        self._settle(tune_controller, exclude=index)
        if verdict is None:
            return TrialScheduler.PAUSE
        if verdict == TrialScheduler.STOP:
            self.ended.add(index)
        return verdict

    def _gone(self, index: int) -> bool:
        trial = self.trials.get(index)
        return index in self.ended or (trial is not None and trial.status in (Trial.TERMINATED, Trial.ERROR))

    def _ended(self, tune_controller: Any, trial: Any) -> None:
        self.ended.add(trial_index(trial))
        self._decide()
        self._settle(tune_controller)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._ended(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        if trial.status == Trial.RUNNING and trial.should_recover():
            return  # Tune retries it from its checkpoint: it has not ended, and a rung must wait for it
        self._ended(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._ended(tune_controller, trial)

    def _settle(self, tune_controller: Any, exclude: int | None = None) -> None:
        """Stop the paused trials a decision cut; the ones it promoted wait for `choose_trial_to_run`.
        (Tune calls `on_trial_remove` from inside `stop_trial`: marking the trial ended first ends the loop.)"""
        for index, trial in sorted(self.trials.items()):
            if (
                index != exclude
                and index not in self.ended
                and trial.status == Trial.PAUSED
                and self._verdict(index) == TrialScheduler.STOP
            ):
                self.ended.add(index)
                tune_controller.stop_trial(trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """The lowest-numbered paused trial that may go on (never started, or promoted), within the cap.
        Decides and settles first: a resume can restore a trial paused at a rung while every other trial is
        restored as ended, and then no result or ending would ever come to cut it (Tune would wait forever)."""
        self._decide()
        self._settle(tune_controller)
        busy = sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in tune_controller.get_trials())
        if busy >= (self.max_concurrent or self.total_trials):
            return None
        for index, trial in sorted(self.trials.items()):
            if trial.status == Trial.PAUSED and self._verdict(index) == TrialScheduler.CONTINUE:
                return trial
        return None

    def debug_string(self) -> str:
        return f"Synchronous successive halving: rungs {self.rungs}, decisions {len(self.decisions)}"
