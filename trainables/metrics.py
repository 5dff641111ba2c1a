"""Metric names, defined once: the trial reports them, early stopping and selection read them.

Balanced accuracy and macro-F1 (for imbalanced data) are computed here from a confusion matrix, with
scikit-learn's definitions: balanced accuracy is the mean recall over the classes present in the true
labels (`balanced_accuracy_score`); macro-F1 the mean F1 over the classes present in the true labels or
the predictions, a class with no true positive scoring 0 (`f1_score(average="macro")`).

The selection score is computed here too, once, because two parties must agree on it: checkpoint
retention (which keeps each trial's best checkpoints by it) and the final selection (which ranks every
kept checkpoint by it). It is the selection metric with ties broken by validation accuracy, folded into
one number; on an exact tie of that number the later epoch wins, in both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainables.lazy import lazy

if TYPE_CHECKING:
    import torch
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")


EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
TEST_LOSS = "test_loss"
TEST_ACCURACY = "test_accuracy"
VAL_BALANCED_ACCURACY = "val_balanced_accuracy"
VAL_MACRO_F1 = "val_macro_f1"
TEST_BALANCED_ACCURACY = "test_balanced_accuracy"
TEST_MACRO_F1 = "test_macro_f1"
# Scores per split beyond loss and accuracy: reported per epoch, in every table, selectable.
CLASS_BALANCED = (VAL_BALANCED_ACCURACY, VAL_MACRO_F1, TEST_BALANCED_ACCURACY, TEST_MACRO_F1)
# What `selection.metric` may rank by; `asha.metric` (early stopping) takes the validation ones only.
SELECTABLE = (TEST_ACCURACY, VAL_ACCURACY, *CLASS_BALANCED)
LR = "lr"  # the lr of the epoch's first optimizer step
LR_LAST = "lr_last"  # the lr of its last step (a per-step schedule moves it within the epoch)
EPOCH_SECONDS = "epoch_seconds"
SAMPLES_PER_SECOND = "samples_per_second"
SELECTION_SCORE = "selection_score"

# Early stopping looks at validation accuracy by default (`asha.metric`): the test set never steers the search.
ASHA_METRIC = VAL_ACCURACY
EARLY_STOPPING = (VAL_ACCURACY, VAL_BALANCED_ACCURACY, VAL_MACRO_F1)
DIVERGED = "diverged"  # loss went NaN/inf; such a trial ends and is never selected
NODE_ID = "node_id"  # the Ray node the epoch ran on
PID = "pid"  # the worker process that ran the epoch: a restarted trial shows a new one
GPU_PEAK_GIB = "gpu_peak_gib"  # the trial's peak reserved GPU memory (0 on a CPU); checks the preflight
STARTUP_SECONDS = "startup_seconds"  # trial start to its first epoch: data attach, model build, resume
REPLAYED = "replayed"  # a restored trial's report of the epoch its checkpoint holds, sent again

# What the trial's model costs (trainables.costs), in every report: constant over a trial's epochs except
# the training time, which accumulates. Latency and throughput are timings on the trial's own device.
PARAMS = "params"  # parameters
CHECKPOINT_MB = "checkpoint_mb"  # the weights as saved, MB (10^6 bytes)
LATENCY_MS = "latency_ms"  # inference at batch 1, per sample, median of several passes
THROUGHPUT = "throughput"  # inference samples per second at a large batch
TRAIN_SECONDS = "train_seconds"  # training time so far (the epochs' training loops, restarts included)
COSTS = (PARAMS, CHECKPOINT_MB, LATENCY_MS, THROUGHPUT, TRAIN_SECONDS)
# Which way each cost is better: "min" for a budget a model must stay under, "max" for one it must reach.
COST_MODES = {PARAMS: "min", CHECKPOINT_MB: "min", LATENCY_MS: "min", THROUGHPUT: "max", TRAIN_SECONDS: "min"}
# What a multi-objective search may aim at, and which way (the test set never steers the search).
OBJECTIVE_MODES = {VAL_ACCURACY: "max", **COST_MODES}

# Accuracies are multiples of 1/N; weighting the tie-break by 2^-30 keeps it below any step of the metric
# for validation splits up to 2^22 samples while staying representable next to a value near 1.
TIE_BREAK_WEIGHT = 2.0**-30


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def selection_score(metrics: Mapping[str, Any], metric: str) -> float:
    """The number every checkpoint is ranked by (higher is better); NaN when it cannot be ranked."""
    primary, tie = metrics.get(metric), metrics.get(VAL_ACCURACY)
    if not isinstance(primary, int | float) or not isinstance(tie, int | float):
        return float("nan")
    if not finite(primary) or not finite(tie) or metrics.get(DIVERGED):
        return float("nan")
    return float(primary) + float(tie) * TIE_BREAK_WEIGHT


def confusion(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) counts on the labels' device: row = true class, column = predicted class."""
    flat = labels.long() * classes + predicted.long()
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def balanced_accuracy(counts: torch.Tensor) -> float:
    """Mean recall over the classes present in the true labels (scikit-learn's balanced_accuracy_score)."""
    support = counts.sum(1)
    present = support > 0
    if not bool(present.any()):
        return float("nan")
    return (counts.diagonal()[present].double() / support[present].double()).mean().item()


def macro_f1(counts: torch.Tensor) -> float:
    """Mean F1 over the classes in the true labels or the predictions (f1_score(average="macro"))."""
    hits = counts.diagonal().double()
    total = counts.sum(1).double() + counts.sum(0).double()  # 2TP + FP + FN
    present = total > 0
    if not bool(present.any()):
        return float("nan")
    return (2 * hits[present] / total[present]).mean().item()
