"""`connect()` and `Client`: a session with a tensord server, and tensor creation.

The creation functions follow PyTorch: `zeros(2, 3)` or `zeros((2, 3))`,
float32 by default, `full`/`arange`/`tensor` inferring the dtype from Python
values like torch does (bool -> bool, int -> int64, float -> float32,
complex -> complex64).

The Client is the front door only: every op goes through its executor
(`_executor.py`), which pipelines them; see `synchronize()` and `blocking`.
"""
from __future__ import annotations

import functools
import numbers
import os
import operator
import weakref
from typing import Any, Sequence

import grpc
import numpy as np

from tensord import _layout, _wire, autograd, dtypes
from tensord._executor import Executor
from tensord._session import MAX_MESSAGE_BYTES, Session
from tensord.errors import Error
from tensord.info import MemoryInfo, TensorInfo
from tensord.tensor import Tensor, _int_args
from tensord.v1 import tensord_pb2 as pb

#: Default payload bytes per chunk message, both directions (override with connect(chunk_bytes=...)).
#: The server clamps download chunks to [64 KiB, 16 MiB].
CHUNK_BYTES = 1 << 20
_MAX_CHUNK_BYTES = MAX_MESSAGE_BYTES - 16  # room for the tag and length prefix


def connect(
    target: str,
    *,
    timeout: float | None = None,
    chunk_bytes: int | None = None,
    client_name: str | None = None,
    token: str | None = None,
    tls: bool = False,
    root_certificates: bytes | str | os.PathLike | None = None,
    private_key: bytes | str | os.PathLike | None = None,
    certificate_chain: bytes | str | os.PathLike | None = None,
    blocking: bool | None = None,
) -> "Client":
    """Opens a session with the tensord server at `target` ("host:port").

    Ops are pipelined: each returns at once and the server runs them in
    order; reading data (`numpy()`, `item()`, ...) or `synchronize()` waits
    for them and raises the first failure among them, naming the op and the
    line that issued it. `blocking=True` (default: the TENSORD_BLOCKING
    environment variable, "1" for on) waits for every op instead and raises
    its failure at the call, for debugging.

    The session lives on the server, not on the connection: if the
    connection drops for less than the session's lease (the server's
    --session-ttl), the client reconnects and resumes on its own, with the
    same session and tensors, running every op exactly once (ops issued
    meanwhile wait, and a sync point only takes longer). After a longer drop
    the server has freed the session, and every later call raises
    `SessionExpiredError`. The rules are in the README and `_executor.py`.

    `timeout` is the default deadline of every call, and the longest a sync
    point waits for the ops before it, in seconds (None: none);
    `chunk_bytes` the payload bytes per Upload message and the size asked
    for Download messages (default CHUNK_BYTES); `client_name` shows in the
    server's logs. Use the client as a context manager, or call `close()`.

    `token` is sent as `authorization: Bearer <token>` on every call (default:
    the TENSORD_TOKEN environment variable). `tls=True` connects over TLS,
    trusting the system's roots or `root_certificates`; `private_key` and
    `certificate_chain` present a client certificate (mutual TLS). The three
    take PEM bytes, as `grpc.ssl_channel_credentials` does, or a file path.
    Giving any of them implies TLS.
    """
    return Client(
        target,
        timeout=timeout,
        chunk_bytes=chunk_bytes,
        client_name=client_name,
        token=token,
        tls=tls,
        root_certificates=root_certificates,
        private_key=private_key,
        certificate_chain=certificate_chain,
        blocking=blocking,
    )


