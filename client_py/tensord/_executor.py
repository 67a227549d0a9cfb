"""The one place commands are submitted: ids, pipelining, sync points, errors, blocking mode.

Every operation that is not a bulk transfer (ops, views, copies, factories,
autograd, optimizers, frees) is a *command* on the session's Execute stream
(see the proto). `Tensor`, `nn` and `optim` go through an `Executor` and
nowhere else.

Pipelining. `submit` gives the command the next id, names handles for its
outputs itself, and queues it; it returns at once with a `Command` record.
A sender (grpcio's request thread, driving `_requests`) batches whatever is
queued into one message; a reader thread takes the replies and records, per
command, its result (the outputs' metadata) or its failure, and advances
`completed`: every command with an id up to it has run on the server, in
issue order. A Tensor whose metadata has not arrived waits for its own
command only when something reads the metadata (`t.shape`).

Sync points are the places that read data (`numpy()`, `item()`, `tolist()`,
`bool()`), `synchronize()`, and closing the client. They raise the first
failure not raised yet, with the op's name, the server's message and the
file and line that issued the op. A failure is raised once; after that the
session goes on. A tensor whose command failed (or that depends on one)
raises that failure every time it is touched.

Blocking mode (`connect(blocking=True)` or TENSORD_BLOCKING=1) waits for
every command's reply and raises its failure at the call, like
CUDA_LAUNCH_BLOCKING.

Frees: a Tensor's finalizer only puts its handle on the send queue
(`SimpleQueue.put`, which is reentrant), behind every command that used it;
the sender folds runs of them into one `release` command. No RPC is ever
issued from a finalizer.

Dropped connections. A session outlives its connection: when the Execute
stream breaks without the server having ended it (the link dropped, the
server's host was unreachable for a while), the reader thread resumes it on
its own, and the program notices nothing but the pause. The rule is
exactly-once, by command id, as in the proto:

- The client keeps every command it sent until the reply that covers it
  arrives, and acknowledges replies with each message it sends.
- On a new stream of the same session (opened once a KeepAlive gets
  through) it sends again, in order, every command whose reply it has not
  seen. The server skips those it had read before the break (they ran, or
  are running, exactly once) and runs those that never reached it; it then
  sends again every reply the client did not acknowledge. Ops issued while
  the link was down simply go out on the new stream.
- Nothing fails because of the drop, and no command runs twice: `x.add_(1)`
  pipelined across a drop adds exactly once.
- A download (`numpy()`) cut by the drop is made again once the stream is
  back. An upload (`from_numpy`) cut by it, or started while the link is
  down, raises UnavailableError (its outcome is unknown to the client: call
  it again).
- If the link stays down longer than the session's lease, the server closes
  the session and frees its tensors. The client keeps trying until then
  (the lease since its last renewal, and a second for the server's reaper);
  after that, or as soon as the server answers that the session is gone
  (the server restarted, say), every command not answered and every later
  call raise SessionExpiredError (a NotFoundError) saying so. A server that
  is down counts as a link that is down: the client waits out the lease.
  A stream the server ended itself (draining, a protocol error) is never
  resumed.

Thread-safety: all methods may be called from any thread. Ids are taken and
queued under `_submit_lock`, so ids and queue order agree; the reader is the
only writer of results; `_cond` guards `completed`, the unraised failures
and the stream's end. One sender at a time takes from the send queue: a
resumed stream's sender starts only once the broken one's has stopped
taking (`_send_cond` guards the sender's generation and whether it is busy).
"""
from __future__ import annotations

import collections
import logging
import operator
import os
import queue
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import grpc
import numpy as np

from tensord import _layout, _wire, autograd
from tensord.errors import (
    DeadlineExceededError,
    Error,
    FailedPreconditionError,
    NotFoundError,
    SessionExpiredError,
    UnavailableError,
    error_class,
    from_rpc_error,
)
from tensord.tensor import Tensor
from tensord.v1 import tensord_pb2 as pb

if TYPE_CHECKING:
    from tensord._session import Session
    from tensord.client import Client

