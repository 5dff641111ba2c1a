"""One launch per experiment directory, and a resume only with the config the experiment started with.

    python -m orchestrator.launch configs/smoke.yaml            # new, or resume runs/smoke
    python -m orchestrator.launch configs/smoke.yaml --fresh    # runs/smoke-2 (runs/smoke is kept)

Before Ray starts, the launch claims `<storage>/<name>`:
- a lock (`flock` on `.launch.lock`) held for the driver's lifetime: a second launch on the same
  directory is refused, never interleaved. The kernel drops the lock when the driver dies, even by
  SIGKILL, so a crash never leaves a stale lock behind.
- `experiment_config.json`: the resolved config and its hash, written by the launch that created the
  experiment. A rerun whose config hashes differently is refused, naming the fields that changed.
  Where and how it runs (`storage_path`, `ray`) is left out of the hash: moving the directory or
  joining another cluster does not change what the experiment computes.

Both need a local (or mounted) filesystem; with a URI storage_path neither is available and the launch
goes ahead unguarded. No Ray here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import ExperimentConfig
from orchestrator.errors import ConfigError

CONFIG_FILE = "experiment_config.json"
LOCK_FILE = ".launch.lock"
# Operational settings: they change where or how the sweep runs, not what it computes.
NOT_HASHED = ("storage_path", "ray")


def fingerprint(cfg: ExperimentConfig) -> dict[str, Any]:
    resolved = cfg.model_dump(mode="json", exclude=set(NOT_HASHED))
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, "config": resolved}


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ, e.g. ['trial.lr', 'search.space.model']."""
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted(set(old) | set(new)):
            paths += changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return paths
    return [] if old == new else [prefix.rstrip(".")]


def fresh_name(cfg: ExperimentConfig, storage: str) -> ExperimentConfig:
    """The config renamed to the first free `<name>-N`; the old directory is never touched."""
    if "://" in storage or not (Path(storage) / cfg.name).exists():
        return cfg
    n = 2
    while (Path(storage) / f"{cfg.name}-{n}").exists():
        n += 1
    return cfg.model_copy(update={"name": f"{cfg.name}-{n}"})


@dataclass
class Claim:
    """The experiment directory held by this launch; `abandon` undoes what the claim itself created."""

    directory: Path | None
    lock_fd: int | None = None
    created: list[Path] = field(default_factory=list)  # directories this claim made
    written: list[Path] = field(default_factory=list)  # files this claim added to an existing directory

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing drops the flock
            self.lock_fd = None

    def abandon(self) -> None:
        """A refusal after the claim (e.g. the cluster is too small) leaves nothing behind."""
        self.release()
        for path in self.created:
            shutil.rmtree(path, ignore_errors=True)
        for path in self.written:
            path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(cfg: ExperimentConfig, storage: str) -> Claim:
    """Lock `<storage>/<name>` and check or record its config. Raises ConfigError; writes nothing then."""
    if "://" in storage:
        return Claim(directory=None)
    directory = Path(storage) / cfg.name
    current = fingerprint(cfg)
    recorded = _read_fingerprint(directory)
    if recorded is not None and recorded.get("sha256") != current["sha256"]:
        fields = changed_fields(recorded.get("config", {}), current["config"]) or ["config"]
        raise ConfigError(", ".join(fields), f"changed since the experiment at {directory} started; a resume "
                          "needs the same config (use --fresh for a new experiment directory)")
    created = _missing_parents(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [p for p in (directory / LOCK_FILE, directory / CONFIG_FILE) if not p.exists()]
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError("name", f"experiment {directory} is in use by another launch (pid {holder}); wait "
                          "for it to finish or use --fresh", cfg.name) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    if recorded is None:
        _write_json(directory / CONFIG_FILE, current)
    return Claim(directory=directory, lock_fd=fd, created=created, written=[] if created else written)


def _missing_parents(directory: Path) -> list[Path]:
    """The outermost directory a claim will create, so that abandoning it can remove exactly that."""
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    return [missing[-1]] if missing else []


def _read_fingerprint(directory: Path) -> dict[str, Any] | None:
    path = directory / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"unreadable experiment record ({exc}); use --fresh") from None


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
