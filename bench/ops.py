#!/usr/bin/env python3
"""Op overhead, pipelining, fairness and compute speed of tensord, against baselines
measured in the same run.

* Small ops: `a + b` on 4x4 tensors followed by a sync (one round trip) next to
  the emptiest RPC the client can make (KeepAlive).
* Pipelined throughput: `x = x + 1` issued N times, then one sync, in ops/s,
  next to the same loop in blocking mode, sequential empty RPCs per second
  (what one round trip per op would allow), and local PyTorch and NumPy.
* Fairness: p50/p99 latency of a small op (op + sync) on an idle server, and
  while a second client (another process) runs 2048x2048 matmuls back to back.
* Matmul: one 1024x1024 float32 matmul next to NumPy's in this process, and
  the combined throughput of two clients (processes) each running 1024x1024
  matmuls next to one client's.
* Indexing: a gather of rows by an index tensor, a boolean mask and a
  scatter-add (index_put_ with accumulate), next to NumPy (and PyTorch).
* The linear-regression tutorial's training loop (model, MSELoss, SGD, 100
  steps, predictions downloaded), pipelined and in blocking mode, next to the
  same loop in local PyTorch (when `torch` is importable; one thread) and the
  same 100 steps by hand in NumPy.

Medians of interleaved runs; the conditions are printed with the figures.

    python bench/ops.py [--runs N] [--size N] [--ops N]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np

import tensord
from tensord.v1 import tensord_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[1]
BINARY = pathlib.Path(os.environ.get("TENSORD_BIN", ROOT / "build" / "tensord"))


def medians(candidates: dict[str, Callable[[], object]], runs: int, block: int = 1,
            pause: float = 0.0) -> dict[str, float]:
    """Median seconds per call. Rounds alternate the candidates; each runs
    `block` calls in a row after `pause` seconds of rest."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, fn in candidates.items():
            time.sleep(pause)
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # small problems: threads only add overhead
    return torch


# ---- worker processes (a second client that does not share this one's GIL) ------------


def matmul_worker(address: str, size: int, count: int, seconds: float) -> None:
    """Runs size x size float32 matmuls back to back (a sync every 2, so the queue stays
    short): `count` of them, or for `seconds` when count is 0. Prints the seconds taken."""
    with tensord.connect(address) as td:
        a = td.from_numpy(np.random.default_rng(0).random((size, size), dtype=np.float32))
        b = td.from_numpy(np.random.default_rng(1).random((size, size), dtype=np.float32))
        (a @ b).numpy()
        print("ready", flush=True)
        sys.stdin.readline()  # go
        t0 = time.perf_counter()
        done = 0
        while (count and done < count) or (not count and time.perf_counter() - t0 < seconds):
            c = a @ b
            done += 1
            if done % 2 == 0:
                td.synchronize()
            del c
        td.synchronize()
        print(f"{time.perf_counter() - t0} {done}", flush=True)


def start_workers(address: str, n: int, size: int, count: int, seconds: float) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, __file__, "--matmul-worker", address, str(size), str(count), str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def finish_workers(procs: list[subprocess.Popen]) -> list[tuple[float, int]]:
    out = []
    for p in procs:
        seconds, done = p.stdout.readline().split()
        out.append((float(seconds), int(done)))
        p.stdin.close()
        p.wait()
    return out


# ---- the figures ---------------------------------------------------------------------


def small_op_latency(td: tensord.Client, runs: int) -> None:
    a = td.from_numpy(np.ones((4, 4), np.float32))
    b = td.from_numpy(np.ones((4, 4), np.float32))
    session = td._session

    def op_and_sync() -> None:
        c = a + b
        td.synchronize()
        del c

    lat = medians({
        "a + b, then synchronize()": op_and_sync,
        "a + b, then .numpy()": lambda: (a + b).numpy(),
        "empty RPC (KeepAlive)": lambda: session.call("KeepAlive", pb.KeepAliveRequest()),
    }, runs)
    base = lat["empty RPC (KeepAlive)"]
    print(f"\nsmall ops (4x4 float32), median of {runs} interleaved runs, loopback")
    for name, seconds in lat.items():
        print(f"  {name:<34}{seconds * 1e6:9.1f} us   {seconds / base:5.2f}x the empty RPC")


