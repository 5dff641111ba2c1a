"""The benchmark's table, its targets, and a GPU utilization sampler (nvidia-smi, when present)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
from typing import Any

import torch

# The targets. CPU: ratios on a 2-core machine; GPU: packing pays off.
MAX_TRIAL_OVER_RAW = 1.10
MAX_SWEEP_OVER_TUTORIAL = 0.7
MIN_TRIALS_PER_GPU = 8
MIN_PACKING_SPEEDUP = 4.0


class GpuSampler:
    """Polls nvidia-smi every half second in a thread; `stop` gives mean/peak utilization and memory."""

    def __init__(self, interval: float = 0.5) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._poll, daemon=True)
        if shutil.which("nvidia-smi"):
            self._thread.start()

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.wait(self._interval):
            try:
                util, used = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.split(",")[:2]
                self.samples.append((float(util), float(used)))
            except (OSError, ValueError, subprocess.SubprocessError):
                continue

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self.samples:
            return {"gpu_utilization_pct": None, "gpu_memory_used_mib_peak": None}
        return {
            "gpu_utilization_pct": statistics.mean(u for u, _ in self.samples),
            "gpu_memory_used_mib_peak": max(mem for _, mem in self.samples),
        }


def targets(out: dict[str, Any], device: torch.device) -> dict[str, Any]:
    trial_over_raw = out["trial"]["epoch_s"] / out["raw"]["epoch_s"]
    sweep_over_tutorial = out["sweep"]["fit_wall_s"] / out["tutorial"]["wall_s"]
    result: dict[str, Any] = {
        "trial_epoch_over_raw": trial_over_raw,
        "trial_epoch_over_raw_ok": trial_over_raw <= MAX_TRIAL_OVER_RAW,
        "sweep_wall_over_tutorial": sweep_over_tutorial,
        "sweep_wall_over_tutorial_ok": sweep_over_tutorial <= MAX_SWEEP_OVER_TUTORIAL,
    }
    if "sweep_one_per_gpu" in out:
        speedup = out["sweep"]["trial_epochs_per_s"] / out["sweep_one_per_gpu"]["trial_epochs_per_s"]
        result["packing_speedup"] = speedup
        result["packing_ok"] = out["sweep"]["trials_per_gpu"] >= MIN_TRIALS_PER_GPU and speedup >= MIN_PACKING_SPEEDUP
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def print_table(out: dict[str, Any]) -> None:
    hw = out["hardware"]
    print(
        f"\nbench on {hw['device']} ({hw.get('gpu', hw['processor'] or hw['platform'])}, {hw['cpus']} CPUs, "
        f"load {hw['load_average'][0]:.1f}), torch {hw['torch']}"
    )
    rows: list[tuple[str, str, Any]] = []
    rows += [("startup", k, v) for k, v in out["startup"].items()]
    rows.append(("ray", "start_s", out["ray_start_s"]))
    rows.append(("raw", "epoch_s (median)", out["raw"]["epoch_s"]))
    rows += [("trial", k, v) for k, v in out["trial"].items()]
    for part in [k for k in out if k.startswith("sweep")] + ["tutorial"]:
        rows += [(part, k, v) for k, v in out[part].items() if k != "test_accuracy"]
        accuracies = list(out[part]["test_accuracy"].values())
        rows.append((part, "test_accuracy (min..max)", f"{min(accuracies):.4f}..{max(accuracies):.4f}"))
    rows += [("targets", k, v) for k, v in out["targets"].items()]
    width = max(len(part) + len(key) for part, key, _ in rows) + 3
    for part, key, value in rows:
        print(f"  {(part + '  ' + key).ljust(width)} {_fmt(value)}")
