"""Scoring an exported model or any trial checkpoint: the test split it was trained beside, or image files.

A model file (best/model.pt or a trial's checkpoint.pt, local or on an object store) carries all it
needs: the model spec (a built-in family or a factory's import path, its arguments, the input shape and
class count), the input scaling, the class names. It is read with `weights_only=True` and its model is
size-checked before anything is allocated. The data is the experiment's own (its recorded `data:`
section), found beside the model; `--data-root` points a Fashion-MNIST or torchvision source elsewhere.
No Ray here.
"""

from __future__ import annotations

import io
import json
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch
from pydantic import ValidationError
from torch import nn

from orchestrator.errors import ConfigError
from orchestrator.location import BEST_MANIFEST, BEST_MODEL, RECORD
from orchestrator.outputs.deploy import ONNX, PT2, onnx_session
from trainables import checkpoint as ckpt
from trainables.accel import Accelerated
from trainables.data import DataError, Dataset, InputScaling, input_scaling
from trainables.data_readers import FASHION_CLASSES
from trainables.data_sources import DataConfig, load_dataset
from trainables.loop import EVAL_BATCH, predict_logits
from trainables.models import ModelError, build_model
from trainables.schema import strict_validate

MAX_MODEL_BYTES = 2 << 30
MAX_IMAGE_BYTES = 64 << 20
MAX_IMAGE_PIXELS = 50_000_000  # PIL refuses more (a decompression bomb is a small file of huge pixel count)


@dataclass
class LoadedModel:
    model: nn.Module
    scaling: InputScaling
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]
    # What an image file's pixels 0..255 become in the stored format (the training data's value range);
    # None: the model trained on floats of undeclared range, whose pixel scale is unknown.
    image_range: tuple[float, float] | None
    mean: float  # training data's mean on the unit scale: what an image's brightness is compared with
    source: str
    manifest: dict[str, Any] | None  # best/manifest.json when evaluating best/
    experiment: tuple[pafs.FileSystem, str] | None  # the experiment directory, when the model sits in one
    runtime: dict[str, Any] | None = None  # how its trial scored ({device, autocast}); None in older checkpoints
    # A runtime export (best/model.pt2 or model.onnx): stored values in, logits out, its scaling inside.
    program: Callable[[torch.Tensor], torch.Tensor] | None = None


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError(path, f"not a readable location ({_first_line(exc)})") from None
    # os.path.expanduser leaves an unknown ~user alone (Path.expanduser raises): then no such file is found
    return pafs.LocalFileSystem(), str(Path(os.path.expanduser(path)).resolve())


def _model_file(fs: pafs.FileSystem, path: str, shown: str) -> str:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        for name in (BEST_MODEL, ckpt.CHECKPOINT_FILE):
            if fs.get_file_info(f"{path}/{name}").type == pafs.FileType.File:
                return f"{path}/{name}"
        raise ConfigError(shown, f"no {BEST_MODEL} or {ckpt.CHECKPOINT_FILE} in this directory")
    if info.type == pafs.FileType.File:
        return path
    raise ConfigError(shown, "no such checkpoint file or directory")


def _read(fs: pafs.FileSystem, path: str, limit: int, shown: str) -> bytes:
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise ConfigError(shown, "no such file")
    if info.size > limit:
        raise ConfigError(shown, f"larger than {limit >> 20} MiB")
    with fs.open_input_stream(path) as stream:
        return bytes(stream.read())


