"""Bad input never harms tensord.

Every malformed request, sent through the client where it can express it and
through raw gRPC stubs otherwise, must get its canonical status code and a
message naming the problem. After each one the server must still be alive,
serve a fresh round trip, and hold the tensors uploaded before it byte for byte.
"""
from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
from typing import Callable

import grpc
import numpy as np
import pytest

import tensord
from raw_wire import RawSession, chunk, header, pb, wait_for
from servers import measures_server_memory, rss_bytes
from syncing import synced

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

F32, F64, U8 = pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT64, pb.DTYPE_UINT8
MIB = 1 << 20
V = pb.ViewRequest


class Witness:
    """Tensors stored before a bad request, and the check that the server survived it.

    One tensor lives in a `tensord` client session, one in a raw session, so a
    bad request in either cannot silently corrupt the other.
    """

    def __init__(self, server, client, raw: RawSession) -> None:
        self.server, self.client, self.raw = server, client, raw
        rng = np.random.default_rng(20240601)
        self.client_array = rng.standard_normal((129, 7)).astype(np.float32)
        self.client_tensor = client.from_numpy(self.client_array)
        self.raw_array = rng.integers(-(2**62), 2**62, size=(5, 300), dtype=np.int64)
        self.raw_handle = raw.upload(self.raw_array).handle

    def check(self) -> None:
        assert self.server.alive(), f"tensord died: {self.server.stderr_text()}"
        assert self.client_tensor.numpy().tobytes() == self.client_array.tobytes()
        assert self.raw.download_numpy(self.raw_handle).tobytes() == self.raw_array.tobytes()
        fresh = np.arange(-500, 500, dtype=np.int16)
        t = self.client.from_numpy(fresh)
        assert t.numpy().tobytes() == fresh.tobytes()
        t.free()

    def bytes_in_use(self) -> int:
        return self.raw.memory_info().bytes_in_use


@pytest.fixture
def raw(server):
    with RawSession(server.address) as session:
        yield session


@pytest.fixture
def witness(server, td, raw) -> Witness:
    return Witness(server, td, raw)


@pytest.fixture
def own_witness(server_factory) -> Witness:
    """A server of this test's own, so that bytes_in_use moves only with this test."""
    srv = server_factory()
    with tensord.connect(srv.address, timeout=60) as client, RawSession(srv.address) as raw:
        yield Witness(srv, client, raw)


@pytest.fixture
def small(server_factory) -> Witness:
    srv = server_factory("--max-memory", "64M")
    with tensord.connect(srv.address, timeout=60) as client, RawSession(srv.address) as raw:
        yield Witness(srv, client, raw)


def status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, grpc.RpcError):
        return error.code(), error.details() or ""
    return error.code, str(error)


def assert_status(error: Exception, code: grpc.StatusCode, *names: str) -> None:
    """`error` carries `code` and a message matching every regex in `names`."""
    got, message = status_of(error)
    assert got == code, f"expected {code.name}, got {got.name}: {message!r}"
    for name in names:
        assert re.search(name, message, re.IGNORECASE), (
            f"{code.name} message {message!r} does not name the problem (/{name}/)"
        )


