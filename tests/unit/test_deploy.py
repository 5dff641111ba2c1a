"""best/'s runtime exports: a model torch.export cannot trace gets one warning line and no file, and the
wrapper applies the trial's input scaling without touching the caller's images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from orchestrator.outputs.deploy import deployable, deployables
from trainables.models import build_model, make_spec

UNTRACEABLE = """\
from torch import nn


class Branchy(nn.Module):
    def __init__(self, features, classes):
        super().__init__()
        self.a, self.b = nn.Linear(features, classes), nn.Linear(features, classes)

    def forward(self, x):
        flat = x.flatten(1)
        return self.a(flat) if float(flat.sum()) > 0 else self.b(flat)  # a branch on the data's values


def build(input_shape, num_classes):
    return Branchy(int(input_shape[0] * input_shape[1] * input_shape[2]), num_classes)
"""


def _state(spec: dict, scale: str = "standard", pixel_max: float = 255.0) -> dict:
    model = build_model(spec)
    scaling = {"mean": [0.25], "std": [0.5], "pixel_max": pixel_max}
    return {"model": model.state_dict(), "model_spec": spec, "input_scale": scale, "scaling": scaling}


def test_an_untraceable_model_is_one_warning_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "branchy_net.py").write_text(UNTRACEABLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    state = _state(make_spec("branchy_net:build", {}, (1, 4, 4), 3))
    files, section = deployables(state, None, ("pt2", "onnx"))
    assert files == {} and section["files"] == {}
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: best/model.pt2 not exported: "), lines
    sys.modules.pop("branchy_net", None)


def test_the_wrapper_scales_inside_and_leaves_float_images_alone() -> None:
    spec = make_spec("mlp", {"hidden": [8]}, (1, 4, 4), 3)
    state = _state(spec, pixel_max=1.0)
    wrapped, shape, dtype = deployable(state)
    assert shape == (1, 4, 4) and dtype == torch.float32
    images = torch.rand(5, 1, 4, 4)
    before = images.clone()
    model = build_model(spec)
    model.load_state_dict(state["model"])
    with torch.no_grad():
        assert torch.allclose(wrapped(images), model.eval()((before - 0.25) / 0.5), atol=1e-6)
    assert torch.equal(images, before)
    assert deployable(_state(spec))[2] == torch.uint8, "bytes in, when the dataset stores bytes"
