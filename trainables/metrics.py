"""Metric names, defined once: the trial reports them, ASHA and selection read them."""

EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
TEST_LOSS = "test_loss"
TEST_ACCURACY = "test_accuracy"
LR = "lr"
EPOCH_SECONDS = "epoch_seconds"
SAMPLES_PER_SECOND = "samples_per_second"

# ASHA stops trials on validation accuracy: the test set never steers the search.
ASHA_METRIC = VAL_ACCURACY
# What the final selection may rank checkpoints by.
SELECTABLE = (TEST_ACCURACY, VAL_ACCURACY)
DIVERGED = "diverged"  # loss went NaN/inf; such a trial ends and is never selected
NODE_ID = "node_id"  # the Ray node the epoch ran on
PID = "pid"  # the worker process that ran the epoch: a restarted trial shows a new one
GPU_PEAK_GIB = "gpu_peak_gib"  # the trial's peak reserved GPU memory (0 on a CPU); checks the preflight
STARTUP_SECONDS = "startup_seconds"  # trial start to its first epoch: data attach, model build, resume
