"""The Ray adapter: the only driver-side code that imports Ray (with `trainables/trial.py` on the trial side).

  cluster.py     start a private local Ray or join a cluster; its nodes' resources
  tuner.py       build or restore the Tuner, run it, return plain `TrialRecord`s (`SweepRun`)
  schedulers.py  early stopping: deterministic successive halving, or asynchronous ASHA
  searchers.py   the search algorithm and the search space as Tune's domains
  callbacks.py   Tune's trial events relayed to the driver's observers as plain records

Ray's Tune API moves between releases (`ray.tune.report`, `ray.tune.get_checkpoint`, `tune.RunConfig`;
never `ray.train.*` inside Tune); keeping it here means a Ray upgrade touches one package.
"""

import os

# Ray's crash-dump handler takes SIGTERM in the driver and, at `ray.shutdown`, resets it to the default at the
# OS level, so a second SIGTERM while a sweep stops would kill the driver before it reports the interrupt.
# Ray reads the switch once, at its first import, so it is turned off here for this process alone: the Ray
# processes started later do not inherit it, and trial workers keep their crash dumps.
# (`cluster.stop` also puts the handler back, for a process that imported Ray before this package.)
_SWITCH = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"
_users = os.environ.get(_SWITCH)
os.environ[_SWITCH] = "1"
import ray  # noqa: E402, F401 - imported here, with the switch set

if _users is None:
    del os.environ[_SWITCH]
else:
    os.environ[_SWITCH] = _users