def rpc_error(call: Callable, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def client_error(call: Callable, *args) -> tensord.Error:
    """What a client call raises, at the call or at the sync point right after it."""
    with pytest.raises(tensord.Error) as info:
        synced(call(*args))
    return info.value


# ---- Upload streams -----------------------------------------------------------------

# A float32 [4, 4] upload spans 64 bytes.
UPLOADS = {
    "short": ([header(F32, [4, 4]), chunk(bytes(60))], INVALID, [r"\b60\b", r"\b64\b"]),
    "short-in-pieces": ([header(F32, [4, 4]), chunk(bytes(32)), chunk(bytes(16))], INVALID, [r"\b48\b", r"\b64\b"]),
    "header-only": ([header(F32, [4, 4])], INVALID, [r"\b64\b"]),
    "long": ([header(F32, [4, 4]), chunk(bytes(64)), chunk(bytes(4))], INVALID, [r"\b64\b"]),
    "long-one-chunk": ([header(F32, [4, 4]), chunk(bytes(100))], INVALID, [r"\b64\b"]),
    "bytes-for-zero-size": ([header(F32, [0, 4]), chunk(bytes(4))], INVALID, [r"\b0\b"]),
    "chunk-before-header": ([chunk(bytes(64)), header(F32, [4, 4])], INVALID, [r"header"]),
    "two-headers": ([header(F32, [4, 4]), header(F32, [4, 4]), chunk(bytes(64))], INVALID, [r"header"]),
    "header-after-data": ([header(F32, [4, 4]), chunk(bytes(64)), header(F32, [1])], INVALID, [r"header"]),
    "empty-stream": ([], INVALID, [r"header"]),
    "empty-message": ([pb.UploadRequest()], INVALID, [r"header"]),
    "size-overflows-int64": ([header(F64, [2**62, 4])], INVALID, [r"overflow|4611686018427387904"]),
    "size-wraps-to-zero": ([header(U8, [2**32, 2**32])], INVALID, [r"overflow|4294967296"]),
    "dim-int64-max": ([header(U8, [2**63 - 1, 2])], INVALID, [r"overflow|9223372036854775807"]),
    "span-overflows-int64": ([header(F64, [2, 2], [2**62, 1])], INVALID, [r"overflow|4611686018427387904"]),
    "negative-dim": ([header(F32, [-1, 4])], INVALID, [r"-1"]),
    "negative-dim-beside-zero": ([header(F32, [0, -3])], INVALID, [r"-3"]),
    "dtype-99": ([header(99, [4]), chunk(bytes(16))], INVALID, [r"\b99\b"]),
    "dtype-unspecified": ([header(pb.DTYPE_UNSPECIFIED, [4]), chunk(bytes(16))], INVALID, [r"dtype|unspecified"]),
    "too-few-strides": ([header(F32, [4, 4], [1]), chunk(bytes(64))], INVALID, [r"stride"]),
    "too-many-strides": ([header(F32, [4], [1, 1]), chunk(bytes(16))], INVALID, [r"stride"]),
    "negative-stride": ([header(F32, [4], [-1]), chunk(bytes(16))], INVALID, [r"-1"]),
}


@pytest.mark.parametrize("case", UPLOADS, ids=str)
def test_bad_upload_stream(witness, raw, case):
    requests, code, names = UPLOADS[case]
    error = rpc_error(raw.upload_stream, requests, timeout=30)
    assert_status(error, code, *names)
    assert raw.handles() == [witness.raw_handle]  # nothing half-made was kept
    witness.check()


# ---- View requests --------------------------------------------------------------------

# (raw op fields, the same through the client or None, code, names); the tensor is
# a C-contiguous float32 [2, 3, 4].
VIEWS = {
    "transpose-dim-3": ({"transpose": V.Transpose(dim0=3, dim1=0)}, lambda t: t.transpose(3, 0), INVALID, [r"\b3\b"]),
    "transpose-dim-minus-4": ({"transpose": V.Transpose(dim0=0, dim1=-4)}, lambda t: t.transpose(0, -4), INVALID, [r"-4"]),
    "permute-too-few": ({"permute": V.Permute(dims=[0, 1])}, lambda t: t.permute(0, 1), INVALID, [r"\[0,\s*1\]|\b2\b"]),
    "permute-repeated": ({"permute": V.Permute(dims=[0, 0, 1])}, lambda t: t.permute(0, 0, 1), INVALID, [r"repeat|twice|duplicate|\[0,\s*0,\s*1\]"]),
    "permute-dim-3": ({"permute": V.Permute(dims=[0, 1, 3])}, lambda t: t.permute(0, 1, 3), INVALID, [r"\b3\b"]),
    "select-dim-3": ({"select": V.Select(dim=3, index=0)}, lambda t: t.select(3, 0), INVALID, [r"\b3\b"]),
    "select-index-7": ({"select": V.Select(dim=1, index=7)}, lambda t: t.select(1, 7), INVALID, [r"\b7\b"]),
    "select-index-minus-4": ({"select": V.Select(dim=1, index=-4)}, lambda t: t.select(1, -4), INVALID, [r"-4"]),
    "index-int-5": ({"index": V.Index(items=[pb.IndexItem(select=5)])}, lambda t: t[5], INVALID, [r"\b5\b"]),
    "index-too-many": ({"index": V.Index(items=[pb.IndexItem(select=0)] * 4)}, lambda t: t[0, 0, 0, 0], INVALID, [r"too many|\b4\b"]),
    "index-step-0": ({"index": V.Index(items=[pb.IndexItem(slice=pb.Slice(step=0))])}, None, INVALID, [r"step"]),
    "index-step-minus-1": ({"index": V.Index(items=[pb.IndexItem(slice=pb.Slice(step=-1))])}, None, INVALID, [r"-1"]),
    "index-two-ellipses": ({"index": V.Index(items=[pb.IndexItem(ellipsis=True)] * 2)}, lambda t: t[..., ...], INVALID, [r"ellipsis|\.\.\."]),
    "index-empty-item": ({"index": V.Index(items=[pb.IndexItem()])}, None, INVALID, [r"index|item"]),
    "reshape-24-to-25": ({"reshape": V.Reshape(shape=[5, 5])}, lambda t: t.reshape(5, 5), INVALID, [r"\b25\b|\b24\b|\[5,\s*5\]"]),
    "reshape-two-minus-ones": ({"reshape": V.Reshape(shape=[-1, -1])}, lambda t: t.reshape(-1, -1), INVALID, [r"-1"]),
    "reshape-minus-2": ({"reshape": V.Reshape(shape=[-2, 12])}, lambda t: t.reshape(-2, 12), INVALID, [r"-2"]),
    "reshape-indivisible": ({"reshape": V.Reshape(shape=[-1, 5])}, lambda t: t.reshape(-1, 5), INVALID, [r"\b5\b|\b24\b"]),
    "view-24-to-7": ({"view": V.Reshape(shape=[7])}, lambda t: t.view(7), INVALID, [r"\b7\b|\b24\b"]),
    "expand-non-1-dim": ({"expand": V.Expand(shape=[3, 3, 4])}, lambda t: t.expand(3, 3, 4), INVALID, [r"\b2\b|\b3\b"]),
    "expand-fewer-dims": ({"expand": V.Expand(shape=[3, 4])}, lambda t: t.expand(3, 4), INVALID, [r"\[3,\s*4\]|\b2\b|\b3\b"]),
    "expand-minus-1-new-dim": ({"expand": V.Expand(shape=[-1, 2, 3, 4])}, lambda t: t.expand(-1, 2, 3, 4), INVALID, [r"-1"]),
    "expand-numel-overflows": (
        {"expand": V.Expand(shape=[2**62, 2, 3, 4])}, lambda t: t.expand(2**62, 2, 3, 4), INVALID,
        [r"overflow|4611686018427387904"],
    ),
    "expand-minus-5": ({"expand": V.Expand(shape=[2, 3, -5])}, lambda t: t.expand(2, 3, -5), INVALID, [r"-5"]),
    "squeeze-dim-3": ({"squeeze": V.Squeeze(dims=[3])}, lambda t: t.squeeze(3), INVALID, [r"\b3\b"]),
    "unsqueeze-dim-4": ({"unsqueeze": V.Unsqueeze(dim=4)}, lambda t: t.unsqueeze(4), INVALID, [r"\b4\b"]),
    "unsqueeze-dim-minus-5": ({"unsqueeze": V.Unsqueeze(dim=-5)}, lambda t: t.unsqueeze(-5), INVALID, [r"-5"]),
    "flatten-end-3": ({"flatten": V.Flatten(start_dim=0, end_dim=3)}, lambda t: t.flatten(0, 3), INVALID, [r"\b3\b"]),
    "flatten-start-after-end": ({"flatten": V.Flatten(start_dim=2, end_dim=0)}, lambda t: t.flatten(2, 0), INVALID, [r"\b2\b"]),
    "no-op": ({}, None, INVALID, [r"\bop\b|operation|empty|missing"]),
    # view() never copies: a transposed or expanded tensor cannot be flattened in place.
    "view-of-transposed": (
        {"transpose": V.Transpose(dim0=0, dim1=2), "then": {"view": V.Reshape(shape=[-1])}},
        lambda t: t.transpose(0, 2).view(-1), PRECONDITION, [r"view|stride|contiguous"],
    ),
    "view-of-expanded": (
        {"expand": V.Expand(shape=[5, 2, 3, 4]), "then": {"view": V.Reshape(shape=[-1])}},
        lambda t: t.expand(5, 2, 3, 4).view(-1), PRECONDITION, [r"view|stride|contiguous"],
    ),
}
VIEW_BASE = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


def raw_view(raw: RawSession, handle: str, op: dict) -> pb.TensorMeta:
    """Applies `op` (and its optional follow-up under "then") by raw View requests."""
    op = dict(op)
    then = op.pop("then", None)
    meta = raw.view(pb.ViewRequest(handle=handle, **op))
    return raw_view(raw, meta.handle, then) if then else meta


@pytest.mark.parametrize("case", VIEWS, ids=str)
def test_bad_view_raw(witness, raw, case):
    op, _, code, names = VIEWS[case]
    handle = raw.upload(VIEW_BASE).handle
    assert_status(rpc_error(raw_view, raw, handle, op), code, *names)
    assert raw.download_numpy(handle).tobytes() == VIEW_BASE.tobytes()
    witness.check()


@pytest.mark.parametrize("case", [c for c, v in VIEWS.items() if v[1] is not None], ids=str)
def test_bad_view_client(witness, td, case):
    _, client_op, code, names = VIEWS[case]
    t = td.from_numpy(VIEW_BASE)
    assert_status(client_error(client_op, t), code, *names)
    assert t.numpy().tobytes() == VIEW_BASE.tobytes()
    witness.check()


def test_nonpositive_slice_step_is_refused_by_the_client(witness, td):
    """Like torch, the client refuses steps <= 0 itself, before any RPC."""
    t = td.from_numpy(VIEW_BASE)
    for key in (slice(None, None, 0), slice(None, None, -1)):
        with pytest.raises(ValueError, match="step"):
            t[key]
    assert td.memory_info().session_tensors == 2  # the witness's and t: no view was made
    witness.check()


# ---- Copy and Create requests ---------------------------------------------------------

COPIES = {
    "kind-unspecified": ({"kind": pb.CopyRequest.KIND_UNSPECIFIED}, INVALID, [r"kind|unspecified"]),
    "kind-77": ({"kind": 77}, INVALID, [r"\b77\b"]),
    "cast-dtype-99": ({"kind": pb.CopyRequest.CAST, "dtype": 99}, INVALID, [r"\b99\b"]),
    "cast-dtype-unspecified": ({"kind": pb.CopyRequest.CAST, "dtype": pb.DTYPE_UNSPECIFIED}, INVALID, [r"dtype|unspecified"]),
}


@pytest.mark.parametrize("case", COPIES, ids=str)
def test_bad_copy_raw(witness, raw, case):
    fields, code, names = COPIES[case]
    error = rpc_error(raw.copy, pb.CopyRequest(handle=witness.raw_handle, **fields))
    assert_status(error, code, *names)
    assert raw.handles() == [witness.raw_handle]
    witness.check()


C = pb.CreateRequest
# (raw request, the same through the client or None, code, names)
CREATES = {
    "kind-unspecified": (C(dtype=F32, shape=[2]), None, INVALID, [r"kind|unspecified"]),
    "kind-77": (C(kind=77, dtype=F32, shape=[2]), None, INVALID, [r"\b77\b"]),
    "dtype-99": (C(kind=C.ZEROS, dtype=99, shape=[2]), None, INVALID, [r"\b99\b"]),
    "dtype-unspecified": (C(kind=C.ZEROS, shape=[2]), None, INVALID, [r"dtype|unspecified"]),
    "negative-dim": (C(kind=C.ZEROS, dtype=F32, shape=[4, -3]), lambda td: td.zeros((4, -3)), INVALID, [r"-3"]),
    "size-overflows-int64": (
        C(kind=C.EMPTY, dtype=F64, shape=[2**62, 4]),
        lambda td: td.empty((2**62, 4), dtype=np.float64), INVALID, [r"overflow|4611686018427387904"],
    ),
    "size-wraps-to-zero": (
        C(kind=C.ZEROS, dtype=U8, shape=[2**32, 2**32]),
        lambda td: td.zeros((2**32, 2**32), dtype=np.uint8), INVALID, [r"overflow|4294967296"],
    ),
    "rand-int32": (C(kind=C.RAND, dtype=pb.DTYPE_INT32, shape=[3]), lambda td: td.rand(3, dtype=np.int32), INVALID, [r"int32|float|dtype"]),
    "randn-bool": (C(kind=C.RANDN, dtype=pb.DTYPE_BOOL, shape=[3]), lambda td: td.randn(3, dtype=np.bool_), INVALID, [r"bool|float|dtype"]),
    "arange-step-0": (
        C(kind=C.ARANGE, dtype=F32, start=pb.Scalar(f=0), end=pb.Scalar(f=10), step=pb.Scalar(f=0)),
        lambda td: td.arange(0.0, 10.0, 0.0), INVALID, [r"step"],
    ),
    "arange-wrong-direction": (
        C(kind=C.ARANGE, dtype=pb.DTYPE_INT64, start=pb.Scalar(i=0), end=pb.Scalar(i=10), step=pb.Scalar(i=-1)),
        lambda td: td.arange(0, 10, -1), INVALID, [r"step|-1|direction|sign"],
    ),
    "arange-nan-end": (
        C(kind=C.ARANGE, dtype=F64, start=pb.Scalar(f=0), end=pb.Scalar(f=float("nan")), step=pb.Scalar(f=1)),
        lambda td: td.arange(0.0, float("nan")), INVALID, [r"nan"],
    ),
    "arange-inf-end": (
        C(kind=C.ARANGE, dtype=F64, start=pb.Scalar(f=0), end=pb.Scalar(f=float("inf")), step=pb.Scalar(f=1)),
        lambda td: td.arange(0.0, float("inf")), INVALID, [r"inf"],
    ),
}


@pytest.mark.parametrize("case", CREATES, ids=str)
def test_bad_create_raw(witness, raw, case):
    request, _, code, names = CREATES[case]
    assert_status(rpc_error(raw.create, request), code, *names)
    assert raw.handles() == [witness.raw_handle]
    witness.check()


@pytest.mark.parametrize("case", [c for c, v in CREATES.items() if v[1] is not None], ids=str)
def test_bad_create_client(witness, td, case):
    _, client_call, code, names = CREATES[case]
    before = td.memory_info().session_tensors
    assert_status(client_error(client_call, td), code, *names)
    assert td.memory_info().session_tensors == before
    witness.check()


# ---- Handles ------------------------------------------------------------------------

HANDLE_RPCS = {
    "Download": lambda raw, h: raw.download(h),
    "GetTensor": lambda raw, h: raw.get(h),
    "View": lambda raw, h: raw.view(pb.ViewRequest(handle=h, transpose=V.Transpose(dim0=0, dim1=1))),
    "Copy": lambda raw, h: raw.copy(pb.CopyRequest(handle=h, kind=pb.CopyRequest.CLONE)),
    "Free": lambda raw, h: raw.free(h),
}


@pytest.mark.parametrize("kind", ["unknown", "empty", "freed", "other-session"])
@pytest.mark.parametrize("rpc", HANDLE_RPCS)
def test_handle_not_found(server, witness, raw, rpc, kind):
    other_array = np.arange(12, dtype=np.int32).reshape(3, 4)
    with RawSession(server.address, client_name="other") as other:
        other_handle = other.upload(other_array).handle
        if kind == "unknown":
            handle = "0f" * 16
        elif kind == "empty":
            handle = ""
        elif kind == "freed":
            handle = raw.upload(other_array).handle
            assert raw.free(handle) == 1
        else:
            handle = other_handle

        error = rpc_error(HANDLE_RPCS[rpc], raw, handle)
        assert_status(error, NOT_FOUND, re.escape(handle) if handle else r"handle")
        # The owner of a handle another session tried to use still has it, intact.
        assert other.download_numpy(other_handle).tobytes() == other_array.tobytes()
    assert raw.handles() == [witness.raw_handle]
    witness.check()


def test_free_with_one_unknown_handle_frees_none(witness, raw):
    keep = raw.upload(np.ones(10, dtype=np.float64)).handle
    error = rpc_error(raw.free, keep, "ab" * 16)
    assert_status(error, NOT_FOUND, "ab" * 16)
    assert raw.get(keep).handle == keep
    assert raw.download_numpy(keep).tobytes() == np.ones(10).tobytes()
    assert raw.free(keep) == 1
    witness.check()


def test_freed_tensor_through_client(witness, td):
    t = td.from_numpy(np.arange(6.0).reshape(2, 3))
    view = t.T
    t.free()
    for use in (lambda: t.numpy(), lambda: t.T, lambda: t.clone()):
        assert_status(client_error(use), NOT_FOUND)
    # A view made before the free keeps its own handle (and the storage) alive.
    assert view.numpy().tobytes() == np.arange(6.0).reshape(2, 3).T.tobytes()
    witness.check()


# ---- Session metadata -----------------------------------------------------------------


def session_rpcs(handle: str) -> dict[str, Callable]:
    """Every RPC but OpenSession, as f(stub, metadata); `handle` is a real tensor."""
    return {
        "KeepAlive": lambda s, md: s.KeepAlive(pb.KeepAliveRequest(), metadata=md, timeout=10),
        "CloseSession": lambda s, md: s.CloseSession(pb.CloseSessionRequest(), metadata=md, timeout=10),
        "Upload": lambda s, md: s.Upload(iter([header(F32, [2]), chunk(bytes(8))]), metadata=md, timeout=10),
        "Download": lambda s, md: list(s.Download(pb.DownloadRequest(handle=handle), metadata=md, timeout=10)),
        "GetTensor": lambda s, md: s.GetTensor(pb.TensorRef(handle=handle), metadata=md, timeout=10),
        "Free": lambda s, md: s.Free(pb.FreeRequest(handles=[handle]), metadata=md, timeout=10),
        "ListTensors": lambda s, md: s.ListTensors(pb.ListTensorsRequest(), metadata=md, timeout=10),
        "MemoryInfo": lambda s, md: s.MemoryInfo(pb.MemoryInfoRequest(), metadata=md, timeout=10),
        "Create": lambda s, md: s.Create(C(kind=C.ZEROS, dtype=F32, shape=[4]), metadata=md, timeout=10),
        "View": lambda s, md: s.View(pb.ViewRequest(handle=handle, unsqueeze=V.Unsqueeze(dim=0)), metadata=md, timeout=10),
        "Copy": lambda s, md: s.Copy(pb.CopyRequest(handle=handle, kind=pb.CopyRequest.CLONE), metadata=md, timeout=10),
    }


RPC_NAMES = list(session_rpcs(""))


@pytest.mark.parametrize("metadata", ["missing", "bogus", "closed", "empty"])
@pytest.mark.parametrize("rpc", RPC_NAMES)
def test_bad_session_metadata(server, witness, raw, rpc, metadata):
    if metadata == "missing":
        md = ()
    elif metadata == "bogus":
        md = (("tensord-session", "deadbeef" * 4),)
    elif metadata == "empty":
        md = (("tensord-session", ""),)
    else:
        closed = RawSession(server.address, client_name="closed")
        closed.close()
        md = closed.metadata
    before = raw.memory_info()

    # The handle is real (the witness's), so only the session check can refuse it.
    error = rpc_error(session_rpcs(witness.raw_handle)[rpc], raw.stub, md)
    if metadata in ("missing", "empty"):
        code, _ = status_of(error)
        allowed = (INVALID, NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED)
        assert code in allowed, f"{code.name}: {error.details()!r}"
        assert_status(error, code, r"session")
    else:
        assert_status(error, NOT_FOUND, r"session")

    after = raw.memory_info()
    assert after.bytes_in_use == before.bytes_in_use
    assert after.sessions == before.sessions
    witness.check()


# ---- Uploads abandoned half way -------------------------------------------------------

ABANDONED_NBYTES = 32 * MIB
SENT_NBYTES = 8 * MIB


@pytest.mark.parametrize("how", ["cancel", "raise", "deadline"])
def test_abandoned_upload_is_discarded(own_witness, how):
    w = own_witness
    raw = w.raw
    before = raw.memory_info()
    sent, release = threading.Event(), threading.Event()

    def requests():
        yield header(U8, [ABANDONED_NBYTES])
        for _ in range(SENT_NBYTES // MIB):
            yield chunk(bytes(MIB))
        sent.set()
        release.wait(60)  # the stream stays open, data missing, until the test acts
        if how == "raise":
            raise RuntimeError("the client gave up mid-upload")

    call = raw.stub.Upload.future(
        requests(), metadata=raw.metadata, timeout=5 if how == "deadline" else 60
    )
    try:
        assert sent.wait(30)
        # Give the server a moment to take in what was sent (informative only:
        # a server may account the bytes at the header or as they arrive).
        wait_for(lambda: raw.memory_info().bytes_in_use > before.bytes_in_use, timeout=1)
        if how == "cancel":
            assert call.cancel()
            with pytest.raises(grpc.FutureCancelledError):
                call.result()
        elif how == "raise":
            release.set()
            with pytest.raises(grpc.RpcError):
                call.result()
        else:  # the stream stays blocked until its deadline passes
            with pytest.raises(grpc.RpcError) as info:
                call.result()
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        release.set()

    assert wait_for(lambda: raw.memory_info().bytes_in_use == before.bytes_in_use), (
        f"bytes_in_use stays {raw.memory_info().bytes_in_use}, was {before.bytes_in_use}"
    )
    assert raw.memory_info().session_tensors == before.session_tensors
    assert raw.handles() == [w.raw_handle]
    w.check()


KILLED_UPLOADER = r"""
import sys, time, grpc
from tensord.v1 import tensord_pb2 as pb, tensord_pb2_grpc as pb_grpc

stub = pb_grpc.TensordStub(grpc.insecure_channel(sys.argv[1]))
session = stub.OpenSession(pb.OpenSessionRequest(client_name="doomed")).session_id

def requests():
    yield pb.UploadRequest(header=pb.UploadHeader(dtype=pb.DTYPE_UINT8, shape=[32 << 20]))
    for _ in range(8):
        yield pb.UploadRequest(chunk=bytes(1 << 20))
    print("sent", flush=True)
    time.sleep(600)

stub.Upload(requests(), metadata=[("tensord-session", session)])
"""


def test_client_killed_mid_upload(own_witness):
    w = own_witness
    before = w.bytes_in_use()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOADER, w.server.address],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "sent"
        wait_for(lambda: w.bytes_in_use() > before, timeout=1)  # informative, as above
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: w.bytes_in_use() == before, timeout=15), (
        f"bytes_in_use stays {w.bytes_in_use()}, was {before}"
    )
    w.check()


