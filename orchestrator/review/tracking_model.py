"""The best model as an MLflow model on the sweep's parent run, optionally registered under a name.

    tracking: {mlflow: {tracking_uri: http://127.0.0.1:5000, registered_model: fashion-small}}

The pytorch flavor of the exported model (its input scaling inside, as best/model.pt2: stored images in,
logits out), with its signature (input shape and dtype as the dataset stores images, batch dynamic). It is
serialized as a torch.export program (`pt2`) when best/ has one, else pickled (then loading it needs this
project and the model's module). With `registered_model`, a new version of that registered model. No Ray here.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.location import BEST, BEST_MODEL, Location
from trainables.lazy import lazy

if TYPE_CHECKING:
    import torch
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")

MODEL_NAME = "model"  # the logged model's name on the run


def log_best_model(uri: str, run_id: str, location: Location, manifest: dict[str, Any], register: str | None) -> None:
    """Logs (and registers) best/ as an MLflow model."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    from orchestrator.outputs.deploy import PT2, deployable

    state = torch.load(io.BytesIO(location.read_bytes(BEST, BEST_MODEL)), map_location="cpu", weights_only=True)
    model, shape, dtype = deployable(state)
    example = np.zeros((2, *shape), dtype=np.uint8 if dtype == torch.uint8 else np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, logits)
    exported = PT2 in ((manifest.get("export") or {}).get("files") or {})
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):  # the parent run: finish() closes it right after
        mlflow.pytorch.log_model(
            model,
            name=MODEL_NAME,
            signature=signature,
            input_example=example,
            serialization_format="pt2" if exported else "pickle",
            registered_model_name=register,
        )
