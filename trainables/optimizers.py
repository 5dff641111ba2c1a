"""Optimizer families by name: an explicit table, never getattr on a user string.

Each family's own parameters live in a section named after it, the way model fields do, so searching
`optimizer` over several families never hands Adam's betas to SGD:

    optimizer: momentum
    optim:
      momentum: {momentum: 0.9, nesterov: true}
      adam: {betas: [0.9, 0.999], eps: 1.0e-8}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from trainables.lazy import lazy
from trainables.schema import Section

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")
    nn = lazy("torch.nn")


class SGDParams(Section):
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0, description="momentum factor; 0 = plain SGD")
    nesterov: bool = Field(default=False, description="Nesterov momentum (needs momentum > 0, dampening 0)")
    dampening: float = Field(default=0.0, ge=0.0, lt=1.0, description="dampening of the momentum buffer")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDParams:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov needs momentum > 0 and dampening 0 (got momentum {self.momentum}, "
                f"dampening {self.dampening})"
            )
        return self


class MomentumParams(SGDParams):
    momentum: float = Field(default=0.9, gt=0.0, lt=1.0, description="momentum factor (the seeds' 0.9)")


class AdamParams(Section):
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="decay of the 1st/2nd moment estimates")
    eps: float = Field(default=1e-8, gt=0, description="added to the denominator for stability")
    amsgrad: bool = Field(default=False, description="AMSGrad variant")

    @model_validator(mode="after")
    def _betas_in_range(self) -> AdamParams:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1) (got {list(self.betas)})")
        return self


class RMSpropParams(Section):
    alpha: float = Field(default=0.99, ge=0.0, lt=1.0, description="smoothing constant of the squared-gradient average")
    eps: float = Field(default=1e-8, gt=0, description="added to the denominator for stability")
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0, description="momentum factor")
    centered: bool = Field(default=False, description="normalize by the estimated gradient variance")


class AdagradParams(Section):
    eps: float = Field(default=1e-10, gt=0, description="added to the denominator for stability")
    lr_decay: float = Field(default=0.0, ge=0.0, description="per-step learning-rate decay")


class AdadeltaParams(Section):
    rho: float = Field(default=0.9, ge=0.0, lt=1.0, description="decay of the running averages")
    eps: float = Field(default=1e-6, gt=0, description="added to the denominator for stability")


class OptimSpec(Section):
    """Per-family parameters; only the section of the chosen `optimizer` is used."""

    sgd: SGDParams = SGDParams()
    momentum: MomentumParams = MomentumParams()
    rmsprop: RMSpropParams = RMSpropParams()
    adam: AdamParams = AdamParams()
    adamw: AdamParams = AdamParams()
    adagrad: AdagradParams = AdagradParams()
    adadelta: AdadeltaParams = AdadeltaParams()


# "momentum" is the seeds' recipe name for SGD with momentum; it has its own defaults above.
OPTIMIZERS = {  # config name -> torch.optim class name
    "sgd": "SGD", "momentum": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad",
    "adadelta": "Adadelta",
}  # fmt: skip


def family_params(name: str, optim: OptimSpec) -> dict[str, Any]:
    return dict(getattr(optim, name).model_dump())


def build_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float, optim: OptimSpec | None = None
) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown optimizer {name!r} (valid: {', '.join(OPTIMIZERS)})")
    params = family_params(name, optim or OptimSpec())
    family: Any = getattr(
        torch.optim, OPTIMIZERS[name]
    )  # each family's constructor takes lr, weight_decay and its own parameters
    return family(model.parameters(), lr=lr, weight_decay=weight_decay, **params)
