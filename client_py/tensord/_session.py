"""One session with a tensord server: the channel, its RPCs, and its lease.

`Session` owns the gRPC channel and the session id, adds the
`tensord-session` metadata (and the default deadline, on unary calls) to
every call, and turns grpc errors into tensord errors (via
`errors.translated`). It opens the session's Execute stream for the
`Executor` (`_executor.py`), which submits every command; what is left here
are the control calls, Upload and Download. A single daemon thread per
session renews the lease (KeepAlive every lease/3 seconds) and ends the
session when the Client is garbage-collected.

Dropped links. The channel sends HTTP/2 keep-alive pings every lease/8
(between 0.25 and 10 s) and gives up on a connection that does not answer
within as long again (at least 1 s), so a dead link is noticed well within
the lease; it then reconnects, backing off to one attempt per ping interval.
The Executor resumes its stream on the new connection (see there).

Thread-safety: all methods may be called from any thread. The finalizer of
a Client only puts a marker on a `queue.SimpleQueue`, which is reentrant;
no RPC is ever issued from a finalizer.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from typing import Any, Callable, Iterator

import grpc

from tensord import _wire
from tensord.errors import CancelledError, FailedPreconditionError, NotFoundError, translated
from tensord.v1 import tensord_pb2 as pb
from tensord.v1 import tensord_pb2_grpc as pb_grpc

_log = logging.getLogger("tensord")

SESSION_METADATA_KEY = "tensord-session"
AUTHORIZATION_METADATA_KEY = "authorization"
MAX_MESSAGE_BYTES = 64 << 20
_UPLOAD_PATH = "/tensord.v1.Tensord/Upload"
_DOWNLOAD_PATH = "/tensord.v1.Tensord/Download"
_EXECUTE_PATH = "/tensord.v1.Tensord/Execute"
_BACKGROUND_DEADLINE_S = 10.0  # KeepAlive/CloseSession never block longer than this
_DEFAULT_LEASE_S = 60.0  # the server's default; the channel is set up for it until OpenSession says

# Messages to the background thread.
_STOP = object()  # close() was called: stop; close() itself ends the session
_CLOSE = object()  # the Client was garbage-collected: end the session, then stop

_live_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()


class Session:
    """A connected session; see the module docstring."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None,
        client_name: str,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._closed = False
        self._close_lock = threading.Lock()
        #: Called first by close() (the Client sets it to end its Execute stream cleanly).
        self.before_close: Callable[[], Any] | None = None
        self._credentials = credentials
        self._transfers_lock = threading.Lock()
        self._transfers: set[Any] = set()  # upload and download calls in progress
        self._open_channel(_DEFAULT_LEASE_S)
        # Sent as plain metadata rather than grpc call credentials, which
        # grpcio only allows on TLS channels: a token over plaintext loopback is legal.
        auth = ((AUTHORIZATION_METADATA_KEY, f"Bearer {token}"),) if token else ()
        try:
            with translated():
                opened = self._stub.OpenSession(
                    pb.OpenSessionRequest(client_name=client_name), timeout=timeout, metadata=auth
                )
        except BaseException:
            self._channel.close()
            raise
        self.session_id: str = opened.session_id
        self.lease_seconds: float = opened.lease_seconds
        #: time.monotonic() of the last call known to have renewed the lease.
        self.renewed_at = time.monotonic()
        if _transport_options(self.lease()) != _transport_options(_DEFAULT_LEASE_S):
            # A lease unlike the default's needs pings of its own pace: a new
            # channel (the session is the server's, not the connection's).
            self._channel.close()
            self._open_channel(self.lease())
        self._metadata = ((SESSION_METADATA_KEY, self.session_id),) + auth
        self._background: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name=f"tensord-lease-{self.session_id[:8]}", daemon=True
        )
        self._thread.start()
        _live_sessions.add(self)

    def _open_channel(self, lease: float) -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *_transport_options(lease),
        ]
        if self._credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.secure_channel(self.target, self._credentials, options=options)
        self._stub = pb_grpc.TensordStub(self._channel)
        self._upload = self._channel.stream_unary(
            _UPLOAD_PATH, request_serializer=None, response_deserializer=pb.TensorMeta.FromString
        )
        self._download = self._channel.unary_stream(
            _DOWNLOAD_PATH, request_serializer=pb.DownloadRequest.SerializeToString, response_deserializer=None
        )
        self._execute = self._channel.stream_stream(
            _EXECUTE_PATH, request_serializer=None, response_deserializer=pb.ExecuteResponse.FromString
        )

    def lease(self) -> float:
        """The session's lease in seconds, as the server last reported it."""
        return self.lease_seconds if self.lease_seconds > 0 else _DEFAULT_LEASE_S

    def keepalive_timeout(self) -> float:
        """Seconds the channel waits for a ping's answer before it gives up on a connection."""
        return dict(_transport_options(self.lease()))["grpc.keepalive_timeout_ms"] / 1000

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- calls --------------------------------------------------------------

    def call(self, method: str, request: Any) -> Any:
        """Invokes unary RPC `method` with the session metadata and default deadline."""
        self._check_open()
        with translated():
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)

    def upload(self, messages: Iterator[bytes]) -> pb.TensorMeta:
        """Runs the Upload stream over already framed messages (see `_wire`)."""
        self._check_open()
        call = self._upload.future(messages, timeout=self.timeout, metadata=self._metadata)
        with self._tracked(call):
            try:
                with translated():
                    return call.result()
            except grpc.FutureCancelledError:
                raise CancelledError("the upload was cancelled: the session's stream ended") from None

    def download(
        self,
        handle: str,
        chunk_bytes: int,
        allocate: Callable[[pb.DownloadHeader], memoryview],
        after_command: int = 0,
    ) -> pb.DownloadHeader:
        """Runs the Download stream for `handle`, writing the span into `allocate(header)`.

        `chunk_bytes` asks for that many bytes per message (the server clamps
        it); the server starts once command `after_command` of the Execute
        stream has run.
        """
        self._check_open()
        request = pb.DownloadRequest(handle=handle, chunk_bytes=chunk_bytes, after_command=after_command)
        stream = self._download(request, timeout=self.timeout, metadata=self._metadata)
        with self._tracked(stream):
            with translated():
                return _wire.read_download(stream, allocate)

    @contextlib.contextmanager
    def _tracked(self, call: Any) -> Iterator[None]:
        """Lists `call` for cancel_transfers while the block runs; cancels it if the block fails."""
        with self._transfers_lock:
            self._transfers.add(call)
        try:
            yield
        except BaseException:
            call.cancel()  # stop the server sending the rest, or waiting for more
            raise
        finally:
            with self._transfers_lock:
                self._transfers.discard(call)

    def cancel_transfers(self) -> None:
        """Cancels the uploads and downloads in progress.

        For when the session's Execute stream is over for good: a transfer
        ordered after a command that stream never delivered would wait for it
        until the server gave up.
        """
        with self._transfers_lock:
            calls = list(self._transfers)
        for call in calls:
            call.cancel()

    def execute(self, requests: Iterator[bytes]) -> Any:
        """Opens the session's Execute stream over already framed ExecuteRequests.

        No deadline: the stream lives as long as the session. Returns the
        grpc call, an iterator of ExecuteResponse that can be cancelled.
        """
        self._check_open()
        return self._execute(requests, metadata=self._metadata)

    def probe(self, timeout: float) -> None:
        """One KeepAlive that fails at once when there is no connection (no wait_for_ready).

        Renews the lease when it succeeds; raises NotFoundError when the
        server no longer has the session, UnavailableError when it cannot be
        reached. For resuming a stream (the Executor), not for users.
        """
        with translated():
            self._stub.KeepAlive(pb.KeepAliveRequest(), timeout=timeout, metadata=self._metadata)
        self.renewed_at = time.monotonic()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPreconditionError(f"tensord: the client for {self.target} is closed")

    # ---- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Stops the background thread and ends the session (frees its tensors). Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.before_close is not None:
            try:
                self.before_close()
            except Exception as e:  # closing must not raise: the server may be gone
                _log.warning("tensord: ending the execution stream of %s failed: %s", self.target, e)
        self._background.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._close_session_rpc()

    def close_when_collected(self) -> None:
        """Called by the Client's finalizer: the background thread ends the session.

        Non-blocking and RPC-free, since finalizers run at arbitrary points.
        """
        self._background.put(_CLOSE)

    def _close_session_rpc(self) -> None:
        try:
            with translated():
                self._stub.CloseSession(
                    pb.CloseSessionRequest(), timeout=self._background_deadline(), metadata=self._metadata
                )
        except NotFoundError:
            pass  # the lease ran out: the server already ended the session
        except Exception as e:  # closing must not raise: the server may be gone
            _log.warning("tensord: CloseSession for %s failed: %s", self.target, e)
        finally:
            self._channel.close()
            _live_sessions.discard(self)

    def _background_deadline(self) -> float:
        return min(self.timeout or _BACKGROUND_DEADLINE_S, _BACKGROUND_DEADLINE_S)

    # ---- background thread --------------------------------------------------

    def _run(self) -> None:
        interval = self._keepalive_interval()
        next_keepalive = time.monotonic() + interval
        keepalive_failing = False
        while True:
            try:
                item = self._background.get(timeout=max(0.0, next_keepalive - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                return  # close() sends CloseSession, which frees everything
            if item is _CLOSE:
                with self._close_lock:
                    if self._closed:
                        return
                    self._closed = True
                self._close_session_rpc()
                return
            if time.monotonic() >= next_keepalive:
                try:
                    with translated():
                        renewed = self._stub.KeepAlive(
                            pb.KeepAliveRequest(), timeout=self._background_deadline(), metadata=self._metadata
                        )
                    self.renewed_at = time.monotonic()
                    if renewed.lease_seconds > 0:
                        self.lease_seconds = renewed.lease_seconds
                        interval = self._keepalive_interval()
                    keepalive_failing = False
                except Exception as e:
                    if not keepalive_failing:
                        _log.warning("tensord: KeepAlive for session …%s failed: %s", self.session_id[-8:], e)
                    keepalive_failing = True
                next_keepalive = time.monotonic() + interval

    def _keepalive_interval(self) -> float:
        return self.lease() / 3


def _transport_options(lease: float) -> list[tuple[str, int]]:
    """Channel arguments that notice a dead link, and reconnect, well within `lease` seconds.

    The server accepts pings down to every 100 ms (server/rpc/service.h).
    """
    ping_ms = int(1000 * min(max(lease / 8, 0.25), 10.0))
    return [
        ("grpc.keepalive_time_ms", ping_ms),
        ("grpc.keepalive_timeout_ms", max(ping_ms, 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect attempts: the first after 100 ms, then backing off to
        # one per ping interval. (grpc's "min reconnect backoff" is the time
        # a connection attempt is given: at least 1 s, two ping intervals.)
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", ping_ms),
        ("grpc.min_reconnect_backoff_ms", max(2 * ping_ms, 1000)),
    ]


@atexit.register
def _close_all_sessions() -> None:
    """Ends the sessions of clients still open at interpreter exit (best effort)."""
    for session in list(_live_sessions):
        session.close()
