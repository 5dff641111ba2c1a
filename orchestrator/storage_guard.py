"""Storage that fails the way a long sweep can bear: a pyarrow filesystem wrapped once, for us and for Ray.

    fs = guard(pafs.FileSystem.from_uri("s3://bucket/prefix")[0])   # what Location holds and Ray is given

Every read and write of an experiment, the driver's and the trials' (Ray is handed this filesystem, so
its checkpoint uploads and experiment-state snapshots go through it too), gets:
- **Retries on an object store**: a stall, a reset connection, a 5xx or throttling is retried with
  backoff for up to `patience_s` (the `ORCHESTRATOR_STORE_PATIENCE_S` environment variable of the launch,
  default 300 s), with one warning line per outage naming what it waits for; each try is bounded by the
  S3 client's own timeouts. A store still failing after that raises `StorageFault` (kind "unavailable").
  Writes are buffered and sent whole at close, so a retry resends the whole object.
- **Atomic local writes**: a file is written to a temporary name and renamed into place on close, so
  a full disk never leaves a truncated file under a real name; Ray's experiment state and its searcher
  state are renamed into place together (`_SnapshotGroup`), so a resume never reads one newer than the
  other (a searcher that believes every trial was created beside a state that lists fewer).
- **A full disk named**: ENOSPC/EDQUOT anywhere becomes `StorageFault` (kind "full") naming the path.

A process that meets a fault calls the hook `on_fault` set for it (the driver's stops the sweep the way
an interrupt does). No Ray here.
"""

from __future__ import annotations

import errno
import io
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

PATIENCE_ENV = "ORCHESTRATOR_STORE_PATIENCE_S"
DEFAULT_PATIENCE_S = 300.0
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Errors a retry cannot fix: the key or bucket is not there, or we may not touch it.
_PERMANENT = re.compile(r"ACCESS_DENIED|AccessDenied|NoSuchBucket|NO_SUCH_BUCKET|INVALID_ACCESS_KEY|SIGNATURE")
# Ray's experiment snapshot: the state (trials) and the searcher's state must move together.
_STATE = re.compile(r"^experiment_state-.*\.json$")
_SEARCHER = re.compile(r"^(basic-variant-state-.*\.json|search_gen_state-.*\.json|searcher-state-.*\.pkl)$")

T = TypeVar("T")
_hook: Callable[[StorageFault], None] | None = None


class StorageFault(OSError):
    """The disk is full (`kind` "full") or the store stayed unreachable (`kind` "unavailable")."""

    storage_fault = True  # how the trial side recognises it without importing this module

    def __init__(self, kind: str, path: str, detail: str) -> None:
        self.kind, self.path, self.detail = kind, path, detail
        code = errno.ENOSPC if kind == "full" else errno.EIO
        super().__init__(code, self.line())

    def line(self) -> str:
        if self.kind == "full":
            return f"the disk is full: could not write {self.path} ({self.detail})"
        return f"the store stopped answering: {self.detail} (at {self.path})"

    def __reduce__(self) -> Any:  # crosses from a trial worker to the driver intact
        return (StorageFault, (self.kind, self.path, self.detail))


def on_fault(hook: Callable[[StorageFault], None] | None) -> None:
    """Who hears of a fault in this process (the driver: stop the sweep)."""
    global _hook
    _hook = hook


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def as_fault(exc: BaseException, path: str = "") -> StorageFault | None:
    """The fault an exception stands for (a full disk, or ours), else None."""
    if isinstance(exc, StorageFault):
        return exc
    if is_disk_full(exc):
        return StorageFault("full", path or str(getattr(exc, "filename", "") or "?"), os.strerror(errno.ENOSPC))
    return None


def reraise(exc: OSError, path: str) -> None:
    """Raise `exc` as the fault it stands for (telling this process's hook), or as it is."""
    fault = as_fault(exc, path)
    if fault is None:
        raise exc
    _raise(fault)


def declare(exc: BaseException) -> bool:
    """Whether `exc` is a storage fault; if so, this process's hook hears of it (again is harmless)."""
    fault = as_fault(exc)
    if fault is not None and _hook is not None:
        _hook(fault)
    return fault is not None


def _raise(fault: StorageFault) -> None:
    if fault.kind == "unavailable":
        _Outage.broken = fault
    if _hook is not None:
        _hook(fault)
    raise fault


