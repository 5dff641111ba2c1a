"""Per-trial TensorBoard, written while the trial trains; the driver adds what only it knows.

One run per trial, plus three sub-runs so train, validation and test share one chart:
  <trial>/train, /val, /test   `loss` and `accuracy` each epoch: SCALARS -> accuracy overlays the three
  <trial>                      `lr`, `speed/epoch_seconds`, `speed/samples_per_second`; the weight
                               histograms `params/<layer index>.<layer type>/<weight|bias>` at epoch 0
                               (the init) and every `histogram_every` epochs; the HParams session, and
                               its metrics `trial/...` (status, epochs run, best accuracies), one point
                               per epoch, never at a step below one already written

Tag groups sort so the learning curves come first (accuracy, loss, lr) and the bookkeeping last (trial).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.tensorboard import SummaryWriter

from trainables import hparams
from trainables import metrics as m

SPLITS = {"train": (m.TRAIN_LOSS, m.TRAIN_ACCURACY), "val": (m.VAL_LOSS, m.VAL_ACCURACY),
          "test": (m.TEST_LOSS, m.TEST_ACCURACY)}
RUN_SCALARS = {m.LR: "lr", m.EPOCH_SECONDS: "speed/epoch_seconds", m.SAMPLES_PER_SECOND: "speed/samples_per_second"}
HISTOGRAM_PREFIX = "params/"


def parameter_tags(model: nn.Module) -> dict[str, str]:
    """Parameter name -> histogram tag naming its layer: `1.weight` -> `params/1.Linear/weight`."""
    tags = {}
    for name, _ in model.named_parameters():
        module_path, _, param = name.rpartition(".")
        layer = type(model.get_submodule(module_path)).__name__ if module_path else type(model).__name__
        tags[name] = f"{HISTOGRAM_PREFIX}{module_path}.{layer}/{param}" if module_path else f"{HISTOGRAM_PREFIX}{param}"
    return tags


def write_metrics(writer: SummaryWriter, step: int, values: dict[str, float]) -> None:
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)
    writer.flush()


class TrialBoard:
    """One trial's runs; `knobs` (TrialConfig.knobs()) make it an HParams session."""

    def __init__(self, run_dir: Path, knobs: dict[str, Any], histogram_every: int, epochs: int) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.splits = {split: SummaryWriter(log_dir=str(run_dir / split)) for split in SPLITS}
        self.histogram_every, self.epochs = histogram_every, epochs
        self.history: list[dict[str, Any]] = []
        # TensorBoard keeps a run's first start record, so a restarted trial repeating it is harmless.
        self.writer._get_file_writer().add_summary(hparams.session_start(knobs), 0)
        self.writer.flush()

    def log_weights(self, step: int, model: nn.Module) -> None:
        """Histograms of every parameter, when `step` falls on the configured frequency (0 = the init)."""
        if not self.histogram_every or step % self.histogram_every:
            return
        tags = parameter_tags(model)
        for name, param in model.named_parameters():
            self.writer.add_histogram(tags[name], param.detach().float().cpu(), step)
        self.writer.flush()

    def log_epoch(self, epoch: int, metrics: dict[str, Any], model: nn.Module | None = None) -> None:
        for split, (loss, accuracy) in SPLITS.items():
            self.splits[split].add_scalar("loss", metrics[loss], epoch)
            self.splits[split].add_scalar("accuracy", metrics[accuracy], epoch)
            self.splits[split].flush()
        for key, tag in RUN_SCALARS.items():
            if key in metrics:
                self.writer.add_scalar(tag, metrics[key], epoch)
        self.history.append(metrics)
        diverged = bool(metrics.get(m.DIVERGED))
        # What the trial itself knows: running, or ended by itself (completed, diverged). An early stop is
        # only known to the driver, which writes the final values at this same last step.
        status = "diverged" if diverged else "completed" if epoch >= self.epochs else "running"
        write_metrics(self.writer, epoch, hparams.metric_values(self.history, status))
        if status != "running":
            self.writer._get_file_writer().add_summary(hparams.session_end(status), epoch)
        if model is not None and not diverged:
            self.log_weights(epoch, model)
        self.writer.flush()

    def close(self) -> None:
        for writer in (self.writer, *self.splits.values()):
            writer.close()
