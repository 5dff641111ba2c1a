"""The trial's entry point as the driver hands it to Tune, without importing torch.

Tune pickles the trial function by reference, so the driver must import the module that defines it;
`trainables.trial` imports torch (about 630 MB of resident memory), which the driver never needs. This
module is what the driver imports: the worker imports `trainables.trial` on the trial's first call.
"""

from __future__ import annotations

from typing import Any

# Where a trial whose storage failed tells the driver so (Ray's key-value store): written by the trial,
# polled by the driver (orchestrator.tune.faults).
FAULT_KEY = "orchestrator/storage-fault/{experiment}/{trial_id}"


def train_trial(sampled: dict[str, Any], **kwargs: Any) -> None:
    """`trainables.trial.train_trial`, imported in the worker."""
    from trainables.trial import train_trial as run

    run(sampled, **kwargs)
