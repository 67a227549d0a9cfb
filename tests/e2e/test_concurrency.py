"""Concurrent use: many threads, with their own clients or one shared client,
get every byte back intact, and small RPCs are served while a large upload is
in flight. Loops are bounded; nothing here measures time."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np

import pytest

import tensord
from raw_wire import RawSession, chunk, header, pb, wait_for
from servers import Launcher, free_port
from test_metrics import scrape

MIB = 1 << 20
THREADS = 8
ITERATIONS = 4
DTYPES = [np.dtype(t) for t in (np.uint8, np.int16, np.float32, np.float64, ml_dtypes.bfloat16, np.complex64)]


def work_item(worker: int, iteration: int) -> np.ndarray:
    """A distinct array of 1-3 MiB per (worker, iteration), in one of three layouts."""
    rng = np.random.default_rng(worker * 1000 + iteration)
    dtype = DTYPES[(worker + iteration) % len(DTYPES)]
    rows = int(rng.integers(1, 4)) * MIB // (256 * dtype.itemsize)
    a = np.frombuffer(rng.bytes(rows * 256 * dtype.itemsize), dtype=dtype).reshape(rows, 256)
    return [a, a.T, a[::2, 3:]][iteration % 3]


def same_bytes(x: np.ndarray, y: np.ndarray) -> bool:
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


def exercise(client, worker: int) -> int:
    """Uploads, views and downloads this worker's arrays; returns how many it verified."""
    verified = 0
    for iteration in range(ITERATIONS):
        a = work_item(worker, iteration)
        t = client.from_numpy(a)
        assert same_bytes(t.numpy(), a), (worker, iteration)
        assert same_bytes(t.T[1:].numpy(), a.T[1:]), (worker, iteration)
        t.free()
        verified += 1
    return verified


def run_workers(target) -> list[int]:
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(target, worker) for worker in range(THREADS)]
        return [f.result() for f in futures]  # re-raises any worker's failure


def test_threads_with_their_own_clients(server):
    def worker(i: int) -> int:
        with tensord.connect(server.address, timeout=60) as client:
            return exercise(client, i)

    assert run_workers(worker) == [ITERATIONS] * THREADS
    assert server.alive()


def test_threads_sharing_one_client(server, td):
    before = td.memory_info().session_tensors
    assert run_workers(lambda i: exercise(td, i)) == [ITERATIONS] * THREADS
    # Every tensor was freed: nothing leaked from interleaved requests. (Views
    # made on the way are freed by the client's background thread, hence the wait.)
    assert wait_for(lambda: td.memory_info().session_tensors == before)


def small_round_trip(client, raw: RawSession, i: int) -> None:
    a = np.arange(i, i + 1000, dtype=np.int64)
    t = client.from_numpy(a)
    assert same_bytes(t.numpy(), a)
    t.free()
    handle = raw.upload(a[::-1]).handle
    assert same_bytes(raw.download_numpy(handle), a[::-1])
    raw.free(handle)
    assert client.memory_info().bytes_limit > 0


def test_small_rpcs_are_served_during_a_large_upload(server, td):
    """The large upload pauses half way until 50 small round trips, some on its
    own session, have succeeded: they cannot have waited for it to finish."""
    large = np.random.default_rng(9).integers(0, 2**63, size=16 * MIB, dtype=np.uint64).view(np.float64)  # 128 MiB
    data = large.tobytes()
    halfway, resume = threading.Event(), threading.Event()

    def requests():
        yield header(pb.DTYPE_FLOAT64, large.shape)
        for start in range(0, len(data), MIB):
            if start == len(data) // 2:
                halfway.set()
                resume.wait(120)
            yield chunk(data[start : start + MIB])

    with RawSession(server.address, "large-upload") as raw:
        call = raw.stub.Upload.future(requests(), metadata=raw.metadata, timeout=300)
        try:
            assert halfway.wait(60)
            for i in range(50):
                small_round_trip(td, raw, i)
            assert not call.done()  # still waiting for its second half
        finally:
            resume.set()
        meta = call.result()
        assert list(meta.shape) == [16 * MIB]
        assert raw.download(meta.handle)[1] == data
        raw.free(meta.handle)