# ---- --max-memory ---------------------------------------------------------------------


def names_bytes(*nbytes: int) -> str:
    """A regex matching a message that names one of these byte counts or the 64 MiB limit."""
    return "|".join([*(rf"\b{n}\b" for n in nbytes), r"\b67108864\b", r"\b64 ?Mi?B\b", r"\b64M\b"])


def test_limit_is_reported(small):
    info = small.client.memory_info()
    assert info.bytes_limit == 64 * MIB
    assert 0 < info.bytes_in_use < MIB  # just the witness tensors
    small.check()


def test_upload_over_limit_client(small):
    before = small.bytes_in_use()
    big = np.ones(100 * MIB, dtype=np.uint8)
    error = client_error(small.client.from_numpy, big)
    assert_status(error, EXHAUSTED, names_bytes(big.nbytes))
    assert wait_for(lambda: small.bytes_in_use() == before)
    # The refused upload leaked no reservation: most of the limit is still usable.
    fits = np.full(48 * MIB, 7, dtype=np.uint8)
    t = small.client.from_numpy(fits)
    assert np.array_equal(t.numpy(), fits)
    t.free()
    small.check()


def test_upload_over_limit_raw(small):
    raw = small.raw
    before = small.bytes_in_use()

    def requests():
        yield header(U8, [100 * MIB])
        for _ in range(100):
            yield chunk(bytes(MIB))

    assert_status(rpc_error(raw.upload_stream, requests()), EXHAUSTED, names_bytes(100 * MIB))
    assert wait_for(lambda: small.bytes_in_use() == before)
    assert raw.handles() == [small.raw_handle]
    small.check()


