#!/usr/bin/env python3
"""Per-op overhead and compute speed of tensord, against baselines from the same run.

* `a + b` on two small tensors (one Op RPC, result returned as a handle) next
  to the emptiest RPC the same client can make to the same server
  (KeepAlive): the ratio is what an op costs beyond a round trip.
* A 1024x1024 float32 matmul on the server next to NumPy's in this process
  (both OpenBLAS underneath); the server figure includes its RPC.
* The linear-regression training loop of examples/linear_regression.py
  (model, MSELoss, SGD, 100 steps, predictions downloaded), end to end,
  next to the same loop in local PyTorch when `torch` is importable and the
  same 100 steps written by hand in NumPy.

Medians of interleaved runs.

    .venv/bin/python bench/ops.py [--runs N] [--size N]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
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
    `block` calls in a row after `pause` seconds of rest, so that one
    candidate's threads (OpenBLAS's spin for a while after a call) do not
    slow the next one down on a small machine."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, fn in candidates.items():
            time.sleep(pause)
            for _ in range(block):
                t0 = time.perf_counter()
                result = fn()
                times[name].append(time.perf_counter() - t0)
                if isinstance(result, tensord.Tensor):
                    # Freed now, outside the timing, rather than by the client's
                    # background thread while the next call runs.
                    result.free()
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="rounds for the latency figures")
    parser.add_argument("--size", type=int, default=1024, help="matmul size N (NxN float32)")
    args = parser.parse_args()

    proc = subprocess.Popen([str(BINARY), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        address = proc.stdout.readline().split()[-1]
        with tensord.connect(address) as td:
            a = td.from_numpy(np.ones((4, 4), np.float32))
            b = td.from_numpy(np.ones((4, 4), np.float32))
            session = td._session

            lat = medians({
                "a + b (4x4 float32)": lambda: a + b,  # type: ignore[operator]
                "empty RPC (KeepAlive)": lambda: session.call("KeepAlive", pb.KeepAliveRequest()),
            }, args.runs)
            print(f"latency, median of {args.runs} interleaved runs, loopback, {os.cpu_count()} CPUs")
            base = lat["empty RPC (KeepAlive)"]
            for name, seconds in lat.items():
                print(f"  {name:<34}{seconds * 1e6:9.1f} us   {seconds / base:5.2f}x the empty RPC")
            print("  (each result is freed right after its call, outside the timing)")

            n = args.size
            x = np.random.default_rng(0).random((n, n), dtype=np.float32)
            y = np.random.default_rng(1).random((n, n), dtype=np.float32)
            tx, ty = td.from_numpy(x), td.from_numpy(y)
            if hasattr(tx, "matmul"):
                runs = max(5, args.runs // 20)

                def server() -> tensord.Tensor:
                    return tx @ ty

                mm = medians({"tensord matmul": server, "NumPy matmul": lambda: x @ y}, runs,
                             block=5, pause=0.3)
                flops = 2 * n ** 3
                print(f"\n{n}x{n} float32 matmul, median of {runs} alternating blocks of 5 calls")
                for name, seconds in mm.items():
                    print(f"  {name:<34}{seconds * 1e3:9.2f} ms  {flops / seconds / 1e9:7.1f} GFLOP/s")
                print(f"  tensord / NumPy speed: {mm['NumPy matmul'] / mm['tensord matmul']:.2f}x")
                np.testing.assert_allclose((tx @ ty).numpy(), x @ y, rtol=1e-4)
            else:
                print("\nmatmul: not available in this build")

            seed_loop(td, max(3, args.runs // 40))
    finally:
        proc.terminate()
        proc.wait()


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


def seed_loop(td: tensord.Client, runs: int) -> None:
    X, y = regression_data()
    candidates: dict[str, Callable[[], object]] = {
        "tensord (remote autograd)": lambda: training_loop(td, X, y),
        "NumPy by hand": lambda: numpy_loop(X, y),
    }
    try:
        import torch

        torch.set_num_threads(1)  # a 100x1 problem: threads only add overhead
        candidates["PyTorch (local)"] = lambda: training_loop(torch, X, y)
    except ImportError:
        torch = None
    loop = medians(candidates, runs)
    steps = 100
    print(f"\nlinear-regression seed loop (100 SGD steps + download), median of {runs} runs")
    for name, seconds in loop.items():
        print(f"  {name:<34}{seconds * 1e3:9.2f} ms  {seconds / steps * 1e6:8.0f} us/step")
    ours = loop["tensord (remote autograd)"]
    if torch is not None:
        print(f"  tensord / PyTorch time: {ours / loop['PyTorch (local)']:.2f}x")
    else:
        print("  PyTorch: not importable here, so no PyTorch ratio (pip install torch to add it)")
    print(f"  tensord / NumPy-by-hand time: {ours / loop['NumPy by hand']:.2f}x"
          " (5 RPCs per step: forward, loss, zero_grad, backward, step)")


if __name__ == "__main__":
    main()
