"""`python -m orchestrator.evaluate`: the test accuracy of best/, per-class numbers, and --predict on PNG/JPEG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from review_support import Sweep, good_model, run_module, smoke_sweep

from orchestrator.evaluate import load_model, load_test_split, predict
from trainables.data import CLASSES


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return smoke_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return good_model(tmp_path_factory)


def _accuracy(stdout: str) -> float:
    return float(re.search(r"^test accuracy: ([0-9.]+)", stdout, re.M).group(1))


def test_evaluate_reproduces_the_manifest_test_accuracy(sweep: Sweep) -> None:
    manifest = json.loads((sweep.experiment / "best" / "manifest.json").read_text())
    done = run_module("orchestrator.evaluate", str(sweep.experiment / "best"))
    assert done.returncode == 0, done.stderr
    assert _accuracy(done.stdout) == pytest.approx(manifest["test_accuracy"], abs=1e-4)
    assert "matches best/manifest.json" in done.stdout
    for name in CLASSES:
        assert re.search(rf"^  {re.escape(name)} +0\.\d{{4}}  \(1000 images\)$", done.stdout, re.M), name
    matrix = [line.split()[-10:] for line in done.stdout.split("confusion matrix")[1].splitlines()[2:12]]
    counts = [[int(v) for v in row] for row in matrix]
    assert [sum(row) for row in counts] == [1000] * 10
    assert sum(counts[i][i] for i in range(10)) / 10_000 == pytest.approx(manifest["test_accuracy"], abs=1e-4)


def test_a_trial_checkpoint_evaluates_like_its_export(sweep: Sweep) -> None:
    manifest = json.loads((sweep.experiment / "best" / "manifest.json").read_text())
    done = run_module("orchestrator.evaluate", manifest["source_checkpoint"])
    assert done.returncode == 0, done.stderr
    assert _accuracy(done.stdout) == pytest.approx(manifest["test_accuracy"], abs=1e-4)


def test_predict_returns_the_labels_of_real_test_images(good: Sweep, tmp_path: Path) -> None:
    best = good.experiment / "best"
    loaded = load_model(best)
    images, labels = load_test_split(Path("./data"))
    predicted, confidence = predict(loaded, images[:500])
    accuracy = (predicted == labels[:500]).float().mean().item()
    assert accuracy > 0.75, f"the reference model is meant to be good ({accuracy:.3f})"
    # One confidently and correctly classified image per class, written as files a person would have.
    chosen: dict[int, int] = {}
    for i in range(500):
        label = int(labels[i])
        if label not in chosen and predicted[i] == label and confidence[i] > 0.9:
            chosen[label] = i
    assert len(chosen) >= 6
    paths = []
    for label, i in sorted(chosen.items()):
        path = tmp_path / f"test{i}.png"
        Image.fromarray(images[i, 0].numpy()).save(path)
        paths.append((path, label))
    # A larger RGB JPEG is converted to grayscale and resized back to 28x28.
    label, i = max(chosen.items(), key=lambda item: float(confidence[item[1]]))
    big = Image.fromarray(images[i, 0].numpy()).resize((112, 112), Image.Resampling.NEAREST).convert("RGB")
    big.save(tmp_path / "big.jpg", quality=95)
    paths.append((tmp_path / "big.jpg", label))
    done = run_module("orchestrator.evaluate", str(best), "--predict", *[str(p) for p, _ in paths])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(paths)
    for line, (path, label) in zip(lines, paths, strict=True):
        assert line.startswith(str(path))
        name, probability = line[len(str(path)):].strip().rsplit(None, 1)
        assert name == CLASSES[label], line
        assert 0.5 < float(probability) <= 1.0


def test_bad_inputs_give_one_line_and_exit_2(sweep: Sweep, tmp_path: Path) -> None:
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign" / "checkpoint.pt"
    foreign.parent.mkdir()
    torch.save({"weights": torch.zeros(3)}, foreign)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    best = str(sweep.experiment / "best")
    cases = [
        [str(tmp_path / "missing")],
        [str(sweep.experiment)],  # an experiment, not a model
        [str(corrupt)],
        [str(foreign.parent)],
        [best, "--predict", str(not_an_image)],
        [best, "--predict", str(tmp_path / "absent.png")],
    ]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args in cases:
        done = run_module("orchestrator.evaluate", *args)
        assert done.returncode == 2, args
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stderr.startswith("data error: "), done.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
