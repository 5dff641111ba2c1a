"""Every shipped YAML validates; malformed configs are refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.commands.main import launch_main as main
from orchestrator.config import load_config
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def test_configs_exist() -> None:
    names = {p.name for p in SHIPPED}
    assert {"parallel.yaml", "smoke.yaml"} <= names  # each shipped YAML dry-runs in test_recipe_configs.py


BASE = "name: t\n"
MALFORMED = [
    ("trial: {lrr: 0.1}", "trial.lrr: unknown key (did you mean 'lr'?)"),
    ("trial: {lr: -1}", "trial.lr: Input should be greater than 0"),
    ("trial: {lr: 0}", "trial.lr: Input should be greater than 0"),
    ("trial: {batch_size: 0}", "trial.batch_size: Input should be greater than 0"),
    ("trial: {epochs: 0}", "trial.epochs: Input should be greater than 0"),
    ("trial: {epochs: two}", "trial.epochs: Input should be a valid integer"),
    ("trial: {model: resnet}", "trial.model: unknown model 'resnet' (valid: mlp, cnn, lstm, gru, or a factory"),
    ("trial: {optimizer: lion}", "trial.optimizer: Input should be 'sgd', 'momentum'"),
    ("trial: {mlp: {activation: swish}}", "trial.mlp.activation: Input should be 'relu'"),
    ("trial: {epochs: 2}\nasha: {grace_period: 3}", "asha.grace_period: must not exceed trial.epochs (2)"),
    ("asha: {reduction_factor: 1}", "asha.reduction_factor: Input should be greater than 1"),
    ("search: {space: {lrate: {choice: [0.1]}}}", "search.space.lrate: not a trial field"),
    ("search: {space: {lr: {choice: []}}}", "search.space.lr.choice: must list at least one value"),
    ("search: {space: {lr: {loguniform: [0.1, 0.01]}}}", "search.space.lr.loguniform: low must be below high"),
    ("search: {space: {lr: {loguniform: [0, 0.1]}}}", "search.space.lr.loguniform: low must be > 0"),
    ("search: {space: {lr: {choice: [0.1, -1]}}}", "search.space.lr: Input should be greater than 0 (got -1)"),
    ("search: {space: {epochs: {choice: [1, 2]}}}", "search.space.epochs: trial.epochs is ASHA's max_t"),
    ("search: {space: {cnn.depth: {choice: [1]}}}", "search.space.cnn.depth: not a cnn field"),
    ("selection: {metric: train_loss}", "selection.metric: Input should be 'test_accuracy', 'val_accuracy', "),
    ("asha: {metric: test_macro_f1}", "asha.metric: early stopping looks at validation scores only"),
    ("name: ../escape", "name: must be a plain directory name"),
]


@pytest.mark.parametrize(("body", "message"), MALFORMED, ids=[m.split(":")[0] for _, m in MALFORMED])
def test_malformed_config_is_refused(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body if body.startswith("name:") else BASE + body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(message), str(info.value)


def test_yaml_python_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="YAML tags are not allowed"):
        load_config(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: t\ntrial:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: YAML syntax error"):
        load_config(path)


def test_set_overrides_are_validated_like_the_file() -> None:
    cfg = load_config(ROOT / "configs/smoke.yaml", ["trial.epochs=1", "asha.grace_period=1", "search.num_samples=2"])
    assert (cfg.trial.epochs, cfg.search.num_samples) == (1, 2)
    with pytest.raises(ConfigError, match="trial.epoch: unknown key \\(did you mean 'epochs'\\?\\)"):
        load_config(ROOT / "configs/smoke.yaml", ["trial.epoch=1"])


def test_cli_config_error_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(ROOT / "configs/smoke.yaml"), "--set", "trial.lr=-1", "--storage-path", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("config error: trial.lr: ")
    assert not (tmp_path / "runs").exists()


def test_batch_larger_than_the_training_split_is_refused_once_the_data_is_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [str(ROOT / "configs/smoke.yaml"), "--set", "trial.batch_size=20001", "--storage-path", str(tmp_path / "runs")]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        "config error: trial.batch_size: batch size larger than the training split (20000 samples) (got 20001)\n"
    )
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(ROOT / "configs/smoke.yaml"), "--dry-run", "--storage-path", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "trials: 4" in out and "rungs at epochs [1, 2]" in out
    assert not (tmp_path / "runs").exists()


USED_KNOBS = [
    "search: {space: {model: {grid: [mlp, cnn]}, mlp.hidden: {grid: [[8], [16]]}}}",
    "trial: {model: cnn}\nsearch: {space: {cnn: {grid: [{channels: [8]}, {channels: [16]}]}}}",
    "search: {space: {optimizer: {grid: [adam, sgd]}, optim.sgd.momentum: {grid: [0.0, 0.9]}}}",
    "search: {space: {schedule.name: {grid: [none, cosine]}, schedule.cosine.min_factor: {grid: [0.1]}}}",
    "search: {space: {schedule: {grid: [{name: none}, {name: cosine, cosine: {min_factor: 0.1}}]}}}",
    "trial: {schedule: {name: step}}\nsearch: {space: {schedule.step.gamma: {uniform: [0.1, 0.5]}}}",
]


@pytest.mark.parametrize("body", USED_KNOBS)
def test_a_knob_that_some_trial_reads_is_searchable(tmp_path: Path, body: str) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE + body)
    load_config(path)


def test_a_choice_may_repeat_a_value_to_weight_it(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE + "search: {space: {lr: {choice: [0.001, 0.001, 0.003]}, seed: {grid: [0, 1]}}}")
    assert load_config(path).trial_count == 2
