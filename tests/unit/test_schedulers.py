"""Early stopping: deterministic successive halving decides on complete rungs in a fixed order; both
schedulers rebuild their rungs after a resume from what the trials recorded.

Real Ray Trial objects (stubs: no actor is started) with real result.json files in a storage directory;
the controller is a small stand-in holding the trials (the sweep-level behaviour is tested end to end in
tests/integration/test_reproducibility.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from orchestrator.tune.schedulers import ResumableASHA, SynchronousHalving

KW = {
    "time_attr": "epoch",
    "max_t": 8,
    "grace_period": 1,
    "reduction_factor": 2,
    "metric": "val_accuracy",
    "mode": "max",
}


def restored_trial(tmp_path: Path, trial_id: str, accuracies: list[float], torn_tail: bool = False) -> Trial:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=trial_id)
    trial = Trial("train", config={}, trial_id=trial_id, storage=storage, stub=True)
    directory = Path(storage.trial_fs_path)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"epoch": e, "val_accuracy": a}) for e, a in enumerate(accuracies, 1)]
    (directory / "result.json").write_text("\n".join(lines) + ('\n{"epoch": 9, "val' if torn_tail else "\n"))
    return trial


def test_rungs_are_rebuilt_from_reported_results(tmp_path: Path) -> None:
    scheduler = ResumableASHA(**KW)
    scheduler.on_trial_add(None, restored_trial(tmp_path, "a", [0.5, 0.6, 0.7, 0.8], torn_tail=True))
    scheduler.on_trial_add(None, restored_trial(tmp_path, "b", [0.7, 0.75]))
    rungs = dict(scheduler._brackets[0]._rungs)
    assert rungs[1] == {"a": 0.5, "b": 0.7} and rungs[2] == {"a": 0.6, "b": 0.75} and rungs[4] == {"a": 0.8}


def test_a_resumed_trial_is_cut_as_it_would_have_been(tmp_path: Path) -> None:
    finished = [restored_trial(tmp_path, f"t{i}", [0.8 + i / 100] * 2) for i in range(3)]
    late = restored_trial(tmp_path, "late", [])
    resumed, plain = ResumableASHA(**KW), ASHAScheduler(**KW)
    for scheduler in (resumed, plain):
        for trial in [*finished, late]:
            scheduler.on_trial_add(None, trial)
    # The late trial's first epoch is poor: an uninterrupted run would stop it at the first rung.
    assert resumed.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.3}) == TrialScheduler.STOP
    # A plain ASHA forgot the rung after the restore and lets it run on.
    assert plain.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.3}) == TrialScheduler.CONTINUE


def test_a_trial_that_never_ran_adds_nothing(tmp_path: Path) -> None:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name="new")
    scheduler = ResumableASHA(**KW)
    scheduler.on_trial_add(None, Trial("train", config={}, trial_id="new", storage=storage, stub=True))
    assert all(not recorded for _, recorded in scheduler._brackets[0]._rungs)


class Controller:
    """What a scheduler asks of Tune's controller: the trials, and stopping one."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials
        self.stopped: list[str] = []

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        self.stopped.append(trial.trial_id)
        trial.set_status(Trial.TERMINATED)


SHA = {
    "metric": "val_accuracy",
    "time_attr": "epoch",
    "max_t": 5,
    "grace_period": 1,
    "reduction_factor": 2,
    "brackets": 1,
    "max_concurrent": None,
}


def _trials(tmp_path: Path, count: int) -> list[Trial]:
    return [restored_trial(tmp_path, f"exp_{i:05d}", []) for i in range(count)]


def _run_rung(scheduler: SynchronousHalving, controller: Controller, values: dict[int, float], epoch: int) -> dict:
    verdicts = {}
    for index, value in values.items():
        trial = controller.trials[index]
        trial.set_status(Trial.RUNNING)
        verdicts[index] = scheduler.on_trial_result(controller, trial, {"epoch": epoch, "val_accuracy": value})
        if verdicts[index] == TrialScheduler.PAUSE:
            trial.set_status(Trial.PAUSED)
    return verdicts


