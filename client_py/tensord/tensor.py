"""`Tensor`: a handle to one server-side tensor, with PyTorch's names for views and copies.

A Tensor owns exactly one server handle: every operation that returns a
tensor makes a new handle (and a new Tensor), even when the server could have
reused the storage. Metadata (shape, strides, dtype, ...) comes from the
TensorMeta the server returned, so reading it costs no RPC; `numpy()`
downloads the data.

The handle is freed by `free()`, by `Client.close()`, or, once the Tensor is
garbage-collected, by the client's background thread (the finalizer only
queues the handle). Views keep their base storage alive on the server, so
freeing a base does not invalidate its views.
"""
from __future__ import annotations

import builtins
import operator
import weakref
from builtins import bool as _bool, int as _int  # the class defines .bool() and .int(), like torch
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from tensord import dtypes
from tensord.errors import NotFoundError
from tensord.v1 import tensord_pb2 as pb

if TYPE_CHECKING:
    from tensord.client import Client


class Tensor:
    """A tensor held by a tensord server. Create one with a `Client`, never directly."""

    __slots__ = ("_client", "_meta", "_finalizer", "__weakref__")

    def __init__(self, client: "Client", meta: pb.TensorMeta) -> None:
        self._client = client
        self._meta = meta
        self._finalizer = weakref.finalize(self, client._session.enqueue_free, meta.handle)
        self._finalizer.atexit = False  # at exit the session close frees everything

    # ---- metadata (no RPC) --------------------------------------------------

    @property
    def handle(self) -> str:
        """The server's id for this tensor (valid in this session only)."""
        return self._meta.handle

    @property
    def shape(self) -> tuple[_int, ...]:
        return tuple(self._meta.shape)

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype (bfloat16 is `ml_dtypes.bfloat16`)."""
        return dtypes.from_proto(self._meta.dtype)

    @property
    def device(self) -> str:
        return self._meta.device

    @property
    def ndim(self) -> _int:
        return len(self._meta.shape)

    def dim(self) -> _int:
        return len(self._meta.shape)

    def numel(self) -> _int:
        n = 1
        for s in self._meta.shape:
            n *= s
        return n

    @property
    def itemsize(self) -> _int:
        return self.dtype.itemsize

    def element_size(self) -> _int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> _int:
        """Bytes of the elements this tensor addresses (numel * itemsize), like torch."""
        return self.numel() * self.itemsize

    def stride(self, dim: _int | None = None) -> tuple[_int, ...] | _int:
        """Strides in elements, or the stride of one dimension (negative dims count from the end)."""
        strides = tuple(self._meta.strides)
        if dim is None:
            return strides
        return strides[self._wrap_dim(dim)]

    def storage_offset(self) -> _int:
        """Offset of element [0,...,0] in its storage, in elements."""
        return self._meta.storage_offset

    def is_contiguous(self) -> _bool:
        """Whether the tensor is C-contiguous."""
        return self._meta.is_contiguous

    @property
    def is_freed(self) -> _bool:
        return not self._finalizer.alive

    def __len__(self) -> _int:
        if not self._meta.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._meta.shape[0]

    def __repr__(self) -> str:
        state = ", freed" if self.is_freed else ""
        return (
            f"tensord.Tensor(shape={self.shape}, dtype={dtypes.proto_name(self._meta.dtype)}, "
            f"device={self.device!r}, handle='…{self.handle[-8:]}'{state})"
        )

    # ---- data ---------------------------------------------------------------

    def numpy(self) -> np.ndarray:
        """Downloads the tensor into a new writable, 64-byte-aligned ndarray.

        The array has this tensor's dtype, shape and byte strides over one
        buffer holding the downloaded storage span: a view such as `t.T` comes
        back as a transposed array, not a compacted copy. For expanded views
        (stride 0) the array aliases itself exactly like torch's `.numpy()`:
        writing one element changes every element that shares its storage.
        """
        return self._client._download(self._live_handle())

    def __array__(self, dtype: Any = None, copy: _bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a tensord.Tensor lives on the server: converting it to NumPy always copies")
        arr = self.numpy()
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        return arr

    def item(self) -> Any:
        """The value of a one-element tensor as a Python scalar."""
        if self.numel() != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has {self.numel()}")
        return self.numpy().item()

    def tolist(self) -> Any:
        """The values as nested Python lists (a scalar for a 0-d tensor)."""
        return self.numpy().tolist()

    def __bool__(self) -> _bool:
        if self.numel() != 1:
            raise ValueError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        return _bool(self.item())

    def __iter__(self) -> Iterator["Tensor"]:
        for i in range(len(self)):
            yield self.select(0, i)

    # ---- views --------------------------------------------------------------

    @property
    def T(self) -> "Tensor":
        """All dimensions reversed (a view)."""
        return self.permute(*reversed(range(self.ndim)))

    def transpose(self, dim0: _int, dim1: _int) -> "Tensor":
        return self._view(transpose=pb.ViewRequest.Transpose(dim0=dim0, dim1=dim1))

    def permute(self, *dims: _int | Sequence[_int]) -> "Tensor":
        return self._view(permute=pb.ViewRequest.Permute(dims=_int_args(dims)))

    def view(self, *shape: _int | Sequence[_int]) -> "Tensor":
        """Same data, new shape; FailedPreconditionError if that needs a copy (one -1 allowed)."""
        return self._view(view=pb.ViewRequest.Reshape(shape=_int_args(shape)))

    def reshape(self, *shape: _int | Sequence[_int]) -> "Tensor":
        """A view when possible, otherwise a copy (one -1 allowed)."""
        return self._view(reshape=pb.ViewRequest.Reshape(shape=_int_args(shape)))

    def flatten(self, start_dim: _int = 0, end_dim: _int = -1) -> "Tensor":
        return self._view(flatten=pb.ViewRequest.Flatten(start_dim=start_dim, end_dim=end_dim))

    def squeeze(self, dim: _int | Sequence[_int] | None = None) -> "Tensor":
        """Removes size-1 dimensions: all of them, or those in `dim`."""
        if dim is None:
            return self._view(squeeze=pb.ViewRequest.Squeeze())
        dims = tuple(map(operator.index, dim)) if isinstance(dim, Sequence) else (operator.index(dim),)
        if not dims:  # the wire's empty list means "all", torch's empty tuple means "none"
            return self[...]
        return self._view(squeeze=pb.ViewRequest.Squeeze(dims=dims))

    def unsqueeze(self, dim: _int) -> "Tensor":
        return self._view(unsqueeze=pb.ViewRequest.Unsqueeze(dim=dim))

    def expand(self, *sizes: _int | Sequence[_int]) -> "Tensor":
        """A broadcast view (stride 0 along new or size-1 dims); -1 keeps a size."""
        return self._view(expand=pb.ViewRequest.Expand(shape=_int_args(sizes)))

    def select(self, dim: _int, index: _int) -> "Tensor":
        return self._view(select=pb.ViewRequest.Select(dim=dim, index=index))

    def __getitem__(self, key: Any) -> "Tensor":
        """Basic indexing in one View RPC: ints, slices with positive steps, `...`, `None`, tuples of these.

        Negative steps raise ValueError and lists/arrays/bools TypeError, as in torch.
        """
        items = key if isinstance(key, tuple) else (key,)
        return self._view(index=pb.ViewRequest.Index(items=[_index_item(k) for k in items]))

    # ---- copies -------------------------------------------------------------

    def contiguous(self) -> "Tensor":
        """A C-contiguous tensor with the same values (a new handle even if already contiguous)."""
        return self._copy(pb.CopyRequest.CONTIGUOUS)

    def clone(self) -> "Tensor":
        """A copy in new C-contiguous storage."""
        return self._copy(pb.CopyRequest.CLONE)

    def to(self, dtype: dtypes.DTypeLike) -> "Tensor":
        """The values cast to `dtype` (a new handle even if the dtype is unchanged)."""
        return self._copy(pb.CopyRequest.CAST, dtypes.to_proto(dtype))

    def half(self) -> "Tensor":
        return self.to("float16")

    def bfloat16(self) -> "Tensor":
        return self.to("bfloat16")

    def double(self) -> "Tensor":
        return self.to("float64")

    def long(self) -> "Tensor":
        return self.to("int64")

    # Named like torch's casts; they shadow the builtins only inside this class body.
    def float(self) -> "Tensor":
        return self.to("float32")

    def int(self) -> "Tensor":
        return self.to("int32")

    def bool(self) -> "Tensor":
        return self.to("bool")

    # ---- lifetime -----------------------------------------------------------

    def free(self) -> None:
        """Frees the handle on the server now. Idempotent; any later use raises NotFoundError."""
        if self._finalizer.detach() is None:
            return
        self._client._free(self._meta.handle)

    # ---- helpers ------------------------------------------------------------

    def _live_handle(self) -> str:
        if not self._finalizer.alive:
            raise NotFoundError(f"tensor …{self.handle[-8:]} was freed and can no longer be used")
        return self._meta.handle

    def _view(self, **op: Any) -> "Tensor":
        return self._client._wrap(self._client._session.call("View", pb.ViewRequest(handle=self._live_handle(), **op)))

    def _copy(self, kind: pb.CopyRequest.Kind, dtype: pb.DType = pb.DTYPE_UNSPECIFIED) -> "Tensor":
        request = pb.CopyRequest(handle=self._live_handle(), kind=kind, dtype=dtype)
        return self._client._wrap(self._client._session.call("Copy", request))

    def _wrap_dim(self, dim: _int) -> _int:
        n = self.ndim
        if not -n <= dim < n:
            raise IndexError(f"dimension {dim} is out of range for a {n}-d tensor")
        return dim % n


def _int_args(args: tuple) -> tuple[int, ...]:
    """`f(2, 3)` and `f((2, 3))` / `f([2, 3])` both give (2, 3)."""
    if len(args) == 1 and isinstance(args[0], Sequence):
        args = tuple(args[0])
    return tuple(operator.index(a) for a in args)


def _index_item(key: Any) -> pb.IndexItem:
    if key is None:
        return pb.IndexItem(new_axis=True)
    if key is Ellipsis:
        return pb.IndexItem(ellipsis=True)
    if isinstance(key, slice):
        step = None if key.step is None else operator.index(key.step)
        if step is not None and step <= 0:
            raise ValueError(f"step must be greater than zero, got {step}")
        return pb.IndexItem(
            slice=pb.Slice(
                start=None if key.start is None else operator.index(key.start),
                stop=None if key.stop is None else operator.index(key.stop),
                step=step,
            )
        )
    if isinstance(key, (builtins.bool, np.bool_)):
        raise TypeError("boolean indices are not supported (only ints, slices, ..., None)")
    try:
        return pb.IndexItem(select=operator.index(key))
    except TypeError:
        raise TypeError(
            f"tensord indexing supports ints, slices, ..., None and tuples of these, not {type(key).__name__}"
        ) from None
