"""`tensord.nn.functional` (import it as `F`): layers and losses as functions, like torch's.

Each function is one server op (one pipelined command) and records for autograd like
any other op; arguments are checked here first where torch checks them in
Python (reduction names, dropout probability, GELU approximation, shapes of
binary cross entropy), with torch's messages.

Class weights (`weight=`) are not supported by the server's losses yet: the
argument is kept in the signatures so positional calls written for torch
bind the same way, and giving one raises NotImplementedError.
"""
from __future__ import annotations

import numbers
import operator
import warnings
from typing import Any, Optional

from tensord.tensor import Tensor

__all__ = [
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "flatten",
    "gelu",
    "l1_loss",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]

_REDUCTIONS = ("none", "mean", "sum")


def _tensor(value: Any, fn: str, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}(): argument '{name}' must be a tensord.Tensor, not {type(value).__name__}")
    return value


def _op(name: str, input: Tensor, *args: Any, **attrs: Any) -> Tensor:
    """Runs server op `name` on `input` (which names the client) and returns its one output."""
    return _tensor(input, name, "input")._op(name, input, *args, **attrs)[0]


def check_reduction(reduction: Any) -> str:
    """`reduction` if it is 'none', 'mean' or 'sum'; ValueError with torch's message otherwise."""
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def legacy_reduction(size_average: Optional[bool], reduce: Optional[bool], reduction: str) -> str:
    """torch's mapping of the deprecated `size_average`/`reduce` pair to a `reduction` name."""
    if size_average is None and reduce is None:
        return check_reduction(reduction)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    result = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{result}' instead.",
        UserWarning,
        stacklevel=3,
    )
    return result


def _no_weight(weight: Any, fn: str) -> None:
    if weight is not None:
        raise NotImplementedError(f"{fn}: class weights (weight=) are not supported by tensord yet")


def _warn_size_mismatch(input: Tensor, target: Tensor) -> None:
    """torch's warning for a loss whose target broadcasts against its input.

    It needs both shapes; when an operand's op has not run yet, the check
    waits for its reply instead of for the server (see Executor.check_later),
    so a training loop stays pipelined.
    """

    def check(warn: Any, input_meta: Any, target_meta: Any) -> None:
        input_shape, target_shape = tuple(input_meta.shape), tuple(target_meta.shape)
        if target_shape != input_shape:
            warn(
                f"Using a target size ({target_shape}) that is different to the input size ({input_shape}). "
                "This will likely lead to incorrect results due to broadcasting. "
                "Please ensure they have the same size."
            )

    input._client._executor.check_later((input, target), check)


# ---- layers -------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """`input @ weight.T + bias`: input [..., in], weight [out, in], bias [out] or None."""
    if bias is None:
        return _op("linear", input, _tensor(weight, "linear", "weight"))
    return _op("linear", input, _tensor(weight, "linear", "weight"), _tensor(bias, "linear", "bias"))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Dims `start_dim`..`end_dim` merged into one (a view when possible), like torch.flatten."""
    return _tensor(input, "flatten", "input").flatten(operator.index(start_dim), operator.index(end_dim))


# ---- activations ----------------------------------------------------------------


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0), NaN propagating.

    `inplace=True` is accepted for compatibility and computes out of place:
    use the returned tensor.
    """
    return _op("relu", input)


def sigmoid(input: Tensor) -> Tensor:
    return _op("sigmoid", input)


def tanh(input: Tensor) -> Tensor:
    return _op("tanh", input)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU: exact (erf) with approximate='none', or torch's tanh approximation with 'tanh'."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return _op("gelu", input, approximate=approximate)


def _softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    """torch's legacy choice of dim when none is given, with its deprecation warning."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`. With `dtype`, the input is cast to it first."""
    input = _tensor(input, "softmax", "input")
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim, _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    return _op("softmax", input, dim=operator.index(dim))


def log_softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """log(softmax(x)) along `dim`, computed stably. With `dtype`, the input is cast to it first."""
    input = _tensor(input, "log_softmax", "input")
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim, _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    return _op("log_softmax", input, dim=operator.index(dim))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zeroes each element with probability `p` and scales the rest by 1/(1-p) when `training`.

    Outside training it returns `input` itself, issuing nothing. `inplace` is
    accepted for compatibility and computes out of place.
    """
    if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    input = _tensor(input, "dropout", "input")
    if not training:
        return input
    return _op("dropout", input, p=float(p), training=True)


# ---- losses -------------------------------------------------------------------


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> Tensor:
    """(input - target)^2, averaged, summed or kept per element."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _warn_size_mismatch(_tensor(input, "mse_loss", "input"), _tensor(target, "mse_loss", "target"))
    return _op("mse_loss", input, target, reduction=reduction)


def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> Tensor:
    """|input - target|, averaged, summed or kept per element."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _warn_size_mismatch(_tensor(input, "l1_loss", "input"), _tensor(target, "l1_loss", "target"))
    return _op("l1_loss", input, target, reduction=reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits `input` [N, C] (or [N, C, d1, ...], or [C]) against `target`.

    `target` holds int64 class indices ([N] or [N, d1, ...]; `ignore_index`
    entries count for nothing, and 'mean' divides by the others) or class
    probabilities shaped like `input`.
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    _no_weight(weight, "cross_entropy")
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    return _op(
        "cross_entropy",
        input,
        _tensor(target, "cross_entropy", "target"),
        reduction=reduction,
        ignore_index=operator.index(ignore_index),
        label_smoothing=float(label_smoothing),
    )


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log likelihood of log-probabilities `input` [N, C] (or [N, C, d1, ...]) at int64 `target`."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _no_weight(weight, "nll_loss")
    return _op(
        "nll_loss",
        input,
        _tensor(target, "nll_loss", "target"),
        reduction=reduction,
        ignore_index=operator.index(ignore_index),
    )


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    pos_weight: Optional[Tensor] = None,
) -> Tensor:
    """Binary cross entropy of logits `input` against probabilities `target` (same shape), computed stably.

    `pos_weight` (broadcasting against the last dim, typically [C]) weighs the positive term.
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    _no_weight(weight, "binary_cross_entropy_with_logits")
    input = _tensor(input, "binary_cross_entropy_with_logits", "input")
    target = _tensor(target, "binary_cross_entropy_with_logits", "target")
    # torch checks the shapes here; when one is not known yet, the server's
    # check (the same message) is raised at the next sync point instead.
    if input._src is None and target._src is None and target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    if pos_weight is None:
        return _op("binary_cross_entropy_with_logits", input, target, reduction=reduction)
    pos_weight = _tensor(pos_weight, "binary_cross_entropy_with_logits", "pos_weight")
    return _op("binary_cross_entropy_with_logits", input, target, pos_weight, reduction=reduction)
