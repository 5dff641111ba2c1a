"""Torch's work on the driver, done in a short-lived child process so that the driver never imports torch.

Importing torch costs the driver about 630 MB of resident memory that it would hold for the whole sweep:
more than ten thousand trials' records, and the difference between a driver under 1 GB and one over it.
The driver needs torch three times: before Ray starts (the checks that build every model on the data), and
after the sweep (best/'s files, and the MLflow model when tracking is on). Each runs here, in a child forked
from the driver (it sees the driver's config and data without copying them), and its answer comes back
through a pipe: a value, or the error the driver shows as if it had raised it here (a ConfigError stays a
ConfigError).

Where torch is loaded already (a user's data module imported it) or there is no fork, the call runs in
this process: nothing is gained by a child then.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ChildFailed(RuntimeError):
    """The child died, or raised something the driver has no class for; the message carries its traceback."""


def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if "torch" in sys.modules or not hasattr(os, "fork"):
        return function(*args, **kwargs)
    sys.stdout.flush()  # else what is buffered here would be written by both processes
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its outcome is what the tests check
        os.close(read)
        _child(write, function, args, kwargs)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read()
    except BaseException:  # Ctrl-C while it works (before Ray starts, it raises here): the child goes too
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if not answer:
        raise ChildFailed(f"{_name(function)} died in its process (wait status {status}) without an answer")
    kind, value = pickle.loads(answer)
    if kind == "value":
        return value
    raise _rebuilt(*value)


def _child(write: int, function: Callable[..., Any], args: Any, kwargs: Any) -> None:
    # Interrupts are the driver's (it shares the terminal's process group): the driver's own handler decides,
    # and it ends this child when it stops waiting for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = 0
    try:
        try:
            answer = pickle.dumps(("value", function(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the driver
            answer = pickle.dumps(("raised", (type(exc), str(exc), traceback.format_exc())))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(answer)
    except BaseException:  # noqa: BLE001 - an answer that cannot be pickled or sent: the driver says it died
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no atexit handlers, no cleanup of what the driver owns


def _rebuilt(kind: type[BaseException], message: str, trace: str) -> BaseException:
    """The child's exception as this process can raise it: its own class with its message (ConfigError and
    DataError print exactly as they did there), or ChildFailed with the traceback."""
    try:
        exc = kind.__new__(kind)
        Exception.__init__(exc, message)
        if str(exc) == message:
            return exc
    except Exception:  # noqa: BLE001, S110 - a class that cannot be rebuilt this way: fall through
        pass
    return ChildFailed(f"{kind.__name__}: {message}\n{trace}")


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", repr(function))