def pipelined_throughput(address: str, td: tensord.Client, n: int, runs: int) -> None:
    session = td._session
    torch = torch_or_none()

    def chain(client: tensord.Client, count: int) -> None:
        x = client.zeros(4)
        for _ in range(count):
            x = x + 1
        x.numpy()

    with tensord.connect(address, blocking=True) as blocking:
        blocking_n = max(200, n // 20)
        rpc_n = max(200, n // 20)
        candidates: dict[str, tuple[Callable[[], object], int]] = {
            "tensord pipelined": (lambda: chain(td, n), n),
            "tensord blocking mode": (lambda: chain(blocking, blocking_n), blocking_n),
            "sequential empty RPCs": (
                lambda: [session.call("KeepAlive", pb.KeepAliveRequest()) for _ in range(rpc_n)], rpc_n),
        }
        if torch is not None:
            def torch_chain() -> None:
                x = torch.zeros(4)
                for _ in range(n):
                    x = x + 1
            candidates["PyTorch (local, 1 thread)"] = (torch_chain, n)

        def numpy_chain() -> None:
            x = np.zeros(4, np.float32)
            for _ in range(n):
                x = x + 1
        candidates["NumPy (local)"] = (numpy_chain, n)
        seconds = medians({name: fn for name, (fn, _) in candidates.items()}, runs)
    rates = {name: candidates[name][1] / s for name, s in seconds.items()}
    print(f"\npipelined small ops: `x = x + 1` on 4 float32, {n} ops then one sync; median of {runs} runs")
    ours = rates["tensord pipelined"]
    for name, rate in rates.items():
        print(f"  {name:<34}{rate:12,.0f} ops/s   tensord pipelined is {ours / rate:6.2f}x this")


def fairness(address: str, td: tensord.Client, samples: int, size: int) -> None:
    a = td.from_numpy(np.ones((4, 4), np.float32))

    def sample() -> list[float]:
        out = []
        for _ in range(samples):
            t0 = time.perf_counter()
            (a + 1).numpy()
            out.append(time.perf_counter() - t0)
            time.sleep(0.001)
        return out

    sample()  # warm
    idle = sample()
    procs = start_workers(address, 1, size, 0, 3600)
    try:
        time.sleep(0.5)
        loaded = sample()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    print(f"\nsmall-op latency (op + .numpy() of a 4x4), {samples} samples each")
    print(f"  {'idle server':<44}p50 {percentile(idle, .5) * 1e3:6.2f} ms   p99 {percentile(idle, .99) * 1e3:6.2f} ms")
    print(f"  {f'another client running {size}x{size} matmuls':<44}p50 {percentile(loaded, .5) * 1e3:6.2f} ms   "
          f"p99 {percentile(loaded, .99) * 1e3:6.2f} ms   ({percentile(loaded, .99) / percentile(idle, .99):.2f}x idle p99)")


def matmul_speed(td: tensord.Client, address: str, n: int, runs: int) -> None:
    x = np.random.default_rng(0).random((n, n), dtype=np.float32)
    y = np.random.default_rng(1).random((n, n), dtype=np.float32)
    tx, ty = td.from_numpy(x), td.from_numpy(y)

    def server() -> None:
        product = tx @ ty
        td.synchronize()  # the product is computed, not downloaded
        del product

    mm = medians({"tensord matmul (+ sync)": server, "NumPy matmul": lambda: x @ y}, max(5, runs // 20),
                 block=5, pause=0.3)
    flops = 2 * n ** 3
    print(f"\n{n}x{n} float32 matmul, median of alternating blocks of 5 calls")
    for name, seconds in mm.items():
        print(f"  {name:<34}{seconds * 1e3:9.2f} ms  {flops / seconds / 1e9:7.1f} GFLOP/s")
    print(f"  tensord / NumPy speed: {mm['NumPy matmul'] / mm['tensord matmul (+ sync)']:.2f}x")
    np.testing.assert_allclose((tx @ ty).numpy(), x @ y, rtol=1e-4)

    count = 40
    results = {}
    for clients in (1, 2, 1, 2):
        runs_ = finish_workers(start_workers(address, clients, n, count, 0))
        wall = max(s for s, _ in runs_)
        results.setdefault(clients, []).append(clients * count * flops / wall / 1e9)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"  clients running {count} matmuls each (separate processes), combined GFLOP/s:")
    print(f"    one client  {one:7.1f}")
    print(f"    two clients {two:7.1f}   ({two / one:.2f}x one client's; {os.cpu_count()} CPUs)")


def indexing_speed(td: tensord.Client, runs: int) -> None:
    """Gathers, masks and scatter-adds on the server (computed, not downloaded)
    next to the same NumPy (and, when importable, PyTorch) calls in this process."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 256), dtype=np.float32)
    rows = rng.integers(0, 4096, 4096)
    flat = x.reshape(-1)
    bins = rng.integers(0, 1024, flat.size)
    tx, trows, tbins, tflat = td.from_numpy(x), td.from_numpy(rows), td.from_numpy(bins), td.from_numpy(flat)
    torch = torch_or_none()

    def on_server(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            out = fn()
            td.synchronize()
            del out
        return run

    def np_add_at() -> np.ndarray:
        acc = np.zeros(1024, dtype=np.float32)
        np.add.at(acc, bins, flat)
        return acc

    cases = {
        "x[rows] (4096 rows of 256 float32)": (on_server(lambda: tx[trows]), lambda: x[rows],
                                               (lambda t, r: lambda: t[r]) if torch else None),
        "x[x > 0] (1M float32)": (on_server(lambda: tx[tx > 0]), lambda: x[x > 0],
                                  (lambda t, r: lambda: t[t > 0]) if torch else None),
        "index_put_ accumulate (1M into 1024)": (
            on_server(lambda: td.zeros(1024).index_put_((tbins,), tflat, accumulate=True)), np_add_at,
            None),
    }
    print(f"\nindexing, median of {runs} alternating calls (tensord includes the sync round trip)")
    for name, (server, local, torch_fn) in cases.items():
        candidates = {"tensord": server, "NumPy": local}
        if torch is not None and torch_fn is not None:
            candidates["PyTorch"] = torch_fn(torch.from_numpy(x), torch.from_numpy(rows))
        if torch is not None and name.startswith("index_put_"):
            tb, tf = torch.from_numpy(bins), torch.from_numpy(flat)
            candidates["PyTorch"] = lambda: torch.zeros(1024).index_put_((tb,), tf, accumulate=True)
        m = medians(candidates, runs)
        line = "   ".join(f"{k} {v * 1e3:7.2f} ms" for k, v in m.items())
        ratios = "   ".join(f"tensord/{k} {m['tensord'] / v:5.2f}x" for k, v in m.items() if k != "tensord")
        print(f"  {name:<38}{line}   ({ratios})")
    np.testing.assert_array_equal(tx[trows].numpy(), x[rows])
    np.testing.assert_allclose(td.zeros(1024).index_put_((tbins,), tflat, accumulate=True).numpy(), np_add_at(),
                               rtol=1e-3, atol=1e-2)


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    X = rng.rand(100, 1)
    y = 2 * X + 1 + 0.1 * rng.randn(100, 1)
    return X, y


def training_loop(lib, X: np.ndarray, y: np.ndarray, epochs: int = 100) -> np.ndarray:
    """The tutorial's loop on `lib`: a tensord Client or the torch module (same names)."""
    X_tensor = lib.from_numpy(X).float()
    y_tensor = lib.from_numpy(y).float()
    model = lib.nn.Linear(1, 1)
    criterion = lib.nn.MSELoss()
    optimizer = lib.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(epochs):
        loss = criterion(model(X_tensor), y_tensor)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model(X_tensor).detach().numpy()


def numpy_loop(X: np.ndarray, y: np.ndarray, epochs: int = 100) -> np.ndarray:
    Xf, yf = X.astype(np.float32), y.astype(np.float32)
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
    b = rng.uniform(-1, 1, (1,)).astype(np.float32)
    for _ in range(epochs):
        grad_out = 2 * (Xf @ w.T + b - yf) / yf.size
        w -= np.float32(0.01) * (grad_out.T @ Xf)
        b -= np.float32(0.01) * grad_out.sum(0)
    return Xf @ w.T + b


def seed_loop(address: str, td: tensord.Client, runs: int) -> None:
    X, y = regression_data()
    torch = torch_or_none()
    with tensord.connect(address, blocking=True) as blocking:
        candidates: dict[str, Callable[[], object]] = {
            "tensord, pipelined": lambda: training_loop(td, X, y),
            "tensord, blocking mode": lambda: training_loop(blocking, X, y),
            "NumPy by hand": lambda: numpy_loop(X, y),
        }
        if torch is not None:
            candidates["PyTorch (local, 1 thread)"] = lambda: training_loop(torch, X, y)
        loop = medians(candidates, runs)
    steps = 100
    print(f"\nlinear-regression tutorial loop (100 SGD steps + download), median of {runs} runs")
    for name, seconds in loop.items():
        print(f"  {name:<34}{seconds * 1e3:9.2f} ms  {seconds / steps * 1e6:8.0f} us/step")
    if torch is not None:
        base = loop["PyTorch (local, 1 thread)"]
        print(f"  PyTorch {torch.__version__} from PyPI, torch.set_num_threads(1)")
        print(f"  tensord pipelined / PyTorch time: {loop['tensord, pipelined'] / base:.2f}x")
        print(f"  tensord blocking / PyTorch time:  {loop['tensord, blocking mode'] / base:.2f}x")
    else:
        print("  PyTorch: not importable here, so no PyTorch ratio (run with a Python that has torch)")
    print(f"  tensord pipelined / NumPy-by-hand time: {loop['tensord, pipelined'] / loop['NumPy by hand']:.2f}x")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--matmul-worker":
        address, size, count, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        matmul_worker(address, size, count, seconds)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="rounds for the latency figures")
    parser.add_argument("--size", type=int, default=1024, help="matmul size N (NxN float32)")
    parser.add_argument("--ops", type=int, default=20000, help="ops in the pipelined throughput chain")
    parser.add_argument("--samples", type=int, default=500, help="samples for the latency percentiles")
    args = parser.parse_args()

    proc = subprocess.Popen([str(BINARY), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        address = proc.stdout.readline().split()[-1]
        print(f"tensord {BINARY}, {os.cpu_count()} CPUs, loopback; Python {sys.version.split()[0]}")
        with tensord.connect(address) as td:
            small_op_latency(td, args.runs)
            pipelined_throughput(address, td, args.ops, max(3, args.runs // 40))
            fairness(address, td, args.samples, 2048)
            matmul_speed(td, address, args.size, args.runs)
            indexing_speed(td, max(5, args.runs // 10))
            seed_loop(address, td, max(3, args.runs // 20))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