def test_uploads_accumulate_up_to_the_limit(small):
    client = small.client
    parts = [np.full(25 * MIB, i, dtype=np.uint8) for i in range(3)]
    first, second = client.from_numpy(parts[0]), client.from_numpy(parts[1])
    in_use = small.bytes_in_use()
    assert_status(client_error(client.from_numpy, parts[2]), EXHAUSTED, names_bytes(25 * MIB))
    assert wait_for(lambda: small.bytes_in_use() == in_use)
    first.free()
    third = client.from_numpy(parts[2])
    assert np.array_equal(second.numpy(), parts[1])
    assert np.array_equal(third.numpy(), parts[2])
    small.check()


# (client call, raw request, bytes asked for)
HUGE_CREATES = {
    "zeros-2GiB": (lambda td: td.zeros((2**14, 2**14), dtype=np.float64), C(kind=C.ZEROS, dtype=F64, shape=[2**14, 2**14]), 2**31),
    "empty-4TiB": (lambda td: td.empty((2**40,), dtype=np.float32), C(kind=C.EMPTY, dtype=F32, shape=[2**40]), 2**42),
    "ones-65MiB": (lambda td: td.ones((65 * MIB,), dtype=np.uint8), C(kind=C.ONES, dtype=U8, shape=[65 * MIB]), 65 * MIB),
    "full-4GiB": (
        lambda td: td.full((2**20, 2**10), 7.0, dtype=np.float32),
        C(kind=C.FULL, dtype=F32, shape=[2**20, 2**10], fill=pb.Scalar(f=7.0)), 2**32,
    ),
    "arange-8TiB": (
        lambda td: td.arange(0, 2**40, dtype=np.int64),
        C(kind=C.ARANGE, dtype=pb.DTYPE_INT64, start=pb.Scalar(i=0), end=pb.Scalar(i=2**40), step=pb.Scalar(i=1)), 2**43,
    ),
    "rand-4GiB": (lambda td: td.rand(2**30, seed=1), C(kind=C.RAND, dtype=F32, shape=[2**30], seed=1), 2**32),
    "randn-4GiB": (lambda td: td.randn(2**30, seed=1), C(kind=C.RANDN, dtype=F32, shape=[2**30], seed=1), 2**32),
}


