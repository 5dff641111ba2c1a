"""Every shipped YAML (studies included) validates and dry-runs; the studies never stop a trial early;
every trial field is documented in configs/README.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.commands.main import launch_main as main
from orchestrator.config import load_config
from orchestrator.config.rungs import rungs as asha_rungs
from trainables.recipe import TrialConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
STUDIES = sorted((ROOT / "configs" / "studies").glob("*.yaml"))


def test_nine_studies_ship() -> None:
    assert len(STUDIES) == 9


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_validates_and_dry_runs(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(path.parent))  # an example's own modules sit beside its config
    if load_config(path).search.algorithm == "optuna":
        pytest.importorskip("optuna")
    assert main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("experiment: ") and ("ASHA:" in out or "population:" in out)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_studies_compare_settings_to_the_end(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.asha.grace_period == cfg.trial.epochs
    # a single rung at the last epoch: ASHA never stops a study's trial before it has run every epoch
    assert asha_rungs(cfg.asha.grace_period, cfg.asha.reduction_factor, cfg.max_t) == [cfg.trial.epochs]
    assert cfg.search.space, "a study compares settings"


def test_the_cli_dry_runs_a_study_in_a_fresh_interpreter(tmp_path: Path) -> None:
    study = ROOT / "configs" / "studies" / "05-plateau.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.launch", str(study), "--dry-run", "--storage-path", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "schedule.name  grid ['none', 'plateau']" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def _trial_fields(schema: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in schema.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += _trial_fields(annotation, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


@pytest.mark.parametrize("path", _trial_fields(TrialConfig))
def test_every_trial_field_is_documented(path: str) -> None:
    lines = (ROOT / "configs" / "README.md").read_text().splitlines()
    parent, _, leaf = path.rpartition(".")
    assert any(f"`{path}`" in line or (f"`{parent}." in line and f"`.{leaf}`" in line) for line in lines), path
