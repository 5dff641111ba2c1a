"""The best model in runtime formats: a `torch.export` program (model.pt2) and an ONNX file (model.onnx).

    files, section = deployables(state, test_split, ("pt2", "onnx"))     # by export_best, into best/

Both take images exactly as the dataset stores them (`(N, C, H, W)` or flat `(N, D)`, uint8 pixels or
floats, the batch dimension dynamic), apply the trial's input scaling inside, and return logits in the
manifest's class order, so a consumer needs neither this project, nor the model's module, nor any
preprocessing code:

    logits = torch.export.load("best/model.pt2").module()(images)                       # torch alone
    logits = onnxruntime.InferenceSession("best/model.onnx").run(None, {"images": images.numpy()})[0]

Each file's parity with the checkpoint (the largest logit difference and the share of equal predictions
on the test split) is measured here and written to the manifest. A model that cannot be exported (a
user's model with data-dependent Python control flow, say) gets one warning line and best/ keeps
model.pt; ONNX is written only when the optional `onnx` extra (onnx, onnxruntime, onnxscript) is
installed. No Ray here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from trainables.data import Split, input_scaling
from trainables.models import build_model

PT2 = "model.pt2"
ONNX = "model.onnx"
INPUT, OUTPUT = "images", "logits"
PARITY_BATCH = 1024


class Deployable(nn.Module):
    """The model behind its input scaling: stored values in, logits out. Written without in-place ops, so
    a caller's float images are never changed."""

    shift: torch.Tensor
    divisor: torch.Tensor

    def __init__(self, model: nn.Module, shift: torch.Tensor, divisor: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("shift", shift)
        self.register_buffer("divisor", divisor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # A division, as the trial's InputScaling does: the same floats the model trained on, bit for bit.
        return self.model((images.to(torch.float32) - self.shift) / self.divisor)


def deployable(state: dict[str, Any]) -> tuple[Deployable, tuple[int, ...], torch.dtype]:
    """(the wrapped model in eval mode, its stored input shape, its stored dtype) from a checkpoint."""
    spec = state["model_spec"]
    model = build_model(spec)
    model.load_state_dict(state["model"] if "model" in state else state["state_dict"])
    record = state.get("scaling") or {"mean": [0.0], "std": [1.0], "pixel_max": 255.0}
    pixel_max, pixel_min = float(record.get("pixel_max", 255.0)), float(record.get("pixel_min", 0.0))
    scaling = input_scaling(str(state["input_scale"]), record["mean"], record["std"], pixel_max, pixel_min)
    shape = tuple(int(s) for s in spec["input_shape"])
    # Per channel of (C, H, W) images, per feature of (D,) vectors: the trial's own broadcast.
    view = (len(scaling.shift), *(1,) * (len(shape) - 1)) if isinstance(scaling.shift, tuple) else ()
    shift = torch.tensor(scaling.shift, dtype=torch.float32).reshape(view)
    divisor = torch.tensor(scaling.divisor, dtype=torch.float32).reshape(view)
    stored = torch.uint8 if (pixel_min, pixel_max) == (0.0, 255.0) else torch.float32
    return Deployable(model, shift, divisor).eval(), shape, stored


@torch.no_grad()
def _logits(run: Any, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([run(images[i : i + PARITY_BATCH]) for i in range(0, images.shape[0], PARITY_BATCH)])


def parity(reference: torch.Tensor, logits: torch.Tensor) -> dict[str, float | int]:
    return {
        "max_abs_logit_diff": float((reference - logits).abs().max()),
        "prediction_agreement": float((reference.argmax(1) == logits.argmax(1)).float().mean()),
        "samples": int(reference.shape[0]),
    }


def _quietly(action: Any) -> Any:
    """torch.export and the ONNX exporter narrate their steps on stdout and warn about torch's own internals
    (an RNN's flat weights) and log the guards they could not place; none of it is the user's to act on. A
    failure still raises, and becomes the one warning line."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # torch's tracer logs each guard it fails to place: a failure says it all
    try:
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with quiet[0], quiet[1], warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return action()
    finally:
        logging.disable(previous)


def _warn(name: str, exc: BaseException) -> None:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    print(f"warning: best/{name} not exported: {type(exc).__name__}: {text}", file=sys.stderr, flush=True)


def deployables(
    state: dict[str, Any], test: Split | None, formats: tuple[str, ...]
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(best/ file name -> bytes, the manifest's `export` section)."""
    if not formats:
        return {}, {}
    model, shape, dtype = deployable(state)
    images = _test_images(test, shape, dtype)
    # A copy of two samples: the program stores its example inputs, and a view would store the whole split.
    example = images[:2].clone() if images.shape[0] >= 2 else torch.zeros((2, *shape), dtype=dtype)
    reference = _logits(model, images)
    section: dict[str, Any] = {
        "input": {"name": INPUT, "shape": ["batch", *shape], "dtype": str(dtype).removeprefix("torch.")},
        "output": {"name": OUTPUT, "shape": ["batch", int(state["model_spec"]["num_classes"])]},
        "files": {},
    }
    files: dict[str, bytes] = {}
    try:
        batch = torch.export.Dim.DYNAMIC
        program = _quietly(lambda: torch.export.export(model, (example,), dynamic_shapes={INPUT: {0: batch}}))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
        files[PT2] = buffer.getvalue()
        checked = parity(reference, _logits(loaded, images))
        section["files"][PT2] = {"runs_with": f"torch {torch.__version__}", **checked}
    except Exception as exc:  # noqa: BLE001 - a model torch.export cannot trace: model.pt still stands
        _warn(PT2, exc)
        return files, section
    if "onnx" in formats:
        onnx_file = _onnx(program, images, reference)
        if onnx_file is not None:
            files[ONNX], section["files"][ONNX] = onnx_file
    if "pt2" not in formats:
        files.pop(PT2)
        section["files"].pop(PT2)
    return files, section


def _test_images(test: Split | None, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if test is None or len(test) == 0 or tuple(test.images.shape[1:]) != shape:
        return torch.zeros((2, *shape), dtype=dtype)
    return torch.from_numpy(np.array(test.images))  # a copy: the split may be a read-only view


def _onnx(program: Any, images: torch.Tensor, reference: torch.Tensor) -> tuple[bytes, dict[str, Any]] | None:
    try:
        import onnxruntime  # noqa: F401 - the optional `onnx` extra; without it, no ONNX file
    except ImportError:
        print("note: best/model.onnx not written: pip install '.[onnx]' for it", file=sys.stderr, flush=True)
        return None
    try:
        exported = _quietly(
            lambda: torch.onnx.export(program, input_names=[INPUT], output_names=[OUTPUT], dynamo=True, verbose=False)
        )
        data = exported.model_proto.SerializeToString()
        session = onnx_session(data)
        logits = _logits(lambda x: torch.from_numpy(session.run(None, {INPUT: x.numpy()})[0]), images)
    except Exception as exc:  # noqa: BLE001 - an operator ONNX lacks: the .pt2 and model.pt still stand
        _warn(ONNX, exc)
        return None
    import onnxruntime as ort

    return data, {"runs_with": f"onnxruntime {ort.__version__}", **parity(reference, logits)}


def onnx_session(model: bytes | str) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])