def test_client_large_upload_beside_small_rpcs(server, td):
    large = np.random.default_rng(10).standard_normal(24 * MIB).astype(np.float32)  # 96 MiB
    result: dict[str, object] = {}

    def upload_large():
        with tensord.connect(server.address, timeout=300) as client:
            t = client.from_numpy(large)
            result["same"] = same_bytes(t.numpy(), large)

    uploader = threading.Thread(target=upload_large)
    uploader.start()
    with RawSession(server.address) as raw:
        rounds = 0
        while uploader.is_alive() and rounds < 1000:
            small_round_trip(td, raw, rounds)
            rounds += 1
    uploader.join(300)
    assert not uploader.is_alive()
    assert result.get("same") is True


# ---- The concurrency rule: a download is a snapshot at its place in the order ----


@pytest.fixture
def metered_server():
    """A server of this test's own with metrics; returns (server, value of a metric)."""
    launcher = Launcher()
    try:
        metrics = f"127.0.0.1:{free_port()}"
        srv = launcher.server("--metrics-listen", metrics)
        yield srv, lambda name, **labels: scrape(metrics).value(name, **labels)
    finally:
        launcher.close()


def read_header(stream) -> pb.DownloadHeader:
    first = next(stream)
    assert first.WhichOneof("kind") == "header", first
    return first.header


def test_a_write_during_a_download_goes_to_a_copy(metered_server):
    """A download held open by a client that stops reading keeps sending the
    tensor as it was when it began, while add_ changes it meanwhile; the next
    download sees the change. Deterministic: the download is paused by gRPC
    flow control, with 64 MiB still to send, when add_ runs."""
    srv, scrape = metered_server
    n = 16 * MIB  # float32: 64 MiB
    with RawSession(srv.address) as raw:
        handle = raw.upload(np.zeros(n, dtype=np.float32)).handle
        copied_before = scrape("tensord_copy_on_write_bytes_total")
        stream = raw.stub.Download(
            pb.DownloadRequest(handle=handle, chunk_bytes=64 << 10), metadata=raw.metadata, timeout=120
        )
        head = read_header(stream)
        first = next(stream)
        add = pb.OpRequest(op="add_", args=[pb.OpArg(handle=handle), pb.OpArg(scalar=pb.Scalar(i=1))])
        raw.op(add)
        after = raw.download_numpy(handle)
        assert np.all(after == 1.0), "the download after add_ must see it"
        rest = b"".join(message.chunk for message in stream)
        data = np.frombuffer(first.chunk + rest, dtype=np.float32)
        assert head.span_nbytes == 4 * n and data.size == n
        assert np.count_nonzero(data) == 0, (
            f"the paused download saw {np.count_nonzero(data)} elements written after it began"
        )
        assert scrape("tensord_copy_on_write_bytes_total") - copied_before == 4 * n
    # Both copies are gone with the session: nothing stays charged.
    assert wait_for(lambda: scrape("tensord_tensor_bytes", device="cpu") == 0)


def test_threads_writing_while_others_download_never_see_a_torn_tensor(server):
    """One client, several threads: one keeps adding 1 to every element of a
    large tensor in place, the others download it over and over. Every
    download must be uniform (one value everywhere) and never go backwards."""
    n = 4 * MIB  # float64: 32 MiB
    with tensord.connect(server.address, timeout=120) as client:
        t = client.from_numpy(np.zeros(n, dtype=np.float64))
        stop = threading.Event()
        errors: list[str] = []

        def writer() -> None:
            with tensord.no_grad():
                while not stop.is_set():
                    t.add_(1.0)
                    client.synchronize()

        def reader(index: int) -> None:
            last = -1.0
            for _ in range(6):
                a = t.numpy()
                low, high = float(a.min()), float(a.max())
                if low != high:
                    errors.append(f"reader {index}: a torn download holds values {low} to {high}")
                if low < last:
                    errors.append(f"reader {index}: went back from {last} to {low}")
                last = low

        writing = threading.Thread(target=writer)
        writing.start()
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(reader, range(3)))
        finally:
            stop.set()
            writing.join()
        assert not errors, errors
        final = float(t.numpy()[0])
        assert final >= 1.0, "the writer never ran"
        assert np.all(t.numpy() == final)
