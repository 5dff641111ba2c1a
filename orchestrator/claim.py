"""One launch per experiment, a resume only with the config it started with, and only from files we trust.

    python -m orchestrator launch configs/smoke.yaml            # new, or resume runs/smoke
    python -m orchestrator launch configs/smoke.yaml --fresh    # runs/smoke-2 (runs/smoke is kept)

Before Ray starts, a launch claims the experiment:
- **One launch at a time**: a `flock` locally, a lease object on an object store (`orchestrator.lock`).
- **The same config.** `experiment.json` records the resolved config and its hash. A rerun whose config
  hashes differently is refused, naming the fields that changed, once the experiment has Tune state
  (until then nothing has run, and the record is simply replaced). `storage_path` and `ray` are left
  out of the hash, and so are `name` and `tracking`: renaming or moving the directory, joining another
  cluster or sending the runs to MLflow does not change what it computes.
- **Trusted state.** Resuming unpickles Ray's experiment state, so a local experiment whose directory or
  state files are writable by other users, or owned by someone else, is refused (as ssh refuses a
  group-writable key). Launches run with `umask | 022`, so nothing they create is writable by others;
  on an object store the bucket's access policy is that boundary.
No Ray here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import versions
from orchestrator.config import ExperimentConfig
from orchestrator.errors import ConfigError
from orchestrator.location import RECORD, STATUS, Location
from orchestrator.lock import Lease, flock, held

__all__ = ["Claim", "claim", "fresh", "held", "read_record"]

NOT_HASHED = ("name", "storage_path", "ray", "tracking")  # what it is called, where it runs, who watches
TUNE_STATE = "tuner.pkl"  # Ray's: present once a Tuner was created for this experiment


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


def fresh(location: Location) -> Location:
    """The first free `<name>-N` beside it; the old experiment is never touched."""
    if not location.exists():
        return location
    n = 2
    while location.with_name(f"{location.name}-{n}").exists():
        n += 1
    return location.with_name(f"{location.name}-{n}")


def read_record(location: Location) -> dict[str, Any] | None:
    """The experiment record, or None for a new experiment; ConfigError when it is unreadable."""
    if not location.is_file(RECORD):
        if location.exists(RECORD):
            raise ConfigError(location.uri(RECORD), "is not a file; move it away or use --fresh")
        return None
    try:
        record = location.read_json(RECORD)
    except (OSError, ValueError) as exc:
        raise ConfigError(location.uri(RECORD), f"unreadable experiment record ({exc}); use --fresh") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ConfigError(
            location.uri(RECORD), "not an experiment record (expected an object with a config); use --fresh"
        )
    return record


@dataclass
class Claim:
    """The experiment held by this launch; `abandon` undoes what the claim itself created."""

    location: Location
    created: bool  # the experiment directory did not exist before this claim
    created_root: Path | None = None  # locally: the outermost directory the claim made (storage_path's too)
    lock_fd: int | None = None
    lease: Lease | None = None
    written: list[str] = field(default_factory=list)

    @property
    def resuming(self) -> bool:
        return self.location.exists(TUNE_STATE)

    def note_session(self, session_dir: str) -> None:
        """Records the local Ray session this launch started, so the next launch can clean up after it."""
        self._holder_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "session": session_dir}))

    def _holder_text(self, text: str) -> None:
        if self.lock_fd is not None:
            os.ftruncate(self.lock_fd, 0)
            os.pwrite(self.lock_fd, text.encode() + b"\n", 0)
        elif self.lease is not None:
            self.lease.session = json.loads(text).get("session")

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing drops the flock
            self.lock_fd = None
        if self.lease is not None:
            self.lease.stop()
            self.lease = None

    def abandon(self) -> None:
        """A refusal after the claim (e.g. the cluster is too small) leaves nothing behind."""
        self.release()
        if self.created:
            if self.location.local_dir is not None:
                shutil.rmtree(self.created_root or self.location.local_dir, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    self.location.fs.delete_dir(self.location.path)
            return
        for name in self.written:
            with contextlib.suppress(OSError):
                self.location.delete(name)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(cfg: ExperimentConfig, location: Location) -> Claim:
    """Hold the experiment and check or record its config. Raises ConfigError, having written nothing."""
    current = fingerprint(cfg)
    recorded = read_record(location)
    started = location.exists(TUNE_STATE)
    if recorded is not None and started and recorded.get("sha256") != current["sha256"]:
        fields = changed_fields(recorded.get("config", {}), current["config"]) or ["config"]
        raise ConfigError(
            ", ".join(fields),
            f"changed since the experiment at {location.display} started; a "
            "resume needs the same config (use --fresh for a new experiment)",
        )
    if started and location.local_dir is not None:
        check_trusted(location.local_dir)
    created = not location.exists()
    result = Claim(location, created, created_root=_outermost_missing(location.local_dir))
    if location.is_local:
        result.lock_fd = flock(location, cfg.name, created)
    else:
        location.makedirs()
        result.lease = Lease.acquire(location, cfg.name)
    if recorded is None or recorded.get("sha256") != current["sha256"]:
        if recorded is None:
            result.written.append(RECORD)
        location.write_json({**current, "versions": versions.libraries()}, RECORD)
    if not started and location.exists(STATUS):
        location.delete(STATUS)  # a status left by a launch that never got to train
    return result


def _outermost_missing(directory: Path | None) -> Path | None:
    """The outermost directory a claim will create, so that abandoning it removes exactly that."""
    if directory is None:
        return None
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    return missing[-1] if missing else None


def check_trusted(directory: Path) -> None:
    """Refuse state another user could have written: Ray unpickles it on resume."""
    me = os.getuid()
    for path in [directory, *(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".launch"))]:
        info = path.lstat()
        if info.st_uid != me or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            who = (
                "owned by another user"
                if info.st_uid != me
                else f"writable by other users (mode {info.st_mode & 0o777:o})"
            )
            raise ConfigError(
                "storage_path",
                f"{path} is {who}; resuming would unpickle what another user could "
                f"have written: `chmod -R go-w {directory}` if you trust it, or use --fresh",
            )
