"""`evaluate`: the test accuracy of best/, per-class numbers, --predict on PNG/JPEG with top-k, --json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import Sweep, cli
from PIL import Image

from orchestrator.review.evaluation import evaluation_data, load_model, predict
from trainables.data_readers import FASHION_CLASSES as CLASSES


@pytest.fixture(scope="module")
def sweep(smoke_experiment: Sweep) -> Sweep:
    return smoke_experiment


@pytest.fixture(scope="module")
def good(good_model: Sweep) -> Sweep:
    return good_model


def run_module(module: str, *args: str):  # noqa: ANN201 - CompletedProcess
    return cli(module.rsplit(".", 1)[-1], *args)


def _accuracy(stdout: str) -> float:
    return float(re.search(r"^test accuracy: ([0-9.]+)", stdout, re.M).group(1))


def test_evaluate_reproduces_the_manifest_test_accuracy(sweep: Sweep) -> None:
    manifest = json.loads((sweep.experiment / "best" / "manifest.json").read_text())
    done = run_module("orchestrator.evaluate", str(sweep.experiment / "best"))
    assert done.returncode == 0, done.stderr
    assert _accuracy(done.stdout) == pytest.approx(manifest["test_accuracy"], abs=1e-4)
    assert "matches best/manifest.json" in done.stdout
    assert "data:  /usr/share/datasets/fashion-mnist, test split (10000 samples)" in done.stdout
    for name in CLASSES:
        assert re.search(rf"^  {re.escape(name)} +0\.\d{{4}}  \(1000 images\)$", done.stdout, re.M), name
    matrix = [line.split()[-10:] for line in done.stdout.split("confusion matrix")[1].splitlines()[2:12]]
    counts = [[int(v) for v in row] for row in matrix]
    assert [sum(row) for row in counts] == [1000] * 10
    assert sum(counts[i][i] for i in range(10)) / 10_000 == pytest.approx(manifest["test_accuracy"], abs=1e-4)


def test_a_trial_checkpoint_evaluates_like_its_export(sweep: Sweep) -> None:
    manifest = json.loads((sweep.experiment / "best" / "manifest.json").read_text())
    done = run_module("orchestrator.evaluate", str(sweep.experiment / manifest["source_checkpoint"]))
    assert done.returncode == 0, done.stderr
    assert _accuracy(done.stdout) == pytest.approx(manifest["test_accuracy"], abs=1e-4)


def test_predict_returns_the_labels_of_real_test_images(good: Sweep, tmp_path: Path) -> None:
    best = good.experiment / "best"
    loaded = load_model(str(best))
    test = evaluation_data(loaded, None).test
    images, labels = torch.tensor(test.images), torch.tensor(test.labels)
    confidence, predicted = predict(loaded, images[:500]).max(dim=1)
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
        first = line[len(str(path)) :].split("(then:")[0].strip()
        name, probability = first.rsplit(None, 1)
        assert name == CLASSES[label], line
        assert 0.5 < float(probability) <= 1.0
        assert line.count("(then:") == 1  # the next two classes of the top 3
    as_json = run_module("orchestrator.evaluate", str(best), "--predict", str(paths[0][0]), "--json", "--top-k", "5")
    result = json.loads(as_json.stdout)["results"][0]
    assert [p["class"] for p in result["predictions"]][0] == CLASSES[paths[0][1]]
    assert len(result["predictions"]) == 5 and not result["looks_inverted"]
    # The same garment on a white page (inverted): evaluate warns, and --invert undoes it.
    inverted = tmp_path / "inverted.png"
    Image.fromarray(255 - images[paths[0][0].name and chosen[paths[0][1]], 0].numpy()).save(inverted)
    warned = run_module("orchestrator.evaluate", str(best), "--predict", str(inverted))
    assert warned.returncode == 0 and "try --invert" in warned.stderr
    fixed = run_module("orchestrator.evaluate", str(best), "--predict", str(inverted), "--invert")
    assert fixed.stdout.split()[1] == CLASSES[paths[0][1]] and "try" not in fixed.stderr


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
