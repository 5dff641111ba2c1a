"""One launch at a time per experiment, and cleaning up after a launch that died.

- On a local or mounted path: a kernel `flock` on `.launch.lock`, held for the driver's life and dropped
  by the kernel when the driver dies, even by SIGKILL, so a crash never leaves a stale lock.
- On an object store (no locks there): a lease object, `.launch.lock`, renewed every RENEW_S seconds; a
  second launch finding a lease renewed within LEASE_S is refused. A lease whose holder was on this
  machine and is gone is taken over at once; one from another machine after LEASE_S. Two launches
  racing for a free lease both write, wait RACE_WAIT_S and read back: S3 and GCS are strongly
  consistent, so exactly one finds its own token and goes on.
- The holder's record names the local Ray session it started; a later launch on this machine ends
  what is left of a dead holder's session (Ray's agents can outlive a SIGKILLed driver for a while).
No Ray here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestrator.errors import ConfigError
from orchestrator.location import LOCK, Location

LEASE_S = 60.0
RENEW_S = 10.0
RACE_WAIT_S = 1.0


def flock(location: Location, name: str, created: bool) -> int:
    """The experiment's lock, held; a ConfigError when another launch holds it."""
    directory = location.local_dir
    if directory is None:
        raise ValueError("flock needs a local experiment directory")
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


class Lease:
    """A lease object on an object store, renewed in the background while the launch runs."""

    def __init__(self, location: Location, token: str) -> None:
        self.location, self.token = location, token
        self.session: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True)

    @classmethod
    def acquire(cls, location: Location, name: str) -> Lease:
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
    lease = Lease._read(location)
    return lease is not None and time.time() - float(lease.get("renewed", 0)) < LEASE_S