def _pem(value: bytes | str | os.PathLike | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


class Client:
    """A session with a tensord server. Thread-safe; see `connect()`."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = None,
        chunk_bytes: int | None = None,
        client_name: str | None = None,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | os.PathLike | None = None,
        private_key: bytes | str | os.PathLike | None = None,
        certificate_chain: bytes | str | os.PathLike | None = None,
        blocking: bool | None = None,
    ) -> None:
        chunk = CHUNK_BYTES if chunk_bytes is None else operator.index(chunk_bytes)
        if not 0 < chunk <= _MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in [1, {_MAX_CHUNK_BYTES}], got {chunk}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, got {timeout}")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("private_key and certificate_chain must be given together")
        credentials = None
        if tls or root_certificates is not None or private_key is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(root_certificates),
                private_key=_pem(private_key),
                certificate_chain=_pem(certificate_chain),
            )
        if token is None:
            token = os.environ.get("TENSORD_TOKEN") or None
        if blocking is None:
            blocking = os.environ.get("TENSORD_BLOCKING", "").strip().lower() in ("1", "true", "yes", "on")
        self._chunk_bytes = chunk
        self._session = Session(
            target,
            timeout=timeout,
            client_name=client_name or "tensord-python",
            token=token,
            credentials=credentials,
        )
        try:
            self._executor = Executor(self._session, blocking=bool(blocking), chunk_bytes=chunk)
        except BaseException:
            self._session.close()
            raise
        # When the session closes without close() (at exit), the stream still ends cleanly.
        self._session.before_close = functools.partial(self._executor.close, timeout)
        # A client dropped without close() ends its session from the background thread.
        self._finalizer = weakref.finalize(self, self._session.close_when_collected)
        self._finalizer.atexit = False  # at exit, _session closes every open session itself

    # ---- PyTorch-style namespaces -------------------------------------------

    @property
    def nn(self) -> Any:
        """`tensord.nn` with layers that create their parameters on this client's server:
        `td.nn.Linear(3, 2)`, `class Net(td.nn.Module)`, `td.nn.MSELoss()`."""
        bound = self.__dict__.get("_nn")
        if bound is None:
            import tensord.nn

            bound = self.__dict__.setdefault("_nn", tensord.nn.bind(self))
        return bound

    @property
    def optim(self) -> Any:
        """`tensord.optim`: `td.optim.SGD(model.parameters(), lr=0.01)`."""
        import tensord.optim

        return tensord.optim

    no_grad = autograd.no_grad
    enable_grad = autograd.enable_grad
    set_grad_enabled = autograd.set_grad_enabled
    is_grad_enabled = staticmethod(autograd.is_grad_enabled)

    # ---- session ------------------------------------------------------------

    @property
    def target(self) -> str:
        return self._session.target

    @property
    def session_id(self) -> str:
        return self._session.session_id

    @property
    def closed(self) -> bool:
        return self._session.closed

    @property
    def blocking(self) -> bool:
        """Whether every op waits for the server (see `connect`)."""
        return self._executor.blocking

    def synchronize(self) -> None:
        """Waits until every op issued so far has run; raises the first failure not raised yet.

        Like `torch.cuda.synchronize()`. Reading data (`numpy()`, `item()`,
        `tolist()`, `bool()`) synchronizes too.
        """
        self._executor.synchronize()

    def close(self) -> None:
        """Ends the session: the server frees all its tensors. Closing twice is harmless.

        Ops issued before run first (within the client's timeout); if one of
        them failed and its failure was never raised, close raises it after
        the session has ended.
        """
        self._finalizer.detach()
        failure = self._executor.close(self._session.timeout)
        self._session.close()
        if failure is not None:
            raise failure.error()


    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an exception is on its way: a pending failure must not replace it
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"session='…{self.session_id[-8:]}'"
        return f"tensord.Client({self.target!r}, {state})"

    # ---- from data ----------------------------------------------------------

    def from_numpy(self, a: np.ndarray) -> Tensor:
        """Uploads an ndarray: same dtype, shape and values.

        Dense layouts (C or Fortran order, transposes, broadcasts) are sent
        in place and keep their strides on the server; arrays with gaps or
        negative strides are compacted to C order first. The bytes are sent
        before it returns (the array may change afterwards), and the server
        stores them after the ops issued before have run.
        """
        if not isinstance(a, np.ndarray):
            raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(a).__name__}")
        plan = _layout.plan_upload(a)
        # Ordered after everything issued before (frees included), like an op.
        after = self._executor.fence()
        header = pb.UploadRequest(
            header=pb.UploadHeader(dtype=plan.dtype, shape=plan.shape, strides=plan.strides, after_command=after)
        ).SerializeToString()
        try:
            meta = self._session.upload(_wire.upload_messages(header, plan.span, self._chunk_bytes))
        except Error:
            self._executor.raise_if_ended()
            raise
        return Tensor(self, meta.handle, meta)

    def tensor(self, data: Any, dtype: dtypes.DTypeLike | None = None, requires_grad: bool = False) -> Tensor:
        """A new tensor holding a copy of `data` (nested lists, scalars, arrays or a Tensor).

        Without `dtype`, arrays keep theirs and Python values follow torch:
        floats become float32, complex complex64, ints int64, bools bool.
        With `requires_grad` the result is a leaf that accumulates gradients.
        """
        if isinstance(data, Tensor):
            with autograd.no_grad():  # torch.tensor(t) copies without history
                if dtype is None or dtypes.resolve(dtype) == data.dtype:
                    result = data.clone()
                else:
                    result = data.to(dtype)
        elif dtype is not None:
            result = self.from_numpy(np.asarray(data, dtype=dtypes.resolve(dtype)))
        else:
            arr = np.asarray(data)
            if not isinstance(data, (np.ndarray, np.generic)):
                arr = arr.astype(_torch_default(arr.dtype), copy=False)
            result = self.from_numpy(arr)
        return result.requires_grad_() if requires_grad else result

    # ---- creation -----------------------------------------------------------

    def empty(
        self, *size: int | Sequence[int], dtype: dtypes.DTypeLike | None = None, requires_grad: bool = False
    ) -> Tensor:
        """A new tensor (float32 by default). Unlike torch.empty its values are zeros: the
        server never hands out memory another session may have written."""
        return self._create(pb.CreateRequest.EMPTY, size, dtype, requires_grad=requires_grad)

    def zeros(
        self, *size: int | Sequence[int], dtype: dtypes.DTypeLike | None = None, requires_grad: bool = False
    ) -> Tensor:
        return self._create(pb.CreateRequest.ZEROS, size, dtype, requires_grad=requires_grad)

    def ones(
        self, *size: int | Sequence[int], dtype: dtypes.DTypeLike | None = None, requires_grad: bool = False
    ) -> Tensor:
        return self._create(pb.CreateRequest.ONES, size, dtype, requires_grad=requires_grad)

    def full(
        self,
        size: int | Sequence[int],
        fill_value: bool | int | float | complex,
        dtype: dtypes.DTypeLike | None = None,
        requires_grad: bool = False,
    ) -> Tensor:
        """Every element `fill_value`; the dtype follows the fill's Python type unless given."""
        fill = _wire.scalar(fill_value)
        if dtype is None:
            dtype = _scalar_default_dtype(fill_value)
        return self._create(pb.CreateRequest.FULL, (size,), dtype, fill=fill, requires_grad=requires_grad)

    def arange(
        self,
        start: int | float,
        end: int | float | None = None,
        step: int | float = 1,
        *,
        dtype: dtypes.DTypeLike | None = None,
        requires_grad: bool = False,
    ) -> Tensor:
        """`arange(end)` or `arange(start, end, step)`: int64 for ints, float32 if any is a float."""
        if end is None:
            start, end = 0, start
        values = (start, end, step)
        for v in values:
            if isinstance(v, numbers.Complex) and not isinstance(v, numbers.Real):
                raise TypeError(f"arange does not take complex values, got {v!r}")
        if dtype is None:
            dtype = "int64" if all(isinstance(v, numbers.Integral) for v in values) else "float32"
        request = pb.CreateRequest(
            kind=pb.CreateRequest.ARANGE,
            dtype=dtypes.to_proto(dtype),
            start=_wire.scalar(start),
            end=_wire.scalar(end),
            step=_wire.scalar(step),
            requires_grad=requires_grad,
        )
        return self._executor.command(self, "arange", pb.Command(create=request), (), 1)[0]

    def rand(
        self,
        *size: int | Sequence[int],
        dtype: dtypes.DTypeLike | None = None,
        seed: int | None = None,
        requires_grad: bool = False,
    ) -> Tensor:
        """Uniform on [0, 1); the same seed gives the same values."""
        return self._create(pb.CreateRequest.RAND, size, dtype, seed=_seed(seed), requires_grad=requires_grad)

    def randn(
        self,
        *size: int | Sequence[int],
        dtype: dtypes.DTypeLike | None = None,
        seed: int | None = None,
        requires_grad: bool = False,
    ) -> Tensor:
        """Standard normal; the same seed gives the same values."""
        return self._create(pb.CreateRequest.RANDN, size, dtype, seed=_seed(seed), requires_grad=requires_grad)

    # ---- bookkeeping --------------------------------------------------------

    def tensors(self) -> list[TensorInfo]:
        """Metadata of every tensor handle this session holds (owning none of them).

        Waits for the ops issued before, so that the list reflects them (their
        failures are left for the next sync point).
        """
        self._executor.synchronize(raise_failures=False)
        listed = self._session.call("ListTensors", pb.ListTensorsRequest())
        return [TensorInfo.from_proto(meta) for meta in listed.tensors]

    def memory_info(self) -> MemoryInfo:
        """Server memory use: total, limit, and this session's share.

        Waits for the ops (and frees) issued before, so that the figures
        reflect them (their failures are left for the next sync point).
        """
        self._executor.synchronize(raise_failures=False)
        return MemoryInfo.from_proto(self._session.call("MemoryInfo", pb.MemoryInfoRequest()))

    # ---- ops by name -------------------------------------------------------

    def _op(self, name: str, *args: Any, nout: int = 1, **attrs: Any) -> list[Tensor]:
        """Issues server op `name` on tensors/numbers `args` with named `attrs` (None: omitted).

        `nout` is how many tensors the op makes: 1 for most, 2 for max/min
        with a dim, 0 for in-place ops.
        """
        return self._executor.op(self, name, args, attrs, nout)

    def manual_seed(self, seed: int) -> None:
        """Seeds this session's generator, like torch.manual_seed: later `rand`/`randn`
        calls without their own `seed=` give the same tensors on every run."""
        command = pb.Command(manual_seed=pb.ManualSeedRequest(seed=_seed(seed)))
        self._executor.command(self, "manual_seed", command)

    # ---- elementwise functions (torch.* names) ------------------------------

    def where(self, condition: Tensor, input: Any, other: Any) -> Tensor:
        """Elements of `input` where `condition` (a bool tensor) holds, else of `other`."""
        return self._op("where", condition, input, other)[0]

    def maximum(self, input: Tensor, other: Any) -> Tensor:
        """Elementwise maximum; NaN wins, as in torch.maximum."""
        return self._op("maximum", input, other)[0]

    def minimum(self, input: Tensor, other: Any) -> Tensor:
        """Elementwise minimum; NaN wins, as in torch.minimum."""
        return self._op("minimum", input, other)[0]

    def clamp(self, input: Tensor, min: Any = None, max: Any = None) -> Tensor:
        """torch.clamp: see Tensor.clamp."""
        return input.clamp(min, max)

    clip = clamp

    def floor_divide(self, input: Any, other: Any) -> Tensor:
        """torch.floor_divide: Python's `//`, elementwise."""
        return self._binary("floor_divide", input, other)

    def remainder(self, input: Any, other: Any) -> Tensor:
        """torch.remainder: Python's `%`, elementwise, with the divisor's sign."""
        return self._binary("remainder", input, other)

    def pow(self, input: Any, exponent: Any) -> Tensor:
        """torch.pow: `input ** exponent`; either may be a number."""
        return self._binary("pow", input, exponent)

    def _binary(self, name: str, input: Any, other: Any) -> Tensor:
        if not isinstance(input, Tensor) and not isinstance(other, Tensor):
            raise TypeError(f"{name}() needs at least one tensor argument")
        return self._op(name, input, other)[0]

    # ---- linear algebra and joins (torch.* names) ---------------------------

    def cat(self, tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
        """Concatenates `tensors` along the existing dimension `dim` (torch.cat).

        Shapes must match except along `dim`; dtypes promote as in torch.cat.
        1-D tensors of size 0 are skipped, as torch does for backward
        compatibility.
        """
        if isinstance(tensors, Tensor):  # torch rejects a lone tensor too
            raise TypeError("cat() expects a sequence of tensors, not a Tensor")
        return self._op("cat", *tensors, dim=operator.index(dim))[0]

    def stack(self, tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
        """Joins equally shaped `tensors` along a new dimension `dim` (torch.stack); dtypes promote."""
        if isinstance(tensors, Tensor):
            raise TypeError("stack() expects a sequence of tensors, not a Tensor")
        return self._op("stack", *tensors, dim=operator.index(dim))[0]

    def matmul(self, input: Tensor, other: Tensor) -> Tensor:
        """Matrix product with torch.matmul's rules (see `Tensor.matmul`)."""
        return input.matmul(other)

    def _create(self, kind: pb.CreateRequest.Kind, size: tuple, dtype: Any, **fields: Any) -> Tensor:
        request = pb.CreateRequest(
            kind=kind,
            dtype=dtypes.to_proto("float32" if dtype is None else dtype),
            shape=_int_args(size),
            **fields,
        )
        return self._executor.command(self, "create", pb.Command(create=request), (), 1)[0]


# td.float32, td.int64, ... as in torch (NumPy dtypes, usable wherever dtype= is).
for _name, _dtype in dtypes.named().items():
    setattr(Client, _name, _dtype)


def _torch_default(dt: np.dtype) -> np.dtype:
    """torch's dtype for Python values NumPy read as `dt`."""
    if dt.kind == "f":
        return np.dtype(np.float32)
    if dt.kind == "c":
        return np.dtype(np.complex64)
    if dt.kind == "i":
        return np.dtype(np.int64)
    return dt


def _scalar_default_dtype(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int64"
    if isinstance(value, numbers.Real):
        return "float32"
    return "complex64"


def _seed(seed: int | None) -> int | None:
    if seed is None:
        return None
    seed = operator.index(seed)
    if not 0 <= seed < (1 << 64):
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed
