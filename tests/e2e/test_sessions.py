"""Sessions: isolation between them, freeing on close, lease expiry, and the
client freeing what Python garbage-collects."""
from __future__ import annotations

import gc
import threading
import time

import grpc
import numpy as np
import pytest

import tensord
from raw_wire import RawSession, pb, wait_for

NOT_FOUND = grpc.StatusCode.NOT_FOUND
MIB = 1 << 20


@pytest.fixture
def own_server(server_factory):
    """A server of this test's own, so that memory and session counts move only with it."""
    return server_factory()


def test_handles_are_invisible_to_other_sessions(server):
    a_array = np.arange(1000, dtype=np.float64).reshape(10, 100)
    with RawSession(server.address, "A") as a, RawSession(server.address, "B") as b:
        handle = a.upload(a_array).handle
        b_handle = b.upload(np.zeros(3, dtype=np.int8)).handle

        attempts = {
            "Download": lambda: b.download(handle),
            "GetTensor": lambda: b.get(handle),
            "View": lambda: b.view(pb.ViewRequest(handle=handle, unsqueeze=pb.ViewRequest.Unsqueeze(dim=0))),
            "Copy": lambda: b.copy(pb.CopyRequest(handle=handle, kind=pb.CopyRequest.CLONE)),
            "Free": lambda: b.free(handle),
            "Free-with-own": lambda: b.free(b_handle, handle),
        }
        for name, attempt in attempts.items():
            with pytest.raises(grpc.RpcError) as info:
                attempt()
            assert info.value.code() == NOT_FOUND, (name, info.value.details())
            assert handle in info.value.details(), (name, info.value.details())

        assert a.handles() == [handle]
        assert b.handles() == [b_handle]  # B's own free of both freed neither
        assert a.download_numpy(handle).tobytes() == a_array.tobytes()


def test_client_lists_only_its_own_tensors(server):
    with tensord.connect(server.address) as a, tensord.connect(server.address) as b:
        a_tensors = [a.from_numpy(np.zeros((2, 3))), a.zeros(5)]
        b_tensor = b.from_numpy(np.ones(7, dtype=np.int16))

        assert sorted(t.shape for t in a.tensors()) == [(2, 3), (5,)]
        assert [(t.shape, t.numpy_dtype) for t in b.tensors()] == [((7,), np.dtype(np.int16))]
        assert b.memory_info().session_tensors == 1
        assert b.memory_info().session_bytes == b_tensor.nbytes
        assert a.memory_info().session_tensors == 2
        assert np.array_equal(a_tensors[0].numpy(), np.zeros((2, 3)))


