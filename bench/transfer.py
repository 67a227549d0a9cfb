#!/usr/bin/env python3
"""Upload/download throughput of tensord against baselines measured in the same run.

Moves one float32 tensor (256 MiB by default) to and from a local tensord and
prints the median GB/s of several runs next to:

* raw gRPC: the same bytes in messages of the same size between the same
  Python gRPC client and a minimal C++ gRPC server (build/raw_stream_server)
  that does nothing but copy them; the framework floor.
* Arrow Flight: `do_put` / `do_get` of the same array with pyarrow.flight,
  server in its own process (skipped with a note if pyarrow is missing).
* NumPy: one `np.copyto` of the array, the memory-bandwidth ceiling.

Every transfer ends with the data in a NumPy array (or on the server), so
each row counts the copies a user would pay. Also reports the client's peak
RSS during a download, in a fresh process, as a multiple of the tensor size.

    .venv/bin/python bench/transfer.py [--mib 256] [--runs 5] [--chunk-bytes N] [--sweep]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import struct
import subprocess
import sys
import textwrap
import time
from typing import Callable

import grpc
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("TENSORD_BUILD_DIR", ROOT / "build"))
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def start(cmd: list[str], ready_prefix: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith(ready_prefix):
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return proc, line.split()[-1]


def median_seconds(candidates: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each candidate over `runs` rounds.

    Rounds interleave the candidates (a, b, c, a, b, c, ...) so that a slow
    spell of a shared machine hits every figure alike instead of one of them.
    """
    for fn in candidates.values():
        fn()  # warm-up: connections, allocator, first-touch page faults
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


# ---- raw gRPC baseline ---------------------------------------------------------

def raw_download(channel: grpc.Channel, nbytes: int, chunk: int) -> np.ndarray:
    call = channel.unary_stream("/bench.Raw/Download", request_serializer=None,
                                response_deserializer=None)
    out = np.empty(nbytes, np.uint8)
    view = memoryview(out)
    pos = 0
    for message in call(struct.pack("<QQ", nbytes, chunk)):
        view[pos:pos + len(message)] = message  # the copy into the result array
        pos += len(message)
    assert pos == nbytes
    return out


def raw_upload(channel: grpc.Channel, data: np.ndarray, chunk: int) -> None:
    call = channel.stream_unary("/bench.Raw/Upload", request_serializer=None,
                                response_deserializer=None)
    view = memoryview(data.reshape(-1).view(np.uint8))

    def messages():
        for pos in range(0, len(view), chunk):
            yield bytes(view[pos:pos + chunk])  # grpcio sends bytes objects: one copy

    (count,) = struct.unpack("<Q", call(messages()))
    assert count == data.nbytes


# ---- Arrow Flight baseline -----------------------------------------------------

FLIGHT_SERVER = textwrap.dedent("""
    import sys, pyarrow.flight as fl
    class Server(fl.FlightServerBase):
        def __init__(self):
            super().__init__("grpc://127.0.0.1:0")
            self.table = None
        def do_put(self, context, descriptor, reader, writer):
            self.table = reader.read_all()
        def do_get(self, context, ticket):
            return fl.RecordBatchStream(self.table)
    server = Server()
    print(f"flight listening on 127.0.0.1:{server.port}", flush=True)
    server.serve()
""")


def flight_session(address: str, data: np.ndarray, chunk: int):
    import pyarrow as pa
    import pyarrow.flight as fl

    client = fl.connect(f"grpc://{address}")
    # Record batches of the same byte size as the gRPC chunks.
    table = pa.table({"x": pa.array(data.reshape(-1))})
    batches = table.to_batches(max_chunksize=max(1, chunk // data.itemsize))
    descriptor = fl.FlightDescriptor.for_path("bench")

    def put() -> None:
        writer, _ = client.do_put(descriptor, table.schema)
        for batch in batches:
            writer.write_batch(batch)
        writer.close()

    def get() -> np.ndarray:
        column = client.do_get(fl.Ticket(b"bench")).read_all().column("x")
        # A contiguous NumPy array, as tensord returns: one copy joins the batches.
        return column.combine_chunks().to_numpy() if column.num_chunks > 1 else column.to_numpy()

    return client, put, get


# ---- peak RSS ------------------------------------------------------------------

RSS_PROBE = textwrap.dedent("""
    import resource, sys, numpy as np, tensord
    address, n, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with tensord.connect(address, chunk_bytes=chunk) as td:
        t = td.rand(n, seed=0)  # created on the server: this process holds no copy yet
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize()
        before = rss()
        a = t.numpy()
        # VmHWM, not ru_maxrss: the latter survives exec and so would include
        # the parent's memory at the time it started this process.
        with open("/proc/self/status") as f:
            peak = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
        print(before, peak, a.nbytes)
""")


def peak_rss_ratio(address: str, n: int, chunk: int) -> float:
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, address, str(n), str(chunk)],
                         check=True, capture_output=True, text=True).stdout.split()
    before, peak, nbytes = map(int, out)
    return (peak - before) / nbytes


