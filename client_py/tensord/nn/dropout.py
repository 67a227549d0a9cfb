"""`Dropout`, like torch.nn's: random zeroing in training mode, the identity in eval mode."""
from __future__ import annotations

import numbers

from tensord.nn import functional as F
from tensord.nn.module import Module
from tensord.tensor import Tensor


class Dropout(Module):
    """In training mode zeroes each element with probability `p` and scales the rest by 1/(1-p);
    in eval mode returns its input unchanged. `inplace` is accepted for compatibility."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"

