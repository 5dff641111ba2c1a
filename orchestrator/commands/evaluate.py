"""`evaluate`: score an exported model or any trial checkpoint on its test split, or classify image files.

python -m orchestrator evaluate runs/smoke/best                      # accuracy, per class, confusion
python -m orchestrator evaluate runs/smoke/<trial>/checkpoint_000002
python -m orchestrator evaluate runs/smoke/best/model.pt2            # or model.onnx: the runtime exports
python -m orchestrator evaluate runs/smoke/best --predict shoe.png bag.jpg [--invert] [--top-k 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError
from trainables.data import DataError
from trainables.lazy import lazy

if TYPE_CHECKING:
    import torch

    from orchestrator.review import evaluation
    from orchestrator.review.evaluation import LoadedModel
else:  # loaded when the command runs: `orchestrate launch` imports this module too, and never needs torch
    torch = lazy("torch")
    evaluation = lazy("orchestrator.review.evaluation")

EXAMPLES = """\
examples:
  python -m orchestrator evaluate runs/smoke/best
  python -m orchestrator evaluate runs/smoke/best --predict shoe.png --top-k 3
  python -m orchestrator evaluate s3://bucket/sweeps/smoke/best --json
  python -m orchestrator evaluate runs/smoke/best/model.onnx        # the exports score the same way

Images are converted to the model's channels (gray or RGB) and resized to its input size. Fashion-MNIST
shows light garments on black: a photo of a dark object on a white page needs --invert (evaluate warns
when an image's brightness is the opposite of the training data's).

