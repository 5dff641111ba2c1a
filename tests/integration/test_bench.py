"""The benchmark runs end to end on tiny settings (real Ray Tune, real data) and writes valid JSON."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli


def test_bench_end_to_end_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    args = [
        "bench",
        "--epochs",
        "1",
        "--trials",
        "2",
        "--train-limit",
        "2000",
        "--batch-sizes",
        "256,2000",
        "--tutorial-threads",
        "1",
        "--precision",
        "bf16",
        "--output",
        str(output),
        "--scratch",
        str(tmp_path),
    ]
    done = cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "targets  trial_epoch_over_raw" in done.stdout
    result = json.loads(output.read_text())
    assert result["settings"]["precision"] == "bf16"  # reached the trials through runtime: (bf16 on a CPU)
    for part, key in [
        ("raw", "epoch_s"),
        ("trial", "epoch_s"),
        ("trial", "startup_s"),
        ("sweep", "fit_wall_s"),
        ("tutorial", "wall_s"),
        ("startup", "import_s"),
    ]:
        assert result[part][key] > 0, (part, key)
    assert result["sweep"]["trials"] == result["tutorial"]["trials"] == 2
    assert result["sweep"]["trial_epochs"] == result["tutorial"]["trial_epochs"] == 2
    assert set(result["targets"]) >= {"trial_epoch_over_raw", "sweep_wall_over_tutorial"}
    # Full-batch trials take one identical step from the same seeded init on both sides (bf16 vs fp32).
    orchestrated = next(v for k, v in result["sweep"]["test_accuracy"].items() if "-bs2000-" in k)
    assert abs(orchestrated - result["tutorial"]["test_accuracy"]["bs2000-seed0"]) < 0.03
    assert not list(tmp_path.glob("bench-*"))  # scratch removed


def test_bench_scale_mode_runs_both_sides_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "scale.json"
    done = cli(
        "bench", "--scale", "4", "--train-limit-scale", "256", "--output", str(output), "--scratch", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(output.read_text())["scale"]
    assert [(r["mode"], r["trials"]) for r in rows] == [("orchestrate", 4), ("ray", 4)]
    for row in rows:
        assert row["ended"] == 4 and row["exit"] == 0, row
        assert row["s_per_trial"] > 0 and row["peak_rss_mib"] > 100 and row["files_per_trial"] >= 1, row
    assert "driver peak" in done.stdout
    assert not list(tmp_path.glob("scale-*"))  # each run's scratch removed
