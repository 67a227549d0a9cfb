"""Raw gRPC access to tensord, one level below the `tensord` client.

The end-to-end tests use it for requests the client cannot express (wrong byte
counts, missing headers, foreign handles, no session metadata) and to read the
wire as it is. It shares no code with client_py/tensord on purpose, so it is an
independent oracle for the client as well as a way to reach the server directly.

Only the generated stubs are imported from the client package; they are built
from proto/tensord/v1/tensord.proto and never edited by hand.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Iterator, Sequence

import grpc
import ml_dtypes
import numpy as np

from tensord.v1 import tensord_pb2 as pb
from tensord.v1 import tensord_pb2_grpc as pb_grpc

SESSION_KEY = "tensord-session"

DTYPE_ENUMS: dict[np.dtype, int] = {
    np.dtype(np.bool_): pb.DTYPE_BOOL,
    np.dtype(np.uint8): pb.DTYPE_UINT8,
    np.dtype(np.int8): pb.DTYPE_INT8,
    np.dtype(np.int16): pb.DTYPE_INT16,
    np.dtype(np.int32): pb.DTYPE_INT32,
    np.dtype(np.int64): pb.DTYPE_INT64,
    np.dtype(np.float16): pb.DTYPE_FLOAT16,
    np.dtype(ml_dtypes.bfloat16): pb.DTYPE_BFLOAT16,
    np.dtype(np.float32): pb.DTYPE_FLOAT32,
    np.dtype(np.float64): pb.DTYPE_FLOAT64,
    np.dtype(np.complex64): pb.DTYPE_COMPLEX64,
    np.dtype(np.complex128): pb.DTYPE_COMPLEX128,
}
NUMPY_DTYPES: dict[int, np.dtype] = {enum: dtype for dtype, enum in DTYPE_ENUMS.items()}


def span_nbytes(shape: Sequence[int], strides: Sequence[int], itemsize: int) -> int:
    """Bytes of the smallest storage span holding every element (the proto's formula)."""
    if any(n == 0 for n in shape):
        return 0
    return (1 + sum((n - 1) * s for n, s in zip(shape, strides))) * itemsize


def header(dtype: int, shape: Sequence[int], strides: Sequence[int] = ()) -> pb.UploadRequest:
    return pb.UploadRequest(header=pb.UploadHeader(dtype=dtype, shape=shape, strides=strides))


def chunk(data: bytes) -> pb.UploadRequest:
    return pb.UploadRequest(chunk=data)


def upload_requests(array: np.ndarray, chunk_bytes: int = 1 << 20) -> Iterator[pb.UploadRequest]:
    """A well-formed upload of `array`: its header, then its C-order bytes in chunks."""
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    yield header(DTYPE_ENUMS[array.dtype], array.shape)
    data = array.tobytes()
    for start in range(0, len(data), chunk_bytes):
        yield chunk(data[start : start + chunk_bytes])


def array_from_download(head: pb.DownloadHeader, data: bytes) -> np.ndarray:
    """The downloaded view as NumPy lays it out: header strides over the span bytes."""
    dtype = NUMPY_DTYPES[head.meta.dtype]
    return np.ndarray(
        tuple(head.meta.shape),
        dtype=dtype,
        buffer=data,
        offset=head.offset * dtype.itemsize,
        strides=tuple(s * dtype.itemsize for s in head.strides),
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Polls `predicate` until it holds or `timeout` seconds pass; returns whether it held.

    Server-side cleanup (cancelled uploads, closed sessions, finalized client
    objects) is asynchronous, so tests wait for its effect instead of sleeping.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


class RawSession:
    """A session on its own channel: opened with OpenSession and closed on exit, or,
    given `session_id`, someone else's session (a `tensord.Client`'s) left open."""

    def __init__(self, address: str, client_name: str = "e2e-raw", *, session_id: str | None = None) -> None:
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", -1)]
        )
        self.stub = pb_grpc.TensordStub(self.channel)
        self._owned = session_id is None
        self.lease_seconds: float | None = None  # known only for sessions opened here
        if session_id is None:
            opened = self.stub.OpenSession(pb.OpenSessionRequest(client_name=client_name), timeout=10)
            session_id, self.lease_seconds = opened.session_id, opened.lease_seconds
        self.session_id: str = session_id
        self.metadata = ((SESSION_KEY, self.session_id),)
        self._stop_keepalive = threading.Event()

    def keep_alive_in_background(self, interval: float = 0.3) -> "RawSession":
        """Renews the lease every `interval` seconds until close(): for a watcher on a
        server with a short --session-ttl, which may sit idle while the test waits."""

        def renew() -> None:
            while not self._stop_keepalive.wait(interval):
                try:
                    self.keep_alive()
                except grpc.RpcError:
                    pass  # the test will see it on its own next call

        threading.Thread(target=renew, daemon=True).start()
        return self

    def __enter__(self) -> "RawSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop_keepalive.set()
        if self._owned:
            try:
                self.stub.CloseSession(pb.CloseSessionRequest(), metadata=self.metadata, timeout=10)
            except grpc.RpcError:
                pass  # the test already closed it, or its lease ran out
        self.channel.close()

    def upload_stream(self, requests: Iterable[pb.UploadRequest], timeout: float = 60) -> pb.TensorMeta:
        return self.stub.Upload(iter(requests), metadata=self.metadata, timeout=timeout)

    def upload(self, array: np.ndarray) -> pb.TensorMeta:
        return self.upload_stream(upload_requests(array))

    def download(self, handle: str) -> tuple[pb.DownloadHeader, bytes]:
        """The header and the concatenated chunk bytes of one Download stream."""
        stream = self.stub.Download(
            pb.DownloadRequest(handle=handle), metadata=self.metadata, timeout=60
        )
        first = next(stream)
        assert first.WhichOneof("kind") == "header", f"Download began with {first}"
        data = bytearray()
        for message in stream:
            assert message.WhichOneof("kind") == "chunk", "a second header in one Download"
            data += message.chunk
        return first.header, bytes(data)

    def download_numpy(self, handle: str) -> np.ndarray:
        return array_from_download(*self.download(handle))

    def get(self, handle: str) -> pb.TensorMeta:
        return self.stub.GetTensor(pb.TensorRef(handle=handle), metadata=self.metadata, timeout=10)

    def free(self, *handles: str) -> int:
        return self.stub.Free(pb.FreeRequest(handles=handles), metadata=self.metadata, timeout=10).freed

    def handles(self) -> list[str]:
        listed = self.stub.ListTensors(pb.ListTensorsRequest(), metadata=self.metadata, timeout=10)
        return [meta.handle for meta in listed.tensors]

    def memory_info(self) -> pb.MemoryInfoResponse:
        return self.stub.MemoryInfo(pb.MemoryInfoRequest(), metadata=self.metadata, timeout=10)

    def keep_alive(self) -> pb.KeepAliveResponse:
        return self.stub.KeepAlive(pb.KeepAliveRequest(), metadata=self.metadata, timeout=10)

    def view(self, request: pb.ViewRequest) -> pb.TensorMeta:
        return self.stub.View(request, metadata=self.metadata, timeout=10)

    def copy(self, request: pb.CopyRequest) -> pb.TensorMeta:
        return self.stub.Copy(request, metadata=self.metadata, timeout=60)

    def create(self, request: pb.CreateRequest) -> pb.TensorMeta:
        return self.stub.Create(request, metadata=self.metadata, timeout=60)

    def op(self, request: pb.OpRequest) -> pb.OpResponse:
        return self.stub.Op(request, metadata=self.metadata, timeout=60)
