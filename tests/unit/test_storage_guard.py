"""The guarded filesystem (orchestrator.storage_guard): retries of a failing store with one warning line and
a bounded patience, atomic local writes, and Ray's experiment state renamed into place with its searcher's."""

from __future__ import annotations

import errno
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from orchestrator import storage_guard
from orchestrator.config import load_config
from orchestrator.config.disk_space import checkpoint_bytes, space_warning


class Flaky(pafs.FileSystemHandler):
    """A local directory behind a handler that fails the first `failures` calls as a store would."""

    def __init__(self, failures: int, error: OSError | None = None) -> None:
        self.fs, self.failures, self.calls = pafs.LocalFileSystem(), failures, 0
        self.error = error or OSError("AWS Error NETWORK_CONNECTION during PutObject operation: Timeout was reached")

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def get_type_name(self) -> str:
        return "flaky"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        self._maybe_fail()
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def open_output_stream(self, path: str, metadata: object) -> object:
        self._maybe_fail()
        return self.fs.open_output_stream(path)

    def open_input_stream(self, path: str) -> object:
        self._maybe_fail()
        return self.fs.open_input_stream(path)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def _unused(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError

    copy_file = delete_dir = delete_dir_contents = delete_file = delete_root_dir_contents = _unused
    move = open_append_stream = open_input_file = _unused


def _guarded(handler: Flaky, patience: float) -> pafs.FileSystem:
    return storage_guard.guard(pafs.PyFileSystem(handler), patience_s=patience)


@pytest.fixture(autouse=True)
def _no_outage_left() -> None:
    storage_guard._Outage.end()
    storage_guard._Outage.warned = float("-inf")


def test_a_store_that_fails_for_a_while_is_retried_with_one_warning(tmp_path: Path, capsys) -> None:
    handler = Flaky(failures=3)
    fs = _guarded(handler, patience=30)
    with fs.open_output_stream(str(tmp_path / "a")) as out:
        out.write(b"whole")
    assert (tmp_path / "a").read_bytes() == b"whole" and handler.calls == 4
    assert capsys.readouterr().err.count("storage is not answering") == 1


def test_an_outage_longer_than_the_patience_is_a_fault_the_hook_hears_of(tmp_path: Path) -> None:
    heard: list[storage_guard.StorageFault] = []
    storage_guard.on_fault(heard.append)
    try:
        fs = _guarded(Flaky(failures=10**6), patience=1.0)
        with pytest.raises(storage_guard.StorageFault) as raised:
            fs.get_file_info(str(tmp_path))
    finally:
        storage_guard.on_fault(None)
    assert raised.value.kind == "unavailable" and "stopped answering" in str(raised.value)
    assert heard == [raised.value]


def test_errors_a_retry_cannot_fix_are_not_retried(tmp_path: Path) -> None:
    handler = Flaky(failures=1, error=PermissionError("AWS Error ACCESS_DENIED"))
    with pytest.raises(PermissionError):
        _guarded(handler, patience=30).get_file_info(str(tmp_path))
    assert handler.calls == 1


def test_a_full_disk_is_named_as_a_fault() -> None:
    fault = storage_guard.as_fault(OSError(errno.ENOSPC, "No space left on device"), "/runs/x/checkpoint.pt")
    assert fault is not None and fault.kind == "full"
    assert "the disk is full" in fault.line() and "/runs/x/checkpoint.pt" in fault.line()
    assert storage_guard.as_fault(OSError(errno.EACCES, "denied")) is None


def test_a_local_write_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    fs = storage_guard.guard(pafs.LocalFileSystem())
    target = tmp_path / "state.json"
    stream = fs.open_output_stream(str(target))
    stream.write(b"half")
    assert not target.exists()  # still under a temporary name
    stream.close()
    assert target.read_bytes() == b"half"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_experiment_state_is_renamed_into_place_with_its_searchers(tmp_path: Path) -> None:
    fs = storage_guard.guard(pafs.LocalFileSystem())

    def write(name: str, text: str) -> None:
        with fs.open_output_stream(str(tmp_path / name)) as out:
            out.write(text.encode())

    state, searcher = "experiment_state-s.json", "basic-variant-state-s.json"
    write(state, "1")
    write(searcher, "1")  # the first of each: in place at once
    write(state, "2")  # a snapshot whose searcher state never arrives (the disk filled)...
    assert (tmp_path / state).read_text() == "1"  # ...leaves the previous pair
    write(state, "3")
    write(searcher, "3")
    assert (tmp_path / state).read_text() == "3" and (tmp_path / searcher).read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([state, searcher])


def test_the_guard_survives_pickling_to_a_trial_worker() -> None:
    import pickle

    fs = pickle.loads(pickle.dumps(storage_guard.guard(pafs.LocalFileSystem(), patience_s=7)))
    assert storage_guard.is_local(fs) and fs.handler.patience_s == 7


def test_planned_checkpoints_larger_than_the_free_space_are_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"name: x\nstorage_path: {tmp_path}\ntrial: {{model: mlp, mlp: {{hidden: [512]}}, optimizer: adam}}\n"
        "search: {num_samples: 3}\nselection: {keep_checkpoints: 2}\n"
    )
    cfg = load_config(str(config), [])
    size = checkpoint_bytes(cfg, (1, 28, 28), 10)
    assert 3 * 4 * (784 * 512 + 512 + 512 * 10 + 10) < size < 5 * 2**20  # weights + Adam's two moments
    assert space_warning(cfg, tmp_path, (1, 28, 28), 10) is None  # this disk has room
    many = load_config(str(config), ["search.num_samples=10000", "selection.keep_checkpoints=100"])
    warning = space_warning(many, tmp_path, (1, 28, 28), 10)
    assert warning is not None and "10000 trials x 102 checkpoints" in warning and str(tmp_path) in warning


def test_a_damaged_snapshot_is_moved_aside_so_the_previous_good_one_is_restored(tmp_path: Path, capsys) -> None:
    from orchestrator.location import Location
    from orchestrator.tune.tuner import _readable

    location = Location.parse(str(tmp_path), "exp")
    location.makedirs()
    location.write_bytes(b'{"trial_data": [1, 2, 3]}', "experiment_state-a.json")
    location.write_bytes(b'{"trial_data": [1, 2', "experiment_state-b.json")  # cut short by a full disk
    assert _readable(location, ["experiment_state-a.json", "experiment_state-b.json"]) == ["experiment_state-a.json"]
    assert location.is_file("experiment_state-b.json.damaged") and not location.exists("experiment_state-b.json")
    assert "experiment_state-b.json is damaged" in capsys.readouterr().err
