"""Where an experiment lives: a local directory or an object-store prefix, and every output path in it.

    location = Location.parse("s3://bucket/sweeps", "smoke")      # or "./runs", "file:///abs/runs", "gs://..."
    location.write_json(RECORD, {...}); location.read_json(RECORD); location.display    # s3://bucket/sweeps/smoke

Every read and write of the experiment directory goes through pyarrow.fs, so the same code serves a
laptop, a shared mount and S3/GCS. Object stores are reached the way pyarrow and the AWS tools reach
them: `AWS_ENDPOINT_URL` for MinIO or any S3-compatible store, credentials from the usual variables.
A local write goes to a temporary file and is renamed into place (never half-written, and readable by
whatever the umask allows); an object-store write is a single PUT, visible whole or not at all.
No Ray here: Ray is handed `ray_storage` and `name`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestrator import storage_guard
from orchestrator.errors import ConfigError
from trainables.checkpoint import write_bytes_atomic

SCHEMES = ("s3", "gs", "gcs", "file")
REACH_TIMEOUT_S = 20.0
REACH_TIMEOUT_ENV = "ORCHESTRATOR_STORE_TIMEOUT_S"  # tests shorten the wait with it (seconds)
PROBE_GRACE_S = 2.0  # past the wait, for the probe's request (bounded at the wait + 1 s) to end by itself

# Output names, relative to the experiment directory: declared once, here.
RECORD = "experiment.json"  # the resolved config, its hash, library versions: what a resume must match
STATUS = "status.json"  # running / interrupted / finished, and how each ended trial ended
RESULTS = "results.parquet"
HISTORY = "history.parquet"
BEST = "best"
BEST_MODEL = "model.pt"
BEST_MANIFEST = "manifest.json"
SUMMARY_RUN = "_summary"  # the driver's TensorBoard run
REPORT = "report"
MLFLOW = "mlflow.json"  # the MLflow parent run of the sweep, so a resumed sweep logs into the same one
LOCK = ".launch.lock"  # local: a flock; object store: a lease object
# Per trial: every report, written by the driver the moment it arrives, with what the driver keeps of it.
REPORTS = "reports.jsonl"
# Ray's files per trial, in Ray's formats (the driver writes them as results arrive: orchestrator.tune.trial_files;
# a trial directory of an older run can hold a result.json a few rows short of its reports.jsonl).
RESULT_JSON, PROGRESS_CSV, PARAMS_JSON, PARAMS_PKL = "result.json", "progress.csv", "params.json", "params.pkl"
ERROR_TXT = "error.txt"  # Ray's, per failed trial


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@dataclass(frozen=True)
class Location:
    storage: str  # what Ray gets as storage_path: an absolute local path or a URI
    name: str
    fs: pafs.FileSystem
    root: str  # the storage path inside `fs`

    @classmethod
    def parse(cls, storage_path: str, name: str, must_exist: bool = False) -> Location:
        """Raises ConfigError naming storage_path when it cannot hold experiments (or, to read one back
        with `must_exist`, when there is no such experiment)."""
        if "://" not in storage_path:
            path = _expand(storage_path)
            if must_exist:
                if not (path / name).is_dir():
                    exists = (path / name).exists()
                    what = "a file, not an experiment directory" if exists else "no such experiment directory"
                    raise ConfigError(str(path / name), f"{what}; give the experiment's directory (<storage>/<name>)")
                local = storage_guard.guard(pafs.LocalFileSystem())
                return cls(storage=str(path.resolve()), name=name, fs=local, root=str(path.resolve()))
            return cls._local(path, name)
        scheme = storage_path.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                "storage_path",
                f"unknown URI scheme {scheme!r} (valid: a local path, or "
                f"{', '.join(s + '://' for s in SCHEMES if s != 'gcs')})",
                storage_path,
            )
        if scheme == "file":
            local = storage_path[len("file://") :]
            if not local.startswith("/"):
                raise ConfigError(
                    "storage_path", "a file:// URI needs an absolute path (file:///abs/dir)", storage_path
                )
            return cls.parse(local, name, must_exist)
        try:
            fs, root = pafs.FileSystem.from_uri(storage_path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError("storage_path", f"not a usable URI ({_first_line(exc)})", storage_path) from None
        if not root.strip("/"):
            raise ConfigError("storage_path", "name a bucket (s3://bucket/prefix)", storage_path)
        location = cls(storage=storage_path.rstrip("/"), name=name, fs=storage_guard.guard(fs), root=root.rstrip("/"))
        if must_exist:
            location.check_reachable()
            if location.info().type != pafs.FileType.Directory:
                raise ConfigError(location.display, "no such experiment")
        return location

    @classmethod
    def _local(cls, path: Path, name: str) -> Location:
        path = path.resolve()
        probe = next((p for p in (path, *path.parents) if p.exists()), None)
        if path.exists() and not path.is_dir():
            raise ConfigError("storage_path", "is a file, not a directory", str(path))
        if probe is None or not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError("storage_path", f"cannot create experiments here ({probe} is not writable)", str(path))
        return cls(storage=str(path), name=name, fs=storage_guard.guard(pafs.LocalFileSystem()), root=str(path))

    # ------------------------------------------------------------------ paths

    @property
    def is_local(self) -> bool:
        return storage_guard.is_local(self.fs)

    @property
    def path(self) -> str:
        return f"{self.root}/{self.name}"

    @property
    def display(self) -> str:
        """How a person names it: the local directory, or the URI."""
        return self.path if self.is_local else f"{self.storage}/{self.name}"

    @property
    def local_dir(self) -> Path | None:
        return Path(self.path) if self.is_local else None

    def join(self, *parts: str) -> str:
        return "/".join((self.path, *parts))

    def uri(self, *parts: str) -> str:
        return "/".join((self.display, *parts))

    def with_name(self, name: str) -> Location:
        return Location(self.storage, name, self.fs, self.root)

    # ------------------------------------------------------------------ reads

    def info(self, *parts: str) -> pafs.FileInfo:
        return self.fs.get_file_info(self.join(*parts))

    def exists(self, *parts: str) -> bool:
        return self.info(*parts).type != pafs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        return self.info(*parts).type == pafs.FileType.File

    def children(self, *parts: str) -> list[pafs.FileInfo]:
        """Entries directly inside a directory of the experiment; none when it does not exist."""
        try:
            return self.fs.get_file_info(pafs.FileSelector(self.join(*parts), allow_not_found=True))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.join(*parts)) as stream:
            return bytes(stream.read())

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    # ------------------------------------------------------------------ writes

    def makedirs(self, *parts: str) -> None:
        self.fs.create_dir(self.join(*parts), recursive=True)

    def write_bytes(self, data: bytes, *parts: str) -> None:
        target = self.join(*parts)
        if not self.is_local:
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)
            return
        try:
            write_bytes_atomic(Path(target), data)
        except OSError as exc:
            storage_guard.reraise(exc, target)

    def write_json(self, payload: Any, *parts: str) -> None:
        self.write_bytes((json.dumps(payload, indent=2, sort_keys=True) + "\n").encode(), *parts)

    def append_line(self, line: str, *parts: str) -> None:
        """One more line: appended and synced to disk locally; an object is rewritten whole (one PUT)."""
        if self.local_dir is None:
            old = self.read_bytes(*parts) if self.is_file(*parts) else b""
            self.write_bytes(old + line.encode() + b"\n", *parts)
            return
        path = Path(self.join(*parts))
        size = path.stat().st_size if path.is_file() else 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as stream:
                stream.write(line + "\n")
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as exc:  # a line cut short by a full disk is taken back: the next one must not join it
            if path.is_file():
                os.truncate(path, size)
            storage_guard.reraise(exc, str(path))

    def upload(self, local: Path, *parts: str) -> None:
        """Copy a local file or directory tree into the experiment (object-store storage)."""
        pafs.copy_files(str(local), self.join(*parts), destination_filesystem=self.fs)

    def delete(self, *parts: str) -> None:
        info = self.info(*parts)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(info.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(info.path)

    def check_reachable(self) -> None:
        """Before Ray starts: the store answers, and the bucket exists (a timeout, not a hang)."""
        if self.is_local:
            return
        timeout = reach_timeout_s()
        try:
            probe = _bounded(storage_guard.inner(self.fs), timeout)
            info = _within(timeout, lambda: _asked_again(probe, self.root.split("/")[0], timeout))
        except TimeoutError:
            raise ConfigError(
                "storage_path",
                f"{self.storage} did not answer within {timeout:g} s (check AWS_ENDPOINT_URL and the network)",
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                "storage_path",
                f"cannot reach {self.storage} ({_first_line(exc)}); check AWS_ENDPOINT_URL and credentials",
            ) from None
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(
                "storage_path", f"bucket {self.root.split('/')[0]!r} does not exist; create it first", self.storage
            )


def reach_timeout_s() -> float:
    try:
        value = float(os.environ.get(REACH_TIMEOUT_ENV, REACH_TIMEOUT_S))
    except ValueError:
        return REACH_TIMEOUT_S
    return value if 0 < value <= REACH_TIMEOUT_S else REACH_TIMEOUT_S


def _bounded(fs: pafs.FileSystem, timeout: float) -> pafs.FileSystem:
    """The same S3 filesystem, its requests given up after timeout with no retries: a request left in
    flight would hold the process's exit (the AWS SDK waits for it) until the SDK's own limits, minutes."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    limit = timeout + 1.0  # a little past the caller's wait, which then always ends first, with its own message
    options = {**fs.__reduce__()[1][0], "connect_timeout": limit, "request_timeout": limit}
    try:
        return pafs.S3FileSystem(**options, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
    except (TypeError, ValueError):  # a pyarrow whose options differ: the thread below still bounds the wait
        return fs


def _asked_again(fs: pafs.FileSystem, bucket: str, timeout: float) -> pafs.FileInfo:
    """A fast 5xx or reset is not an answer: asked again while half the wait remains. A request that timed
    out took the whole wait and is not repeated, so the probe's thread ends with its one bounded request."""
    start = time.monotonic()
    while True:
        try:
            return fs.get_file_info(bucket)
        except OSError as exc:
            if not storage_guard.transient(exc) or time.monotonic() - start > timeout / 2:
                raise
            time.sleep(0.2)


def _within(timeout: float, call: Callable[[], Any]) -> Any:
    """call() in a daemon thread, given up after timeout: a store that never answers holds neither this
    launch (an executor's shutdown would wait for the call) nor the interpreter's exit. Before giving up,
    a moment more for the call's own bounded request to end: a thread still inside the AWS SDK while the
    interpreter finalizes crashes it."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller as is
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="store-probe").start()
    if not done.wait(timeout):
        done.wait(PROBE_GRACE_S)
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


def _expand(text: str, field: str = "storage_path") -> Path:
    path = Path(os.path.expanduser(text))  # Path.expanduser raises for an unknown ~user; this leaves it as is
    if str(path).startswith("~"):
        raise ConfigError(field, "unknown user in ~ (no such home directory)", text)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def split_experiment(path: str) -> Location:
    """An experiment named by its own directory or URI (`runs/smoke`, `s3://bucket/sweeps/smoke`)."""
    text = path.rstrip("/")
    if not text or "\x00" in text:
        raise ConfigError(repr(path), "not an experiment path")
    head, _, name = text.rpartition("/")
    if not name or name in (".", ".."):
        resolved = _expand(text, repr(path)).resolve()
        head, name = str(resolved.parent), resolved.name
    if "://" in text and "/" not in text.partition("://")[2].strip("/"):
        raise ConfigError(path, "name the experiment inside the bucket (s3://bucket/prefix/name)")
    try:
        return Location.parse(head or ".", name, must_exist=True)
    except ConfigError as exc:
        if exc.field != "storage_path":
            raise
        raise ConfigError(path, exc.problem) from None  # the path given here, not a config field
