"""The `orchestrate` command (also `python -m orchestrator`): launch, report, evaluate, pull, bench.

    orchestrate launch configs/smoke.yaml          # train; rerun the same command to resume
    orchestrate report runs/smoke                  # leaderboard, plots, report.md + report.html
    orchestrate evaluate runs/smoke/best           # test accuracy, per class, confusion matrix
    orchestrate pull s3://bucket/sweeps/smoke ./smoke-copy     # a local copy for TensorBoard
    orchestrate bench                              # throughput against a bare loop and a tutorial sweep

Each subcommand returns its exit code; 2 always means a usage, config or data error, said in one line.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable

from orchestrator.commands import evaluate, launch, pull, report

EPILOG = """\
examples:
  orchestrate launch configs/smoke.yaml           # a first sweep: 4 trials, under a minute on 2 CPU cores
  orchestrate report runs/smoke                   # the leaderboard and runs/smoke/report/report.html
  orchestrate evaluate runs/smoke/best --predict shoe.png
  orchestrate COMMAND --help                      # each command's options, examples and exit codes

`python -m orchestrator COMMAND` is the same command; `python -m orchestrator.launch CONFIG` still works.
exit codes: 0 done; 1 the sweep ran but produced no usable model; 2 a usage, config or data error (one line,
nothing written); 75 the storage failed (disk full, or the store stayed down), stopped resumably (make room,
rerun); 130 / 143 interrupted by SIGINT / SIGTERM (rerun the same command to resume).
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit 2 (argparse's own prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"usage error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _bench(args: argparse.Namespace) -> int:
    from bench.run import run_command  # the benchmark lives outside the product package

    return run_command(args)


HELP = {
    "launch": "train a sweep from a YAML file, or resume it (rerun the same command)",
    "report": "print the leaderboard and write report.md / report.html with plots",
    "evaluate": "score a model on its test split, or classify image files",
    "pull": "copy an experiment from an object store to a local directory",
    "bench": "measure throughput against a bare loop and a tutorial-style sweep",
}


def parser() -> argparse.ArgumentParser:
    root = _Parser(
        prog="orchestrate",
        description="Train many PyTorch models at once with Ray Tune, stop the "
        "weak ones early, review them, and keep the best by score.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    commands = root.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    table: list[tuple[str, object, Callable[[argparse.Namespace], int]]] = [
        ("launch", launch, launch.run),
        ("report", report, report.run),
        ("evaluate", evaluate, evaluate.run),
        ("pull", pull, pull.run),
    ]
    for name, module, handler in table:
        sub = commands.add_parser(
            name,
            help=HELP[name],
            description=HELP[name],
            epilog=getattr(module, "EXAMPLES", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)  # type: ignore[attr-defined]
        sub.set_defaults(handler=handler)
    from bench.cli import EXAMPLES as BENCH_EXAMPLES
    from bench.cli import add_arguments as bench_arguments

    sub = commands.add_parser(
        "bench",
        help=HELP["bench"],
        description=HELP["bench"],
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_arguments(sub)
    sub.set_defaults(handler=_bench)
    return root


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        code = int(args.handler(args))
        # The command's objects in reference cycles (a guarded filesystem and its S3 client among them) are freed
        # now, while the AWS SDK is up: left to the interpreter's last collection, after pyarrow's exit hook has
        # shut the SDK down, an S3 client's teardown aborts the process ("terminate called ...", exit 134).
        gc.collect()
        sys.stdout.flush()  # here, not at exit: a reader that left (`... | head`) is met inside this try
        return code
    except BrokenPipeError:  # `orchestrate report ... | head`: the reader left; end quietly
        _drop_stdout()
        return 0
    except SystemExit:  # --help and usage errors exit from parse_args: their output may meet a closed pipe too
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_stdout()
        raise
    except KeyboardInterrupt:  # outside a sweep (a sweep handles its own interrupts)
        print("interrupted", file=sys.stderr)
        return 130


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's own flush at exit has nowhere left to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def launch_main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.launch ...` (the original spelling): `launch` as the only subcommand."""
    return main(["launch", *(sys.argv[1:] if argv is None else argv)])
