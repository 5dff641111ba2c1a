"""The fast path (resident tensors, index batches) learns as well as a reference torchvision DataLoader loop."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.loops import torchvision_root, tutorial_trial, vision_splits
from trainables.data import input_scaling, to_device
from trainables.data_sources import DataConfig, load_dataset
from trainables.loop import evaluate, train_one_epoch
from trainables.models import build_model
from trainables.optimizers import build_optimizer
from trainables.recipe import TrialConfig

CPU = torch.device("cpu")


def fast_path_accuracy(trial: TrialConfig, data) -> float:  # noqa: ANN001
    """What a trial does on its device, minus Ray: seeded init, resident batches, per-batch scaling."""
    torch.manual_seed(trial.seed)
    model = build_model(trial.model_spec((1, 28, 28), 10))
    optimizer = build_optimizer(trial.optimizer, model, trial.lr, trial.weight_decay)
    generator = torch.Generator().manual_seed(trial.seed)
    train, test = to_device(data.train, CPU), to_device(data.test, CPU)
    scaling = input_scaling(trial.input_scale, data.mean, data.std)
    for _ in range(trial.epochs):
        train_one_epoch(model, optimizer, train, trial.batch_size, scaling, generator)
    return evaluate(model, test, scaling)[1]


def test_fast_path_matches_the_dataloader_reference(tmp_path: Path, one_torch_thread: None) -> None:
    data = load_dataset(DataConfig(train_limit=6000), seed=0)
    trial = TrialConfig(model="mlp", mlp={"hidden": [64]}, batch_size=64, epochs=2, seed=0, input_scale="unit")
    fast = fast_path_accuracy(trial, data)
    reference = tutorial_trial(trial, vision_splits(data, torchvision_root(data, tmp_path)), CPU, workers=0)
    assert fast > 0.75  # it learned: an untrained model sits near 0.10
    assert abs(fast - reference.test_accuracy) < 0.03, (fast, reference.test_accuracy)