exit codes: 0 done; 2 a missing or corrupt checkpoint, an unreadable image, or data not found (one line)
"""


# Largest accuracy difference called a match when the trial scored on another device or in bf16: 0.2%
# (20 images in 10,000), for predictions near a tie that other kernels' rounding flips.
BF16_TOLERANCE = 0.002


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="best/ directory, trial checkpoint directory, model.pt/checkpoint.pt, or best/model.pt2 or "
        "best/model.onnx (with the manifest.json beside it); local or a URI",
    )
    parser.add_argument("--predict", nargs="+", metavar="IMAGE", help="classify these PNG/JPEG files instead")
    parser.add_argument("--invert", action="store_true", help="invert images first (dark object, light background)")
    parser.add_argument("--top-k", type=int, default=3, help="predictions listed per image (default 3)")
    parser.add_argument(
        "--data-root",
        help="where the dataset is, for a fashion_mnist or torchvision source (default: the experiment's data.root)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def tolerance(runtime: dict[str, Any] | None, images: int) -> tuple[float, str]:
    """(largest accuracy difference that still matches, the reason in words). Scored as the trial scored
    (fp32 on the CPU), the numbers are the same: less than one image apart. A trial that scored on a GPU
    or under bf16 autocast ran other kernels, which round differently and can flip a prediction that sits
    on a tie: BF16_TOLERANCE (a stated bound, not a measured one)."""
    exact = 0.5 / max(images, 1)
    if runtime is None:
        return exact, "compared exactly (the checkpoint does not record how its trial scored)"
    precision = "bf16 autocast" if runtime.get("autocast") == "bfloat16" else "fp32"
    if runtime.get("device") == "cpu" and precision == "fp32":
        return exact, "compared exactly (the trial scored in fp32 on the cpu too)"
    allowed = max(exact, BF16_TOLERANCE)
    return allowed, (
        f"within ±{allowed:.4f}: the trial scored in {precision} on {runtime.get('device')}, this in {precision} "
        "on the cpu, whose kernels round differently"
    )


def evaluation_text(matrix: torch.Tensor, loaded: LoadedModel, data: str) -> tuple[str, dict[str, Any]]:
    total = int(matrix.sum())
    accuracy = float(matrix.diag().sum()) / total
    result: dict[str, Any] = {"model": loaded.source, "data": data, "test_accuracy": accuracy, "images": total}
    lines = [
        f"model: {loaded.source}",
        f"data:  {data}",
        f"test accuracy: {accuracy:.4f} ({int(matrix.diag().sum())}/{total})",
    ]
    if loaded.manifest and loaded.manifest.get("test_accuracy") is not None:
        recorded = float(loaded.manifest["test_accuracy"])
        allowed, how = tolerance(loaded.runtime, total)
        verdict = "matches" if abs(recorded - accuracy) <= allowed else "DIFFERS from"
        matches = verdict == "matches"
        result.update(manifest_test_accuracy=recorded, manifest_tolerance=allowed, manifest_matches=matches)
        lines.append(
            f"  {verdict} best/manifest.json: {recorded:.4f} ({loaded.manifest.get('trial_name')} "
            f"epoch {loaded.manifest.get('epoch')}), {how}"
        )
    width = max(len(c) for c in loaded.classes)
    lines.append("\nper-class accuracy:")
    per_class = {}
    for i, name in enumerate(loaded.classes):
        support = int(matrix[i].sum())
        per_class[name] = float(matrix[i, i]) / max(support, 1)
        lines.append(f"  {name.ljust(width)}  {per_class[name]:.4f}  ({support} images)")
    short = [c.split("/")[0][:7] for c in loaded.classes]
    lines.append("\nconfusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * (width + 2) + " ".join(s.rjust(7) for s in short))
    lines += [
        f"  {name.ljust(width)}" + " ".join(str(int(v)).rjust(7) for v in matrix[i])
        for i, name in enumerate(loaded.classes)
    ]
    result.update(per_class_accuracy=per_class, confusion=matrix.tolist(), classes=list(loaded.classes))
    return "\n".join(lines), result


def _predict(args: argparse.Namespace, loaded: LoadedModel) -> int:
    read = [evaluation.read_image(Path(p), loaded, args.invert) for p in args.predict]
    probabilities = evaluation.predict(loaded, torch.stack([image for image, _ in read]))
    k = min(args.top_k, len(loaded.classes))
    top = probabilities.topk(k, dim=1)
    results = []
    for path, (_, inverted), values, indices in zip(args.predict, read, top.values, top.indices, strict=True):
        ranked = [
            {"class": loaded.classes[int(i)], "probability": float(p)} for p, i in zip(values, indices, strict=True)
        ]
        results.append({"image": path, "predictions": ranked, "looks_inverted": inverted})
        if inverted:
            print(
                f"warning: {path} is {'light' if loaded.mean < 0.5 else 'dark'} where the training images are "
                f"{'dark' if loaded.mean < 0.5 else 'light'}; try {'without ' if args.invert else ''}--invert",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps({"model": loaded.source, "results": results}, indent=2))
        return 0
    width = max(len(p) for p in args.predict)
    for result in results:
        best, *rest = result["predictions"]
        others = "  ".join(f"{r['class']} {r['probability']:.4f}" for r in rest)
        print(
            f"{result['image'].ljust(width)}  {best['class']}  {best['probability']:.4f}"
            + (f"   (then: {others})" if others else "")
        )
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        if not 1 <= args.top_k <= 1000:
            raise ConfigError("--top-k", "must be between 1 and 1000", args.top_k)
        loaded = evaluation.load_model(args.model)
        if args.predict:
            return _predict(args, loaded)
        dataset = evaluation.evaluation_data(loaded, args.data_root)
        if dataset.input_shape != loaded.input_shape or dataset.num_classes != len(loaded.classes):
            raise ConfigError(
                args.model,
                f"the model takes {list(loaded.input_shape)} with {len(loaded.classes)} "
                f"classes; the data has {list(dataset.input_shape)} with {dataset.num_classes}",
            )
    except (ConfigError, DataError) as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 2
    # Copies: the arrays may be read-only views of the files, which torch will not wrap without a warning.
    images, labels = torch.tensor(dataset.test.images), torch.tensor(dataset.test.labels)
    predicted = evaluation.predict(loaded, images).argmax(dim=1)
    data = f"{dataset.source}, test split ({len(dataset.test)} samples)"
    text, result = evaluation_text(evaluation.confusion(labels, predicted, len(loaded.classes)), loaded, data)
    print(json.dumps(result, indent=2) if args.json else text)
    return 0
