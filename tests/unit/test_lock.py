"""orchestrator/lock.py on its own: the flock of a local experiment and the lease rules of an object store
(here a lease object in a local directory, read and written through the same pyarrow calls as on S3; the
same rules against a real S3-compatible server are in tests/integration/test_object_store.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import lock
from orchestrator.errors import ConfigError
from orchestrator.location import LOCK, Location


@pytest.fixture
def location(tmp_path: Path) -> Location:
    return Location._local(tmp_path / "runs", "exp")


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race wait and renewal shortened (the rules, not their durations, are under test)."""
    monkeypatch.setattr(lock, "RACE_WAIT_S", 0.2)
    monkeypatch.setattr(lock, "RENEW_S", 0.1)


@pytest.fixture
def leases() -> Iterator[list[lock.Lease]]:
    taken: list[lock.Lease] = []
    yield taken
    for lease in taken:
        lease.stop()


def _write_lease(location: Location, **fields: object) -> None:
    location.makedirs()
    lease = {"token": "theirs", "pid": 4242, "host": "elsewhere.example", "renewed": time.time(), "session": None}
    location.write_json({**lease, **fields}, LOCK)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)  # that process has exited and been reaped


# ------------------------------------------------------------------ the flock of a local experiment


def test_flock_refuses_a_second_holder_and_names_the_first(location: Location) -> None:
    fd = lock.flock(location, "exp", created=True)
    try:
        assert json.loads((location.local_dir / LOCK).read_text())["pid"] == os.getpid()  # type: ignore[operator]
        assert lock.held(location)
        with pytest.raises(ConfigError, match=rf"in use by another launch \(pid {os.getpid()}\)"):
            lock.flock(location, "exp", created=False)
    finally:
        os.close(fd)
    assert not lock.held(location)  # closing drops it: nothing stale
    os.close(lock.flock(location, "exp", created=False))


def test_flock_is_dropped_when_its_holder_dies(location: Location, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)",
         str(location.local_dir / LOCK)],  # type: ignore[operator]
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    location.makedirs()
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert lock.held(location)
        with pytest.raises(ConfigError, match="in use by another launch"):
            lock.flock(location, "exp", created=False)
    finally:
        holder.kill()
        holder.wait()
    assert not lock.held(location)
    os.close(lock.flock(location, "exp", created=False))


def test_flock_on_a_directory_in_its_place_is_refused(location: Location) -> None:
    (location.local_dir / LOCK).mkdir(parents=True)  # type: ignore[operator]
    with pytest.raises(ConfigError, match="is not a file"):
        lock.flock(location, "exp", created=False)


# ------------------------------------------------------------------ the lease of an object store


def test_a_free_lease_is_taken_renewed_and_released(location: Location, fast: None) -> None:
    location.makedirs()
    lease = lock.Lease.acquire(location, "exp")
    try:
        first = location.read_json(LOCK)
        assert first["token"] == lease.token and first["host"] == socket.gethostname()
        deadline = time.monotonic() + 30
        while location.read_json(LOCK)["renewed"] == first["renewed"]:  # the renewal thread's next write
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
    finally:
        lease.stop()
    assert not location.exists(LOCK)


@pytest.mark.parametrize("age", [0.0, lock.LEASE_S - 5])
def test_a_lease_renewed_within_the_lease_time_is_refused(location: Location, fast: None, age: float) -> None:
    _write_lease(location, renewed=time.time() - age)
    with pytest.raises(ConfigError, match=r"in use by another launch \(pid 4242 on elsewhere.example"):
        lock.Lease.acquire(location, "exp")
    assert location.read_json(LOCK)["token"] == "theirs"  # untouched


def test_a_lease_from_another_machine_is_taken_over_after_the_lease_time(
    location: Location, fast: None, leases: list[lock.Lease]
) -> None:
    _write_lease(location, renewed=time.time() - lock.LEASE_S - 1)
    leases.append(lock.Lease.acquire(location, "exp"))
    assert location.read_json(LOCK)["token"] == leases[0].token


def test_a_lease_whose_holder_on_this_machine_is_gone_is_taken_over_at_once(
    location: Location, fast: None, leases: list[lock.Lease]
) -> None:
    _write_lease(location, host=socket.gethostname(), pid=_dead_pid())
    leases.append(lock.Lease.acquire(location, "exp"))
    assert location.read_json(LOCK)["token"] == leases[0].token


def test_a_live_holder_on_this_machine_keeps_its_lease(location: Location, fast: None) -> None:
    _write_lease(location, host=socket.gethostname(), pid=os.getpid())
    with pytest.raises(ConfigError, match="in use by another launch"):
        lock.Lease.acquire(location, "exp")


def test_two_launches_racing_for_a_free_lease_exactly_one_wins(
    location: Location, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both find the lease free and both write it (held at that point until both have looked), the second
    write landing while the first launch waits: exactly one reads its own token back."""
    location.makedirs()
    both_looked = threading.Barrier(2, timeout=30)
    first_writes = iter(range(2))
    write = lock.Lease._write

    def write_once_both_looked(self: lock.Lease) -> None:
        turn = next(first_writes, None)
        if turn is not None:
            both_looked.wait()
            time.sleep(turn * lock.RACE_WAIT_S / 2)  # the other write lands within the race wait, not at once
        write(self)

    monkeypatch.setattr(lock.Lease, "_write", write_once_both_looked)
    outcomes: list[object] = []

    def launch() -> None:
        try:
            outcomes.append(lock.Lease.acquire(location, "exp"))
        except ConfigError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    won = [o for o in outcomes if isinstance(o, lock.Lease)]
    lost = [o for o in outcomes if isinstance(o, ConfigError)]
    try:
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert "claimed by another launch at the same moment" in str(lost[0])
        assert location.read_json(LOCK)["token"] == won[0].token
    finally:
        for lease in won:
            lease.stop()


def test_stopping_leaves_a_lease_someone_else_took(location: Location, fast: None) -> None:
    location.makedirs()
    lease = lock.Lease.acquire(location, "exp")
    lease._stop.set()  # renewals over: as a lease past its time, taken over elsewhere
    _write_lease(location)
    lease.stop()
    assert location.read_json(LOCK)["token"] == "theirs"


def test_reaping_ignores_holders_of_other_machines_and_live_ones() -> None:
    """Only a dead holder's session on this machine is reaped; anything else is left alone (no error)."""
    lock.reap_dead_session({"session": "/tmp/ray/session_x", "host": "elsewhere.example", "pid": 1})
    lock.reap_dead_session({"session": "/tmp/ray/session_x", "host": socket.gethostname(), "pid": os.getpid()})
    lock.reap_dead_session({"session": "relative", "host": socket.gethostname(), "pid": _dead_pid()})
