"""A real launch whose driver never loads torch: the model checks, the export of best/ (model.pt and its
runtime files) and the TensorBoard records all happen, and torch is not in the driver's modules at the end.
The unit tier checks the imports (tests/unit/test_driver_without_torch.py); this checks what runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import REPO, table, write_config

LAUNCH_IN_PROCESS = """\
import sys
from orchestrator.commands.main import main
code = main(["launch", sys.argv[1]])
print("torch loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "torch")[:3], flush=True)
sys.exit(code)
"""


def test_a_launch_exports_the_best_without_torch_in_the_driver(tmp_path: Path) -> None:
    extra = "search: {num_samples: 3, space: {lr: {loguniform: [1.0e-3, 1.0e-2]}}}\n"
    config = write_config(tmp_path, "lean", 1, extra, train_limit=256)
    config.write_text(config.read_text().replace("export: {formats: []}", "export: {formats: [onnx]}"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH_IN_PROCESS, str(config)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch loaded: []" in done.stdout, done.stdout[-2000:]
    experiment = tmp_path / "runs" / "lean"
    manifest = json.loads((experiment / "best" / "manifest.json").read_text())
    assert (experiment / "best" / "model.pt").is_file() and (experiment / "best" / "model.onnx").is_file()
    assert manifest["export"]["files"]["model.onnx"]["prediction_agreement"] == 1.0  # checked in the child
    rows = table(experiment)
    assert manifest["test_accuracy"] == max(row["best_test_accuracy"] for row in rows.values())
    assert list((experiment / "_summary").glob("events.out.tfevents.*")), "the driver's TensorBoard run"
