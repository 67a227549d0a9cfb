"""`Flatten`, like torch.nn's: merges a range of dims, typically all but the batch dim."""
from __future__ import annotations

from tensord.nn import functional as F
from tensord.nn.module import Module
from tensord.tensor import Tensor


class Flatten(Module):
    """Merges dims `start_dim`..`end_dim` into one (by default all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
