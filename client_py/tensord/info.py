"""Plain read-only records the client returns: memory accounting and tensor listings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tensord import dtypes
from tensord.v1 import tensord_pb2 as pb


@dataclass(frozen=True)
class MemoryInfo:
    """Server memory accounting, as seen from one session (`Client.memory_info()`)."""

    bytes_in_use: int  #: all storage held by the server
    bytes_limit: int  #: the server's --max-memory
    session_bytes: int  #: storage reachable from this session's tensors
    session_tensors: int  #: live handles in this session
    sessions: int  #: open sessions on the server

    @classmethod
    def from_proto(cls, msg: pb.MemoryInfoResponse) -> "MemoryInfo":
        return cls(msg.bytes_in_use, msg.bytes_limit, msg.session_bytes, msg.session_tensors, msg.sessions)


@dataclass(frozen=True)
class TensorInfo:
    """Metadata of one server-side tensor, without ownership (`Client.tensors()`).

    Unlike a Tensor it does not free anything when dropped.
    """

    handle: str
    shape: tuple[int, ...]
    dtype: str  #: dtype name, e.g. "float32" or "bfloat16"
    strides: tuple[int, ...]  #: in elements
    storage_offset: int  #: in elements
    device: str
    storage_nbytes: int
    is_contiguous: bool

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype as a NumPy dtype (bfloat16 needs ml_dtypes)."""
        return dtypes.resolve(self.dtype)

    @classmethod
    def from_proto(cls, meta: pb.TensorMeta) -> "TensorInfo":
        return cls(
            handle=meta.handle,
            shape=tuple(meta.shape),
            dtype=dtypes.proto_name(meta.dtype),
            strides=tuple(meta.strides),
            storage_offset=meta.storage_offset,
            device=meta.device,
            storage_nbytes=meta.storage_nbytes,
            is_contiguous=meta.is_contiguous,
        )
