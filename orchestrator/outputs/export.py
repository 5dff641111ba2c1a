"""Exports the selected checkpoint as best/: model.pt (weights + how to rebuild and feed the model) and
manifest.json (where it came from, what it scored, what a rerun needs).

    best = rank_checkpoints(records, metric)[0];  export_best(best, location, context)

On a local or mounted path, best/ is written beside it and swapped in with one atomic rename exchange,
so there is no moment without a best/ once one existed and a reader never sees a half-written one;
staging directories a crash left behind are removed first. On an object store each file is one PUT,
model.pt before manifest.json, and the manifest names the model file's SHA-256, so a reader can tell a
consistent pair. A partial sweep (interrupted) exports nothing. No Ray here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import isolated
from orchestrator.location import BEST, BEST_MANIFEST, BEST_MODEL, Location, umask
from orchestrator.records import CheckpointRef, TrialRecord
from trainables import checkpoint as ckpt
from trainables import metrics as m
from trainables.data import Split
from trainables.lazy import lazy

if TYPE_CHECKING:
    import torch

    from orchestrator.outputs import deploy
else:  # loaded in the child that makes best/'s files: the driver never imports torch (orchestrator.isolated)
    torch = lazy("torch")
    deploy = lazy("orchestrator.outputs.deploy")

STAGING_PREFIX = ".best."
_RENAME_EXCHANGE = 2


def _loaded(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def export_best(
    record: TrialRecord,
    ref: CheckpointRef,
    location: Location,
    context: dict[str, Any],
    test: Split | None = None,
    formats: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Writes best/; `context` adds what the experiment knows (metric, config hash, versions, data);
    `formats` the runtime files (outputs.deploy), checked against the checkpoint on `test`. The driver reads
    and writes the storage; the files are made in a child process (torch: orchestrator.isolated)."""
    checkpoint = location.read_bytes(ref.path, ckpt.CHECKPOINT_FILE)
    files, manifest = isolated.call(best_files, record, ref, checkpoint, context, test, formats)
    if location.local_dir is None:
        for name, data in files.items():  # model first: a manifest never points at a model not yet there
            location.write_bytes(data, BEST, name)
    else:
        replace_dir(location.local_dir, files)
    return manifest


def best_files(
    record: TrialRecord,
    ref: CheckpointRef,
    checkpoint: bytes,
    context: dict[str, Any],
    test: Split | None,
    formats: tuple[str, ...],
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """best/'s files, in the order they are written (model.pt, the runtime files, manifest.json), and the
    manifest."""
    state = _loaded(checkpoint)
    runtime_files, export_section = deploy.deployables(state, test, formats)
    kept = ("model_spec", "input_scale", "scaling", "classes", "runtime")  # runtime: how the trial scored
    model: dict[str, Any] = {k: state[k] for k in kept if k in state}
    payload = {"state_dict": state["model"], **model, "metrics": state.get("metrics", {})}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    model_bytes = buffer.getvalue()
    manifest = {
        "trial_id": record.trial_id,
        "trial_name": record.name,
        "epoch": ref.epoch,
        "test_accuracy": ref.metrics.get(m.TEST_ACCURACY),
        "val_accuracy": ref.metrics.get(m.VAL_ACCURACY),
        **{name: ref.metrics.get(name) for name in m.CLASS_BALANCED},
        "config": record.config.knobs(),
        "model_spec": state["model_spec"],
        "classes": list(state.get("classes", [])),
        "source_checkpoint": ref.path,  # relative to the experiment directory
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "costs": record.costs,
        "scaling": {"input_scale": state.get("input_scale"), **(state.get("scaling") or {})},
        "export": export_section,
        "partial": False,
        # A population member's line (generation, latest copy, the knob values it trained with, which
        # `config` above does not show: that is what it was sampled with).
        **({"population": state["population"]} if state.get("population") else {}),
        **context,
    }
    for name, data in runtime_files.items():
        export_section["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    return {BEST_MODEL: model_bytes, **runtime_files, BEST_MANIFEST: _json(manifest)}, manifest


def _json(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2) + "\n").encode()


def replace_dir(experiment: Path, files: dict[str, bytes]) -> None:
    """best/ replaced in one atomic step (a rename exchange), or created by one rename when new."""
    for leftover in experiment.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staged = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=experiment))
    try:
        os.chmod(staged, 0o777 & ~umask())
        for name, data in files.items():
            ckpt.write_bytes_atomic(staged / name, data)
        target = experiment / BEST
        if not target.exists():
            os.rename(staged, target)
            return
        if _exchange(staged, target):
            return
        # A filesystem without rename exchange (some network mounts): the short gap is unavoidable there.
        old = experiment / f"{STAGING_PREFIX}old"
        os.rename(target, old)
        os.rename(staged, target)
        staged = old
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swaps two paths atomically. False where unsupported."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