def _json(fs: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    try:
        value = json.loads(_read(fs, path, 1 << 20, path))
    except (OSError, ValueError, ConfigError):
        return None
    return value if isinstance(value, dict) else None


def _experiment_dir(fs: pafs.FileSystem, file: str) -> str | None:
    """best/model.pt -> the experiment; <trial>/checkpoint_N/checkpoint.pt -> the experiment."""
    parts = file.split("/")
    for depth in (2, 3):
        candidate = "/".join(parts[:-depth])
        if candidate and fs.get_file_info(f"{candidate}/{RECORD}").type == pafs.FileType.File:
            return candidate
    return None


def load_model(path: str) -> LoadedModel:
    """best/ or a trial checkpoint (dir or file, local or URI) -> the network in eval mode, and how to feed it;
    or best/model.pt2 or best/model.onnx, described by the manifest beside it."""
    fs, resolved = _fs(path)
    file = _model_file(fs, resolved, path)
    if file.endswith((PT2, ONNX)):
        return _load_program(fs, file, path)
    try:
        state = torch.load(io.BytesIO(_read(fs, file, MAX_MODEL_BYTES, file)), map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except Exception as exc:  # torch raises many types for a truncated, foreign or malicious file
        raise ConfigError(file, f"not a readable checkpoint ({type(exc).__name__})") from None
    weights = state.get("state_dict", state.get("model")) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or "model_spec" not in state or "input_scale" not in state:
        raise ConfigError(file, "not a model checkpoint (needs model weights, model_spec, input_scale)")
    try:
        model = build_model(state["model_spec"])
        model.load_state_dict(weights)
        scaling_record = state.get("scaling") or {"mean": [0.0], "std": [1.0]}
        if not isinstance(scaling_record, dict):
            raise DataError(f"scaling: must be a mapping of mean, std and pixel_max (got {str(scaling_record)[:40]})")
        mean, std = _floats(scaling_record.get("mean")), _floats(scaling_record.get("std"))
        pixel_max = float(scaling_record.get("pixel_max", 255.0))
        pixel_min = float(scaling_record.get("pixel_min", 0.0))
        scale = input_scaling(str(state["input_scale"]), mean, std, pixel_max, pixel_min)
        image_range = _image_range(scaling_record, pixel_min, pixel_max)
    except ModelError as exc:
        raise ConfigError(file, f"checkpoint does not rebuild its model: {exc}") from None
    except DataError as exc:
        raise ConfigError(file, f"checkpoint has unusable input scaling: {exc}") from None
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(file, f"checkpoint does not rebuild its model ({_first_line(exc)})") from None
    model.eval()
    runtime = state.get("runtime") if isinstance(state.get("runtime"), dict) else None
    if runtime and runtime.get("autocast") == "bfloat16":  # score in the precision the trial scored in
        model = Accelerated(model, "cpu", torch.bfloat16, channels_last=False).eval()
    spec = state["model_spec"]
    shape = tuple(spec.get("input_shape", (1, 28, 28)))
    classes = tuple(str(c) for c in state.get("classes") or ()) or _default_classes(spec)
    manifest = _manifest(fs, file.rsplit("/", 1)[0] + "/" + BEST_MANIFEST) if file.endswith(BEST_MODEL) else None
    experiment = _experiment_dir(fs, file)
    return LoadedModel(
        model,
        scale,
        shape,
        classes,
        image_range,
        float(np.mean(mean)),
        path,
        manifest,
        (fs, experiment) if experiment else None,
        runtime,
    )


def _load_program(fs: pafs.FileSystem, file: str, shown: str) -> LoadedModel:
    manifest = _manifest(fs, file.rsplit("/", 1)[0] + "/" + BEST_MANIFEST)
    if manifest is None or not isinstance(manifest.get("model_spec"), dict) or not manifest.get("classes"):
        raise ConfigError(file, f"needs the {BEST_MANIFEST} exported beside it (its classes and input shape)")
    data = _read(fs, file, MAX_MODEL_BYTES, file)
    try:
        if file.endswith(PT2):
            module = torch.export.load(io.BytesIO(data)).module()
            program: Callable[[torch.Tensor], torch.Tensor] = module
        else:
            session = onnx_session(data)
            name = session.get_inputs()[0].name
            program = lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])  # noqa: E731
    except ImportError:
        raise ConfigError(file, "running an ONNX file needs onnxruntime: pip install '.[onnx]'") from None
    except Exception as exc:  # torch and onnxruntime raise many types for a truncated or foreign file
        raise ConfigError(file, f"not a readable {file.rsplit('.', 1)[-1]} program ({_first_line(exc)})") from None
    recorded = manifest.get("scaling")
    scaling: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    pixel_max, pixel_min = float(scaling.get("pixel_max", 255.0)), float(scaling.get("pixel_min", 0.0))
    image_range = _image_range(scaling, pixel_min, pixel_max)
    model = nn.Identity()  # unused: the program is the model
    shape = tuple(int(s) for s in manifest["model_spec"].get("input_shape", (1, 28, 28)))
    mean = float(np.mean(_floats(scaling.get("mean", [0.0]))))
    classes = tuple(str(c) for c in manifest["classes"])
    experiment = _experiment_dir(fs, file)
    return LoadedModel(
        model, input_scaling("raw", [0.0], [1.0]), shape, classes, image_range, mean, shown, manifest,
        (fs, experiment) if experiment else None, program=program,
    )  # fmt: skip


