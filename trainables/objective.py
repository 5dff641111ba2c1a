"""What each training step minimises, and how its gradient is bounded.

    loss: {l1: 1.0e-4, l2: 0.0, l2_form: squared, penalize_bias: false, label_smoothing: 0.1}
    clip: {by: norm, threshold: 1.0}

The penalties are added to the cross-entropy of every training batch, so `train_loss` reports the
objective the optimizer minimised; validation and test losses stay plain cross-entropy. `weight_decay`
(in the optimizer) is a different knob: it shrinks weights in the update, not through the loss.
`l2_form: norm` is the seeds' L2 term, a sum of each parameter tensor's Euclidean norm (not squared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from trainables.lazy import lazy
from trainables.schema import Section

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # loaded on first use: the driver imports this module without torch (trainables.lazy)
    torch = lazy("torch")
    F = lazy("torch.nn.functional")
    nn = lazy("torch.nn")

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class LossSpec(Section):
    l1: float = Field(default=0.0, ge=0, description="coefficient of sum |w| added to the loss")
    l2: float = Field(default=0.0, ge=0, description="coefficient of the L2 term added to the loss")
    l2_form: Literal["squared", "norm"] = Field(
        default="squared", description="squared: sum w^2; norm: sum of each tensor's ||w||_2 (the seeds')"
    )
    penalize_bias: bool = Field(
        default=False,
        description="include biases and batch-norm parameters in "
        "the penalties; false = weight matrices and conv kernels only",
    )
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing")


class ClipSpec(Section):
    by: Literal["none", "norm", "value"] = Field(
        default="none", description="norm: rescale so the global grad norm <= threshold; value: clamp each entry"
    )
    threshold: float = Field(default=1.0, gt=0, description="max global L2 norm, or max |gradient entry|")


def penalized_parameters(model: nn.Module, include_bias: bool) -> tuple[nn.Parameter, ...]:
    """Weight matrices and kernels (ndim >= 2); with include_bias, every parameter."""
    return tuple(p for p in model.parameters() if p.requires_grad and (include_bias or p.ndim >= 2))


@dataclass(frozen=True)
class Objective:
    """loss_fn(logits, labels): cross-entropy plus the configured penalties, all on the device."""

    spec: LossSpec
    params: tuple[nn.Parameter, ...]

    def penalty(self) -> torch.Tensor:
        total = torch.zeros((), device=self.params[0].device) if self.params else torch.zeros(())
        if self.spec.l1:
            total = total + self.spec.l1 * sum(p.abs().sum() for p in self.params)
        if self.spec.l2:
            terms = (
                (p.pow(2).sum() for p in self.params)
                if self.spec.l2_form == "squared"
                else (torch.linalg.vector_norm(p) for p in self.params)
            )
            total = total + self.spec.l2 * sum(terms)
        return total

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, labels, label_smoothing=self.spec.label_smoothing)
        if self.spec.l1 or self.spec.l2:
            loss = loss + self.penalty()
        return loss


def build_objective(model: nn.Module, spec: LossSpec) -> LossFn:
    if not (spec.l1 or spec.l2 or spec.label_smoothing):
        return F.cross_entropy
    return Objective(spec, penalized_parameters(model, spec.penalize_bias))


def build_clip(model: nn.Module, spec: ClipSpec) -> Callable[[], None] | None:
    """A callable run between backward and step; None when clipping is off."""
    params = [p for p in model.parameters() if p.requires_grad]

    def by_norm() -> None:
        # foreach: a few fused kernels; the returned norm is never read, so the device is not synced
        nn.utils.clip_grad_norm_(params, spec.threshold, foreach=True)

    def by_value() -> None:
        nn.utils.clip_grad_value_(params, spec.threshold, foreach=True)

    return {"norm": by_norm, "value": by_value}.get(spec.by)
