"""Loss layers, like torch.nn's: MSELoss, L1Loss, CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss.

Each is called as `loss(input, target)` and is one server op. `reduction`
is 'mean' (default), 'sum' or 'none'; it is checked when the loss is made
and again when it runs (it is a plain attribute and may be changed).
`size_average` and `reduce` are torch's deprecated spellings of it.
"""
from __future__ import annotations

from typing import Optional

from tensord.nn import functional as F
from tensord.nn.module import Module
from tensord.tensor import Tensor


class _Loss(Module):
    def __init__(
        self, size_average: Optional[bool] = None, reduce: Optional[bool] = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.reduction = F.legacy_reduction(size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: Optional[bool] = None,
        reduce: Optional[bool] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        F._no_weight(weight, type(self).__name__)
        self.register_buffer("weight", None)


class MSELoss(_Loss):
    """Mean squared error: (input - target)^2, reduced."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error: |input - target|, reduced."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits against class indices (int64) or class probabilities.

    Targets equal to `ignore_index` are skipped ('mean' divides by the rest);
    `label_smoothing` in [0, 1] mixes the target with the uniform distribution.
    """

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: Optional[bool] = None,
        ignore_index: int = -100,
        reduce: Optional[bool] = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of log-probabilities (e.g. from LogSoftmax) at int64 class indices."""

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: Optional[bool] = None,
        ignore_index: int = -100,
        reduce: Optional[bool] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, ignore_index=self.ignore_index, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of logits against probabilities of the same shape, computed stably.

    `pos_weight` (a tensor broadcasting against the last dim) weighs the
    positive term; it is registered as a buffer, as in torch.
    """

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average: Optional[bool] = None,
        reduce: Optional[bool] = None,
        reduction: str = "mean",
        pos_weight: Optional[Tensor] = None,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        F._no_weight(weight, "BCEWithLogitsLoss")
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            raise TypeError(f"pos_weight must be a tensord.Tensor or None, got {type(pos_weight).__name__}")
        self.register_buffer("weight", None)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction, pos_weight=self.pos_weight)
