"""One launch per experiment, a resume only with the config it started with, and only from files we trust.

    python -m orchestrator launch configs/smoke.yaml            # new, or resume runs/smoke
    python -m orchestrator launch configs/smoke.yaml --fresh    # runs/smoke-2 (runs/smoke is kept)

Before Ray starts, a launch claims the experiment:
- **One launch at a time.** On a local or mounted path: a kernel `flock` on `.launch.lock`, held for the
  driver's life and dropped by the kernel when the driver dies, even by SIGKILL. On an object store
  (no locks there): a lease object, `.launch.lock`, renewed every RENEW_S seconds; a second launch
  finding a lease renewed within LEASE_S is refused. A lease whose holder was on this machine and is
  gone is taken over at once; one from another machine after LEASE_S. Two launches racing for a free
  lease both write, wait, and read back: S3 and GCS are strongly consistent, so exactly one finds its
  own token and goes on.
- **The same config.** `experiment.json` records the resolved config and its hash. A rerun whose config
  hashes differently is refused, naming the fields that changed, once the experiment has Tune state
  (until then nothing has run, and the record is simply replaced). `storage_path` and `ray` are left
  out of the hash, and so is `tracking`: moving the directory, joining another cluster or sending the runs
  to MLflow does not change what it computes.
- **Trusted state.** Resuming unpickles Ray's experiment state, so a local experiment whose directory or
  state files are writable by other users, or owned by someone else, is refused (as ssh refuses a
  group-writable key). Launches run with `umask | 022`, so nothing they create is writable by others;
  on an object store the bucket's access policy is that boundary.
No Ray here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestrator import versions
from orchestrator.config import ExperimentConfig
from orchestrator.errors import ConfigError
from orchestrator.location import LOCK, RECORD, STATUS, Location

NOT_HASHED = ("name", "storage_path", "ray", "tracking")  # what it is called, where it runs, who watches
TUNE_STATE = "tuner.pkl"  # Ray's: present once a Tuner was created for this experiment
LEASE_S = 60.0
RENEW_S = 10.0
RACE_WAIT_S = 1.0


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
    lock_fd: int | None = None
    lease: _Lease | None = None
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
                shutil.rmtree(self.location.local_dir, ignore_errors=True)
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
    result = Claim(location, created)
    if location.is_local:
        result.lock_fd = _flock(location, cfg.name, created)
    else:
        location.makedirs()
        result.lease = _Lease.acquire(location, cfg.name)
    if recorded is None or recorded.get("sha256") != current["sha256"]:
        if recorded is None:
            result.written.append(RECORD)
        location.write_json({**current, "versions": versions.libraries()}, RECORD)
    if not started and location.exists(STATUS):
        location.delete(STATUS)  # a status left by a launch that never got to train
    return result


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


def _flock(location: Location, name: str, created: bool) -> int:
    directory = location.local_dir
    assert directory is not None  # noqa: S101 - is_local was checked by the caller
    lock = directory / LOCK
    if lock.exists() and not lock.is_file():
        raise ConfigError(str(lock), "is not a file (the launch lock); move it away or use --fresh")
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
        os.close(fd)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise ConfigError(
            "name",
            f"experiment {directory} is in use by another launch (pid {holder.get('pid', '?')}); "
            "wait for it to finish or use --fresh",
            name,
        ) from None
    reap_dead_session(_holder(os.pread(fd, 4096, 0).decode(errors="replace")))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode() + b"\n", 0)
    return fd


def _holder(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"pid": text.strip() or "?"}
    return value if isinstance(value, dict) else {}


def reap_dead_session(holder: dict[str, Any]) -> None:
    """Ray's helper processes of a driver that died on this machine: they hold nothing, end them."""
    session = holder.get("session")
    if not isinstance(session, str) or not session.startswith("/") or holder.get("host") != socket.gethostname():
        return
    if _alive(holder.get("pid")):
        return
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid != os.getuid() or int(proc.name) == os.getpid():
                continue
            if _uses(proc, session.rstrip("/") + "/"):
                os.kill(int(proc.name), 9)
        except (OSError, ValueError):
            continue


def _uses(proc: Path, session: str) -> bool:
    """Ray's processes name their session on the command line or keep its log files open (agents rename
    themselves to `ray::DashboardAgent`, so only their open files tell)."""
    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if session in cmdline:
        return True
    return any(os.readlink(fd).startswith(session) for fd in (proc / "fd").iterdir())


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lease:
    """A lease object on an object store, renewed in the background while the launch runs."""

    def __init__(self, location: Location, token: str) -> None:
        self.location, self.token = location, token
        self.session: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True)

    @classmethod
    def acquire(cls, location: Location, name: str) -> _Lease:
        held = cls._read(location)
        if held is not None:
            age = time.time() - float(held.get("renewed", 0))
            same_host_dead = held.get("host") == socket.gethostname() and not _alive(held.get("pid"))
            if age < LEASE_S and not same_host_dead:
                raise ConfigError(
                    "name",
                    f"experiment {location.display} is in use by another launch (pid "
                    f"{held.get('pid', '?')} on {held.get('host', '?')}, lease renewed {age:.0f} s "
                    f"ago); wait for it to finish, rerun after {LEASE_S:.0f} s if it died, or use "
                    "--fresh",
                    name,
                )
            reap_dead_session(held)
        lease = cls(location, uuid.uuid4().hex)
        lease._write()
        time.sleep(RACE_WAIT_S)
        won = cls._read(location)
        if won is None or won.get("token") != lease.token:
            raise ConfigError(
                "name",
                f"experiment {location.display} was claimed by another launch at the same "
                "moment; wait for it to finish or use --fresh",
                name,
            )
        lease._thread.start()
        return lease

    @staticmethod
    def _read(location: Location) -> dict[str, Any] | None:
        try:
            value = location.read_json(LOCK)
        except (FileNotFoundError, ValueError):
            return None
        except OSError:
            if location.info(LOCK).type == pafs.FileType.NotFound:
                return None
            raise
        return value if isinstance(value, dict) else None

    def _write(self) -> None:
        self.location.write_json(
            {
                "token": self.token,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "renewed": time.time(),
                "session": self.session,
            },
            LOCK,
        )

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_S):
            with contextlib.suppress(OSError):
                self._write()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError, ValueError):
            held = self._read(self.location)
            if held is not None and held.get("token") == self.token:
                self.location.delete(LOCK)


def held(location: Location) -> bool:
    """Whether a launch holds the experiment right now (its driver is alive), without disturbing it."""
    if location.local_dir is not None:
        lock = location.local_dir / LOCK
        if not lock.is_file():
            return False
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the shared lock, if it was taken
        return False
    lease = _Lease._read(location)
    return lease is not None and time.time() - float(lease.get("renewed", 0)) < LEASE_S
