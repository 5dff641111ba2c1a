"""Per-trial TensorBoard, written while the trial trains; the driver adds what only it knows.

One run per trial, plus three sub-runs so train, validation and test share one chart:
  <trial>/train, /val, /test   `loss` and `accuracy` each epoch: filter the runs by a trial's name and
                               the `accuracy` chart overlays its three curves
  <trial>                      `lr`, `speed/epoch_seconds`, `speed/samples_per_second`; the weight
                               histograms `params/<layer index>.<layer type>/<weight|bias>` at epoch 0
                               (the init) and every `histogram_every` epochs; the HParams session start

The HParams metrics of the session (`trial/...`: status, epochs run, best accuracies) and its end are
written by the driver (`orchestrator.review.tensorboard`): it holds every result of the trial, across the
restarts a pause at a rung brings, and it alone knows when and how the trial ended.

Tag groups sort so the learning curves come first (accuracy, loss, lr) and the bookkeeping last (trial).

Every event file is an `EventWriter`: named to sort after the event files already in its directory.
TensorBoard reads a run's files in name order, and a value at a step it has already passed replaces the
later steps; so the file written last (a restarted trial's epochs, the driver's final status) is also the
one read last, on a live server as on a fresh one. Two processes write into a trial's run, so the name
cannot rely on the clock and the process id alone.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter

from trainables import hparams
from trainables import metrics as m
from trainables.lazy import lazy

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.tensorboard import summary
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    nn = lazy("torch.nn")
    summary = lazy("torch.utils.tensorboard.summary")

SPLITS = {
    "train": (m.TRAIN_LOSS, m.TRAIN_ACCURACY),
    "val": (m.VAL_LOSS, m.VAL_ACCURACY),
    "test": (m.TEST_LOSS, m.TEST_ACCURACY),
}
# The class-balanced scores, beside loss and accuracy in the val and test runs.
BALANCED = {
    "val": {"balanced_accuracy": m.VAL_BALANCED_ACCURACY, "macro_f1": m.VAL_MACRO_F1},
    "test": {"balanced_accuracy": m.TEST_BALANCED_ACCURACY, "macro_f1": m.TEST_MACRO_F1},
}
RUN_SCALARS = {
    m.LR: "lr", m.LR_LAST: "lr_last",
    m.EPOCH_SECONDS: "speed/epoch_seconds", m.SAMPLES_PER_SECOND: "speed/samples_per_second",
}  # fmt: skip
HISTOGRAM_PREFIX = "params/"
EVENT_PREFIX = "events.out.tfevents."
# TensorFlow's bucket edges (torch's SummaryWriter default): +-1e-12 .. 1e20, each 1.1 times the last.
_EDGES = [1e-12 * 1.1**i for i in range(int(math.log(1e32) / math.log(1.1)) + 1)]
HISTOGRAM_BINS = [-e for e in reversed(_EDGES)] + [0.0] + _EDGES
_SEQUENCE = itertools.count()


def parameter_tags(model: nn.Module) -> dict[str, str]:
    """Parameter name -> histogram tag naming its layer: `1.weight` -> `params/1.Linear/weight`."""
    tags = {}
    for name, _ in model.named_parameters():
        module_path, _, param = name.rpartition(".")
        layer = type(model.get_submodule(module_path)).__name__ if module_path else type(model).__name__
        tags[name] = f"{HISTOGRAM_PREFIX}{module_path}.{layer}/{param}" if module_path else f"{HISTOGRAM_PREFIX}{param}"
    return tags


def next_event_file(directory: Path) -> Path:
    """A new event file's path, `events.out.tfevents.<seconds>.<host>.<pid>.<n>`, whose name sorts after
    every event file already in `directory` (its seconds moved on past theirs where the clock alone would
    not: same second, a process id with fewer digits)."""
    existing = max((p.name for p in directory.iterdir() if EVENT_PREFIX in p.name), default="")
    seconds = int(time.time())
    while True:
        name = f"{EVENT_PREFIX}{seconds:010d}.{socket.gethostname()}.{os.getpid()}.{next(_SEQUENCE)}"
        if name > existing:
            return directory / name
        seconds += 1


def text_summary(tag: str, markdown: str) -> summary_pb2.Summary:
    """A TEXT plugin record: one Markdown string."""
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[markdown.encode()], tensor_shape=tensor_shape_pb2.TensorShapeProto()
    )
    value = summary_pb2.Summary.Value(tag=tag, metadata=text_metadata.create_summary_metadata(tag, ""), tensor=tensor)
    return summary_pb2.Summary(value=[value])


class EventWriter:
    """One run's new event file, written synchronously: each record is on disk when the call returns."""

    def __init__(self, directory: Path | str) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = next_event_file(directory)
        self._records = RecordWriter(self.path.open("xb"))
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()

    def summary(self, value: summary_pb2.Summary, step: int) -> None:
        self._write(event_pb2.Event(wall_time=time.time(), step=step, summary=value))

    def scalar(self, tag: str, value: float, step: int) -> None:
        # TensorBoard's simple_value, as torch's summary.scalar writes it, built here: the driver writes
        # scalars and must not import torch for them (trainables.lazy).
        self.summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]), step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        self.summary(summary.histogram(tag, values, HISTOGRAM_BINS), step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        """A TEXT card titled `tag` (not torch's `<tag>/text_summary`)."""
        self.summary(text_summary(tag, markdown), step)

    def close(self) -> None:
        if not self._records.closed:
            self._records.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TrialBoard:
    """One trial's runs; `knobs` (TrialConfig.knobs()) make it an HParams session. A restarted trial (after
    a pause at a rung, or a failure) opens new files and goes on from the epoch it restored."""

    def __init__(self, run_dir: Path, knobs: dict[str, Any], histogram_every: int, epochs: int) -> None:
        self.writer = EventWriter(run_dir)
        self.splits = {split: EventWriter(run_dir / split) for split in SPLITS}
        self.histogram_every, self.epochs = histogram_every, epochs
        # TensorBoard keeps a run's first start record, so a restarted trial repeating it is harmless.
        self.writer.summary(hparams.session_start(knobs), 0)

    def log_weights(self, step: int, model: nn.Module) -> None:
        """Histograms of every parameter, when `step` falls on the configured frequency (0 = the init)."""
        if not self.histogram_every or step % self.histogram_every:
            return
        tags = parameter_tags(model)
        for name, param in model.named_parameters():
            self.writer.histogram(tags[name], param.detach().float().cpu().numpy(), step)

    def log_epoch(self, epoch: int, metrics: dict[str, Any], model: nn.Module | None = None) -> None:
        for split, (loss, accuracy) in SPLITS.items():
            self.splits[split].scalar("loss", metrics[loss], epoch)
            self.splits[split].scalar("accuracy", metrics[accuracy], epoch)
            for tag, key in BALANCED.get(split, {}).items():
                if key in metrics:
                    self.splits[split].scalar(tag, metrics[key], epoch)
        self.writer.scalars({tag: metrics[key] for key, tag in RUN_SCALARS.items() if key in metrics}, epoch)
        if model is not None and not metrics.get(m.DIVERGED):
            self.log_weights(epoch, model)

    def close(self) -> None:
        for writer in (self.writer, *self.splits.values()):
            writer.close()