@pytest.mark.parametrize("case", HUGE_CREATES, ids=str)
def test_create_over_limit(small, case):
    client_call, request, nbytes = HUGE_CREATES[case]
    before = small.bytes_in_use()
    assert_status(client_error(client_call, small.client), EXHAUSTED, names_bytes(nbytes))
    assert_status(rpc_error(small.raw.create, request), EXHAUSTED, names_bytes(nbytes))
    assert wait_for(lambda: small.bytes_in_use() == before)
    assert small.raw.handles() == [small.raw_handle]
    small.check()


COPIES_OVER_LIMIT = {
    "clone": lambda t: t.clone(),
    "contiguous-of-transposed": lambda t: t.T.contiguous(),
    "reshape-of-transposed": lambda t: t.T.reshape(-1),
    "flatten-of-transposed": lambda t: t.T.flatten(),
    "cast-to-float64": lambda t: t.to(np.float64),
    "double": lambda t: t.double(),
    "contiguous-of-expanded": lambda t: t[:1].expand(16384, 4096).contiguous(),
}


@pytest.mark.parametrize("case", COPIES_OVER_LIMIT, ids=str)
def test_copy_over_limit(small, case):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2560, 4096), dtype=np.float32)  # 40 MiB
    t = small.client.from_numpy(a)
    loaded = small.bytes_in_use()
    assert_status(client_error(COPIES_OVER_LIMIT[case], t), EXHAUSTED)
    assert wait_for(lambda: small.bytes_in_use() == loaded)
    assert np.array_equal(t.numpy(), a)
    t.free()
    small.check()