def guard(fs: pafs.FileSystem, patience_s: float | None = None) -> pafs.FileSystem:
    """`fs` wrapped (once); `patience_s` defaults to the launch's environment, else 300 s."""
    if isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, GuardedHandler):
        return fs
    if patience_s is None:
        patience_s = float(os.environ.get(PATIENCE_ENV, DEFAULT_PATIENCE_S))
    return pafs.PyFileSystem(GuardedHandler(_synchronous(fs), patience_s))


def _synchronous(fs: pafs.FileSystem) -> pafs.FileSystem:
    """An S3 filesystem whose writes upload in the caller's thread. Its default hands them to Arrow's IO
    threads, the same pool `copy_files` runs its files on, which then call back into this handler: a write
    waiting for an IO thread that waits for the write would deadlock."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    rebuild, (options,) = fs.__reduce__()
    return rebuild({**options, "background_writes": False})


def inner(fs: pafs.FileSystem) -> pafs.FileSystem:
    """The filesystem under the guard (for a check that must not wait out a whole outage)."""
    if isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, GuardedHandler):
        return fs.handler.fs
    return fs


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(inner(fs), pafs.LocalFileSystem)


class _Outage:
    """One warning line per outage of this process, and the time it began."""

    lock = threading.Lock()
    since: float | None = None
    # Once an outage outlasted the patience, later calls of this process fail at their first error instead of
    # waiting it out again (the stop's last save, the records read back): the sweep is already stopping.
    broken: StorageFault | None = None

    warned = float("-inf")
    QUIET_S = 60.0  # calls already in flight when the store came back fail late: still the same outage

    @classmethod
    def begin(cls, what: str, exc: BaseException, patience_s: float) -> None:
        with cls.lock:
            if cls.since is not None:
                return
            cls.since = time.monotonic()
            if cls.since - cls.warned < cls.QUIET_S:
                return
            cls.warned = cls.since
        print(
            f"warning: storage is not answering ({what}: {_first_line(exc)}); retrying for up to {patience_s:g} s",
            file=sys.stderr,
            flush=True,
        )

    @classmethod
    def end(cls) -> None:
        cls.since = cls.broken = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def transient(exc: BaseException) -> bool:
    """Worth asking again: not a missing path, a permission, a full disk or a fault already declared."""
    return _transient(exc)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        return False
    if isinstance(exc, StorageFault) or is_disk_full(exc):
        return False
    return isinstance(exc, OSError) and not _PERMANENT.search(str(exc))


class GuardedHandler(pafs.FileSystemHandler):
    """The pyarrow handler behind `guard`: retries (object stores), atomic writes (local), faults named."""

    def __init__(self, fs: pafs.FileSystem, patience_s: float) -> None:
        self.fs, self.patience_s = fs, patience_s
        self.local = isinstance(fs, pafs.LocalFileSystem)
        self.snapshots = _SnapshotGroup()

    def __reduce__(self) -> Any:
        return (GuardedHandler, (self.fs, self.patience_s))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuardedHandler) and self.fs.equals(other.fs)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"guarded+{self.fs.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    # ----------------------------------------------------------------- retries

    def _call(self, what: str, path: str, fn: Callable[[], T]) -> T:
        deadline, delay = None, 0.5
        while True:
            try:
                value = fn()
            except Exception as exc:
                if (fault := as_fault(exc, path)) is not None:
                    _raise(fault)
                if self.local or not _transient(exc):
                    raise
                if _Outage.broken is not None:
                    raise StorageFault("unavailable", path, _Outage.broken.detail) from None
                now = time.monotonic()
                deadline = deadline or now + self.patience_s
                _Outage.begin(f"{what} {path}", exc, self.patience_s)
                if now >= deadline:
                    _raise(
                        StorageFault(
                            "unavailable", path, f"{what} failed for {self.patience_s:g} s: {_first_line(exc)}"
                        )
                    )
                time.sleep(min(delay, max(0.0, deadline - now)) * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 15.0)
                continue
            if deadline is not None or _Outage.broken is not None:
                _Outage.end()
            return value

    # ----------------------------------------------------------------- reads

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._call("reading", paths[0] if paths else "", lambda: self.fs.get_file_info(paths))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._call("listing", selector.base_dir, lambda: self.fs.get_file_info(selector))

    def _read_all(self, path: str) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(path) as stream:
                return bytes(stream.read())

        return self._call("reading", path, read)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        if self.local:
            return self._call("reading", path, lambda: self.fs.open_input_stream(path))
        return pa.BufferReader(self._read_all(path))

    def open_input_file(self, path: str) -> pa.NativeFile:
        if self.local:
            return self._call("reading", path, lambda: self.fs.open_input_file(path))
        return pa.BufferReader(self._read_all(path))

    # ----------------------------------------------------------------- writes

    def open_output_stream(self, path: str, metadata: dict[str, str] | None) -> pa.NativeFile:
        return pa.PythonFile(_Writer(self, path), mode="w")

    def open_append_stream(self, path: str, metadata: dict[str, str] | None) -> pa.NativeFile:
        return self._call("writing", path, lambda: self.fs.open_append_stream(path, metadata))

    def _put(self, path: str, data: bytes) -> None:
        def put() -> None:
            with self.fs.open_output_stream(path) as stream:
                stream.write(data)

        self._call("writing", path, put)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._call("creating", path, lambda: self.fs.create_dir(path, recursive=recursive))

    def delete_dir(self, path: str) -> None:
        self._call("deleting", path, lambda: self.fs.delete_dir(path))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._call("deleting", path, lambda: self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok))

    def delete_root_dir_contents(self) -> None:
        self._call("deleting", "/", lambda: self.fs.delete_dir_contents("/", accept_root_dir=True))

    def delete_file(self, path: str) -> None:
        self._call("deleting", path, lambda: self.fs.delete_file(path))

    def move(self, src: str, dest: str) -> None:
        self._call("moving", src, lambda: self.fs.move(src, dest))

    def copy_file(self, src: str, dest: str) -> None:
        self._call("copying", src, lambda: self.fs.copy_file(src, dest))


class _Writer(io.RawIOBase):
    """A file being written: locally a temporary file renamed into place at close; on a store, a buffer
    sent whole (with retries) at close. On any failure nothing appears under the real name."""

    def __init__(self, handler: GuardedHandler, path: str) -> None:
        super().__init__()
        self.handler, self.path = handler, path
        self.buffer: io.BytesIO | None = None
        self.fd, self.tmp = -1, ""
        if handler.local:
            directory, name = os.path.split(path)
            try:
                os.makedirs(directory or ".", exist_ok=True)
                self.fd, self.tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory or ".")
            except OSError as exc:
                self._fail(exc)
        else:
            self.buffer = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.buffer is not None:
            return self.buffer.write(view)
        try:
            written = 0
            while written < len(view):
                written += os.write(self.fd, view[written:])
            return written
        except OSError as exc:
            self._fail(exc)
            raise  # unreachable: _fail raises

    def _fail(self, exc: OSError) -> None:
        self._discard()
        if (fault := as_fault(exc, self.path)) is not None:
            _raise(fault)
        raise exc

    def _discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp:
            with _suppress():
                os.unlink(self.tmp)
            self.tmp = ""

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.buffer is not None:
                self.handler._put(self.path, self.buffer.getvalue())
            elif self.fd >= 0:
                try:
                    os.fsync(self.fd)
                    os.fchmod(self.fd, 0o666 & ~_umask())
                    os.close(self.fd)
                    self.fd = -1
                except OSError as exc:
                    self._fail(exc)
                self.handler.snapshots.commit(self.tmp, self.path)
                self.tmp = ""
        finally:
            self._discard()
            super().close()


class _SnapshotGroup:
    """Ray's experiment state and its searcher's state, renamed into place together: each waits (as a
    complete temporary file) until the other of the same snapshot is complete too. A snapshot cut short
    by a full disk leaves the previous complete pair in place."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[str, str]] = {}  # kind -> (temporary file, final path)
        self.seen: set[str] = set()  # a searcher that never writes its state must not hold the state back

    def commit(self, tmp: str, path: str) -> None:
        name = os.path.basename(path)
        kind = "state" if _STATE.match(name) else "searcher" if _SEARCHER.match(name) else None
        if kind is None:
            os.replace(tmp, path)
            return
        with self.lock:
            old = self.pending.pop(kind, None)
            if old is not None:
                with _suppress():
                    os.unlink(old[0])
            if kind not in self.seen:  # the first of its kind: nothing older to stay consistent with
                self.seen.add(kind)
                os.replace(tmp, path)
                return
            self.pending[kind] = (tmp, path)
            if len(self.pending) < len(self.seen):
                return
            ready, self.pending = list(self.pending.values()), {}
        for staged, final in sorted(ready, key=lambda pair: _STATE.match(os.path.basename(pair[1])) is not None):
            os.replace(staged, final)  # the searcher first: a state never names trials its searcher lost


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
