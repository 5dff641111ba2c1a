"""The Ray adapter: the only driver-side code that imports Ray (with `trainables/trial.py` on the trial side).

  cluster.py     start a private local Ray or join a cluster; its nodes' resources
  tuner.py       build or restore the Tuner, run it, return plain `TrialRecord`s (`SweepRun`)
  schedulers.py  early stopping: deterministic successive halving, or asynchronous ASHA
  searchers.py   the search algorithm and the search space as Tune's domains
  callbacks.py   Tune's trial events relayed to the driver's observers as plain records

Ray's Tune API moves between releases (`ray.tune.report`, `ray.tune.get_checkpoint`, `tune.RunConfig`;
never `ray.train.*` inside Tune); keeping it here means a Ray upgrade touches one package.
"""
