"""Concurrent use: many threads, with their own clients or one shared client,
get every byte back intact, and small RPCs are served while a large upload is
in flight. Loops are bounded; nothing here measures time."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np

import tensord
from raw_wire import RawSession, chunk, header, pb, wait_for

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