#: Commands the client keeps in flight before `submit` waits for replies:
#: plenty to cover a round trip at any rate, and a bound on what a flooding
#: program holds on both sides (the server reads at most 1024 ahead).
MAX_IN_FLIGHT = 4096
_MAX_BATCH = 1024  # commands per ExecuteRequest (the server takes up to 4096)
_END = object()  # ends the request stream (close)
_STOP = object()  # a resume began: the sender of a broken stream stops taking
_log = logging.getLogger("tensord")


class _Flush(int):
    """Queued by a thread that waits for command `int(self)`: the sender sends at
    once and asks the server (ExecuteRequest.flush_through) to reply at once."""

    __slots__ = ()
#: How long the sender waits for more commands before sending a batch that
#: nobody waits for yet. Short next to a round trip's cost in the sending and
#: receiving threads, long next to issuing an op (tens of microseconds).
_LINGER_S = 0.001
_COMMAND_TAG = b"\x0a"  # ExecuteRequest.commands: field 1, length-delimited
_FLUSH_THROUGH_TAG = b"\x10"  # ExecuteRequest.flush_through: field 2, varint
_ACKNOWLEDGED_TAG = b"\x18"  # ExecuteRequest.acknowledged: field 3, varint
#: Trailing metadata of a stream the server ended itself (server/rpc/service.h).
_STREAM_END_KEY = "tensord-stream-end"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_frame() -> Any:
    """The first frame outside this package: the user's call (None if there is none)."""
    f: Any = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back
    return f


def _issuer() -> tuple[str, int]:
    """The file and line of the user's call."""
    f = _user_frame()
    if f is None:
        return ("<unknown>", 0)
    return (f.f_code.co_filename, f.f_lineno)


class _Check:
    """A host-side check waiting for the metadata of tensors whose commands have not run."""

    __slots__ = ("sources", "check", "warn")

    def __init__(self, sources: list[tuple[Any, Any, int]], check: Callable[..., None], warn: Callable[..., None]):
        self.sources = sources  # (meta, command, output) per tensor: one of the first two is set
        self.check = check
        self.warn = warn


class Failure:
    """Why a command did not run: its status, its op and where the user issued it."""

    __slots__ = ("code", "message", "op", "where", "command_id", "cls")

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        op: str,
        where: tuple[str, int],
        command_id: int,
        cls: Optional[type[Error]] = None,
    ):
        self.code = code
        self.message = message
        self.op = op
        self.where = where
        self.command_id = command_id
        self.cls = cls  # the exception class, when the code's own is not precise enough

    def error(self, dependent: bool = False) -> Error:
        """A fresh exception for this failure (`dependent`: raised for a tensor built on it).

        `.details` is the server's message; `str()` adds the op and where it was issued.
        """
        err = (self.cls or error_class(self.code))(self.message, self.code)
        err.op = self.op
        err.where = self.where
        err.dependent = dependent
        return err


class Command:
    """One submitted command: filled in by the reader thread when its reply arrives."""

    __slots__ = ("id", "op", "where", "inputs", "makes", "previous", "result", "failure")

    def __init__(self, op: str, where: tuple[str, int], inputs: Optional[list["Command"]]) -> None:
        self.id = 0
        self.op = op
        self.where = where
        self.inputs = inputs  # commands it depends on that had not run when it was issued
        self.makes = False  # it names output handles: if it fails, they never exist
        # For a command that changes a tensor's metadata (requires_grad_):
        # where the metadata came from before, should this one fail.
        self.previous: Optional[tuple[Command, int]] = None
        self.result: Optional[pb.CommandResult] = None  # set when the reply describes tensors
        self.failure: Optional[Failure] = None


# The tag and length prefix of the commands short enough for a one-byte length
# (nearly all of them).
_SHORT_PREFIXES = [_COMMAND_TAG + bytes((n,)) for n in range(128)]


def _frame(command: pb.Command) -> bytes:
    data = command.SerializeToString()
    n = len(data)
    prefix = _SHORT_PREFIXES[n] if n < 128 else _COMMAND_TAG + _wire.encode_varint(n)
    return prefix + data


