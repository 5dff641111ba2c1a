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

# Ray's crash-dump handler takes SIGTERM in the driver and resets it to the default at `ray.shutdown`, so a
# second SIGTERM while a sweep stops would kill the driver before it reports the interrupt. Ray reads this
# when it is first imported, which is why it is set here, before any module of this package imports Ray.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
