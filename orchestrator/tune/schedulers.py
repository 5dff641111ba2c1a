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

import heapq
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
    """Work per event does not grow with the sweep: each bracket keeps the trials its next rung still waits
    for (a decision is taken when that set empties), the trials that may run next in a heap, and the few
    that are running or being paused in a small set; nothing scans every trial. `max_pending` caps both the
    trials staged to start (each one a placement-group request) and the trials created ahead of a free slot
    (the searcher is paced: Tune would otherwise create every trial of the sweep at its first step)."""

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
        max_pending: int = 8,
    ) -> None:
        super().__init__()
        self._metric, self.time_attr, self.max_t = metric, time_attr, max_t
        self.reduction_factor, self.brackets, self.total_trials = reduction_factor, brackets, total_trials
        self.max_concurrent, self.max_pending = max_concurrent, max_pending
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
        # Per bracket: the position of its first undecided rung, and the trials that rung still waits for
        # (neither arrived nor ended; a trial not created yet counts as waited for).
        self._front = {b: 0 for b in range(self.brackets)}
        self._waiting = {b: set(range(b, self.total_trials, self.brackets)) for b in range(self.brackets)}
        self._runnable: list[int] = []  # heap of indices that may go on (checked when popped)
        self._to_cut: set[int] = set()  # indices a decision cut, stopped once Tune has paused them
        self._busy: set[int] = set()  # indices chosen to run: running, staged, or being paused
        self._fresh: set[int] = set()  # created, never chosen to run: how far creation runs ahead
        self._searcher: Any = None
        self._settling = False

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the Tuner before the sweep: the live state is rebuilt from results on a resume.
        live = ("trials", "values", "last_epoch", "ended", "decisions", "_front", "_waiting", "_runnable",
                "_to_cut", "_busy", "_fresh", "_searcher", "_settling")  # fmt: skip
        return {k: v for k, v in self.__dict__.items() if k not in live}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.max_pending = state.get("max_pending", 8)
        self._reset()

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

    def _settled_at(self, index: int, rung: int) -> bool:
        return rung in self.values.get(index, {}) or self._gone(index)

    def _touch(self, index: int) -> None:
        """Something about trial `index` changed (a result, an ending): its bracket's rung may be complete."""
        bracket = self.bracket(index)
        waiting, front, rungs = self._waiting[bracket], self._front[bracket], self.rungs[bracket]
        if index in waiting and front < len(rungs) and self._settled_at(index, rungs[front]):
            waiting.discard(index)
            self._decide(bracket)

    def _decide(self, bracket: int) -> None:
        """Take every decision of the bracket whose barrier is complete, lowest rung first: the participants
        ranked by value (ties: the lower index), the best max(1, floor(n / reduction_factor)) go on."""
        rungs = self.rungs[bracket]
        while self._front[bracket] < len(rungs) and not self._waiting[bracket]:
            position = self._front[bracket]
            rung = rungs[position]
            members = range(bracket, self.total_trials, self.brackets)
            alive = self.decisions[(bracket, rungs[position - 1])] if position else members
            arrived = [i for i in alive if rung in self.values.get(i, {})]
            ranked = sorted(arrived, key=lambda i: (-self.values[i][rung], i))
            keep = max(1, math.floor(len(ranked) / self.reduction_factor)) if ranked else 0
            self.decisions[(bracket, rung)] = chosen = set(ranked[:keep])
            self._to_cut.update(ranked[keep:])
            for index in ranked[:keep]:
                heapq.heappush(self._runnable, index)
            self._front[bracket] = position + 1
            if position + 1 < len(rungs):
                self._waiting[bracket] = {i for i in chosen if not self._settled_at(i, rungs[position + 1])}

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

    def _route(self, index: int) -> None:
        """A paused trial: to the runnable heap, to be cut, or left waiting at its rung."""
        verdict = self._verdict(index)
        if verdict == TrialScheduler.CONTINUE:
            heapq.heappush(self._runnable, index)
        elif verdict == TrialScheduler.STOP:
            self._to_cut.add(index)

    def _pace(self, tune_controller: Any) -> None:
        """Tell the searcher whether to create more trials: only while few created ones wait to start."""
        if self._searcher is None:
            self._searcher = getattr(tune_controller, "search_alg", None) if tune_controller is not None else None
        if self._searcher is not None and hasattr(self._searcher, "hold"):
            self._searcher.hold = len(self._fresh) >= self.max_pending

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
            self._touch(index)
            return
        self._touch(index)
        # Tune starts every PENDING trial by itself; a PAUSED one only when `choose_trial_to_run` picks it.
        # So every trial waits here, new or restored, and this scheduler alone decides what runs when.
        trial.set_status(Trial.PAUSED)
        if index not in self.last_epoch:
            self._fresh.add(index)
        self._route(index)
        self._pace(tune_controller)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        index = trial_index(trial)
        if self.time_attr not in result:
            return TrialScheduler.CONTINUE
        self._record(index, int(result[self.time_attr]), result.get(self._metric or ""))
        self._touch(index)
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
        index = trial_index(trial)
        self.ended.add(index)
        self._fresh.discard(index)
        self._touch(index)
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
        """Stop the paused trials a decision cut; the ones it promoted wait for `choose_trial_to_run`. One
        still being paused by Tune (its checkpoint being saved) is stopped at a later call. Tune calls
        `on_trial_remove` from inside `stop_trial`: that nested call returns at once."""
        if self._settling or not self._to_cut:
            return
        self._settling = True
        try:
            for index in sorted(self._to_cut):
                trial = self.trials.get(index)
                if trial is None or self._gone(index) or self._verdict(index) != TrialScheduler.STOP:
                    self._to_cut.discard(index)
                elif index != exclude and trial.status == Trial.PAUSED:
                    self._to_cut.discard(index)
                    self.ended.add(index)
                    tune_controller.stop_trial(trial)
        finally:
            self._settling = False

    def _check_busy(self) -> tuple[int, int]:
        """The chosen trials still running or staged; one Tune has since paused goes on, is cut, or waits."""
        running = staged = 0
        for index in list(self._busy):
            status = self.trials[index].status
            if status == Trial.RUNNING:
                running += 1
            elif status == Trial.PENDING:
                staged += 1
            else:
                self._busy.discard(index)
                if status == Trial.PAUSED and not self._gone(index):
                    self._route(index)
        return running, staged

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """The lowest-numbered paused trial that may go on (never started, or promoted), within the cap.
        Settles first: a resume can restore a trial paused at a rung while every other trial is restored
        as ended, and then no result or ending would ever come to cut it (Tune would wait forever)."""
        running, staged = self._check_busy()
        self._settle(tune_controller)
        if running + staged >= (self.max_concurrent or self.total_trials) or staged >= self.max_pending:
            return None
        while self._runnable:
            index = heapq.heappop(self._runnable)
            trial = self.trials[index]
            paused = trial.status == Trial.PAUSED and not self._gone(index) and index not in self._busy
            if paused and self._verdict(index) == TrialScheduler.CONTINUE:
                self._busy.add(index)
                self._fresh.discard(index)
                self._pace(tune_controller)
                return trial
        return None

    def debug_string(self) -> str:
        return f"Synchronous successive halving: rungs {self.rungs}, decisions {len(self.decisions)}"