def test_close_frees_the_session(own_server):
    payload = np.random.default_rng(1).standard_normal(MIB // 2)  # 4 MiB
    with tensord.connect(own_server.address) as watcher:
        base = watcher.memory_info()
        assert base.sessions == 1
        a = tensord.connect(own_server.address)
        t = a.from_numpy(payload)
        half = a.from_numpy(payload[::2])
        view = t[100:]
        during = watcher.memory_info()
        assert during.sessions == 2
        assert during.bytes_in_use >= base.bytes_in_use + payload.nbytes + payload.nbytes // 2
        assert a.memory_info().session_tensors == 3
        assert np.array_equal(half.numpy(), payload[::2])

        a.close()
        assert wait_for(lambda: watcher.memory_info().bytes_in_use == base.bytes_in_use)
        assert watcher.memory_info().sessions == 1
        with pytest.raises(tensord.Error):
            view.numpy()  # its session is gone


def test_close_session_reports_what_it_freed(own_server):
    with RawSession(own_server.address) as watcher:
        base = watcher.memory_info().bytes_in_use
        session = RawSession(own_server.address)
        handle = session.upload(np.ones((64, 64), dtype=np.float32)).handle
        session.view(pb.ViewRequest(handle=handle, transpose=pb.ViewRequest.Transpose(dim0=0, dim1=1)))
        closed = session.stub.CloseSession(pb.CloseSessionRequest(), metadata=session.metadata)
        assert closed.freed_tensors == 2
        assert wait_for(lambda: watcher.memory_info().bytes_in_use == base)
        with pytest.raises(grpc.RpcError) as info:
            session.get(handle)
        assert info.value.code() == NOT_FOUND
        session.channel.close()


def test_lease_expiry_frees_an_idle_session(server_factory):
    srv = server_factory("--session-ttl", "1")
    idle = RawSession(srv.address, "idle")
    renewed = RawSession(srv.address, "renewed")
    client = tensord.connect(srv.address)
    try:
        assert idle.lease_seconds == pytest.approx(1.0)
        client_array = np.arange(MIB, dtype=np.int32)
        client_tensor = client.from_numpy(client_array)
        renewed_handle = renewed.upload(np.full(1000, 3, dtype=np.int64)).handle
        with_client = renewed.memory_info().bytes_in_use
        idle_handle = idle.upload(np.ones(MIB, dtype=np.uint8)).handle
        assert renewed.memory_info().bytes_in_use >= with_client + MIB

        # Three leases of silence from `idle` and `client`; `renewed` keeps renewing.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert renewed.keep_alive().lease_seconds == pytest.approx(1.0)
            time.sleep(0.2)

        assert wait_for(lambda: renewed.memory_info().bytes_in_use == with_client)
        with pytest.raises(grpc.RpcError) as info:
            idle.get(idle_handle)
        assert info.value.code() == NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            idle.keep_alive()
        assert info.value.code() == NOT_FOUND
        # `renewed` used only KeepAlive; the client only its keep-alive thread.
        assert renewed.download_numpy(renewed_handle).tobytes() == np.full(1000, 3, dtype=np.int64).tobytes()
        assert np.array_equal(client_tensor.numpy(), client_array)
        assert renewed.memory_info().sessions == 2
    finally:
        client.close()
        renewed.close()
        idle.close()
    assert srv.alive()


def test_any_rpc_renews_the_lease(server_factory):
    srv = server_factory("--session-ttl", "1")
    with RawSession(srv.address) as session:
        handle = session.upload(np.arange(10, dtype=np.int8)).handle
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            session.memory_info()
            time.sleep(0.2)
        assert session.download_numpy(handle).tobytes() == np.arange(10, dtype=np.int8).tobytes()


def test_garbage_collected_tensors_are_freed(own_server):
    a = np.random.default_rng(2).standard_normal((512, 1024))  # 4 MiB
    with tensord.connect(own_server.address) as client:
        base = client.memory_info()
        t = client.from_numpy(a)
        view = t[::2]
        assert wait_for(lambda: client.memory_info().session_tensors == base.session_tensors + 2)
        both = client.memory_info()
        # The view shares the storage: it is counted once.
        assert both.session_bytes == base.session_bytes + a.nbytes

        del t
        gc.collect()
        assert wait_for(lambda: client.memory_info().session_tensors == base.session_tensors + 1)
        # The view holds the storage; only t's handle (512 bytes) was returned.
        assert client.memory_info().bytes_in_use == both.bytes_in_use - 512
        assert np.array_equal(view.numpy(), a[::2])

        del view
        gc.collect()
        assert wait_for(lambda: client.memory_info().bytes_in_use == base.bytes_in_use)
        assert client.memory_info().session_tensors == base.session_tensors


def test_download_while_another_thread_frees(server, td):
    """The download either returns the right bytes or fails cleanly with NOT_FOUND."""
    a = np.random.default_rng(3).integers(0, 2**31, size=4 * MIB, dtype=np.int32)  # 16 MiB
    outcomes = []
    for _ in range(8):
        t = td.from_numpy(a)
        start = threading.Barrier(2)
        result: dict[str, object] = {}

        def download():
            start.wait()
            try:
                result["array"] = t.numpy()
            except tensord.Error as error:
                result["error"] = error

        reader = threading.Thread(target=download)
        reader.start()
        start.wait()
        t.free()
        reader.join(60)
        assert not reader.is_alive()
        if "error" in result:
            assert result["error"].code == NOT_FOUND, result["error"]
            outcomes.append("not found")
        else:
            assert np.array_equal(result["array"], a)
            outcomes.append("bytes")
    assert len(outcomes) == 8
    assert server.alive()


def test_free_during_a_download_stream(server):
    """Freeing between the header and the chunks must not tear the stream."""
    a = np.random.default_rng(4).integers(0, 255, size=64 * MIB, dtype=np.uint8)
    with RawSession(server.address) as raw:
        handle = raw.upload(a).handle
        stream = raw.stub.Download(pb.DownloadRequest(handle=handle), metadata=raw.metadata, timeout=60)
        first = next(stream)
        assert first.WhichOneof("kind") == "header"
        assert raw.free(handle) == 1
        data = bytearray()
        try:
            for message in stream:
                data += message.chunk
        except grpc.RpcError as error:
            assert error.code() == NOT_FOUND, error.details()
        else:
            assert bytes(data) == a.tobytes()
        assert raw.memory_info().session_tensors == 0
    assert server.alive()
