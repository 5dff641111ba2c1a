"""Population-based training without Ray: the decisions (who copies whom, the new values), the trial's side
of a copy (the parent's state in, the new values in the optimizer, the lr actually used), and the
scheduler's barrier rebuilt from disk. The sweep itself runs in tests/integration/test_population_sweep.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.config.population import PopulationConfig
from orchestrator.population import Rules, clip, decide, mutate, ranking
from orchestrator.tune.population import PopulationScheduler
from trainables import checkpoint as ckpt
from trainables import exploit, resume
from trainables.assemble import assemble
from trainables.recipe import TrialConfig

SPACE = {"lr": {"loguniform": [1.0e-4, 1.0e-1]}, "mlp.dropout": {"choice": [0.0, 0.1, 0.2]}}


def rules(fraction: float = 0.25, resample: float = 0.0, seed: int = 0) -> Rules:
    population = PopulationConfig(
        interval=1, fraction=fraction, mutate=("lr", "mlp.dropout"), resample_probability=resample
    )
    return Rules.of(population, SPACE, seed)


def knobs(n: int) -> dict[int, dict[str, Any]]:
    return {i: {"lr": 1e-3 * (i + 1), "mlp.dropout": 0.1} for i in range(n)}


def test_the_bottom_copies_the_top_the_same_way_whatever_the_arrival_order() -> None:
    scores = {0: 0.5, 1: 0.9, 2: 0.7, 3: 0.6, 4: 0.8, 5: 0.4, 6: 0.75, 7: 0.65}
    shuffled = dict(reversed(list(scores.items())))
    first = decide(2, scores, knobs(8), {}, rules())
    assert first == decide(2, shuffled, knobs(8), {}, rules())
    assert sorted(first) == [0, 5]  # the bottom quarter
    assert {e.parent for e in first.values()} <= {1, 4}  # the top quarter
    assert all(e.generation == 1 and e.epoch == 2 for e in first.values())
    assert decide(3, scores, knobs(8), {}, rules()) != first or decide(2, scores, knobs(8), {}, rules(seed=1)) != first


def test_ties_go_to_the_lower_trial_number_and_broken_members_rank_last() -> None:
    assert ranking({3: 0.5, 1: 0.5, 2: math.nan, 0: -math.inf, 4: 0.9}) == [4, 1, 3, 0, 2]


def test_a_diverged_member_is_replaced_and_never_copied() -> None:
    scores = {0: 0.9, 1: -math.inf, 2: 0.8, 3: 0.7}
    decisions = decide(1, scores, knobs(4), {}, rules())
    assert 1 in decisions and 3 in decisions  # the diverged one, and the bottom quarter of the rest
    assert all(e.parent == 0 for e in decisions.values())


def test_perturbed_values_stay_inside_the_domain() -> None:
    rng = np.random.default_rng(0)
    r = rules()
    for value in (1e-4, 0.1, 0.05):
        for _ in range(20):
            assert 1e-4 <= mutate(value, r.domains["lr"], rng, r) <= 0.1
    assert clip(7.6, ("randint", [1, 8])) == 7 and clip(9.0, ("randint", [1, 8])) == 7
    assert clip(0.26, ("quniform", [0.0, 1.0, 0.1])) == pytest.approx(0.3)
    moves = {mutate(0.1, r.domains["mlp.dropout"], rng, r) for _ in range(20)}
    assert moves == {0.0, 0.2}  # a categorical knob moves to a neighbouring value


def _state(cfg: TrialConfig, steps: int, epochs_done: int) -> dict[str, Any]:
    torch.manual_seed(0)
    training = assemble(cfg, cfg.model_spec((1, 4, 4), 3), torch.device("cpu"), steps)
    for _ in range(steps * epochs_done):
        training.model.zero_grad()
        training.model(torch.randn(2, 1, 4, 4)).sum().backward()
        training.optimizer.step()
        if training.hooks.after_step:
            training.hooks.after_step()
    generator = torch.Generator().manual_seed(0)
    return {"model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
            "scheduler": training.schedule.state_dict(), "epoch": epochs_done,
            "rng": ckpt.rng_state(generator), "trial_config": cfg.model_dump(mode="json")}  # fmt: skip


@pytest.mark.parametrize("schedule", ["none", "plateau", "cosine"])
def test_a_copy_trains_with_the_new_lr_from_the_parents_position(schedule: str) -> None:
    base = {"model": "mlp", "mlp": {"hidden": [8]}, "optimizer": "sgd", "epochs": 4, "schedule": {"name": schedule}}
    parent = TrialConfig.resolve(base, {"lr": 0.1})
    state = _state(parent, steps=3, epochs_done=2)
    child = TrialConfig.resolve(base, {"lr": 0.01, "weight_decay": 0.5})
    training = assemble(child, child.model_spec((1, 4, 4), 3), torch.device("cpu"), 3)
    fresh = exploit.hyperparameters(training.optimizer)
    generator = torch.Generator()
    done = resume.apply_state(state, training.model, training.optimizer, generator, training.schedule)
    parents_lr = training.optimizer.param_groups[0]["lr"]  # the load brought the parent's
    exploit.retune(training.optimizer, training.schedule, fresh, 0.1, done, 3)
    group = training.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.5
    assert group["lr"] == pytest.approx(parents_lr / 10)  # the parent's position, a tenth of its base
    # The step taken now moves the weights by the new lr (SGD, no momentum): the lr actually used changed.
    weight = next(training.model.parameters())
    before = weight.detach().clone()
    training.model.zero_grad()
    training.model(torch.randn(2, 1, 4, 4)).sum().backward()
    grad = weight.grad.detach().clone() + 0.5 * before
    training.optimizer.step()
    assert torch.allclose(before - weight.detach(), group["lr"] * grad, atol=1e-7)


def test_a_batch_size_copy_keeps_the_schedule_position() -> None:
    base = {"model": "mlp", "mlp": {"hidden": [8]}, "optimizer": "adam", "epochs": 4, "schedule": {"name": "onecycle"}}
    parent = TrialConfig.resolve(base, {"batch_size": 64})
    state = _state(parent, steps=4, epochs_done=2)
    child = TrialConfig.resolve(base, {"batch_size": 32})
    training = assemble(child, child.model_spec((1, 4, 4), 3), torch.device("cpu"), 8)
    fresh = exploit.hyperparameters(training.optimizer)
    done = resume.apply_state(state, training.model, training.optimizer, torch.Generator(), training.schedule)
    exploit.retune(training.optimizer, training.schedule, fresh, parent.lr, done, 8)
    assert training.schedule.stepwise is not None and training.schedule.stepwise.last_epoch == 16
    assert training.optimizer.param_groups[0]["lr"] == pytest.approx(state["optimizer"]["param_groups"][0]["lr"])


def test_lineage_overlays_the_sampled_config() -> None:
    lineage = exploit.Lineage(2, 1, {"lr": 0.02, "mlp.dropout": 0.2}, 3)
    cfg = TrialConfig.resolve({"model": "mlp"}, lineage.overlay())
    assert (cfg.lr, cfg.mlp.dropout) == (0.02, 0.2)
    assert exploit.Lineage.of({"population": lineage.to_json()}) == lineage
    assert lineage.report(cfg, ["lr"]) == {"pbt.generation": 2, "pbt.parent": 1, "pbt.lr": 0.02}
    assert exploit.interval_epochs(2, 7) == [2, 4, 6] and exploit.target_epoch(3, 2, 7) == 4
    assert exploit.target_epoch(7, 2, 7) is None


def _member(tmp_path: Path, index: int, rows: list[dict[str, Any]]) -> Trial:
    trial_id = f"abc_{index:05d}"
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=trial_id)
    trial = Trial("train", config={"lr": 1e-3 * (index + 1), "mlp": {"dropout": 0.1}}, trial_id=trial_id,
                  storage=storage, stub=True)  # fmt: skip
    directory = Path(storage.trial_fs_path)
    (directory / "checkpoint_000000").mkdir(parents=True, exist_ok=True)
    (directory / "checkpoint_000000" / ckpt.CHECKPOINT_FILE).write_bytes(f"member {index}".encode())
    (directory / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return trial


def _row(epoch: int, accuracy: float) -> dict[str, Any]:
    return {"epoch": epoch, "val_accuracy": accuracy, "checkpoint_dir_name": f"checkpoint_{epoch - 1:06d}"}


def test_the_barrier_waits_for_every_member_and_a_rerun_reads_the_decision_back(tmp_path: Path) -> None:
    def scheduler() -> PopulationScheduler:
        return PopulationScheduler(rules=rules(), interval=1, epochs=3, members=4, max_concurrent=None)

    first = scheduler()
    members = [_member(tmp_path, i, []) for i in range(4)]
    for trial in members:
        first.on_trial_add(None, trial)
    verdicts = [first.on_trial_result(None, t, _row(1, a)) for t, a in zip(members, (0.5, 0.9, 0.7, 0.6), strict=True)]
    assert verdicts[:3] == [TrialScheduler.PAUSE] * 3  # waiting for the last member
    written = json.loads((tmp_path / "exp" / exploit.decision_file(1)).read_text())["exploits"]
    assert list(written) == ["0"] and written["0"]["checkpoint"] == "abc_00001/checkpoint_000000"
    # The parent's checkpoint is kept beside the decision: Tune may reuse or delete its own folder later.
    assert (tmp_path / "exp" / exploit.parent_file(1, 1)).read_bytes() == b"member 1"
    assert verdicts[3] == TrialScheduler.CONTINUE  # decided, and not a copy: it goes on without a restart

    # A rerun after a driver kill: the decision comes back from disk, whatever the results say now.
    again = scheduler()
    for trial, accuracy in zip(members, (0.99, 0.1, 0.1, 0.1), strict=True):
        again.on_trial_add(None, _member(tmp_path, int(trial.trial_id[-1]), [_row(1, accuracy)]))
    assert again.decisions[1][0].to_json() == written["0"]
    assert again._verdict(0) == TrialScheduler.PAUSE and again._verdict(1) == TrialScheduler.CONTINUE


def test_a_member_takes_the_latest_decision_that_names_it(tmp_path: Path) -> None:
    """A member copied at epoch 1 that diverged in epoch 2 restarts from its own epoch-1 checkpoint; the copy it
    makes is the one decided at epoch 2, not the epoch-1 copy again (which would diverge again, forever)."""
    cfg = TrialConfig.resolve({"model": "mlp", "mlp": {"hidden": [8]}, "epochs": 4}, {})
    for epoch in (1, 2):
        kept = tmp_path / exploit.parent_file(epoch, 0)
        kept.parent.mkdir(parents=True)
        ckpt.save_atomic(_state(cfg, steps=1, epochs_done=epoch), kept)
        decision = {"member": 3, "parent": 0, "epoch": epoch, "values": {"lr": 0.01 * epoch}, "batch_seed": epoch,
                    "generation": epoch, "checkpoint": f"parent/checkpoint_{epoch:06d}"}  # fmt: skip
        (tmp_path / exploit.decision_file(epoch)).write_text(json.dumps({"exploits": {"3": decision}}))
    copy = exploit.pending_copy(str(tmp_path), 3, 1, 1, 4, torch.device("cpu"))
    assert copy is not None and copy.state["epoch"] == 2 and copy.lineage == exploit.Lineage(2, 0, {"lr": 0.02}, 2)
    assert exploit.pending_copy(str(tmp_path), 3, 3, 1, 4, torch.device("cpu")) is None  # past every decision
    assert exploit.pending_copy(str(tmp_path), 1, 0, 1, 4, torch.device("cpu")) is None  # never named


def test_the_best_checkpoints_line_is_traced_back_through_every_copy() -> None:
    from orchestrator.review.lineage import ancestry, lineage_markdown

    decisions = {2: {1: {"parent": 0}, 3: {"parent": 2}}, 4: {0: {"parent": 1}}}
    assert ancestry(decisions, 0, 6) == [(1, 2, 0), (3, 4, 1), (5, 6, 0)]
    assert ancestry(decisions, 2, 6) == [(1, 6, 2)]
    assert ancestry(decisions, 0, 4) == [(1, 4, 0)]  # the copy at 4 came after that checkpoint
    text = lineage_markdown(decisions, {i: f"t_{i:05d}" for i in range(4)}, "t_00000", 6)
    assert "| 1 `t_00001` | <- 0 |  |" in text and "member 0 (epochs 1-2), then member 1 (epochs 3-4)" in text


def test_retention_keeps_every_interval_checkpoint_until_the_sweep_has_finished(tmp_path: Path) -> None:
    """A copy loads its parent's checkpoint of the interval epoch, perhaps long after the parent went on."""
    from orchestrator.location import Location
    from orchestrator.outputs.retention import SETTLE_S, CheckpointRetention, trial_checkpoints
    from orchestrator.records import TrialRecord

    location = Location.parse(str(tmp_path), "exp")
    record = TrialRecord("t", "t", TrialConfig())
    for epoch, accuracy in enumerate([0.5, 0.9, 0.6, 0.7, 0.65], 1):
        record.report({"epoch": epoch, "test_accuracy": accuracy, "val_accuracy": accuracy,
                       "checkpoint_dir_name": f"checkpoint_{epoch:06d}"})  # fmt: skip
    for ref in trial_checkpoints(record):
        (tmp_path / "exp" / ref.path).mkdir(parents=True)
    now = [0.0]
    retention = CheckpointRetention(location, "test_accuracy", keep=1, clock=lambda: now[0], pinned=frozenset({1, 3}))
    retention.trial_reported(record)
    now[0] = SETTLE_S
    retention.trial_reported(record)
    on_disk = lambda: sorted(int(p.name[-1]) for p in (tmp_path / "exp" / "t").iterdir())  # noqa: E731
    assert on_disk() == [1, 2, 3, 5]  # epoch 4 is neither kept nor pinned
    retention.finish([record])
    assert on_disk() == [2, 5]  # after the sweep: the best and the latest, as for any trial


def test_the_summary_card_says_where_the_best_came_from() -> None:
    from orchestrator.review.summaries import best_lineage_line, best_markdown

    best = {"trial_name": "t_00002", "epoch": 3, "config": {"lr": 0.001},
            "population": {"generation": 1, "parent": 0, "values": {"lr": 0.0159}, "copied_at": 2}}  # fmt: skip
    assert "last copied member 0 at epoch 2" in best_lineage_line(best) and "lr=0.0159" in best_lineage_line(best)
    assert "| last copied | member 0 at epoch 2 |" in best_markdown(best)
    assert best_lineage_line({"trial_name": "t", "epoch": 1}) == ""  # not a population
