"""Which checkpoint a restarted trial continues from, and putting its state back.

Ray hands a restarted trial its latest checkpoint. If that one is truncated or corrupt (a copy cut
short by a crash, a bad disk), the trial warns and falls back to the newest older checkpoint of the
same trial that loads (its sibling `checkpoint_*` directories, when storage is a local or mounted
path). If none loads, the trial fails loudly rather than silently starting from scratch. Every file
is read with `weights_only=True`, so a checkpoint crafted to run code when unpickled is refused
like any other corrupt one. No Ray here.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from trainables import checkpoint as ckpt

REQUIRED_KEYS = ("model", "optimizer", "epoch", "rng")
_INDEX = re.compile(r"^checkpoint_(\d+)$")


class CheckpointUnusableError(RuntimeError):
    """No checkpoint of this trial could be loaded: continuing from scratch would hide the loss."""


def candidates(latest: Path, search_siblings: bool) -> list[Path]:
    """The given checkpoint directory, then its older siblings, newest first."""
    found = [latest]
    index = _index(latest)
    if search_siblings and index is not None:
        older = [(i, p) for p in latest.parent.glob("checkpoint_*") if (i := _index(p)) is not None and i < index]
        found += [p for _, p in sorted(older, reverse=True)]
    return found


def _index(directory: Path) -> int | None:
    match = _INDEX.match(directory.name)
    return int(match.group(1)) if match else None


def load_state(latest: Path, search_siblings: bool, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The newest loadable checkpoint among `candidates`; warns for each one skipped."""
    problems = []
    for directory in candidates(latest, search_siblings):
        try:
            state = ckpt.load(directory / ckpt.CHECKPOINT_FILE, device)
            missing = [key for key in REQUIRED_KEYS if key not in state]
            if missing:
                raise KeyError(f"missing {', '.join(missing)}")
        # Corruption shows up as many exception types (zip, pickle, EOF, key); any of them means
        # "not this one", and weights_only refusals of code-running pickles land here too.
        except Exception as exc:
            problems.append(f"{directory.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            warnings.warn(
                f"checkpoint {directory} is unusable ({problems[-1]}); trying an older one",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        if directory != latest:
            warnings.warn(
                f"resuming from {directory} (epoch {state['epoch']}) instead of the unusable {latest.name}",
                RuntimeWarning,
                stacklevel=2,
            )
        return state
    raise CheckpointUnusableError("no usable checkpoint to resume from: " + "; ".join(problems))


def apply_state(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scheduler: Any = None,
) -> int:
    """Model, optimizer, LR scheduler (when both sides have one) and RNG back in place; returns the epoch."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scheduler") is not None and scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    ckpt.restore_rng(state["rng"], generator)
    return int(state["epoch"])
