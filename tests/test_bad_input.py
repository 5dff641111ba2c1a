"""Bad input is refused before Ray starts: exit 2, one line naming the field, nothing written.

Each case runs the real CLI in-process (`orchestrator.launch.main`) with a tiny base config whose
storage_path lies under tmp_path; a few run as true subprocesses to cover `python -m` itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import launch
from trainables import data

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: bad
storage_path: {storage}
data: {{train_limit: 256, val_size: 256}}
trial: {{model: mlp, mlp: {{hidden: [8]}}, epochs: 2, batch_size: 32}}
"""

# (id, YAML appended to BASE or None, --set overrides, expected message fragments)
CASES = [
    ("yaml-syntax", "trial: {lr: [1e-3\n", [], ["YAML syntax error", ":6"]),
    ("yaml-python-tag", "seed: !!python/object/apply:os.system ['touch pwned']\n", [], ["YAML tags are not allowed"]),
    ("not-a-mapping", None, [], ["must be a YAML mapping"]),
    ("unknown-top-key", "seeds: 1\n", [], ["seeds: unknown key (did you mean 'seed'?)"]),
    ("unknown-nested-key", "asha: {grace: 1}\n", [], ["asha.grace: unknown key (did you mean 'grace_period'?)"]),
    ("set-unknown-key", "", ["trial.lrr=0.1"], ["trial.lrr: unknown key (did you mean 'lr'?)"]),
    ("set-no-equals", "", ["trial.lr"], ["--set: expected dotted.key=value"]),
    ("set-into-value", "", ["trial.epochs.x=1"], ["trial.epochs: is a value, not a section"]),
    ("wrong-type-lr", "", ["trial.lr=fast"], ["trial.lr:", "got 'fast'"]),
    ("wrong-type-epochs", "", ["trial.epochs=[1]"], ["trial.epochs:", "valid integer"]),
    ("lr-zero", "", ["trial.lr=0"], ["trial.lr:", "greater than 0"]),
    ("lr-negative", "", ["trial.lr=-0.1"], ["trial.lr:", "greater than 0", "got -0.1"]),
    ("batch-size-zero", "", ["trial.batch_size=0"], ["trial.batch_size:", "greater than 0"]),
    ("batch-size-too-big", "", ["trial.batch_size=100000"], ["trial.batch_size: larger than the training split"]),
    ("epochs-zero", "", ["trial.epochs=0"], ["trial.epochs:", "greater than 0"]),
    ("grace-above-epochs", "", ["asha.grace_period=3"], ["asha.grace_period: must not exceed trial.epochs (2)"]),
    ("reduction-factor-one", "", ["asha.reduction_factor=1"], ["asha.reduction_factor:", "greater than 1"]),
    ("unknown-model", "", ["trial.model=resnet"], ["trial.model: unknown model 'resnet' (valid: mlp, cnn"]),
    ("unknown-optimizer", "", ["trial.optimizer=lion"], ["trial.optimizer:", "'sgd'", "'adam'"]),
    ("unknown-activation", "", ["trial.mlp.activation=swish"], ["trial.mlp.activation:", "'relu'"]),
    ("space-unknown-field", "search: {space: {learning_rate: {grid: [0.1]}}}\n", [],
     ["search.space.learning_rate: not a trial field (valid: model"]),
    ("space-wrong-model-field", "search: {space: {mlp.channels: {grid: [[8]]}}}\n", [],
     ["search.space.mlp.channels: not a mlp field"]),
    ("space-epochs", "search: {space: {epochs: {grid: [1, 2]}}}\n", [], ["search.space.epochs:", "not searched"]),
    ("space-empty-choice", "search: {space: {lr: {choice: []}}}\n", [],
     ["search.space.lr.choice: must list at least one value"]),
    ("space-unknown-kind", "search: {space: {lr: {normal: [0, 1]}}}\n", [],
     ["search.space.lr: unknown search kind 'normal'"]),
    ("space-loguniform-low-ge-high", "search: {space: {lr: {loguniform: [0.1, 0.01]}}}\n", [],
     ["search.space.lr.loguniform: low must be below high"]),
    ("space-loguniform-low-zero", "search: {space: {lr: {loguniform: [0, 0.1]}}}\n", [],
     ["search.space.lr.loguniform: low must be > 0"]),
    ("space-bad-candidate", "search: {space: {lr: {grid: [0.1, -1]}}}\n", [], ["search.space.lr:", "got -1"]),
    ("space-unknown-model", "search: {space: {model: {grid: [mlp, vit]}}}\n", [],
     ["search.space.model: unknown model 'vit'"]),
    ("name-with-slash", "", ["name=a/b"], ["name: must be a plain directory name"]),
    ("name-with-dotdot", "", ["name=..x"], ["name: must be a plain directory name"]),
    ("num-samples-zero", "", ["search.num_samples=0"], ["search.num_samples:", "greater than or equal to 1"]),
    ("keep-checkpoints-zero", "", ["selection.keep_checkpoints=0"], ["selection.keep_checkpoints:"]),
    ("max-retries-negative", "", ["failure.max_retries=-1"], ["failure.max_retries:"]),
    ("selection-metric-not-reported", "", ["selection.metric=train_accuracy"],
     ["selection.metric: Input should be 'test_accuracy' or 'val_accuracy'", "got 'train_accuracy'"]),
    ("gpu-more-than-machine", "", ["resources.gpu=64"], ["resources.gpu: more GPUs per trial than this machine has"]),
    ("cpu-more-than-machine", "", ["resources.cpu=4096"], ["resources.cpu: more CPUs per trial than this machine has"]),
    ("cpu-zero", "", ["resources.cpu=0"], ["resources.cpu:", "greater than 0"]),
    ("val-size-whole-train-set", "", ["data.val_size=60000"], ["data.val_size:"]),
    ("required-name-missing", None, [], ["name: required field is missing"]),
]


