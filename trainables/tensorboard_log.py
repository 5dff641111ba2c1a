"""Per-trial TensorBoard: namespaced scalars each epoch, per-layer weight histograms, the HParams session.

One run per trial, written straight into the trial's directory while it trains:
  scalars     train/, val/, test/ loss and accuracy, lr, speed/ (epoch time, samples/s)
  histograms  params/<layer index>.<layer type>/<weight|bias> at epoch 0 (the initialisation) and
              every `histogram_every` epochs (0 = none): how each layer's distribution moves
  hparams     the trial's knobs at its start; `hparams/...` metrics each epoch (see trainables.hparams)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.tensorboard import SummaryWriter

from trainables import hparams
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
HISTOGRAM_PREFIX = "params/"


def parameter_tags(model: nn.Module) -> dict[str, str]:
    """Parameter name -> histogram tag naming its layer: `1.weight` -> `params/1.Linear/weight`."""
    tags = {}
    for name, _ in model.named_parameters():
        module_path, _, param = name.rpartition(".")
        layer = type(model.get_submodule(module_path)).__name__ if module_path else type(model).__name__
        tags[name] = f"{HISTOGRAM_PREFIX}{module_path}.{layer}/{param}" if module_path else f"{HISTOGRAM_PREFIX}{param}"
    return tags


class TrialBoard:
    """One TensorBoard run per trial; `knobs` (TrialConfig.knobs()) make it an HParams session."""

    def __init__(self, run_dir: Path, knobs: dict[str, Any] | None = None, histogram_every: int = 0,
                 epochs: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self.histogram_every, self.epochs = histogram_every, epochs
        self.history: list[dict[str, Any]] = []
        if knobs is not None:
            # TensorBoard keeps a run's first start record, so a restarted trial repeating it is harmless.
            self.add_summary(hparams.session_start(knobs), 0)
            self.writer.flush()

    def add_summary(self, summary: Any, step: int) -> None:
        # SummaryWriter has no public call for a prebuilt Summary proto; add_hparams uses this same path.
        self.writer._get_file_writer().add_summary(summary, step)

    def log_weights(self, step: int, model: nn.Module) -> None:
        """Histograms of every parameter, when `step` falls on the configured frequency (0 = the init)."""
        if not self.histogram_every or step % self.histogram_every:
            return
        tags = parameter_tags(model)
        for name, param in model.named_parameters():
            self.writer.add_histogram(tags[name], param.detach().float().cpu(), step)
        self.writer.flush()

    def log_epoch(self, epoch: int, metrics: dict[str, Any], model: nn.Module | None = None) -> None:
        for key, tag in SCALAR_TAGS.items():
            if key in metrics:
                self.writer.add_scalar(tag, metrics[key], epoch)
        self.history.append(metrics)
        diverged = bool(metrics.get(m.DIVERGED))
        done = self.epochs is not None and epoch >= self.epochs
        status = "diverged" if diverged else "completed" if done else "running"
        self.log_hparams_metrics(epoch, hparams.running_metrics(self.history, status, stopped_early=False))
        if status != "running":
            self.add_summary(hparams.session_end(status), epoch)  # final: nothing reruns a finished trial
        if model is not None and not diverged:
            self.log_weights(epoch, model)
        self.writer.flush()

    def log_hparams_metrics(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def end_session(self, status: str) -> None:
        self.add_summary(hparams.session_end(status), 0)

    def close(self) -> None:
        self.writer.close()
