"""`Tensor`: a handle to one server-side tensor, with PyTorch's names for views and copies.

A Tensor owns exactly one server handle: every operation that returns a
tensor makes a new handle (and a new Tensor), even when the server could have
reused the storage. Operations are pipelined (see `_executor`): an op
returns its result Tensor at once, named by a handle the client chose, and
the server runs the ops in the order they were issued. Metadata (shape,
strides, dtype, ...) comes from the server's reply; reading it waits only if
the reply has not arrived yet. `numpy()` and the other reads of data are
sync points: they raise the first failure of an op issued before them.

The handle is freed by `free()`, by `Client.close()`, or when the Tensor is
garbage-collected (the finalizer only queues the handle, behind every
command that used it). Views keep their base storage alive on the server, so
freeing a base does not invalidate its views.
"""
from __future__ import annotations

import builtins
import numbers
import operator
from builtins import bool as _bool, int as _int  # the class defines .bool() and .int(), like torch
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from tensord import autograd, dtypes
from tensord.errors import NotFoundError
from tensord.v1 import tensord_pb2 as pb

if TYPE_CHECKING:
    from tensord._executor import Command
    from tensord.client import Client


class Tensor:
    """A tensor held by a tensord server. Create one with a `Client`, never directly."""

    __slots__ = ("_client", "_handle", "_meta", "_src", "_out", "_freed", "__weakref__")

    def __init__(
        self,
        client: "Client",
        handle: str,
        meta: "pb.TensorMeta | None" = None,
        src: "Command | None" = None,
        out: _int = 0,
    ) -> None:
        self._client = client
        self._handle = handle
        # The last metadata known, and the command whose reply will update it
        # (output `out` of `src`): the one that made this tensor, or one that
        # changed it (requires_grad_). Both are set only under the GIL.
        self._meta = meta
        self._src = src
        self._out = out
        self._freed = False

    def __del__(self) -> None:
        if not self._freed:
            self._freed = True
            try:
                self._client._executor.release(self._handle)
            except Exception:  # interpreter shutdown: the session close frees everything
                pass

    # ---- metadata (waits for the op's reply, if it has not arrived) ---------

    @property
    def _m(self) -> pb.TensorMeta:
        """The metadata, once the command that made or changed this tensor has run.

        Raises that command's failure when it made this tensor; when it only
        changed it, the tensor keeps what it had and the failure waits for
        the next sync point.
        """
        if self._src is not None:
            return self._client._executor.metadata(self)
        return self._meta  # type: ignore[return-value]

    @property
    def handle(self) -> str:
        """The id of this tensor on the server (valid in this session only), chosen by the client."""
        return self._handle

    @property
    def shape(self) -> tuple[_int, ...]:
        return tuple(self._m.shape)

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype (bfloat16 is `ml_dtypes.bfloat16`)."""
        return dtypes.from_proto(self._m.dtype)

    @property
    def device(self) -> str:
        return self._m.device

    @property
    def ndim(self) -> _int:
        return len(self._m.shape)

    def dim(self) -> _int:
        return len(self._m.shape)

    def numel(self) -> _int:
        n = 1
        for s in self._m.shape:
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
        strides = tuple(self._m.strides)
        if dim is None:
            return strides
        return strides[self._wrap_dim(dim)]

    def storage_offset(self) -> _int:
        """Offset of element [0,...,0] in its storage, in elements."""
        return self._m.storage_offset

    def is_contiguous(self) -> _bool:
        """Whether the tensor is C-contiguous."""
        return self._m.is_contiguous

    @property
    def is_freed(self) -> _bool:
        return self._freed

    def __len__(self) -> _int:
        shape = self._m.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def __repr__(self) -> str:
        state = ", freed" if self._freed else ""
        try:
            meta = self._m
        except Exception as e:  # the op that was to make it failed: say so instead of raising
            return f"tensord.Tensor(<not computed: {e}>, handle='…{self.handle[-8:]}'{state})"
        if meta.grad_fn:
            state += f", grad_fn=<{meta.grad_fn}>"
        elif meta.requires_grad:
            state += ", requires_grad=True"
        return (
            f"tensord.Tensor(shape={tuple(meta.shape)}, dtype={dtypes.proto_name(meta.dtype)}, "
            f"device={meta.device!r}, handle='…{self.handle[-8:]}'{state})"
        )

    # ---- autograd (the graph and the gradients live on the server) ----------

    @property
    def requires_grad(self) -> _bool:
        """Whether gradients flow to this tensor."""
        return self._m.requires_grad

    @requires_grad.setter
    def requires_grad(self, value: _bool) -> None:
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: _bool = True) -> "Tensor":
        """Makes this leaf accumulate gradients in `.grad` (or stop); returns self.

        Only floating-point tensors can require grad, and only leaves (tensors
        no recorded op made) can stop requiring it, as in torch.
        """
        command = pb.Command(
            set_requires_grad=pb.SetRequiresGradRequest(handle=self._live_handle(), requires_grad=_bool(requires_grad))
        )
        self._client._executor.modify(self, "requires_grad_", command)
        return self

    @property
    def is_leaf(self) -> _bool:
        """True unless a recorded op made this tensor (it then has a `grad_fn`)."""
        return not self._m.grad_fn

    @property
    def grad_fn(self) -> "GradFn | None":
        """The backward node that made this tensor (e.g. `<MulBackward0>`), or None for leaves."""
        grad_fn = self._m.grad_fn
        return GradFn(grad_fn) if grad_fn else None

    @property
    def grad(self) -> "Tensor | None":
        """The gradient accumulated by `backward()`: a server tensor, or None.

        Whether it is None is only known once the ops issued before have run,
        so this waits for them (it does not raise their failures). Later
        backward passes add into the same storage, so a Tensor obtained here
        sees them, as in torch. Non-leaf tensors have a grad only after
        `retain_grad()`.
        """
        return self._client._executor.get_grad(self)

    @grad.setter
    def grad(self, value: "Tensor | None") -> None:
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(value).__name__}")
        if value is not None and value._client is not self._client:
            raise ValueError("assigned grad belongs to another client")
        request = pb.SetGradRequest(handle=self._live_handle(), grad="" if value is None else value._live_handle())
        operands = (self,) if value is None else (self, value)
        self._client._executor.command(self._client, "grad =", pb.Command(set_grad=request), operands)

    def backward(
        self, gradient: "Tensor | None" = None, retain_graph: _bool | None = None, create_graph: _bool = False
    ) -> None:
        """Computes the gradient of this tensor with respect to the graph leaves (one command).

        `gradient` is required unless the tensor has one element. See
        `tensord.autograd.backward`.
        """
        autograd.backward(self, None if gradient is None else [gradient], retain_graph, create_graph)

    def detach(self) -> "Tensor":
        """A new handle on the same storage, cut from the graph (does not require grad)."""
        command = pb.Command(detach=pb.TensorRef(handle=self._live_handle()))
        return self._client._executor.command(self._client, "detach", command, (self,), 1)[0]

    def retain_grad(self) -> None:
        """Keeps the gradient of this non-leaf tensor in `.grad` during backward."""
        command = pb.Command(retain_grad=pb.TensorRef(handle=self._live_handle()))
        self._client._executor.modify(self, "retain_grad", command)

    # ---- data ---------------------------------------------------------------

    def numpy(self) -> np.ndarray:
        """Downloads the tensor into a new writable, 64-byte-aligned ndarray (a sync point).

        The download starts once every op issued before it has run; then the
        first failure of those ops not raised yet is raised, if any.

        The array has this tensor's dtype, shape and byte strides over one
        buffer holding the downloaded storage span: a view such as `t.T` comes
        back as a transposed array, not a compacted copy. For expanded views
        (stride 0) the array aliases itself exactly like torch's `.numpy()`:
        writing one element changes every element that shares its storage.
        """
        return self._client._executor.download(self)

    def __array__(self, dtype: Any = None, copy: _bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a tensord.Tensor lives on the server: converting it to NumPy always copies")
        arr = self.numpy()
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        return arr

    def item(self) -> Any:
        """The value of a one-element tensor as a Python scalar (a sync point)."""
        if self._src is None and self.numel() != 1:  # known already: refuse without a transfer
            raise ValueError(f"item() needs a tensor with one element, this one has {self.numel()}")
        arr = self.numpy()  # one round trip: the shape comes with the data
        if arr.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has {arr.size}")
        return arr.item()

    def tolist(self) -> Any:
        """The values as nested Python lists (a scalar for a 0-d tensor); a sync point."""
        return self.numpy().tolist()

    def __bool__(self) -> _bool:
        if self._src is None and self.numel() != 1:
            raise ValueError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
        arr = self.numpy()
        if arr.size != 1:
            raise ValueError(f"the truth value of a tensor with {arr.size} elements is ambiguous")
        return _bool(arr.item())

    def __iter__(self) -> Iterator["Tensor"]:
        for i in range(len(self)):
            yield self.select(0, i)

    # ---- views --------------------------------------------------------------

    @property
    def T(self) -> "Tensor":
        """All dimensions reversed (a view)."""
        return self.permute(*reversed(range(self.ndim)))

    def transpose(self, dim0: _int, dim1: _int) -> "Tensor":
        return self._view("transpose", transpose=pb.ViewRequest.Transpose(dim0=dim0, dim1=dim1))

    def permute(self, *dims: _int | Sequence[_int]) -> "Tensor":
        return self._view("permute", permute=pb.ViewRequest.Permute(dims=_int_args(dims)))

    def view(self, *shape: _int | Sequence[_int]) -> "Tensor":
        """Same data, new shape; FailedPreconditionError if that needs a copy (one -1 allowed)."""
        return self._view("view", view=pb.ViewRequest.Reshape(shape=_int_args(shape)))

    def reshape(self, *shape: _int | Sequence[_int]) -> "Tensor":
        """A view when possible, otherwise a copy (one -1 allowed)."""
        return self._view("reshape", reshape=pb.ViewRequest.Reshape(shape=_int_args(shape)))

    def flatten(self, start_dim: _int = 0, end_dim: _int = -1) -> "Tensor":
        return self._view("flatten", flatten=pb.ViewRequest.Flatten(start_dim=start_dim, end_dim=end_dim))

    def squeeze(self, dim: _int | Sequence[_int] | None = None) -> "Tensor":
        """Removes size-1 dimensions: all of them, or those in `dim`."""
        if dim is None:
            return self._view("squeeze", squeeze=pb.ViewRequest.Squeeze())
        dims = tuple(map(operator.index, dim)) if isinstance(dim, Sequence) else (operator.index(dim),)
        if not dims:  # the wire's empty list means "all", torch's empty tuple means "none"
            return self[...]
        return self._view("squeeze", squeeze=pb.ViewRequest.Squeeze(dims=dims))

    def unsqueeze(self, dim: _int) -> "Tensor":
        return self._view("unsqueeze", unsqueeze=pb.ViewRequest.Unsqueeze(dim=dim))

    def expand(self, *sizes: _int | Sequence[_int]) -> "Tensor":
        """A broadcast view (stride 0 along new or size-1 dims); -1 keeps a size."""
        return self._view("expand", expand=pb.ViewRequest.Expand(shape=_int_args(sizes)))

    def select(self, dim: _int, index: _int) -> "Tensor":
        return self._view("select", select=pb.ViewRequest.Select(dim=dim, index=index))

    def __getitem__(self, key: Any) -> "Tensor":
        """NumPy/PyTorch indexing. Basic items (ints, slices with positive steps,
        `...`, `None`) give a view; advanced ones give a copy, as in torch:

        - an integer Tensor, list or ndarray picks positions along a dim
          (negative counts from the end; several broadcast together),
        - a bool Tensor, list or ndarray is a mask over as many dims as it
          has: `t[t > 0]`, `t[:, keep]`,
        - a Python bool adds a dim of size 1 (True) or 0 (False).

        The result dims of the advanced items replace the dims they index when
        those are adjacent, and lead otherwise (NumPy's rule). Lists and small
        arrays travel inside the command; larger arrays are uploaded first.
        Gradients flow back to the indexed tensor, accumulating at repeats.
        Negative steps raise ValueError, as in torch.
        """
        items, tensors = _index_expression(self._client, key)
        if tensors is None:
            return self._view("index", index=pb.ViewRequest.Index(items=items))
        return self._op("index", self, *tensors, items=pb.IndexList(items=items))[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        """`t[key] = value` in place, for any index `t[key]` accepts (`t[mask] = 0`,
        `t[:, idx] = rows`). `value` is a number or a tensor (an ndarray or list
        is uploaded) that broadcasts to the shape of `t[key]`; it is cast to
        t's dtype. Like every in-place op, refused on tensors that take part
        in autograd outside `td.no_grad()`.
        """
        self.index_put_(key, value)

    def index_put_(self, indices: Any, values: Any, accumulate: _bool = False) -> "Tensor":
        """In place: `self[indices] = values`, or `+=` with `accumulate` (repeated
        indices then add up, unlike a plain write where one of them wins).
        `indices` is anything `t[...]` accepts; torch's tuple of index tensors
        (None for a whole dim) is one such key. Returns self."""
        items, tensors = _index_expression(self._client, _put_key(indices))
        values = self._value_operand(values)
        self._op(
            "index_put_", self, values, *(tensors or ()), items=pb.IndexList(items=items),
            accumulate=accumulate or None, nout=0,
        )
        return self

    def index_put(self, indices: Any, values: Any, accumulate: _bool = False) -> "Tensor":
        """A copy of self with `self[indices] = values` (or `+=` with `accumulate`);
        differentiable in self and values."""
        items, tensors = _index_expression(self._client, _put_key(indices))
        values = self._value_operand(values)
        return self._op(
            "index_put", self, values, *(tensors or ()), items=pb.IndexList(items=items),
            accumulate=accumulate or None,
        )[0]

    def nonzero(self, *, as_tuple: _bool = False) -> "Tensor | tuple[Tensor, ...]":
        """The coordinates of the nonzero elements, one row each (int64, n x ndim),
        in row-major order; with `as_tuple`, one 1-D tensor per dim (NaN counts
        as nonzero, -0.0 as zero)."""
        if not as_tuple:
            return self._op("nonzero", self)[0]
        source = self.reshape(1) if self.ndim == 0 else self
        positions = source._op("nonzero", source)[0]
        return tuple(positions[:, d] for d in range(source.ndim))

    def argwhere(self) -> "Tensor":
        """torch.argwhere: the same as nonzero()."""
        return self._op("nonzero", self)[0]

    def _value_operand(self, value: Any) -> Any:
        if isinstance(value, (Tensor, numbers.Number, np.generic)):
            return value
        if isinstance(value, (np.ndarray, list, tuple)):
            return self._client.tensor(value)
        raise TypeError(f"can't assign a {type(value).__name__} to a tensord.Tensor")

    # ---- copies -------------------------------------------------------------

    def contiguous(self) -> "Tensor":
        """A C-contiguous tensor with the same values (a new handle even if already contiguous)."""
        return self._copy("contiguous", pb.CopyRequest.CONTIGUOUS)

    def clone(self) -> "Tensor":
        """A copy in new C-contiguous storage."""
        return self._copy("clone", pb.CopyRequest.CLONE)

    def to(self, dtype: dtypes.DTypeLike) -> "Tensor":
        """The values cast to `dtype` (a new handle even if the dtype is unchanged)."""
        return self._copy("to", pb.CopyRequest.CAST, dtypes.to_proto(dtype))

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

    # ---- elementwise ops (one command each; results are new tensors) -------

    def _op(self, name: str, *args: Any, nout: _int = 1, **attrs: Any) -> list["Tensor"]:
        """Issues server op `name` on tensors/numbers `args` (this tensor's client) with named `attrs`."""
        return self._client._executor.op(self._client, name, args, attrs, nout)

    def _unary(self, name: str) -> "Tensor":
        return self._client._executor.op(self._client, name, (self,), {}, 1)[0]

    def _binary(self, name: str, other: Any, reflected: _bool = False) -> "Tensor":
        if not isinstance(other, (Tensor, numbers.Number, np.generic)):
            return NotImplemented
        args = (other, self) if reflected else (self, other)
        return self._client._executor.op(self._client, name, args, {}, 1)[0]

    def __add__(self, other: Any) -> "Tensor":
        return self._binary("add", other)

    def __radd__(self, other: Any) -> "Tensor":
        return self._binary("add", other, reflected=True)

    def __sub__(self, other: Any) -> "Tensor":
        return self._binary("sub", other)

    def __rsub__(self, other: Any) -> "Tensor":
        return self._binary("sub", other, reflected=True)

    def __mul__(self, other: Any) -> "Tensor":
        return self._binary("mul", other)

    def __rmul__(self, other: Any) -> "Tensor":
        return self._binary("mul", other, reflected=True)

    def __truediv__(self, other: Any) -> "Tensor":
        return self._binary("div", other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return self._binary("div", other, reflected=True)

    def __floordiv__(self, other: Any) -> "Tensor":
        return self._binary("floor_divide", other)

    def __rfloordiv__(self, other: Any) -> "Tensor":
        return self._binary("floor_divide", other, reflected=True)

    def __mod__(self, other: Any) -> "Tensor":
        return self._binary("remainder", other)

    def __rmod__(self, other: Any) -> "Tensor":
        return self._binary("remainder", other, reflected=True)

    def __pow__(self, other: Any) -> "Tensor":
        return self._binary("pow", other)

    def __rpow__(self, other: Any) -> "Tensor":
        return self._binary("pow", other, reflected=True)

    def __neg__(self) -> "Tensor":
        return self._unary("neg")

    def __abs__(self) -> "Tensor":
        return self._unary("abs")

    # Comparisons give bool tensors, as in torch; so Tensors hash by identity.
    def __eq__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return self._binary("eq", other)

    def __ne__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return self._binary("ne", other)

    def __lt__(self, other: Any) -> "Tensor":
        return self._binary("lt", other)

    def __le__(self, other: Any) -> "Tensor":
        return self._binary("le", other)

    def __gt__(self, other: Any) -> "Tensor":
        return self._binary("gt", other)

    def __ge__(self, other: Any) -> "Tensor":
        return self._binary("ge", other)

    __hash__ = object.__hash__

    def add(self, other: Any) -> "Tensor":
        return self._binary("add", other)

    def sub(self, other: Any) -> "Tensor":
        return self._binary("sub", other)

    def mul(self, other: Any) -> "Tensor":
        return self._binary("mul", other)

    def div(self, other: Any) -> "Tensor":
        """True division: integer tensors give float32, as in torch."""
        return self._binary("div", other)

    def pow(self, exponent: Any) -> "Tensor":
        """self ** exponent; an integer tensor to a negative number raises, as in torch."""
        return self._binary("pow", exponent)

    def floor_divide(self, other: Any) -> "Tensor":
        """Division rounded toward negative infinity, Python's `//` (torch.floor_divide).

        Integer division by zero raises InvalidArgumentError; floats give inf or nan.
        Not differentiable.
        """
        return self._binary("floor_divide", other)

    def remainder(self, other: Any) -> "Tensor":
        """The remainder with the divisor's sign, Python's `%` (torch.remainder)."""
        return self._binary("remainder", other)

    def maximum(self, other: Any) -> "Tensor":
        return self._binary("maximum", other)

    def minimum(self, other: Any) -> "Tensor":
        return self._binary("minimum", other)

    def eq(self, other: Any) -> "Tensor":
        return self._binary("eq", other)

    def ne(self, other: Any) -> "Tensor":
        return self._binary("ne", other)

    def lt(self, other: Any) -> "Tensor":
        return self._binary("lt", other)

    def le(self, other: Any) -> "Tensor":
        return self._binary("le", other)

    def gt(self, other: Any) -> "Tensor":
        return self._binary("gt", other)

    def ge(self, other: Any) -> "Tensor":
        return self._binary("ge", other)

    def neg(self) -> "Tensor":
        return self._unary("neg")

    def abs(self) -> "Tensor":
        """Absolute value; complex tensors give their real dtype."""
        return self._unary("abs")

    def sign(self) -> "Tensor":
        """-1, 0 or 1 elementwise (not differentiable: its gradient is zero almost everywhere)."""
        return self._unary("sign")

    def log1p(self) -> "Tensor":
        """log(1 + x), accurate for small x; computed in float32 for integer tensors."""
        return self._unary("log1p")

    def exp(self) -> "Tensor":
        return self._unary("exp")

    def log(self) -> "Tensor":
        return self._unary("log")

    def sqrt(self) -> "Tensor":
        return self._unary("sqrt")

    def rsqrt(self) -> "Tensor":
        return self._unary("rsqrt")

    def sin(self) -> "Tensor":
        return self._unary("sin")

    def cos(self) -> "Tensor":
        return self._unary("cos")

    def tanh(self) -> "Tensor":
        return self._unary("tanh")

    def sigmoid(self) -> "Tensor":
        return self._unary("sigmoid")

    def relu(self) -> "Tensor":
        return self._unary("relu")

    def gelu(self) -> "Tensor":
        """The exact GELU, 0.5 x (1 + erf(x / sqrt(2))), torch's default."""
        return self._unary("gelu")

    def clamp(self, min: Any = None, max: Any = None) -> "Tensor":
        """Limits values to [min, max]; either bound may be None, a number or a tensor.

        Number bounds must suit the dtype, as in torch: an integer bound that excludes the
        dtype's whole range, or a float bound a float16 tensor cannot hold, raises. Tensor
        bounds broadcast and compute as minimum(maximum(self, min), max), in the dtype of
        all three; where min > max the result is max.
        """
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            if min is None:
                return self._op("clamp_max", self, max)[0]
            if max is None:
                return self._op("clamp_min", self, min)[0]
            return self._op("clamp", self, min, max)[0]
        return self._op("clamp", self, min=min, max=max)[0]

    clip = clamp

    def clamp_min(self, min: Any) -> "Tensor":
        return self.clamp(min=min)

    def clamp_max(self, max: Any) -> "Tensor":
        return self.clamp(max=max)

    def where(self, condition: "Tensor", other: Any) -> "Tensor":
        """`self` where `condition` holds, else `other` (torch.Tensor.where)."""
        return self._op("where", condition, self, other)[0]



    # ---- reductions ----------------------------------------------------------

    class ValuesIndices(tuple):
        """`(values, indices)` from `max`/`min` with a `dim`, like torch.return_types.max."""

        __slots__ = ()

        def __new__(cls, values: "Tensor", indices: "Tensor") -> "Tensor.ValuesIndices":
            return tuple.__new__(cls, (values, indices))

        @property
        def values(self) -> "Tensor":
            return self[0]

        @property
        def indices(self) -> "Tensor":
            return self[1]

        def __repr__(self) -> str:
            return f"values_indices(values={self[0]!r}, indices={self[1]!r})"

    def _reduce(self, name: str, dim: _int | Sequence[_int] | None, keepdim: _bool, **attrs: Any) -> "Tensor":
        # An int or a list both travel as the `dim` attribute; an empty list means every dim, as in torch.
        return self._op(name, self, dim=dim, keepdim=_bool(keepdim), **attrs)[0]

    def sum(self, dim: _int | Sequence[_int] | None = None, keepdim: _bool = False) -> "Tensor":
        """Sum over `dim` (an int or a list; None: every dim). Bool and integer tensors give int64."""
        return self._reduce("sum", dim, keepdim)

    def prod(self, dim: _int | Sequence[_int] | None = None, keepdim: _bool = False) -> "Tensor":
        """Product over `dim` (an int or a list; None: every dim). Bool and integer tensors give int64."""
        return self._reduce("prod", dim, keepdim)

    def mean(self, dim: _int | Sequence[_int] | None = None, keepdim: _bool = False) -> "Tensor":
        """Mean over `dim`; floating point and complex tensors only (NaN over an empty dim)."""
        return self._reduce("mean", dim, keepdim)

    def var(
        self, dim: _int | Sequence[_int] | None = None, keepdim: _bool = False, *, correction: _int = 1
    ) -> "Tensor":
        """Variance over `dim`: sum(|x - mean|^2) / max(0, N - correction); complex gives its real dtype."""
        return self._reduce("var", dim, keepdim, correction=correction)

    def std(
        self, dim: _int | Sequence[_int] | None = None, keepdim: _bool = False, *, correction: _int = 1
    ) -> "Tensor":
        """Standard deviation over `dim`: the square root of `var` with the same arguments."""
        return self._reduce("std", dim, keepdim, correction=correction)

    def _max_min(self, name: str, dim: _int | None, keepdim: _bool) -> "Tensor | Tensor.ValuesIndices":
        if dim is None:
            return self._op(name, self)[0]
        values, indices = self._op(name, self, nout=2, dim=operator.index(dim), keepdim=_bool(keepdim))
        return Tensor.ValuesIndices(values, indices)

    def max(self, dim: _int | None = None, keepdim: _bool = False) -> "Tensor | Tensor.ValuesIndices":
        """The largest element (a 0-d tensor), or `(values, indices)` along `dim`.

        NaN counts as larger than every number; ties give the first index. Not for complex tensors.
        """
        return self._max_min("max", dim, keepdim)

    def min(self, dim: _int | None = None, keepdim: _bool = False) -> "Tensor | Tensor.ValuesIndices":
        """The smallest element (a 0-d tensor), or `(values, indices)` along `dim`; NaN wins, as in `max`."""
        return self._max_min("min", dim, keepdim)

    def argmax(self, dim: _int | None = None, keepdim: _bool = False) -> "Tensor":
        """int64 index of the largest element along `dim`, or into the flattened tensor when `dim` is None."""
        return self._reduce("argmax", None if dim is None else operator.index(dim), keepdim)

    def argmin(self, dim: _int | None = None, keepdim: _bool = False) -> "Tensor":
        """int64 index of the smallest element along `dim`, or into the flattened tensor when `dim` is None."""
        return self._reduce("argmin", None if dim is None else operator.index(dim), keepdim)

    def softmax(self, dim: _int) -> "Tensor":
        """exp(x) / sum(exp(x)) along `dim`, computed stably; floating point tensors only."""
        return self._op("softmax", self, dim=operator.index(dim))[0]

    def log_softmax(self, dim: _int) -> "Tensor":
        """log(softmax(x)) along `dim`, as x - max - log(sum(exp(x - max))); floating point tensors only."""
        return self._op("log_softmax", self, dim=operator.index(dim))[0]

    # ---- linear algebra, joins and in-place updates --------------------------

    def matmul(self, other: "Tensor") -> "Tensor":
        """Matrix product with torch.matmul's rules.

        1-D @ 1-D is a dot product (a 0-d tensor); a 1-D operand is treated as
        a row (left) or column (right) vector and that dim is dropped from the
        result; dims before the last two are batch dims and broadcast. Both
        operands must have the same dtype (bool is not supported).
        """
        return self._op("matmul", self, other)[0]

    def __matmul__(self, other: Any) -> "Tensor":
        if not isinstance(other, Tensor):
            return NotImplemented
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        if not isinstance(other, Tensor):
            return NotImplemented
        return other.matmul(self)

    def mm(self, mat2: "Tensor") -> "Tensor":
        """Product of two 2-D tensors (torch.mm: no vectors, no broadcasting)."""
        return self._op("mm", self, mat2)[0]

    def bmm(self, mat2: "Tensor") -> "Tensor":
        """Batched product of two 3-D tensors with equal batch sizes (torch.bmm)."""
        return self._op("bmm", self, mat2)[0]

    def add_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        """In place: self += alpha * other; returns self.

        `other` (a tensor or number) broadcasts to self's shape. The sum is
        computed in the promoted dtype and stored in self's, which must be of
        at least the promoted kind (adding a float to an int64 tensor raises
        InvalidArgumentError, as in torch). Views sharing self's storage see
        the change.
        """
        plain = type(alpha) is _int and alpha == 1  # a bool or float alpha still gets checked
        self._op("add_", self, other, nout=0, alpha=None if plain else alpha)
        return self

    def mul_(self, other: Any) -> "Tensor":
        """In place: self *= other (a tensor broadcasting to self's shape, or a number); returns self."""
        self._op("mul_", self, other, nout=0)
        return self

    def zero_(self) -> "Tensor":
        """In place: sets every element to 0; returns self."""
        self._op("zero_", self, nout=0)
        return self

    def fill_(self, value: Any) -> "Tensor":
        """In place: sets every element to `value` (a number or a 0-d tensor); returns self.

        Floats truncate into integer tensors; a value out of the dtype's range
        (300 into int8) raises InvalidArgumentError.
        """
        self._op("fill_", self, value, nout=0)
        return self

    def copy_(self, src: "Tensor") -> "Tensor":
        """In place: copies `src`, broadcast to self's shape and cast to self's dtype; returns self."""
        if not isinstance(src, Tensor):
            raise TypeError(f"copy_() expects a Tensor, got {type(src).__name__}")
        self._op("copy_", self, src, nout=0)
        return self

    # ---- lifetime -----------------------------------------------------------

    def free(self) -> None:
        """Frees the handle on the server, after the ops issued before have used it.

        Idempotent; any later use raises NotFoundError.
        """
        if self._freed:
            return
        self._freed = True
        self._client._executor.release(self._handle)

    # ---- helpers ------------------------------------------------------------

    def _live_handle(self) -> str:
        if self._freed:
            raise NotFoundError(f"tensor …{self.handle[-8:]} was freed and can no longer be used")
        return self._handle

    def _adopt(self) -> tuple[str, "pb.TensorMeta | None", "Command | None", _int]:
        """Hands this tensor's handle over to a new owner: it will not free it."""
        self._live_handle()
        self._freed = True
        return self._handle, self._meta, self._src, self._out

    def _view(self, op_name: str, **op: Any) -> "Tensor":
        request = pb.ViewRequest(handle=self._live_handle(), no_grad=not autograd.is_grad_enabled(), **op)
        return self._client._executor.command(self._client, op_name, pb.Command(view=request), (self,), 1)[0]

    def _copy(self, op_name: str, kind: pb.CopyRequest.Kind, dtype: pb.DType = pb.DTYPE_UNSPECIFIED) -> "Tensor":
        request = pb.CopyRequest(
            handle=self._live_handle(), kind=kind, dtype=dtype, no_grad=not autograd.is_grad_enabled()
        )
        return self._client._executor.command(self._client, op_name, pb.Command(copy=request), (self,), 1)[0]

    def _wrap_dim(self, dim: _int) -> _int:
        n = self.ndim
        if not -n <= dim < n:
            raise IndexError(f"dimension {dim} is out of range for a {n}-d tensor")
        return dim % n


class GradFn:
    """The name of the server-side backward node that made a tensor, shown as `<MulBackward0>`."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name}>"

    def __eq__(self, other: object) -> _bool:
        return isinstance(other, GradFn) and other._name == self._name

    def __hash__(self) -> _int:
        return hash(self._name)


def _int_args(args: tuple) -> tuple[int, ...]:
    """`f(2, 3)` and `f((2, 3))` / `f([2, 3])` both give (2, 3)."""
    if len(args) == 1 and isinstance(args[0], Sequence):
        args = tuple(args[0])
    return tuple(operator.index(a) for a in args)


#: Literal indices up to this size travel inside the command; larger ones
#: are uploaded as tensors first (one round trip, but no giant commands).
_INLINE_INDEX_BYTES = 64 << 10


def _index_expression(client: Any, key: Any) -> tuple[list[pb.IndexItem], list["Tensor"] | None]:
    """The wire items of an index key, and its tensor operands (None when the
    key has basic items only, so that it is a view)."""
    items = key if _is_tuple_key(key) else (key,)
    out: list[pb.IndexItem] = []
    tensors: list[Tensor] = []
    advanced = False
    for k in items:
        item = _index_item(client, k, tensors)
        advanced = advanced or item.WhichOneof("item") in ("tensor", "boolean", "array")
        out.append(item)
    return out, (tensors if advanced else None)


def _put_key(indices: Any) -> Any:
    """torch's index_put_ takes a tuple of index tensors with None for a whole dim."""
    if isinstance(indices, tuple) and all(i is None or isinstance(i, Tensor) for i in indices):
        return tuple(slice(None) if i is None else i for i in indices)
    return indices


def _is_tuple_key(key: Any) -> _bool:
    """torch's rule for reading a key as several items: a tuple, or a short
    list holding a sequence, slice, `...`, None or Tensor (`t[[0, [1]]]` is
    `t[0, [1]]`; `t[[0, 1]]` is one list index). An ndarray is one item."""
    if isinstance(key, tuple):
        return True
    if not isinstance(key, list) or len(key) >= 32:
        return False
    return any(
        k is None or k is Ellipsis or isinstance(k, (slice, Tensor, np.ndarray, list, tuple)) for k in key
    )


def _index_item(client: Any, key: Any, tensors: list["Tensor"]) -> pb.IndexItem:
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
        return pb.IndexItem(boolean=builtins.bool(key))
    if isinstance(key, Tensor):
        tensors.append(key)
        return pb.IndexItem(tensor=True)
    if isinstance(key, (np.ndarray, list, tuple)):
        return _array_item(client, key, tensors)
    try:
        return pb.IndexItem(select=operator.index(key))
    except TypeError:
        raise TypeError(
            "tensord indices are ints, slices, ..., None, bools, and integer or bool "
            f"Tensors, lists or ndarrays, not {type(key).__name__}"
        ) from None


def _array_item(client: Any, key: Any, tensors: list["Tensor"]) -> pb.IndexItem:
    """A list or ndarray index: int64 positions or a bool mask (uint8 arrays
    are masks, as in torch)."""
    a = np.asarray(key)
    if a.dtype == np.bool_ or a.dtype == np.uint8:
        a = a.astype(np.bool_, copy=False)
        dtype = pb.DTYPE_BOOL
    elif a.dtype.kind in "iu" or a.size == 0:  # [] is an empty list of positions
        a = a.astype(np.int64, copy=False)
        dtype = pb.DTYPE_INT64
    else:
        raise IndexError(f"tensors used as indices must be long, int, byte or bool tensors, got {a.dtype}")
    if a.nbytes > _INLINE_INDEX_BYTES:
        tensors.append(client.from_numpy(a))
        return pb.IndexItem(tensor=True)
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.byteswap().view(a.dtype.newbyteorder("<"))
    return pb.IndexItem(array=pb.IndexArray(dtype=dtype, shape=a.shape, data=a.tobytes()))