def _release_frame(handles: list[str]) -> bytes:
    return _frame(pb.Command(release=pb.ReleaseRequest(handles=handles)))


class Executor:
    """Submits a session's commands over its Execute stream (see the module docstring)."""

    def __init__(self, session: "Session", *, blocking: bool, chunk_bytes: int) -> None:
        self.blocking = blocking
        self.chunk_bytes = chunk_bytes
        self._session = session
        self._timeout = session.timeout
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        self._last_id = 0
        self._handles = iter(range(1, sys.maxsize))  # next() is atomic under the GIL
        self._pending: dict[int, Command] = {}
        self._cond = threading.Condition(threading.Lock())
        self._completed = 0
        self._ended: Optional[Error] = None  # set once the stream is over: why
        self._closing = False
        self._unraised: "collections.deque[Failure]" = collections.deque()
        self._checks: "collections.deque[_Check]" = collections.deque()  # see check_later
        # For resuming: (key, is_release, frame) of what a sender took, in
        # order, until the replies cover it (key: the command's id, or for a
        # release the id of the command taken before it).
        self._sent: "collections.deque[tuple[int, bool, bytes]]" = collections.deque()
        self._last_taken = 0  # the id of the last command a sender took
        self._flush_wanted = 0  # the largest id a thread has waited for
        self._send_cond = threading.Condition(threading.Lock())
        self._generation = 0  # the stream's: one more per resume (under _send_cond)
        self._sender_busy = False  # a sender is taking from the queue (under _send_cond)
        self._live_generation = 0  # the generation whose stream is open (under _cond)
        #: How many times the stream was resumed after a dropped connection.
        self.resumes = 0
        self._call = session.execute(self._requests(0, []))
        self._reader = threading.Thread(
            target=self._read, name=f"tensord-replies-{session.session_id[:8]}", daemon=True
        )
        self._reader.start()

    # ---- submitting -----------------------------------------------------------

    def new_handle(self) -> str:
        """A fresh handle for a command's output (unique in this session)."""
        return f"t{next(self._handles)}"

    def submit(self, op: str, command: pb.Command, inputs: Optional[list[Command]] = None) -> Command:
        """Queues `command` (its outputs already named) and returns its record.

        `op` names it in errors; `inputs` are the records of commands whose
        outputs it reads and that had not run yet (for error attribution).
        Blocking mode waits for it and raises its failure.
        """
        record = Command(op, _issuer(), inputs)
        if self._checks:
            self._run_checks()
        if self._last_id - self._completed >= MAX_IN_FLIGHT:
            # Down to half the window, not one command: one wake-up per batch.
            self._wait(self._last_id - MAX_IN_FLIGHT // 2)
        with self._submit_lock:
            if self._closing:
                raise FailedPreconditionError(f"tensord: the client for {self._session.target} is closed")
            if self._ended is not None:
                raise self._ended_error()
            self._last_id += 1
            record.id = command.id = self._last_id
            self._pending[record.id] = record
            self._queue.put((record.id, _frame(command)))
        if self.blocking:
            self.wait_for(record)
            if record.failure is not None:
                self._take(record.failure)
                raise record.failure.error()
        return record

    def check_later(self, tensors: Sequence[Tensor], check: Callable[..., None]) -> None:
        """Runs `check(warn, *metas)` once the metadata of `tensors` is known, on this thread.

        For checks like torch's that only warn (a broadcast loss): instead of
        waiting for a reply, the check runs at the first submit or sync
        point after the reply has arrived. `warn(message)` emits a
        UserWarning at the user's line that issued the op. Holds no tensor
        alive. A check whose tensors failed to compute is dropped.
        """
        frame = _user_frame()
        if frame is None:
            filename, lineno, module_globals = "<unknown>", 0, {}
        else:
            filename, lineno, module_globals = frame.f_code.co_filename, frame.f_lineno, frame.f_globals

        def warn(message: str, category: type[Warning] = UserWarning) -> None:
            warnings.warn_explicit(
                message,
                category,
                filename,
                lineno,
                module=module_globals.get("__name__"),
                registry=module_globals.setdefault("__warningregistry__", {}),
                module_globals=module_globals,
            )

        sources = [(t._meta if t._src is None else None, t._src, t._out) for t in tensors]
        pending = _Check(sources, check, warn)
        if all(command is None for _, command, _ in sources):
            self._run_check(pending)
        else:
            self._checks.append(pending)

    def _run_checks(self) -> None:
        """Runs the waiting checks whose commands have all run (oldest first)."""
        checks = self._checks
        while checks:
            try:  # taken first, so that two threads never run the same check
                pending = checks.popleft()
            except IndexError:
                return
            if any(command is not None and command.id > self._completed for _, command, _ in pending.sources):
                checks.appendleft(pending)  # not ready: neither are the ones behind it, mostly
                return
            self._run_check(pending)

    @staticmethod
    def _run_check(pending: _Check) -> None:
        metas = []
        for meta, command, out in pending.sources:
            if command is not None:
                if command.failure is not None or command.result is None:
                    if meta is None:
                        return  # never computed: its failure speaks for it
                else:
                    meta = command.result.outputs[out]
            metas.append(meta)
        pending.check(pending.warn, *metas)

    def release(self, handle: str) -> None:
        """Frees `handle` on the server after every command queued before. Finalizer-safe."""
        if self._ended is None:
            self._queue.put(handle)

    # ---- what Tensor, nn and optim call ---------------------------------------

    def op(self, client: "Client", name: str, args: Sequence[Any], attrs: dict[str, Any], nout: int) -> list[Tensor]:
        """Issues server op `name` on tensors/numbers `args` with named `attrs` (None: omitted).

        Returns its `nout` outputs (two for max/min with a dim, none for in-place ops).
        """
        command = pb.Command()
        request = command.op
        request.op = name
        if not autograd.is_grad_enabled():
            request.no_grad = True
        inputs: list[Command] = []
        for arg in args:
            if isinstance(arg, Tensor):
                request.args.add(handle=self._operand(client, arg, name, inputs))
            else:
                scalar = request.args.add().scalar
                kind = type(arg)
                if kind is int:  # the common cases, without building a Scalar to copy
                    if -(1 << 63) <= arg < (1 << 63):
                        scalar.i = arg
                    else:
                        scalar.CopyFrom(_wire.scalar(arg))  # raises the range error
                elif kind is float:
                    scalar.f = arg
                else:
                    scalar.CopyFrom(_wire.scalar(arg))
        for key, value in attrs.items():
            if value is None:
                continue
            if isinstance(value, str):
                request.attrs[key].text = value
            elif isinstance(value, pb.IndexList):
                request.attrs[key].index.CopyFrom(value)
            elif isinstance(value, (list, tuple)):
                request.attrs[key].ints.values.extend(operator.index(v) for v in value)
            else:
                request.attrs[key].scalar.CopyFrom(_wire.scalar(value))
        return self._outputs(client, name, command, inputs, nout)

    def command(
        self, client: "Client", name: str, command: pb.Command, operands: Sequence[Tensor] = (), nout: int = 0
    ) -> list[Tensor]:
        """Issues `command` (named `name` in errors), which reads `operands` and makes `nout` tensors."""
        inputs: list[Command] = []
        for tensor in operands:
            self._operand(client, tensor, name, inputs)
        return self._outputs(client, name, command, inputs, nout)

    def modify(self, tensor: Tensor, name: str, command: pb.Command) -> None:
        """Issues a command whose reply describes `tensor` anew (requires_grad_, retain_grad).

        If it fails, the tensor keeps the metadata it had (its failure waits
        for the next sync point like any other).
        """
        inputs: list[Command] = []
        self._operand(tensor._client, tensor, name, inputs)
        previous = (tensor._src, tensor._out) if tensor._src is not None else None
        record = self.submit(name, command, inputs)
        record.previous = previous
        tensor._src = record
        tensor._out = 0

    def metadata(self, tensor: Tensor) -> pb.TensorMeta:
        """`tensor`'s metadata once the commands that made or changed it have run.

        Raises the failure of the command that made it, if that failed.
        """
        source: Optional[Command] = tensor._src
        out = tensor._out
        meta = tensor._meta
        while source is not None:
            self.wait_for(source)
            if source.failure is None:
                if source.result is not None and len(source.result.outputs) > out:
                    meta = source.result.outputs[out]
                break
            if source.previous is not None:  # a change that failed: what it had before
                source, out = source.previous
                continue
            if source.makes:  # the tensor was never made
                self.raise_for(source)
            break
        tensor._meta = meta
        tensor._src = None
        return meta  # type: ignore[return-value]

    def get_grad(self, tensor: Tensor) -> Optional[Tensor]:
        """`tensor.grad`: waits for the ops before it, then a Tensor or None."""
        handle = self.new_handle()
        command = pb.Command(get_grad=pb.TensorRef(handle=tensor._live_handle()), outputs=[handle])
        inputs: list[Command] = []
        self._operand(tensor._client, tensor, "grad", inputs)
        record = self.submit("grad", command, inputs)
        self.wait_for(record)
        self.raise_for(record)
        if record.result is None or not record.result.outputs:
            return None
        return Tensor(tensor._client, handle, record.result.outputs[0])

    def download(self, tensor: Tensor) -> np.ndarray:
        """`tensor.numpy()`: a sync point (see the module docstring)."""
        handle = tensor._live_handle()
        after = self.fence()
        while True:
            generation = self._live_generation
            try:
                array = self._download(handle, after)
                break
            except Error as e:
                if isinstance(e, UnavailableError) and self._await_resume(generation):
                    continue  # the connection dropped under it and the stream is back: again
                self.raise_if_ended()
                self._raise_download_failure(tensor, after)
                raise
        self._wait(after)
        self._run_checks()
        if tensor._src is not None:
            self.metadata(tensor)
        self.raise_pending()
        return array

    def raise_if_ended(self) -> None:
        """After a transfer failed: raises why the session's stream is over, if it is
        (the transfer's own error is then a consequence, a cancellation say)."""
        if self._ended is not None and self._ended.code != grpc.StatusCode.CANCELLED:
            raise self._ended_error() from None

    def _raise_download_failure(self, tensor: Tensor, after: int) -> None:
        """A download failed: raises why the tensor was never made, if that is the reason."""
        if after > self._completed and self._ended is None:
            self._wait(after)
        if tensor._src is not None:
            self.metadata(tensor)  # the tensor was never made: raises why

    def _await_resume(self, generation: int) -> bool:
        """After a transfer failed UNAVAILABLE: whether the stream, open at `generation`
        then, has been resumed since (waiting for a resume under way).

        False when the stream ended for good, or when no resume began within
        a keep-alive timeout or two (the transfer failed for another reason).
        """
        notice_by = time.monotonic() + 2 * self._session.keepalive_timeout()
        with self._cond:
            while True:
                if self._ended is not None:
                    return False
                if self._live_generation > generation:
                    return True
                if self._generation == generation and time.monotonic() > notice_by:
                    return False
                self._cond.wait(0.05)

    def _download(self, handle: str, after: int) -> np.ndarray:
        buffers: list[_layout.DownloadBuffer] = []

        def allocate(header: pb.DownloadHeader) -> memoryview:
            buffers.append(_layout.DownloadBuffer(header))
            return buffers[0].span

        self._session.download(handle, self.chunk_bytes, allocate, after)
        return buffers[0].array()

    def _operand(self, client: "Client", tensor: Tensor, name: str, inputs: list[Command]) -> str:
        """`tensor`'s handle as an operand of op `name`; records a producer that has not run."""
        if tensor._client is not client:
            raise ValueError(f"{name}: a tensor of another client cannot be an operand")
        handle = tensor._live_handle()
        source = tensor._src
        if source is not None:
            if source.id > self._completed:
                inputs.append(source)
            else:
                self.metadata(tensor)  # it has run: raises if it never made the tensor
        return handle

    def _outputs(self, client: "Client", name: str, command: pb.Command, inputs: list[Command], nout: int) -> list[Tensor]:
        handles = [self.new_handle() for _ in range(nout)]
        if handles:
            command.outputs.extend(handles)
        record = self.submit(name, command, inputs or None)
        if handles:
            record.makes = True
        return [Tensor(client, handle, None, record, i) for i, handle in enumerate(handles)]

    # ---- waiting and errors ---------------------------------------------------

    def fence(self) -> int:
        """The id of a new no-op command behind everything queued so far (frees included):
        an upload or download naming it as `after_command` is ordered after all of it."""
        if self._last_id == 0 and self._queue.empty():
            return 0  # nothing was ever issued
        command_id = self.submit("sync", pb.Command(sync=pb.SyncRequest())).id
        self._queue.put(_Flush(command_id))  # the transfer that names it waits for it
        return command_id

    def wait_for(self, record: Command) -> None:
        """Waits until `record` has run (or failed) on the server."""
        if record.id > self._completed:
            self._wait(record.id)

    def synchronize(self, raise_failures: bool = True) -> None:
        """Waits for everything submitted so far (frees included) to run; raises the first
        failure not raised yet unless `raise_failures` is false."""
        record = self.submit("synchronize", pb.Command(sync=pb.SyncRequest()))
        self.wait_for(record)
        self._run_checks()
        if raise_failures:
            self.raise_pending()

    def raise_pending(self) -> None:
        """Raises the oldest failure not raised yet, if any (it then counts as raised)."""
        with self._cond:
            failure = self._unraised.popleft() if self._unraised else None
        if failure is not None:
            raise failure.error()

    def raise_for(self, record: Optional[Command]) -> None:
        """Raises `record`'s failure (a tensor's producer): the failure itself, or for a
        command that failed because an input had, that input's failure."""
        if record is None or record.failure is None:
            return
        failure = record.failure
        self._take(failure)
        raise failure.error(dependent=failure.command_id != record.id)

    def _take(self, failure: Failure) -> None:
        """Marks `failure` raised: the next sync point will not raise it again."""
        with self._cond:
            try:
                self._unraised.remove(failure)
            except ValueError:
                pass

    def _wait(self, command_id: int) -> None:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        if command_id > self._flush_wanted:
            self._flush_wanted = command_id
        self._queue.put(_Flush(command_id))
        with self._cond:
            while self._completed < command_id:
                if self._ended is not None:
                    raise self._ended_error()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceededError(
                        f"waited {self._timeout} s for command {command_id} to run "
                        f"({command_id - self._completed} still ahead of it on the server)"
                    )
                self._cond.wait(remaining)

    def _ended_error(self) -> Error:
        err = self._ended
        assert err is not None
        return type(err)(err.details, err.code)

    # ---- the stream -----------------------------------------------------------

    def _requests(self, generation: int, resend: list[bytes]) -> Iterator[bytes]:
        """The request stream of the stream of `generation`: first the messages
        `resend` (on a resumed stream), then what is queued, message by message.

        It stops when a resume begins (a newer generation): what it took and
        could not send is in `_sent`, and the new stream sends it again.
        """
        yield from resend
        cond = self._send_cond
        while True:
            with cond:
                if self._generation != generation:
                    return
                self._sender_busy = True
            try:
                message, end = self._next_message(generation)
            finally:
                with cond:
                    self._sender_busy = False
                    cond.notify_all()
            if message:
                yield message
            if end:
                return

    def _next_message(self, generation: int) -> tuple[bytes, bool]:
        """The next message: what was queued since the last one; and whether the stream ends.

        While nobody waits for a reply, the sender lingers up to _LINGER_S for
        more commands, so that a program issuing ops one by one still sends
        them in batches (each message costs the sending and receiving threads
        far more than a command does). A thread that starts waiting queues a
        _Flush: the message goes out at once and tells the server, in
        `flush_through`, to answer without batching. Every command and
        release taken is recorded in `_sent` as it is taken.
        """
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        monotonic = time.monotonic
        sent = self._sent
        completed = self._completed
        while sent and (sent[0][0] < completed or (sent[0][0] == completed and not sent[0][1])):
            sent.popleft()  # covered by a reply: never sent again
        parts: list[bytes] = []
        frees: list[str] = []
        count = 0
        flush_through = 0
        deadline = 0.0
        item = get()
        while True:
            kind = type(item)
            if kind is tuple:
                if frees:
                    frame = _release_frame(frees)
                    sent.append((self._last_taken, True, frame))
                    parts.append(frame)
                    frees = []
                self._last_taken = item[0]
                sent.append((item[0], False, item[1]))
                parts.append(item[1])
                count += 1
            elif kind is str:
                frees.append(item)
            elif kind is _Flush:
                flush_through = max(flush_through, item)
            elif item is _END:
                break
            elif item is _STOP:
                if self._generation != generation:
                    if frees:
                        sent.append((self._last_taken, True, _release_frame(frees)))
                    return b"", True  # what was taken is in `_sent`: the new stream sends it
                # a leftover of an earlier resume: nothing to do
            if count >= _MAX_BATCH or len(frees) >= _MAX_BATCH:
                break
            try:
                item = get_nowait()
                continue
            except queue.Empty:
                pass
            if flush_through or not (parts or frees):
                if not (parts or frees or flush_through):
                    item = get()  # nothing yet: wait for something
                    continue
                break
            if not deadline:
                deadline = monotonic() + _LINGER_S
            remaining = deadline - monotonic()
            if remaining <= 0:
                break
            try:
                item = get(timeout=remaining)
            except queue.Empty:
                break
        if frees:
            frame = _release_frame(frees)
            sent.append((self._last_taken, True, frame))
            parts.append(frame)
        if flush_through:
            parts.append(_FLUSH_THROUGH_TAG + _wire.encode_varint(flush_through))
        if parts and self._completed:
            parts.append(_ACKNOWLEDGED_TAG + _wire.encode_varint(self._completed))
        return b"".join(parts), item is _END

    def _resend_messages(self) -> list[bytes]:
        """The first messages of a resumed stream: every command taken whose reply has not
        come (and the releases after the last one that has), in order; then asks for
        replies at once and acknowledges those in."""
        completed = self._completed
        frames = [
            frame for key, is_release, frame in self._sent
            if key > completed or (is_release and key == completed)
        ]
        messages = [b"".join(frames[i:i + _MAX_BATCH]) for i in range(0, len(frames), _MAX_BATCH)]
        tail = _FLUSH_THROUGH_TAG + _wire.encode_varint(max(self._last_taken, 1))
        if completed:
            tail += _ACKNOWLEDGED_TAG + _wire.encode_varint(completed)
        if not messages:
            messages.append(b"")
        messages[-1] += tail
        return messages

    def _read(self) -> None:
        pending = self._pending
        call = self._call
        ended: Error
        while True:
            try:
                for response in call:
                    for result in response.results:
                        record = pending.get(result.id)
                        if record is None:
                            continue  # answered before (a reply sent again after a resume)
                        if result.code:
                            record.failure = self._failure(record, result)
                        else:
                            record.result = result
                    completed = response.completed
                    for command_id in range(self._completed + 1, completed + 1):
                        record = pending.pop(command_id, None)
                        if record is not None:
                            record.inputs = None
                    with self._cond:
                        self._completed = max(self._completed, completed)
                        self._cond.notify_all()
                ended = UnavailableError("the execution stream ended")
            except grpc.RpcError as e:
                if not self._closing and _broke(e):
                    resumed = self._resume(from_rpc_error(e))
                    if not isinstance(resumed, Error):
                        call = resumed
                        continue
                    ended = resumed
                else:
                    ended = from_rpc_error(e)
                    if self._closing and ended.code == grpc.StatusCode.CANCELLED:
                        ended = UnavailableError("the client is closed")
            except Exception as e:  # never leave waiters hanging
                ended = Error(f"the reply reader failed: {e!r}")
            break
        self._end(ended)

    def _resume(self, lost: Error) -> Any:
        """The stream broke (see the module docstring): reopens it on the same session.

        Returns the new call, or the Error that ends the session's stream for good.
        """
        session = self._session
        name = f"…{session.session_id[-8:]}"
        _log.warning("tensord: the connection to %s dropped (%s); resuming session %s", session.target, lost.details, name)
        with self._send_cond:
            self._generation += 1
            generation = self._generation
            self._queue.put(_STOP)  # wakes the old sender if it waits for work
            if not self._send_cond.wait_for(lambda: not self._sender_busy, timeout=30):
                return Error("the sender of the broken stream did not stop: the stream cannot be resumed")
        lease = session.lease()
        # The server closes a session within a second of its lease's end
        # (its reaper's period), counted from the last renewal it received,
        # which came before the client's last renewal reply.
        give_up = session.renewed_at + lease + 1.0
        delay = 0.02
        while True:
            if self._closing:
                return UnavailableError("the client is closed")
            remaining = give_up - time.monotonic()
            try:
                session.probe(timeout=max(0.1, min(remaining, session.keepalive_timeout())))
                break
            except NotFoundError as e:
                return SessionExpiredError(
                    f"session {name} expired: the connection to {session.target} was lost for longer than "
                    f"its {lease:g} s lease (or the server restarted), and the server has freed its tensors "
                    f"(the server says: {e.details})",
                    e.code,
                )
            except (UnavailableError, DeadlineExceededError) as e:
                # (Even "connection refused" may pass: a router rejects for
                # a link that is down. So only the lease decides.)
                if remaining <= 0:
                    return SessionExpiredError(
                        f"session {name} expired: {session.target} could not be reached for "
                        f"{time.monotonic() - session.renewed_at:.1f} s, longer than the session's {lease:g} s "
                        f"lease, so the server has closed it and freed its tensors (last error: {e.details})",
                        grpc.StatusCode.NOT_FOUND,
                    )
            except Error as e:  # refused for good (UNAUTHENTICATED, ...)
                return e
            time.sleep(max(0.0, min(delay, remaining)))
            delay = min(delay * 2, 0.5)
        resend = self._resend_messages()
        call = session.execute(self._requests(generation, resend))
        self._call = call
        self.resumes += 1
        with self._cond:
            self._live_generation = generation
            self._cond.notify_all()
        _log.warning(
            "tensord: session %s resumed on a new connection to %s (%d commands not answered yet sent again)",
            name, session.target, sum(1 for key, is_release, _ in self._sent if not is_release and key > self._completed),
        )
        return call

    def _failure(self, record: Command, result: pb.CommandResult) -> Failure:
        # A command that failed because an input's command had failed carries
        # that failure: it is the one the user needs to see.
        for source in record.inputs or ():
            if source.failure is not None and source.makes:
                return source.failure
        failure = Failure(_status_code(result.code), result.message, record.op, record.where, record.id)
        with self._cond:
            self._unraised.append(failure)
        return failure

    def _end(self, reason: Error) -> None:
        """The stream is over: commands that never got a reply fail with `reason`."""
        with self._cond:
            self._ended = reason
            self._cond.notify_all()
        self._queue.put(_END)  # lets grpcio's sending thread leave `_requests`
        # Transfers ordered after commands this stream never delivered would wait for them.
        self._session.cancel_transfers()
        for record in list(self._pending.values()):
            if record.failure is None and record.id > self._completed:
                record.failure = Failure(
                    reason.code, reason.details, record.op, record.where, record.id, type(reason)
                )
                if not self._closing:
                    with self._cond:
                        self._unraised.append(record.failure)

    def close(self, timeout: Optional[float]) -> Optional[Failure]:
        """Ends the stream after what is queued (waiting up to `timeout` seconds for it to run).

        Returns the oldest failure not raised yet, for the caller to raise
        once the session is closed.
        """
        with self._submit_lock:
            if self._closing:
                return None
            self._closing = True
            self._queue.put(_END)
        self._reader.join(timeout)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join()
        with self._cond:
            return self._unraised.popleft() if self._unraised else None


def _broke(err: grpc.RpcError) -> bool:
    """Whether a stream ended because its connection did, not because the server ended it."""
    if not hasattr(err, "code") or err.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    return not any(key == _STREAM_END_KEY for key, _ in trailers or ())


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(value: int) -> grpc.StatusCode:
    return _CODES.get(value, grpc.StatusCode.UNKNOWN)
