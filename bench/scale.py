"""Scale benchmark: the driver's cost per trial as a sweep grows, beside raw Ray Tune on the same trials.

    python -m orchestrator bench --scale 1000,3000,10000 --output scale.json

Every trial is tiny (mlp hidden [16], 1 epoch on --train-limit samples, lr sampled at random), so what is
measured is the driver and Ray, not training. For each size, two runs, each in a fresh interpreter with
its own private Ray (so each driver's peak memory is its own):
  orchestrate  the product end to end: `orchestrate launch` of a sweep of N trials (progress lines to a
               log file, status.json, TensorBoard, the tables, the export), default early stopping
  ray          raw Ray Tune: `tune.Tuner` over the same trial function, Ray's defaults but reuse_actors
               (as the product sets it: without it every tiny trial starts a worker process)
Per run: wall seconds (Ray's start included), seconds per trial, the driver's peak resident memory
(VmHWM, and its anonymous part alone, sampled), and files per trial in the experiment directory. Sizes run
in the order given; `--scale-ray-max N` runs the raw Ray side only up to N trials.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TINY = {
    "seed": 0,
    "data": {"train_limit": 512, "val_size": 500},
    "trial": {"model": "mlp", "mlp": {"hidden": [16]}, "batch_size": 64, "epochs": 1},
    "search": {"space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}}},
    "resources": {"cpu": 1},
}


def config(trials: int, storage: Path, name: str, train_limit: int) -> dict[str, Any]:
    cfg = json.loads(json.dumps(TINY))
    cfg.update(name=name, storage_path=str(storage))
    cfg["data"]["train_limit"] = train_limit
    cfg["search"]["num_samples"] = trials
    return cfg


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak:
    """Samples this process's anonymous resident memory (RssAnon: what it allocated, not the shared
    libraries' pages VmHWM also counts) every half second; `peak` in MiB."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) / 1024)

    def stop(self) -> float:
        self._stop.set()
        return self.peak


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def child_orchestrate(trials: int, scratch: Path, train_limit: int) -> dict[str, Any]:
    import yaml

    from orchestrator.commands.main import main

    path = scratch / "scale.yaml"
    path.write_text(yaml.safe_dump(config(trials, scratch / "runs", "scale", train_limit)))
    start = time.perf_counter()
    code = main(["launch", str(path)])
    wall = time.perf_counter() - start
    status = json.loads((scratch / "runs" / "scale" / "status.json").read_text())
    return {"exit": code, "wall_s": wall, "ended": len(status["trials"]), "root": str(scratch / "runs" / "scale")}


def child_ray(trials: int, scratch: Path, train_limit: int) -> dict[str, Any]:
    """Raw Ray Tune: the same trial function and data, Ray's default Tuner and RunConfig."""
    import ray
    from ray import tune

    from orchestrator.config import validate
    from orchestrator.tune.searchers import param_space
    from trainables.data_sources import load_dataset
    from trainables.entry import train_trial

    cfg = validate(config(trials, scratch / "runs", "scale", train_limit))
    start = time.perf_counter()
    dataset = load_dataset(cfg.data, cfg.seed)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    trainable = tune.with_parameters(
        train_trial, fixed=cfg.trial.model_dump(mode="json"), data=dataset, board_root=None,
        histogram_every=0, runtime=cfg.runtime.model_dump(mode="json"), selection_metric=cfg.selection.metric,
    )  # fmt: skip
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space(cfg),
        tune_config=tune.TuneConfig(num_samples=trials, reuse_actors=True),  # as the product does
        run_config=tune.RunConfig(name="scale", storage_path=str(scratch / "runs"), verbose=0),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - start
    ended = sum(grid[i].error is None for i in range(len(grid)))
    ray.shutdown()
    return {"exit": 0, "wall_s": wall, "ended": ended, "root": str(scratch / "runs" / "scale")}


def child(mode: str, trials: int, scratch: Path, train_limit: int) -> None:
    anon = AnonPeak()
    out = (child_orchestrate if mode == "orchestrate" else child_ray)(trials, scratch, train_limit)
    out.update(peak_rss_mib=peak_rss_mib(), peak_anon_mib=anon.stop(), files=count_files(Path(out.pop("root"))))
    print("SCALE " + json.dumps(out), flush=True)


def measure(mode: str, trials: int, parent: Path, train_limit: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix=f"scale-{mode}-{trials}-", dir=parent))
    log = scratch / "driver.log"
    command = [sys.executable, "-m", "bench.scale", mode, str(trials), str(scratch), str(train_limit)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    with log.open("w") as f:
        subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("SCALE ")]
    if not lines:
        raise RuntimeError(f"bench: the {mode} run of {trials} trials left no figures; see {log}")
    out = json.loads(lines[-1][len("SCALE ") :])
    out.update(mode=mode, trials=trials, s_per_trial=out["wall_s"] / trials, files_per_trial=out["files"] / trials)
    subprocess.run(["rm", "-rf", str(scratch)], check=False)
    print(f"bench: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def print_scale(rows: list[dict[str, Any]]) -> None:
    header = ("trials", "side", "wall", "s/trial", "x smallest", "driver peak", "(anon)", "files/trial")
    print("{:>7}  {:<11}  {:>8}  {:>7}  {:>10}  {:>11}  {:>8}  {:>11}".format(*header))
    smallest: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r["trials"]):
        base = smallest.setdefault(row["mode"], row["s_per_trial"])
        print(
            f"{row['trials']:>7}  {row['mode']:<11}  {row['wall_s']:>7.0f}s  {row['s_per_trial']:>7.3f}  "
            f"{row['s_per_trial'] / base:>9.2f}x  {row['peak_rss_mib']:>7.0f} MiB  {row['peak_anon_mib']:>4.0f} MiB  "
            f"{row['files_per_trial']:>11.1f}"
        )


def run_scale(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in str(args.scale).split(",") if s.strip()]
    parent = Path(args.scratch or tempfile.gettempdir())
    ray_max = 0 if args.scale_no_ray else (args.scale_ray_max or max(sizes))
    runs = [(mode, n) for n in sizes for mode in ("orchestrate", "ray") if mode == "orchestrate" or n <= ray_max]
    rows = [measure(mode, n, parent, args.train_limit_scale) for mode, n in runs]
    print_scale(rows)
    load = os.getloadavg()
    Path(args.output).write_text(json.dumps({"scale": rows, "load_average": load}, indent=2) + "\n")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
