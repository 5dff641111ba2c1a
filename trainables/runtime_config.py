"""`runtime:`, the run settings that are not hyperparameters: the config section alone, without torch, so that
the driver reads configs without importing it. What each setting does to a trial: trainables.accel."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainables.schema import Section

Precision = Literal["auto", "fp32", "bf16"]


class RuntimeConfig(Section):
    precision: Precision = Field(
        default="auto",
        description="auto: bf16 autocast on a bf16-capable GPU for "
        "mlp/cnn, else fp32; bf16 forces autocast on any device",
    )
    channels_last: bool = Field(default=True, description="CNNs in channels_last memory format on a GPU")
    compile: bool = Field(default=False, description="torch.compile the model (slow start, measure first)")
    reuse_actors: bool = Field(
        default=True,
        description="Tune reuses a finished trial's worker for the next "
        "trial (no process start, no re-import of torch)",
    )
    gpu_memory_gb: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="GiB per GPU for the memory preflight; none = the driver's GPU, or an assumed 80 when it has none",
    )
    deterministic: bool = Field(
        default=False,
        description="deterministic kernels (cuDNN/cuBLAS flags, "
        "torch.use_deterministic_algorithms): identical GPU reruns, at some speed",
    )
