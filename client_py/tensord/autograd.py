"""Autograd on the server, driven with PyTorch's names.

The graph lives on the server: every op on tensors that require grad is
recorded there, `Tensor.backward()` (or `tensord.autograd.backward`) is one
command that runs the backward pass (queued like any op), and gradients stay on the server as tensors
(`Tensor.grad`). This module holds what is client-side state: the grad mode
(`no_grad`, `enable_grad`, `set_grad_enabled`), which, like PyTorch's, is
per thread and is sent with every op request.
"""
from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from tensord.v1 import tensord_pb2 as pb

if TYPE_CHECKING:
    from tensord.tensor import Tensor

_F = TypeVar("_F", bound=Callable[..., Any])

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops on this thread are recorded for autograd (True unless inside `no_grad`)."""
    return getattr(_state, "enabled", True)


def _set(enabled: bool) -> None:
    _state.enabled = enabled


class _GradMode:
    """A context manager and decorator that sets the grad mode, restoring the previous one on exit."""

    _mode: bool

    def __enter__(self) -> None:
        self._previous = is_grad_enabled()
        _set(self._mode)

    def __exit__(self, *exc: object) -> None:
        _set(self._previous)

    def __call__(self, fn: _F) -> _F:
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_GradMode):  # noqa: N801 (torch's name)
    """Ops inside `with tensord.no_grad():` (or a function decorated with it) are not
    recorded: their results do not require grad, and in-place updates of parameters
    (as in a hand-written SGD step) are allowed."""

    _mode = False


class enable_grad(_GradMode):  # noqa: N801
    """Turns recording back on inside a `no_grad` block."""

    _mode = True


class set_grad_enabled(_GradMode):  # noqa: N801
    """`set_grad_enabled(False)` is `no_grad()`; usable as a function, a context manager or a decorator."""

    def __init__(self, mode: bool) -> None:
        self._mode = bool(mode)
        self._previous = is_grad_enabled()
        _set(self._mode)  # torch applies it at once, so the plain call works too

    def __enter__(self) -> None:
        pass  # already applied; __exit__ restores the mode from before the call

    def __call__(self, fn: _F) -> _F:
        _set(self._previous)  # as a decorator it applies only while fn runs
        return super().__call__(fn)


def backward(
    tensors: "Tensor | Sequence[Tensor]",
    grad_tensors: "Tensor | Sequence[Tensor | None] | None" = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> None:
    """Computes the gradients of `tensors` with respect to the graph leaves, in one command.

    Gradients are added into the `.grad` of every leaf that requires grad.
    `grad_tensors` gives d(loss)/d(tensor) for each tensor (None: ones, allowed
    for one-element tensors). Without `retain_graph` the graph's saved tensors
    are freed, and a second backward through it raises FailedPreconditionError.
    """
    from tensord.tensor import Tensor

    if create_graph:
        raise NotImplementedError("tensord does not support higher-order gradients (create_graph=True)")
    roots = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not roots:
        raise ValueError("backward() needs at least one tensor")
    if grad_tensors is None:
        grads: list[Tensor | None] = [None] * len(roots)
    elif isinstance(grad_tensors, Tensor):
        grads = [grad_tensors]
    else:
        grads = list(grad_tensors)
    if len(grads) != len(roots):
        raise ValueError(f"got {len(grads)} gradients for {len(roots)} tensors")
    client = roots[0]._client
    for t in [*roots, *(g for g in grads if g is not None)]:
        if not isinstance(t, Tensor):
            raise TypeError(f"backward() expects tensord Tensors, got {type(t).__name__}")
        if t._client is not client:
            raise ValueError("backward(): all tensors must belong to one client")
    request = pb.BackwardRequest(
        tensors=[t._live_handle() for t in roots],
        grad_tensors=[g._live_handle() if g is not None else "" for g in grads]
        if any(g is not None for g in grads)
        else [],
        retain_graph=bool(retain_graph),
    )
    operands = [*roots, *(g for g in grads if g is not None)]
    client._executor.command(client, "backward", pb.Command(backward=request), operands)