def test_every_trial_waits_at_a_rung_until_the_last_one_arrives(tmp_path: Path) -> None:
    trials = _trials(tmp_path, 4)
    scheduler, controller = SynchronousHalving(**SHA, total_trials=4), Controller(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    assert all(t.status == Trial.PAUSED for t in trials)  # none starts unless the scheduler picks it
    verdicts = _run_rung(scheduler, controller, {0: 0.5, 1: 0.9, 2: 0.7}, epoch=1)
    assert set(verdicts.values()) == {TrialScheduler.PAUSE}
    last = _run_rung(scheduler, controller, {3: 0.6}, epoch=1)
    # The best two of four go on: 1 (0.9) and 2 (0.7); the last arrival (0.6) is cut, and so is 0 (paused).
    assert last == {3: TrialScheduler.STOP} and controller.stopped == ["exp_00000"]
    assert scheduler.choose_trial_to_run(controller) is trials[1]


def test_ties_are_broken_by_trial_number_not_arrival_order(tmp_path: Path) -> None:
    for order in ([0, 1, 2, 3], [3, 2, 1, 0]):
        trials = _trials(tmp_path / str(order[0]), 4)
        scheduler, controller = SynchronousHalving(**SHA, total_trials=4), Controller(trials)
        for trial in trials:
            scheduler.on_trial_add(controller, trial)
        for index in order:
            _run_rung(scheduler, controller, {index: 0.8}, epoch=1)
        assert scheduler.decisions[(0, 1)] == {0, 1}


def test_a_trial_that_ended_before_the_rung_does_not_hold_it_up(tmp_path: Path) -> None:
    trials = _trials(tmp_path, 3)
    scheduler, controller = SynchronousHalving(**SHA, total_trials=3), Controller(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    _run_rung(scheduler, controller, {0: 0.5, 1: 0.9}, epoch=1)
    trials[2].set_status(Trial.ERROR)
    scheduler.on_trial_error(controller, trials[2])
    assert scheduler.decisions[(0, 1)] == {1}  # floor(2 / 2) of the two that arrived


def test_decisions_are_rebuilt_from_recorded_results_after_a_restart(tmp_path: Path) -> None:
    recorded = {0: [0.5], 1: [0.9], 2: [0.7], 3: [0.6, 0.65]}
    trials = [restored_trial(tmp_path, f"exp_{i:05d}", values) for i, values in recorded.items()]
    scheduler, controller = SynchronousHalving(**SHA, total_trials=4), Controller(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    assert scheduler.decisions[(0, 1)] == {1, 2}
    # Trial 1 recorded its rung-1 result and waited there: it is promoted, so it may run again.
    assert scheduler.choose_trial_to_run(controller) is trials[1]


def test_a_trial_restored_paused_at_a_rung_is_cut_when_every_other_trial_ended(tmp_path: Path) -> None:
    # A driver killed after the rung's last result and before it stopped the paused loser: on the resume,
    # the loser comes back PAUSED and the others TERMINATED, in any order; no event will come to cut it.
    recorded = {0: [0.7, 0.8], 1: [0.9, 0.92, 0.93, 0.94, 0.95], 2: [0.6], 3: [0.5]}
    for order in ([3, 0, 1, 2], [0, 1, 2, 3]):
        trials = [restored_trial(tmp_path / str(order[0]), f"exp_{i:05d}", values) for i, values in recorded.items()]
        for index, trial in enumerate(trials):
            trial.set_status(Trial.PAUSED if index == 3 else Trial.TERMINATED)
        scheduler, controller = SynchronousHalving(**SHA, total_trials=4), Controller(trials)
        for index in order:
            scheduler.on_trial_add(controller, trials[index])
        assert scheduler.choose_trial_to_run(controller) is None
        assert controller.stopped == ["exp_00003"] and trials[3].status == Trial.TERMINATED


def test_the_scheduler_is_pickled_without_its_live_state(tmp_path: Path) -> None:
    import pickle

    trials = _trials(tmp_path, 2)
    scheduler, controller = SynchronousHalving(**SHA, total_trials=2), Controller(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    _run_rung(scheduler, controller, {0: 0.5, 1: 0.9}, epoch=1)
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored.decisions == {} and restored.trials == {} and restored.rungs == scheduler.rungs


class NoScan(Controller):
    """A controller that fails the test if the scheduler asks for every trial (a scan per event)."""

    def __init__(self, trials: list[Trial]) -> None:
        super().__init__(trials)
        self.search_alg = type("Searcher", (), {"hold": False})()

    def get_trials(self) -> list[Trial]:
        raise AssertionError("the scheduler scanned every trial")


def test_a_large_sweep_decides_like_the_rule_without_scanning_every_trial(tmp_path: Path) -> None:
    import random

    count = 90
    trials = _trials(tmp_path, count)
    spec = {**SHA, "max_t": 9, "reduction_factor": 3, "brackets": 2, "max_concurrent": 2}
    scheduler, controller = SynchronousHalving(**spec, total_trials=count, max_pending=4), NoScan(trials)
    value = {i: random.Random(i).choice([0.1, 0.2, 0.3, 0.4]) for i in range(count)}  # many ties
    added, reports = 0, 0
    while True:
        while not controller.search_alg.hold and added < count:  # Tune creates while the searcher yields
            scheduler.on_trial_add(controller, trials[added])
            added += 1
        assert added == count or len(scheduler._fresh) == 4  # never more than max_pending created ahead
        trial = scheduler.choose_trial_to_run(controller)
        if trial is None:
            break
        index = int(trial.trial_id.rsplit("_", 1)[-1])
        trial.set_status(Trial.RUNNING)
        for epoch in range(scheduler.last_epoch.get(index, 0) + 1, 10):
            reports += 1
            verdict = scheduler.on_trial_result(controller, trial, {"epoch": epoch, "val_accuracy": value[index]})
            if verdict == TrialScheduler.PAUSE:
                trial.set_status(Trial.PAUSED)
                break
            if verdict == TrialScheduler.STOP:
                trial.set_status(Trial.TERMINATED)
                break
        else:
            trial.set_status(Trial.TERMINATED)
            scheduler.on_trial_complete(controller, trial, {})
    assert added == count and all(t.status == Trial.TERMINATED for t in trials)
    for bracket in range(2):  # the rule, recomputed over each bracket's trials
        alive = list(range(bracket, count, 2))
        assert scheduler.rungs[bracket]
        for rung in scheduler.rungs[bracket]:
            ranked = sorted(alive, key=lambda i: (-value[i], i))
            alive = sorted(ranked[: max(1, len(ranked) // 3)])
            assert scheduler.decisions[(bracket, rung)] == set(alive)
        assert all(scheduler.last_epoch[i] == 9 for i in alive)


def test_copies_of_the_trial_namer_share_one_fixed_config_and_pickle_small() -> None:
    """Tune gives every trial its own (unpickled) copy of the namer and keeps every trial's pickled state: the
    copies share one fixed config, registered by its digest, and pickle as that digest."""
    import json
    import pickle
    import zlib
    from types import SimpleNamespace

    from orchestrator.tune.tuner import _FIXED, TrialNamer
    from trainables.recipe import TrialConfig

    fixed = TrialConfig.model_validate({"model": "mlp", "mlp": {"hidden": [16]}}).model_dump(mode="json")
    namer = TrialNamer(fixed, ["lr"])
    a, b = (pickle.loads(pickle.dumps(namer)) for _ in range(2))
    assert len(pickle.dumps(namer)) < 200 < len(json.dumps(fixed))
    assert _FIXED[a.key] is _FIXED[b.key]
    trial = SimpleNamespace(config={"lr": 0.01}, trial_id="abc_00001")
    old = TrialNamer.__new__(TrialNamer)  # a namer an earlier version saved: the config itself, compressed
    old.__setstate__({"packed": zlib.compress(json.dumps(fixed).encode()), "searched": ["lr"]})
    assert a(trial) == b(trial) == namer(trial) == old(trial) == "mlp-lr0.01-abc_00001"
