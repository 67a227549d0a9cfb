"""tensord: NumPy arrays held by a tensord server, with PyTorch's names.

    import numpy as np, tensord

    with tensord.connect("127.0.0.1:50051") as td:
        t = td.from_numpy(np.arange(6.0).reshape(2, 3))
        print(t.T.numpy())          # a transposed ndarray, downloaded
        td.zeros(2, 3).float()      # tensors are freed when collected, or with .free()

Ops are pipelined, like work queued on a CUDA stream: each returns at once
and the server runs them in order; reading data (`numpy()`, `item()`, ...)
or `td.synchronize()` waits for them and raises the first failure among
them, naming the op and the line that issued it. `connect(blocking=True)`
(or TENSORD_BLOCKING=1) waits for every op instead.

Errors are `tensord.Error` subclasses named after the gRPC status codes.
"""
from tensord import autograd
from tensord.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from tensord.client import CHUNK_BYTES, Client, connect
from tensord.errors import (
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    Error,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SessionExpiredError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from tensord.info import MemoryInfo, TensorInfo
from tensord.tensor import Tensor
from tensord import nn, optim  # noqa: E402 (they build on Tensor)
from tensord.dtypes import named as _named_dtypes

globals().update(_named_dtypes())  # tensord.float32, tensord.bfloat16, ... as in torch

__version__ = "0.1.0"

__all__ = [
    "CHUNK_BYTES",
    "CancelledError",
    "Client",
    "DataLossError",
    "DeadlineExceededError",
    "Error",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "MemoryInfo",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SessionExpiredError",
    "Tensor",
    "TensorInfo",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "autograd",
    "connect",
    "enable_grad",
    "is_grad_enabled",
    "nn",
    "no_grad",
    "optim",
    "set_grad_enabled",
]
