"""Checkpoints as plain dicts of tensors and primitives: saved atomically, loaded with weights_only=True.

A checkpoint holds everything a trial needs to continue exactly where it stopped (model, optimizer,
scheduler, epoch, RNG states) and everything a reader needs without the trial config (model spec,
input scaling, class names, metrics, the resolved trial config).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.lazy import lazy

if TYPE_CHECKING:
    import torch
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")


CHECKPOINT_FILE = "checkpoint.pt"
# The checkpoint's metrics as JSON beside it: the driver reads which epoch a checkpoint holds without loading it.
METRICS_FILE = "metrics.json"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename: a reader sees the old file or the new, never half.
    The file gets the permissions the umask allows (mkstemp alone would leave it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """weights_only=True: a checkpoint can never execute code when it is read."""
    return torch.load(path, map_location=device, weights_only=True)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "batch_order": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["batch_order"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
