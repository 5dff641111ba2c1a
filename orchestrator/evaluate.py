"""Evaluate an exported model or any trial checkpoint on the test set, or classify image files.

    python -m orchestrator.evaluate runs/smoke/best                      # test accuracy, per class, confusion
    python -m orchestrator.evaluate runs/smoke/<trial>/checkpoint_000002
    python -m orchestrator.evaluate runs/smoke/best --predict shoe.png bag.jpg [--invert]

Accepts `best/` (model.pt: state_dict, model_spec, input scaling) or a trial's checkpoint folder
(checkpoint.pt: model, model_spec, input scaling, ...), or either file. Images are read as grayscale
and resized to 28x28; Fashion-MNIST shows light garments on a black background, so a photo of a dark
object on a white page needs `--invert`. Nothing is written. Exit codes: 0 done; 2 a missing or corrupt
checkpoint, an unreadable image or data not found (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from orchestrator.errors import ConfigError
from orchestrator.experiment import EXPERIMENT_FILE, SUMMARY_RUN
from trainables import checkpoint as ckpt
from trainables.data import (
    CLASSES,
    IDX_NAMES,
    DatasetNotFoundError,
    InputScaling,
    find_idx_dir,
    input_scaling,
    read_idx,
)
from trainables.loop import predict_logits
from trainables.models import IMAGE_SIDE, build_model

BEST_FILE = "model.pt"


@dataclass
class LoadedModel:
    model: nn.Module
    scaling: InputScaling
    source: Path
    manifest: dict[str, Any] | None  # best/manifest.json when evaluating best/


def checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for name in (BEST_FILE, ckpt.CHECKPOINT_FILE):
            if (path / name).is_file():
                return path / name
        raise ConfigError(str(path), f"no {BEST_FILE} or {ckpt.CHECKPOINT_FILE} in this directory")
    if path.is_file():
        return path
    raise ConfigError(str(path), "no such checkpoint file or directory")


def load_model(path: Path) -> LoadedModel:
    """best/model.pt or a trial's checkpoint.pt -> the network in eval mode and its input scaling."""
    file = checkpoint_file(path)
    try:
        state = ckpt.load(file)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise ConfigError(str(file), f"not a readable checkpoint ({type(exc).__name__})") from None
    weights = state.get("state_dict", state.get("model")) if isinstance(state, dict) else None
    if weights is None or "model_spec" not in state or "input_scale" not in state:
        raise ConfigError(str(file), "not a model checkpoint (needs model weights, model_spec, input_scale)")
    try:
        model = build_model(state["model_spec"])
        model.load_state_dict(weights)
        scaling = state.get("scaling") or {"mean": 0.0, "std": 1.0}
        scale = input_scaling(state["input_scale"], float(scaling["mean"]), float(scaling["std"]))
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ConfigError(str(file), f"checkpoint does not rebuild its model ({_first_line(exc)})") from None
    model.eval()
    manifest_file = file.parent / "manifest.json"
    try:
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    except (OSError, ValueError):
        manifest = None  # only used to cross-check the recorded accuracy
    return LoadedModel(model, scale, file, manifest)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_image(path: Path, invert: bool) -> torch.Tensor:
    """(1, 28, 28) uint8: grayscale, resized when it is not 28x28 already."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gray = image.convert("L")
            if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
                gray = gray.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
            pixels = np.asarray(gray, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot read the image ({_first_line(exc)})") from None
    if invert:
        pixels = 255 - pixels
    return torch.from_numpy(pixels.copy()).unsqueeze(0)


def predict(loaded: LoadedModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class index, probability) per image of a uint8 batch (N, 1, 28, 28)."""
    probabilities = torch.softmax(predict_logits(loaded.model, images, loaded.scaling), dim=1)
    confidence, label = probabilities.max(dim=1)
    return label, confidence


def load_test_split(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    directory = find_idx_dir(data_root)
    files = {key: next(p for p in (directory / (stem + ".gz"), directory / stem) if p.is_file())
             for key, stem in IDX_NAMES.items() if key.startswith("test")}
    images = torch.from_numpy(read_idx(files["test_images"]).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(files["test_labels"]).astype(np.int64))
    return images, labels


def confusion(labels: torch.Tensor, predicted: torch.Tensor, classes: int = len(CLASSES)) -> torch.Tensor:
    """matrix[true, predicted] = count."""
    return torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def evaluation_text(matrix: torch.Tensor, loaded: LoadedModel) -> str:
    total = int(matrix.sum())
    accuracy = float(matrix.diag().sum()) / total
    lines = [f"model: {loaded.source}", f"test accuracy: {accuracy:.4f} ({int(matrix.diag().sum())}/{total})"]
    if loaded.manifest and loaded.manifest.get("test_accuracy") is not None:
        recorded = float(loaded.manifest["test_accuracy"])
        verdict = "matches" if abs(recorded - accuracy) < 5e-5 else "DIFFERS from"
        lines.append(f"  {verdict} best/manifest.json: {recorded:.4f} ({loaded.manifest['trial_name']} "
                     f"epoch {loaded.manifest['epoch']})")
    width = max(len(c) for c in CLASSES)
    lines.append("\nper-class accuracy:")
    for i, name in enumerate(CLASSES):
        support = int(matrix[i].sum())
        lines.append(f"  {name.ljust(width)}  {float(matrix[i, i]) / max(support, 1):.4f}  ({support} images)")
    short = [c.split("/")[0][:7] for c in CLASSES]
    lines.append("\nconfusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * (width + 2) + " ".join(s.rjust(7) for s in short))
    lines += [f"  {name.ljust(width)}" + " ".join(str(int(v)).rjust(7) for v in matrix[i])
              for i, name in enumerate(CLASSES)]
    return "\n".join(lines)


def default_data_root(source: Path) -> Path:
    """The experiment's own data.root when the model sits in an experiment directory, else ./data."""
    for parent in source.parents[:3]:
        record = parent / SUMMARY_RUN / EXPERIMENT_FILE
        if record.is_file():
            try:
                return Path(json.loads(record.read_text())["data"]["root"])
            except (OSError, ValueError, KeyError, TypeError):
                break
    return Path("./data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="best/ directory, trial checkpoint directory, or model.pt/checkpoint.pt")
    parser.add_argument("--predict", nargs="+", metavar="IMAGE", help="classify these PNG/JPEG files instead")
    parser.add_argument("--invert", action="store_true", help="dark object on a light background: invert first")
    parser.add_argument("--data-root", help="where the Fashion-MNIST IDX files are (default: the experiment's)")
    args = parser.parse_args(argv)
    try:
        loaded = load_model(Path(args.model))
        if args.predict:
            images = torch.stack([read_image(Path(p), args.invert) for p in args.predict])
        else:
            root = Path(args.data_root) if args.data_root else default_data_root(loaded.source)
            images, labels = load_test_split(root)
    except (ConfigError, DatasetNotFoundError) as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    predicted, confidence = predict(loaded, images)
    if args.predict:
        width = max(len(p) for p in args.predict)
        for path, label, p in zip(args.predict, predicted.tolist(), confidence.tolist(), strict=True):
            print(f"{path.ljust(width)}  {CLASSES[label]}  {p:.4f}")
        return 0
    print(evaluation_text(confusion(labels, predicted), loaded))
    return 0


if __name__ == "__main__":
    sys.exit(main())