def _manifest(fs: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    """best/manifest.json, when there is one; one that is there but unusable is refused, not ignored."""
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    fix = "rerun the launch command to export best/ again, or remove the manifest to score the model alone"
    try:
        manifest = json.loads(_read(fs, path, 1 << 20, path))
    except (OSError, ValueError) as exc:
        raise ConfigError(path, f"not a readable manifest ({_first_line(exc)}); {fix}") from None
    if not isinstance(manifest, dict):
        raise ConfigError(path, f"not a manifest (expected a JSON object, got {type(manifest).__name__}); {fix}")
    accuracy = manifest.get("test_accuracy")
    if accuracy is not None and (
        isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not 0 <= accuracy <= 1
    ):
        raise ConfigError(path, f"test_accuracy must be a number from 0 to 1 (got {str(accuracy)[:40]!r}); {fix}")
    return manifest


def _image_range(record: dict[str, Any], pixel_min: float, pixel_max: float) -> tuple[float, float] | None:
    """A checkpoint from before value ranges were recorded: its pixels spanned 0..pixel_max."""
    if "image_range" not in record:
        return (pixel_min, pixel_max)
    value = record["image_range"]
    if value is None:
        return None
    low, high = _floats(value)
    if not low < high:
        raise DataError(f"scaling: image_range must be [low, high] with low < high (got {value})")
    return (low, high)


def _floats(value: Any) -> list[float]:
    values = value if isinstance(value, list | tuple) else [value]
    return [float(v) for v in values]


def _default_classes(spec: dict[str, Any]) -> tuple[str, ...]:
    count = int(spec.get("num_classes", len(FASHION_CLASSES)))
    return FASHION_CLASSES if count == len(FASHION_CLASSES) else tuple(str(i) for i in range(count))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def evaluation_data(loaded: LoadedModel, data_root: str | None) -> Dataset:
    """The dataset of the experiment the model came from (its recorded seed and data section)."""
    data: dict[str, Any] = {}
    seed = 0
    if loaded.experiment is not None:
        fs, directory = loaded.experiment
        record = _json(fs, f"{directory}/{RECORD}") or {}
        config = record.get("config", {}) if isinstance(record.get("config"), dict) else {}
        data, seed = config.get("data", {}), config.get("seed", 0)
        if not isinstance(data, dict):
            raise ConfigError(
                f"{directory}/{RECORD}",
                f"config.data must be a mapping (got {str(data)[:40]!r}); the experiment record is damaged",
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(
                f"{directory}/{RECORD}",
                f"config.seed must be an integer (got {str(seed)[:40]!r}); the experiment record is damaged",
            )
        data = dict(data)
    if data_root is not None:
        data["root"] = data_root
    try:
        cfg = strict_validate(DataConfig, data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(["data", *(str(part) for part in error["loc"])])
        problem = error["msg"].removeprefix("Value error, ")
        raise ConfigError(where, f"the experiment's data section is unusable ({problem})") from None
    except ValueError as exc:
        raise ConfigError("data", f"the experiment's data section is unusable ({_first_line(exc)})") from None
    return load_dataset(cfg, seed)


def predict(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities for a batch in the stored format (uint8 or float)."""
    if loaded.program is not None:
        with torch.no_grad():
            run = loaded.program
            logits = torch.cat(
                [run(images[i : i + EVAL_BATCH].contiguous()) for i in range(0, len(images), EVAL_BATCH)]
            )
        return torch.softmax(logits, dim=1)
    return torch.softmax(predict_logits(loaded.model, images, loaded.scaling), dim=1)


def confusion(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """matrix[true, predicted] = count."""
    return torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def read_image(path: Path, loaded: LoadedModel, invert: bool) -> tuple[torch.Tensor, bool]:
    """(image in the model's stored format, looks inverted?) for a PNG/JPEG file."""
    from PIL import Image, UnidentifiedImageError

    if len(loaded.input_shape) != 3:
        raise ConfigError(
            "--predict", f"this model takes feature vectors of shape {list(loaded.input_shape)}, not images"
        )
    channels, height, width = loaded.input_shape
    if channels not in (1, 3):
        raise ConfigError(
            "--predict",
            f"this model takes {channels}-channel inputs; only 1 (gray) or 3 (RGB) channel images can be read",
        )
    if loaded.image_range is None:
        raise ConfigError(
            "--predict",
            "this model trained on floats outside 0..1 with no declared data.value_range, so how an image "
            "file's pixels map onto its inputs is unknown; retrain with data.value_range (e.g. [0, 255])",
        )
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device could be endless
            raise ConfigError(str(path), "cannot read the image: not a regular file")
        if info.st_size > MAX_IMAGE_BYTES:
            raise ConfigError(str(path), f"larger than {MAX_IMAGE_BYTES >> 20} MiB")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
            with Image.open(path) as image:
                converted = image.convert("L" if channels == 1 else "RGB")
                if converted.size != (width, height):
                    converted = converted.resize((width, height), Image.Resampling.LANCZOS)
                pixels = np.array(converted, dtype=np.uint8)  # a writable copy, for torch
    except ConfigError:
        raise
    except (
        OSError,
        UnidentifiedImageError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ConfigError(str(path), f"cannot read the image ({_first_line(exc)})") from None
    if invert:
        pixels = 255 - pixels
    pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    # The background is what the border shows: light on dark training images (or dark on light) means the
    # photo is the other way round from what the model learned.
    border = np.concatenate([pixels[:, 0, :], pixels[:, -1, :], pixels[:, :, 0], pixels[:, :, -1]], axis=None)
    background = float(border.mean()) / 255
    inverted = (background - 0.5) * (loaded.mean - 0.5) < 0 and abs(background - loaded.mean) > 0.25
    tensor = torch.from_numpy(np.ascontiguousarray(pixels))
    low, high = loaded.image_range
    if (low, high) == (0.0, 255.0):
        return tensor, inverted  # the stored format itself: uint8 pixels
    # The training data's values for black..white: 0..1 for floats on the unit scale, a declared range else.
    return low + tensor.float() / 255 * (high - low), inverted