def write_config(tmp_path: Path, case_id: str, extra: str | None) -> Path:
    path = tmp_path / "experiment.yaml"
    if case_id == "not-a-mapping":
        path.write_text("- just\n- a list\n")
    elif case_id == "required-name-missing":
        path.write_text(BASE.format(storage=tmp_path / "runs").replace("name: bad\n", ""))
    else:
        path.write_text(BASE.format(storage=tmp_path / "runs") + (extra or ""))
    return path


def refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]) -> str:
    """Runs the CLI; asserts exit 2, a single stderr line, no stdout, nothing under storage."""
    code = launch.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert out == ""
    assert not (tmp_path / "runs").exists()
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("case_id", "extra", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_refused_before_ray(case_id: str, extra: str | None, overrides: list[str], expected: list[str],
                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, case_id, extra)
    argv = [str(path)] + [f"--set={item}" for item in overrides]
    line = refused(capsys, tmp_path, argv)
    assert line.startswith("config error: ")
    for fragment in expected:
        assert fragment in line, line
    assert not (Path.cwd() / "pwned").exists()


def test_unreadable_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, tmp_path, [str(tmp_path / "missing.yaml")])
    assert line.startswith(f"config error: {tmp_path / 'missing.yaml'}: cannot read config file")
    (tmp_path / "dir.yaml").mkdir()
    line = refused(capsys, tmp_path, [str(tmp_path / "dir.yaml")])
    assert "cannot read config file: Is a directory" in line


def test_binary_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\x80\x04\x95\xff\xfe binary")
    line = refused(capsys, tmp_path, [str(path)])
    assert line == f"config error: {path}: cannot read config file: not UTF-8 text"


def test_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has the Debian package; point the fallback somewhere empty to stand for one without.
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian-package")
    path = tmp_path / "experiment.yaml"
    nowhere = tmp_path / "nowhere"
    path.write_text(BASE.format(storage=tmp_path / "runs").replace("data: {", f"data: {{root: {nowhere}, "))
    line = refused(capsys, tmp_path, [str(path)])
    assert line.startswith("data error: data.root: Fashion-MNIST IDX files not found")
    assert "data.download: true" in line


def test_truncated_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian-package")
    root = tmp_path / "fmnist"
    root.mkdir()
    for stem in data.IDX_NAMES.values():
        (root / stem).write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))  # says 9 items, holds 2
    path = tmp_path / "experiment.yaml"
    path.write_text(BASE.format(storage=tmp_path / "runs").replace("data: {", f"data: {{root: {root}, "))
    line = refused(capsys, tmp_path, [str(path)])
    assert line.startswith("data error: data.root: ") and "truncated IDX file" in line


def test_resources_fit_a_joined_cluster_checked_in_preflight() -> None:
    """The cluster check itself (the CLI path with --address is in test_faults_cluster.py)."""
    from orchestrator.config import validate
    from orchestrator.errors import ConfigError
    from orchestrator.preflight import check_cluster

    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    check_cluster(validate({"name": "x", "resources": {"cpu": 8, "gpu": 1}}), nodes)
    with pytest.raises(ConfigError, match=r"resources.gpu: more GPUs per trial than the largest live node .* \(1\)"):
        check_cluster(validate({"name": "x", "resources": {"gpu": 2}}), nodes)
    with pytest.raises(ConfigError, match="resources.cpu: .*resources.autoscaling: true"):
        check_cluster(validate({"name": "x", "resources": {"cpu": 9}}), nodes)
    check_cluster(validate({"name": "x", "resources": {"gpu": 4, "autoscaling": True}}), nodes)


SUBPROCESS_CASES = [
    (["--set", "trial.lr=0"], "config error: trial.lr: Input should be greater than 0 (got 0)"),
    (["--set", "resources.gpu=64"], "config error: resources.gpu: more GPUs per trial than this machine has"),
    (["--set", "asha.reduction_factor=0.5"], "config error: asha.reduction_factor:"),
]


@pytest.mark.parametrize(("args", "expected"), SUBPROCESS_CASES, ids=["lr", "gpu", "reduction"])
def test_refused_by_the_real_command(args: list[str], expected: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, "subprocess", "")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.launch", str(path), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(expected), proc.stderr
    assert not (tmp_path / "runs").exists()
