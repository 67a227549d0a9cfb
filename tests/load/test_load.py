"""Load: one real tensord server, 32 concurrent clients in processes of their own,
each doing a fixed number of mixed operations (uploads, elementwise ops,
matmuls, reductions, backward passes, downloads, frees; see load_client.py)
with every result checked against NumPy.

It asserts that no client met an error or a wrong value, that the server is
still alive and answering, holding no storage and no session but the
checker's, and that its resident memory comes back within 10% of its
baseline once every client has closed. The baseline is taken after the same
32 clients have run a short warm-up together and closed, so that what the
server allocates once for that many connections (gRPC's threads and buffers,
malloc's per-thread arenas) is in it; the load then does many times as much.

TENSORD_LOAD_OPS sets the operations per client (default 1000: 32,000 in
all, about two minutes in all on the shared 2-core machine; 150 takes about
30 s) and TENSORD_LOAD_SEED the seed. The figures (operations per second; resident
memory at the baseline, the peak and after, in MiB) are printed; nothing here
asserts a time. Under a sanitizer (TENSORD_SANITIZER, see tests/e2e/servers.py)
everything but the resident-memory comparison runs.
"""
from __future__ import annotations

import multiprocessing
import os
import pathlib
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))

import load_client  # noqa: E402
import servers  # noqa: E402  (tests/e2e/servers.py: how the end-to-end tests run the binary)
import tensord  # noqa: E402

CLIENTS = 32
OPERATIONS = int(os.environ.get("TENSORD_LOAD_OPS", "1000"))
WARMUP_OPERATIONS = 20
SEED = int(os.environ.get("TENSORD_LOAD_SEED", "0"))
#: Resident memory after the clients have gone, relative to the baseline.
ALLOWED_GROWTH = 0.10
#: How long the server may take to give memory back after the last client closed.
SETTLE_SECONDS = 30


def status_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB (VmRSS: resident now; VmHWM: the peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def settled_rss(pid: int, below: float = float("inf")) -> int:
    """VmRSS in KiB once it is at most `below` and has not moved for 2.5 s (the
    server gives freed memory back on the two ticks of its once-a-second
    housekeeping that follow sessions closing), or the last reading after
    SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    readings = [status_kib(pid, "VmRSS")]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        readings.append(status_kib(pid, "VmRSS"))
        if len(readings) >= 6 and len(set(readings[-6:])) == 1 and readings[-1] <= below:
            break
    return readings[-1]


def run_together(
    pool: Executor, start: Any, address: str, first: int, operations: int
) -> tuple[list[load_client.Outcome], float]:
    """Runs CLIENTS clients at once (ids first, first + 1, ...); returns their
    Outcomes and the seconds from the moment all were connected to the last one's end."""
    futures = [
        pool.submit(load_client.run_client, address, first + i, operations, SEED, True) for i in range(CLIENTS)
    ]
    try:
        start.wait(timeout=300)  # every client connected: the clock starts
    except threading.BrokenBarrierError:
        failed = [f.exception() or f.result().errors for f in futures if f.done()]
        raise AssertionError(f"the clients did not all connect: {failed}") from None
    began = time.monotonic()
    outcomes = [f.result(timeout=1800) for f in futures]
    return outcomes, time.monotonic() - began


def errors_of(outcomes: list[load_client.Outcome]) -> str:
    errors = [message for outcome in outcomes for message in outcome.errors]
    return f"{len(errors)} errors, the first ones:\n" + "\n".join(errors[:20]) if errors else ""


@pytest.fixture
def server():
    launcher = servers.Launcher()
    try:
        yield launcher.server("--max-memory", "2G")
    finally:
        launcher.close()


def test_32_clients_mixing_work_leave_the_server_as_they_found_it(server, capsys):
    assert OPERATIONS > 0, f"TENSORD_LOAD_OPS must be positive, got {OPERATIONS}"
    pid = server.proc.pid
    # The clients are forked from a fresh process that has imported NumPy and
    # the client (grpc included) once and opened no channel: each starts in
    # milliseconds, where an interpreter of its own took a CPU-second, and
    # shares no connection or thread with this one.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "tensord"])  # by name: that process does not get sys.path
    start = context.Barrier(CLIENTS + 1)
    with ProcessPoolExecutor(CLIENTS, mp_context=context, initializer=load_client.join, initargs=(start,)) as pool:
        warmup, _ = run_together(pool, start, server.address, CLIENTS, WARMUP_OPERATIONS)
        assert not errors_of(warmup), errors_of(warmup)
        baseline = settled_rss(pid)
        outcomes, wall = run_together(pool, start, server.address, 0, OPERATIONS)
    peak = status_kib(pid, "VmHWM")

    assert not errors_of(outcomes), errors_of(outcomes)
    assert [o.operations for o in outcomes] == [OPERATIONS] * CLIENTS
    assert server.alive(), f"tensord died: {server.stderr_text()}"
    after = settled_rss(pid, below=baseline * (1 + ALLOWED_GROWTH))

    total = CLIENTS * OPERATIONS
    counts = {kind: sum(o.counts[kind] for o in outcomes) for kind in load_client.KINDS}
    with capsys.disabled():
        print(
            f"\nload: {CLIENTS} clients x {OPERATIONS} operations = {total} in {wall:.1f} s, "
            f"{total / wall:.0f} operations/s ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
            f"server resident memory: baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
            f"after {after / 1024:.1f} MiB ({(after / baseline - 1) * 100:+.1f}%)"
        )

    # Still answering, and holding nothing for anyone: one session (this one), no storage.
    with tensord.connect(server.address, timeout=30) as td:
        a = np.arange(12.0).reshape(3, 4)
        np.testing.assert_array_equal((td.from_numpy(a) * 2).numpy(), a * 2)
        info = td.memory_info()
    assert (info.sessions, info.bytes_in_use) == (1, 0), info
    assert servers.health_status(server.address) == servers.SERVING
    if servers.SANITIZER:  # its shadow memory and quarantine swamp the server's own
        print(f"resident memory not compared: the server runs under the {servers.SANITIZER} sanitizer")
    else:
        assert after <= baseline * (1 + ALLOWED_GROWTH), (
            f"resident memory {after / 1024:.1f} MiB after the clients closed, baseline {baseline / 1024:.1f} MiB "
            f"({(after / baseline - 1) * 100:+.1f}%, {ALLOWED_GROWTH:.0%} allowed)"
        )
    assert server.stop() == 0, server.stderr_text()

