"""`Parameter`: a tensor that a `Module` registers as one of its weights.

A Parameter is a `tensord.Tensor` that is a leaf requiring grad (unless made
with `requires_grad=False`). It owns its own server handle, made by detaching
the given tensor: the handle shares the tensor's storage, has no autograd
history, and is freed when the Parameter is collected, like any Tensor's.
"""
from __future__ import annotations

from tensord.tensor import Tensor


class Parameter(Tensor):
    """`tensord.nn.Parameter(data, requires_grad=True)`, like `torch.nn.Parameter`.

    Assigning one to an attribute of a `Module` registers it, so it shows up
    in `parameters()` and `state_dict()`. Results of ops on a Parameter are
    plain Tensors.
    """

    __slots__ = ()

    def __new__(cls, data: Tensor, requires_grad: bool = True) -> "Parameter":
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a tensord.Tensor, got {type(data).__name__}")
        leaf = data.detach()  # a new handle over the same storage, without history
        if requires_grad:  # a detached tensor does not require grad: only this case needs a command
            leaf.requires_grad_(True)
        # Adopt the handle: `leaf` must not free it when it is collected.
        param = Tensor.__new__(cls)
        Tensor.__init__(param, leaf._client, *leaf._adopt())
        return param

    def __init__(self, data: Tensor, requires_grad: bool = True) -> None:
        pass  # __new__ did the work; Tensor.__init__ must not run a second time

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
