"""The benchmark's command-line options (`python -m orchestrator bench --help`)."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  python -m orchestrator bench --tutorial-threads 1 --output bench.json     # ~5 min on 2 CPU cores
  python -m orchestrator bench --device cuda --compare-reuse
  python -m orchestrator bench --scale 1000,3000,10000 --output scale.json  # the driver at 10k trials

exit codes: 0 measured (the figures and the targets are in the table and the JSON)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mlp", help="model family (its default architecture)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size of the raw loop and the single trial")
    p.add_argument("--batch-sizes", default="32,256,10000", help="batch sizes the sweep cycles through")
    p.add_argument("--trials", type=int, default=6, help="sweep trials (rounded up to a multiple of the batch sizes)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial (and timed raw-loop epochs)")
    p.add_argument("--train-limit", type=int, default=10_000, help="training samples (the split's first N)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs per trial (its torch threads)")
    p.add_argument("--gpu-fraction", type=float, default=0.125, help="GPU per trial in the sweep, on a GPU")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in every orchestrated part")
    p.add_argument("--no-reuse-actors", action="store_true", help="start a fresh worker for every trial")
    p.add_argument("--compare-reuse", action="store_true", help="also run the sweep with the other reuse_actors")
    p.add_argument("--tutorial-workers", type=int, default=0, help="DataLoader workers of the tutorial baseline")
    p.add_argument(
        "--tutorial-threads",
        type=int,
        default=0,
        help="torch threads of the tutorial baseline on a CPU; 0 = every CPU (it owns the machine)",
    )
    p.add_argument(
        "--scale",
        default=None,
        help="instead: sweeps of these many tiny trials (e.g. 1000,3000,10000), the product beside raw Ray Tune",
    )
    p.add_argument("--scale-no-ray", action="store_true", help="with --scale: leave the raw Ray Tune runs out")
    p.add_argument("--scale-ray-max", type=int, default=0, help="with --scale: raw Ray Tune only up to this size")
    p.add_argument(
        "--train-limit-scale", type=int, default=512, help="with --scale: training samples of each tiny trial"
    )
    p.add_argument("--output", default="bench.json", help="where the JSON results go")
    p.add_argument(
        "--scratch",
        default=None,
        help="parent of the run's scratch directory (Ray results, "
        "torchvision files; removed at the end); default: the system's temp directory",
    )