# ---- main ----------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="tensor size in MiB (float32)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--chunk-bytes", type=int, default=1 << 20, help="message size")
    parser.add_argument("--sweep", action="store_true",
                        help="also compare chunk sizes 256K..4M for tensord and raw gRPC")
    args = parser.parse_args()

    import tensord

    n = args.mib * (1 << 20) // 4
    data = np.random.default_rng(0).random(n, dtype=np.float32)
    gb = data.nbytes / 1e9
    procs = []
    try:
        srv, address = start([str(BUILD / "tensord"), "--listen", "127.0.0.1:0",
                              "--max-memory", f"{4 * args.mib + 64}M"], "tensord listening")
        procs.append(srv)
        raw, raw_address = start([str(BUILD / "raw_stream_server")], "raw-stream listening")
        procs.append(raw)
        raw_channel = grpc.insecure_channel(raw_address, options=CHANNEL_OPTIONS)

        flight_put = flight_get = None
        try:
            import pyarrow  # noqa: F401
            flight, flight_address = start([sys.executable, "-c", FLIGHT_SERVER], "flight listening")
            procs.append(flight)
            _, flight_put, flight_get = flight_session(flight_address, data, args.chunk_bytes)
        except ImportError:
            print("note: pyarrow is not installed; Arrow Flight rows are skipped")

        def measure(chunk: int, with_flight: bool) -> dict[str, float]:
            with tensord.connect(address, chunk_bytes=chunk) as td:
                t = td.from_numpy(data)
                assert np.array_equal(t.numpy(), data)
                candidates: dict[str, Callable[[], object]] = {
                    "tensord download": t.numpy,
                    "raw gRPC download": lambda: raw_download(raw_channel, data.nbytes, chunk),
                    "tensord upload": lambda: td.from_numpy(data).free(),
                    "raw gRPC upload": lambda: raw_upload(raw_channel, data, chunk),
                }
                if with_flight and flight_put is not None:
                    flight_put()
                    assert np.array_equal(flight_get(), data)
                    candidates["Flight do_get"] = flight_get
                    candidates["Flight do_put"] = flight_put
                return median_seconds(candidates, args.runs)

        print(f"tensor: {args.mib} MiB float32; chunk {args.chunk_bytes} B; median of {args.runs} "
              f"interleaved runs; loopback; {os.cpu_count()} CPUs; grpcio {grpc.__version__}, "
              f"numpy {np.__version__}")
        rows = measure(args.chunk_bytes, with_flight=True)

        dst = np.empty_like(data)
        rows.update(median_seconds({"NumPy copy": lambda: np.copyto(dst, data)}, args.runs))

        def rate(name: str) -> float:
            return gb / rows[name]

        print(f"\n{'figure':<20}{'GB/s':>8}{'vs raw gRPC':>14}{'vs Flight':>12}{'vs NumPy':>11}")
        for direction, raw_row, flight_row in (("download", "raw gRPC download", "Flight do_get"),
                                               ("upload", "raw gRPC upload", "Flight do_put")):
            name = f"tensord {direction}"
            flight_ratio = (f"{rate(name) / rate(flight_row):.2f}x" if flight_row in rows else "n/a")
            print(f"{name:<20}{rate(name):>8.2f}{rate(name) / rate(raw_row):>13.2f}x"
                  f"{flight_ratio:>12}{rate(name) / rate('NumPy copy'):>10.2f}x")
        for name in ("raw gRPC download", "raw gRPC upload", "Flight do_get", "Flight do_put",
                     "NumPy copy"):
            if name in rows:
                print(f"{name:<20}{rate(name):>8.2f}")

        with tensord.connect(address, chunk_bytes=args.chunk_bytes) as td:
            # A column of a 64 MiB matrix next to a contiguous tensor of the same size.
            big = td.from_numpy(np.random.default_rng(1).random((4096, 4096), dtype=np.float32))
            column, contiguous = big[:, 7], td.from_numpy(np.ascontiguousarray(big[:, 7].numpy()))
            narrow = median_seconds({"column": column.numpy, "contiguous": contiguous.numpy}, 4 * args.runs)
            print(f"\nnarrow view: big[:, 7] of a 4096x4096 float32 {narrow['column'] * 1e3:.2f} ms, "
                  f"a contiguous 4096-element tensor {narrow['contiguous'] * 1e3:.2f} ms "
                  f"({narrow['column'] / narrow['contiguous']:.2f}x)")

        ratio = peak_rss_ratio(address, n, args.chunk_bytes)
        print(f"\nclient peak RSS during download: {ratio:.2f}x the tensor size "
              f"(fresh process; growth over its RSS before the download)")

        if args.sweep:
            print(f"\nchunk-size sweep (GB/s, median of {args.runs}):")
            print(f"{'chunk':>10}{'td down':>10}{'raw down':>10}{'td up':>10}{'raw up':>10}")
            for chunk in (256 << 10, 1 << 20, 2 << 20, 4 << 20):
                r = measure(chunk, with_flight=False)
                print(f"{chunk:>10}{gb / r['tensord download']:>10.2f}"
                      f"{gb / r['raw gRPC download']:>10.2f}{gb / r['tensord upload']:>10.2f}"
                      f"{gb / r['raw gRPC upload']:>10.2f}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
