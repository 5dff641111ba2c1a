"""Per-trial TensorBoard: namespaced scalars each epoch (train/, val/, test/, lr, speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from trainables import metrics as m

SCALAR_TAGS = {
    m.TRAIN_LOSS: "train/loss",
    m.TRAIN_ACCURACY: "train/accuracy",
    m.VAL_LOSS: "val/loss",
    m.VAL_ACCURACY: "val/accuracy",
    m.TEST_LOSS: "test/loss",
    m.TEST_ACCURACY: "test/accuracy",
    m.LR: "lr",
    m.EPOCH_SECONDS: "speed/epoch_seconds",
    m.SAMPLES_PER_SECOND: "speed/samples_per_second",
}


class TrialBoard:
    """One TensorBoard run per trial, written straight into the trial's directory."""

    def __init__(self, run_dir: Path) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        for key, tag in SCALAR_TAGS.items():
            if key in metrics:
                self.writer.add_scalar(tag, metrics[key], epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