def test_copy_over_limit_raw(small):
    raw = small.raw
    handle = raw.upload(np.zeros((2560, 4096), dtype=np.float32)).handle
    loaded = small.bytes_in_use()
    error = rpc_error(raw.copy, pb.CopyRequest(handle=handle, kind=pb.CopyRequest.CLONE))
    assert_status(error, EXHAUSTED, names_bytes(40 * MIB))
    assert wait_for(lambda: small.bytes_in_use() == loaded)
    assert sorted(raw.handles()) == sorted([small.raw_handle, handle])
    small.check()


def test_session_quota_keeps_one_client_from_taking_the_server(server_factory):
    """--session-max-memory bounds each session within --max-memory: one client
    hits its own limit (uploads, ops and factories alike) while others still
    allocate, and a freed tensor makes room again. (Sizes are multiples of the
    2 MiB blocks large storages are allocated in, and charged as.)"""
    mib = 1 << 20
    srv = server_factory("--max-memory", "48M", "--session-max-memory", "16M")
    clients = [tensord.connect(srv.address, timeout=60) for _ in range(4)]
    try:
        a, b, c, d = clients
        kept = a.from_numpy(np.arange(12 * mib // 8, dtype=np.float64))  # 12 MiB
        for call in (lambda: a.zeros(4 * mib // 4), lambda: a.from_numpy(np.ones(4 * mib // 8)),
                     lambda: kept[: 4 * mib // 8] * 2):
            with pytest.raises(tensord.ResourceExhaustedError, match="16777216-byte --session-max-memory"):
                synced(call())
        np.testing.assert_array_equal(kept[:4].numpy(), [0.0, 1.0, 2.0, 3.0])
        held = [client.zeros(14 * mib // 4) for client in (b, c)]  # 12 + 14 + 14 of 48 MiB
        synced(held)
        with pytest.raises(tensord.ResourceExhaustedError, match="50331648-byte --max-memory"):
            synced(d.zeros(14 * mib // 4))  # within d's quota, beyond the server's
        kept.free()
        synced(a.zeros(14 * mib // 4))  # a's room is back
        assert a.memory_info().bytes_limit == 48 * mib
    finally:
        for client in clients:
            client.close()


#: What the server may hold beyond --max-memory: its code, gRPC's buffers, the
#: allocator's slack and the block cache's unused blocks (README, "Memory").
RESIDENT_SLACK = 96 * MIB


@measures_server_memory
def test_a_million_small_tensors_meet_the_budget(server_factory):
    """Each handle and graph node is charged besides its storage (itself charged
    what is allocated), so a client making a million one-element tensors gets
    RESOURCE_EXHAUSTED instead of growing the server past its budget."""
    limit = 128 * MIB
    srv = server_factory("--max-memory", str(limit))
    with tensord.connect(srv.address, timeout=120) as td:
        td.synchronize()
        baseline = rss_bytes(srv.proc.pid)
        kept = []
        with pytest.raises(tensord.ResourceExhaustedError, match="tensor handle|needs"):
            for i in range(1_000_000):
                kept.append(td.zeros(1))
                if i % 4096 == 4095:
                    td.synchronize()
            td.synchronize()
        failures = 1
        while True:  # each refused command raises once: the ones already in flight remain
            try:
                td.synchronize()
                break
            except tensord.ResourceExhaustedError:
                failures += 1
        assert failures <= 4096 + 1
        info = td.memory_info()
        assert info.bytes_limit - info.bytes_in_use < 1024  # full, to the last handle
        grown = rss_bytes(srv.proc.pid) - baseline
        assert grown <= limit + RESIDENT_SLACK, f"resident memory grew {grown / MIB:.0f} MiB"
        del kept
        gc.collect()
        assert wait_for(lambda: td.memory_info().bytes_in_use == 0, timeout=60)
        np.testing.assert_array_equal(td.ones(3).numpy(), [1.0, 1.0, 1.0])  # and it still serves
    assert srv.proc.poll() is None


# ---- Downloads, ops, optimizers and the Execute stream, raw ---------------------------------
#
# Each case builds its request from the handles of the `handles` fixture:
# `w` the witness's int64 [5, 300] tensor, `wt` its transpose, `p` a float32
# [3] leaf that requires grad, `wide` a stride-0 expansion of `w`.

def _arg(value) -> pb.OpArg:
    if isinstance(value, pb.OpArg):
        return value
    if isinstance(value, str):
        return pb.OpArg(handle=value)
    if isinstance(value, bool):
        return pb.OpArg(scalar=pb.Scalar(b=value))
    if isinstance(value, int):
        return pb.OpArg(scalar=pb.Scalar(i=value))
    if isinstance(value, float):
        return pb.OpArg(scalar=pb.Scalar(f=value))
    return pb.OpArg(ints=pb.IntList(values=value))


def _op(name: str, *args, no_grad: bool = False, **attrs) -> Callable[[dict], pb.OpRequest]:
    """An OpRequest whose string arguments name entries of the `handles` fixture."""
    def build(h: dict) -> pb.OpRequest:
        fix = lambda v: h[v] if isinstance(v, str) else v  # noqa: E731
        return pb.OpRequest(
            op=name, args=[_arg(fix(a)) for a in args], attrs={k: _arg(fix(v)) for k, v in attrs.items()}, no_grad=no_grad
        )
    return build


def _items(*items: pb.IndexItem) -> pb.OpArg:
    return pb.OpArg(index=pb.IndexList(items=items))


@pytest.fixture
def handles(witness, raw) -> dict:
    w = witness.raw_handle
    view = lambda **kw: raw.view(pb.ViewRequest(handle=w, **kw)).handle  # noqa: E731
    return {
        "w": w,
        "wt": view(transpose=pb.ViewRequest.Transpose(dim0=0, dim1=1)),
        "wide": view(expand=pb.ViewRequest.Expand(shape=[3, 5, 300])),
        "p": raw.create(pb.CreateRequest(kind=pb.CreateRequest.ONES, dtype=F32, shape=[3], requires_grad=True)).handle,
        "missing": "t-missing",
    }


OPS = {
    "unknown-op": (_op("frobnicate", "w"), NOT_FOUND, [r"frobnicate"]),
    "empty-op-name": (_op("", "w"), NOT_FOUND, [r"op"]),
    "no-arguments": (_op("neg"), INVALID, [r"neg", r"argument"]),
    "too-many-arguments": (_op("neg", "w", "w", "w"), INVALID, [r"neg", r"argument"]),
    "unknown-handle-argument": (_op("add", "w", "missing"), NOT_FOUND, [r"t-missing"]),
    "shapes-do-not-broadcast": (_op("add", "w", "wt"), INVALID, [r"\b300\b", r"\b5\b"]),
    "dim-out-of-range": (_op("sum", "w", dim=[7]), INVALID, [r"\b7\b", r"range"]),
    "attr-of-the-wrong-kind": (_op("sum", "w", dim=1.5), INVALID, [r"dim"]),
    "matmul-mismatch": (_op("matmul", "w", "w"), INVALID, [r"\b300\b", r"\b5\b"]),
    "float-op-on-int64": (_op("softmax", "w", dim=0), INVALID, [r"softmax|Long|int64"]),
    "in-place-on-expanded-view": (_op("add_", "wide", 1, no_grad=True), INVALID, [r"memory location"]),
    "in-place-on-a-leaf-that-requires-grad": (_op("mul_", "p", 2), PRECONDITION, [r"leaf"]),
    "index-out-of-range": (_op("index", "w", items=_items(pb.IndexItem(select=5))), pb and INVALID, [r"\b5\b"]),
    "index-array-bytes-short": (
        _op("index", "w", items=_items(pb.IndexItem(array=pb.IndexArray(dtype=pb.DTYPE_INT64, shape=[3], data=bytes(8))))),
        INVALID, [r"\b8\b|\b24\b"],
    ),
    "index-tensor-missing": (_op("index", "w", items=_items(pb.IndexItem(tensor=True))), INVALID, [r"tensor|argument"]),
    "index-mask-of-the-wrong-shape": (
        _op("index", "w", items=_items(pb.IndexItem(array=pb.IndexArray(dtype=pb.DTYPE_BOOL, shape=[4], data=bytes(4))))),
        INVALID, [r"\b4\b", r"\b5\b"],
    ),
}


@pytest.mark.parametrize("case", OPS, ids=str)
def test_bad_op_raw(witness, raw, handles, case):
    build, code, names = OPS[case]
    assert_status(rpc_error(raw.op, build(handles)), code, *names)
    witness.check()


DOWNLOADS = {
    "unknown-handle": (pb.DownloadRequest(handle="t-nope"), NOT_FOUND, [r"t-nope"]),
    "empty-handle": (pb.DownloadRequest(handle=""), NOT_FOUND, [r"handle"]),
}


@pytest.mark.parametrize("case", DOWNLOADS, ids=str)
def test_bad_download_raw(witness, raw, case):
    request, code, names = DOWNLOADS[case]
    error = rpc_error(lambda: list(raw.stub.Download(request, metadata=raw.metadata, timeout=10)))
    assert_status(error, code, *names)
    witness.check()


def test_download_after_a_command_never_sent_waits_for_its_deadline(witness, raw):
    """Ordered after a command that never comes, a download waits, then ends with its deadline holding nothing."""
    request = pb.DownloadRequest(handle=witness.raw_handle, after_command=10**12)
    with pytest.raises(grpc.RpcError) as info:
        list(raw.stub.Download(request, metadata=raw.metadata, timeout=1))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    witness.check()


def _optimizer(kind, params, **options):
    C = pb.CreateOptimizerRequest
    return lambda h: C(kind=kind, groups=[pb.ParamGroup(params=[h.get(p, p) for p in params], options=pb.OptimizerOptions(**options))] if params is not None else [])  # noqa: E731


SGD, ADAM = pb.CreateOptimizerRequest.SGD, pb.CreateOptimizerRequest.ADAM
ADAM_DEFAULTS = dict(beta1=0.9, beta2=0.999, eps=1e-8)
OPTIMIZERS = {
    "no-kind": (_optimizer(pb.CreateOptimizerRequest.KIND_UNSPECIFIED, ["p"], lr=0.1), INVALID, [r"kind"]),
    "no-groups": (_optimizer(SGD, None), INVALID, [r"param"]),
    "unknown-parameter": (_optimizer(SGD, ["t-gone"], lr=0.1), NOT_FOUND, [r"t-gone"]),
    "parameter-without-grad": (_optimizer(SGD, ["w"], lr=0.1), INVALID, [r"grad"]),
    "negative-lr": (_optimizer(ADAM, ["p"], lr=-1, **ADAM_DEFAULTS), INVALID, [r"lr|learning rate"]),
    "beta-of-one": (_optimizer(ADAM, ["p"], lr=0.1, **{**ADAM_DEFAULTS, "beta1": 1.0}), INVALID, [r"beta"]),
    "nesterov-without-momentum": (_optimizer(SGD, ["p"], lr=0.1, nesterov=True), INVALID, [r"nesterov"]),
}


@pytest.mark.parametrize("case", OPTIMIZERS, ids=str)
def test_bad_optimizer_raw(witness, raw, handles, case):
    build, code, names = OPTIMIZERS[case]
    error = rpc_error(raw.stub.CreateOptimizer, build(handles), metadata=raw.metadata, timeout=10)
    assert_status(error, code, *names)
    witness.check()


def test_step_of_an_unknown_optimizer(witness, raw):
    error = rpc_error(raw.stub.Step, pb.StepRequest(optimizer="opt-nope"), metadata=raw.metadata, timeout=10)
    assert_status(error, NOT_FOUND, r"opt-nope")
    witness.check()


def _zeros(id: int, *outputs: str) -> pb.Command:
    return pb.Command(id=id, outputs=outputs, create=pb.CreateRequest(kind=pb.CreateRequest.ZEROS, dtype=F32, shape=[2]))


EXECUTES = {
    "no-body": (lambda h: [pb.Command(id=1)], INVALID, [r"command"]),
    "id-zero": (lambda h: [_zeros(0, "a")], INVALID, [r"\bid\b"]),
    "ids-out-of-order": (lambda h: [_zeros(5, "a"), _zeros(4, "b")], INVALID, [r"\b4\b"]),
    "duplicate-outputs": (
        lambda h: [pb.Command(id=1, outputs=["a", "a"], op=pb.OpRequest(op="max", args=[pb.OpArg(handle=h["w"])], attrs={"dim": pb.OpArg(scalar=pb.Scalar(i=0))}))],
        INVALID, [r"\ba\b"],
    ),
    "output-names-a-live-handle": (lambda h: [_zeros(1, h["w"])], INVALID, [h for h in [r"handle|exists|in use"]]),
}


@pytest.mark.parametrize("case", EXECUTES, ids=str)
def test_bad_execute_raw(witness, raw, handles, case):
    build, code, names = EXECUTES[case]
    failures: list[tuple[int, str]] = []
    try:
        for response in raw.stub.Execute(iter([pb.ExecuteRequest(commands=build(handles))]), metadata=raw.metadata, timeout=10):
            failures += [(r.code, r.message) for r in response.results if r.code != 0]
    except grpc.RpcError as error:
        failures.append((error.code().value[0], error.details() or ""))
    assert failures, f"{case} was accepted"
    got, message = failures[0]
    assert got == code.value[0], f"expected {code.name}, got {grpc.StatusCode(got) if False else got}: {message!r}"
    for name in names:
        assert re.search(name, message, re.IGNORECASE), f"{message!r} does not name the problem (/{name}/)"
    witness.check()


def test_a_malformed_execute_message_is_refused_and_the_session_goes_on(witness, raw):
    """Bytes that are not an ExecuteRequest end the stream with INVALID_ARGUMENT
    naming the message (a typed reader took them for the client half-closing:
    the stream ended OK and the commands after them were dropped unseen), and
    a new stream carries on."""
    channel = grpc.insecure_channel(witness.server.address)
    execute = channel.stream_stream(
        "/tensord.v1.Tensord/Execute", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    good = pb.ExecuteRequest(commands=[_zeros(1, "after-garbage")]).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        list(execute(iter([b"\x0a\xff\xff\xff", good]), metadata=raw.metadata, timeout=10))
    assert_status(info.value, INVALID, r"ExecuteRequest")
    channel.close()
    assert "after-garbage" not in raw.handles()
    replies = list(raw.stub.Execute(iter([pb.ExecuteRequest(commands=[_zeros(2, "fresh")])]), metadata=raw.metadata, timeout=10))
    assert 2 in [r.id for reply in replies for r in reply.results if r.code == 0]
    assert "fresh" in raw.handles()
    witness.check()
