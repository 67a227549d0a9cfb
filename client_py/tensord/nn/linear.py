"""`Linear` and `Identity`, like torch.nn's.

`Linear` creates its weight and bias on the server with PyTorch's default
initialization: both uniform on [-1/sqrt(in_features), 1/sqrt(in_features)]
(what `kaiming_uniform_(a=sqrt(5))` gives the weight). The values come from
the session's generator, so `td.manual_seed(s)` makes them repeatable.
"""
from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, Optional

from tensord import autograd, dtypes
from tensord.nn import functional as F
from tensord.nn.module import Module
from tensord.nn.parameter import Parameter
from tensord.tensor import Tensor

if TYPE_CHECKING:
    from tensord.client import Client


def _uniform(client: "Client", shape: tuple[int, ...], bound: float, dtype: Any) -> Tensor:
    """A new tensor uniform on [-bound, bound), made and scaled on the server."""
    t = client.rand(shape, dtype=dtype)
    with autograd.no_grad():
        t.mul_(2 * bound).add_(-bound)
    return t


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments, like torch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """y = x @ weight.T + bias, with weight [out_features, in_features] and bias [out_features].

    Create it through a client, `td.nn.Linear(3, 2)`, or pass `client=`.
    `dtype` defaults to float32.
    """

    _needs_client = True

    in_features: int
    out_features: int
    weight: Parameter
    bias: Optional[Parameter]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: Any = None,
        *,
        client: Optional["Client"] = None,
    ) -> None:
        super().__init__()
        client = self._resolve_client(client)
        self.in_features = operator.index(in_features)
        self.out_features = operator.index(out_features)
        if self.in_features < 0 or self.out_features < 0:
            raise ValueError(
                f"Linear: in_features and out_features must be non-negative, got {in_features} and {out_features}"
            )
        dtype = "float32" if dtype is None else dtypes.resolve(dtype)
        bound = self._bound()
        self.weight = Parameter(_uniform(client, (self.out_features, self.in_features), bound, dtype))
        if bias:
            self.bias = Parameter(_uniform(client, (self.out_features,), bound, dtype))
        else:
            self.register_parameter("bias", None)

    def _bound(self) -> float:
        return 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0

    def reset_parameters(self) -> None:
        """Draws new initial values into the existing parameters (in place), like torch."""
        bound = self._bound()
        with autograd.no_grad():
            for param in (self.weight, self.bias):
                if param is not None:
                    param.copy_(_uniform(param._client, param.shape, bound, param.dtype))

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
