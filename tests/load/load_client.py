"""One client of the load test: a seeded mix of uploads, ops, backward passes,
downloads and frees against a tensord server, every result checked against NumPy.

`run_client` runs in a process of its own (test_load.py starts 32 with
multiprocessing's spawn), so the clients do not take turns on one GIL. It
does not raise for what the server does: failures and wrong values come back
as messages in `Outcome.errors`, so that the test reports every client's.

Tensors are square float32 or float64 matrices of at most 128x128 (128 KiB),
and what ops make of them: below the 1 MiB from which the server keeps freed
blocks in its cache, so what the server still holds after the clients have
gone is what they leaked, not blocks kept on purpose for reuse.

Values are checked to a relative 1e-4 of a bound carried beside each expected
array (the same computation on absolute values), which covers the server
summing in another order or rounding tanh differently, at any depth of a
chain of ops, while a wrong or torn element is off by far more.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

import tensord

SIZES = (16, 32, 64, 128)
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Most tensors a client keeps between operations.
MAX_LIVE = 16
#: Results larger than this are checked and freed rather than kept as operands,
#: so that chains of ops stay well within float32's range.
MAX_MAGNITUDE = 1e4
RTOL = 1e-4
KINDS = ("upload", "elementwise", "matmul", "reduction", "backward", "download", "free")
WEIGHTS = (0.18, 0.2, 0.1, 0.1, 0.1, 0.17, 0.15)
#: A client stops after this many errors: the rest would mostly repeat them.
MAX_ERRORS = 20


@dataclasses.dataclass
class Outcome:
    """What one client did: operations per kind, errors (none when all went well), seconds."""

    client: int
    counts: dict[str, int]
    errors: list[str]
    seconds: float

    @property
    def operations(self) -> int:
        return sum(self.counts.values())


@dataclasses.dataclass
class Entry:
    """A live server tensor, the values it must hold, and the bound its rounding is relative to."""

    tensor: tensord.Tensor
    expected: np.ndarray
    scale: np.ndarray


class Mismatch(AssertionError):
    pass


def check(what: str, got: np.ndarray, expected: np.ndarray, scale: Any) -> None:
    """Raises Mismatch unless `got` has `expected`'s dtype and shape and every value
    within RTOL * `scale` of it."""
    if got.dtype != expected.dtype or got.shape != expected.shape:
        raise Mismatch(f"{what}: got {got.dtype}{list(got.shape)}, expected {expected.dtype}{list(expected.shape)}")
    bound = RTOL * (np.asarray(scale, np.float64) + 1e-6)
    error = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if not np.all(error <= bound):  # also when a value is NaN
        worst = np.unravel_index(np.argmax(np.nan_to_num(error - bound, nan=np.inf)), error.shape)
        raise Mismatch(
            f"{what}: {int(np.sum(~(error <= bound)))} of {error.size} values differ; "
            f"at {tuple(int(i) for i in worst)} got {got[worst]!r}, expected {expected[worst]!r}"
        )


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * a))  # the same function, without exp's overflow


class LoadClient:
    """One session's worth of mixed work; `step(kind)` does one operation."""

    def __init__(self, td: tensord.Client, rng: np.random.Generator) -> None:
        self.td = td
        self.rng = rng
        self.live: list[Entry] = []

    def step(self, kind: str) -> None:
        getattr(self, kind)()
        while len(self.live) > MAX_LIVE:
            self.free()

    # ---- operands --------------------------------------------------------------

    def pick(self, accept: Callable[[Entry], bool]) -> Entry | None:
        candidates = [e for e in self.live if accept(e)]
        return candidates[self.rng.integers(len(candidates))] if candidates else None

    def matrix(self) -> Entry:
        """A live square matrix, uploaded if there is none."""
        shape = lambda e: e.expected.shape  # noqa: E731
        return self.pick(lambda e: len(shape(e)) == 2 and shape(e)[0] == shape(e)[1]) or self.upload()

    def keep(self, tensor: tensord.Tensor, expected: np.ndarray, scale: np.ndarray) -> Entry | None:
        entry = Entry(tensor, expected, scale)
        if np.all(np.isfinite(expected)) and np.max(np.abs(expected), initial=0) <= MAX_MAGNITUDE:
            self.live.append(entry)
            return entry
        check("large result", tensor.numpy(), expected, scale)
        tensor.free()
        return None

    # ---- the operations ----------------------------------------------------------

    def upload(self) -> Entry:
        n = int(self.rng.choice(SIZES))
        a = self.rng.standard_normal((n, n)).astype(DTYPES[self.rng.integers(2)])
        if self.rng.random() < 0.3:
            a = a.T  # sent with its strides: the server holds a transposed layout
        entry = Entry(self.td.from_numpy(a), a.copy(), np.abs(a))
        self.live.append(entry)
        return entry

    def elementwise(self) -> None:
        x = self.matrix()
        y = self.pick(lambda e: e.expected.shape == x.expected.shape)
        t, a, sa = x.tensor, x.expected, x.scale
        if y is None or self.rng.random() < 0.25:
            which = self.rng.integers(3)
            if which == 0:
                self.keep(t.tanh(), np.tanh(a), sa + 1)
            elif which == 1:
                self.keep(t.relu() * 0.5, np.maximum(a, 0) * 0.5, sa * 0.5)
            else:
                self.keep(t.sigmoid() - 0.25, sigmoid(a) - 0.25, sa / 4 + 1)
            return
        u, b, sb = y.tensor, y.expected, y.scale
        which = self.rng.integers(4)
        if which == 0:
            self.keep(t + u, a + b, sa + sb)
        elif which == 1:
            self.keep(t - u, a - b, sa + sb)
        elif which == 2:
            self.keep(t.tanh() * u, np.tanh(a) * b, sb * (sa + 2))
        else:
            self.keep(t.sigmoid() * u, sigmoid(a) * b, sb * (sa / 4 + 2))

    def matmul(self) -> None:
        x = self.matrix()
        y = self.pick(lambda e: e.expected.shape == x.expected.shape and e.expected.dtype == x.expected.dtype)
        if y is None:
            b = self.rng.standard_normal(x.expected.shape).astype(x.expected.dtype)
            y = Entry(self.td.from_numpy(b), b, np.abs(b))
            self.live.append(y)
        lhs, a, sa = x.tensor, x.expected, x.scale
        if self.rng.random() < 0.3:
            lhs, a, sa = lhs.T, a.T, sa.T  # a view as an operand
        n = a.shape[1]
        expected = (a.astype(np.float64) @ y.expected.astype(np.float64) / n).astype(a.dtype)
        self.keep((lhs @ y.tensor) / float(n), expected, 2 * (sa @ y.scale) / n)  # divided: products stay near 1

    def reduction(self) -> None:
        x = self.matrix()
        dim = int(self.rng.integers(2))
        which = self.rng.integers(4)
        if which == 0:
            t, op = x.tensor.sum(), lambda v: np.sum(v, dtype=np.float64)
        elif which == 1:
            t, op = x.tensor.sum(dim=dim), lambda v: np.sum(v, axis=dim, dtype=np.float64)
        elif which == 2:
            t = x.tensor.mean(dim=dim, keepdim=True)
            op = lambda v: np.mean(v, axis=dim, keepdims=True, dtype=np.float64)  # noqa: E731
        else:
            t, op = x.tensor.max(dim=dim).values, lambda v: np.max(v, axis=dim).astype(np.float64)
        self.keep(t, np.asarray(op(x.expected)).astype(x.expected.dtype), np.asarray(op(x.scale)))

    def backward(self) -> None:
        """loss = mean(tanh(x @ w + b)**2) for fresh leaves w and b; checks the loss and both gradients."""
        x = self.matrix()
        got = x.tensor.numpy()  # the exact operand, so that the gradients can be checked tightly
        check("backward operand", got, x.expected, x.scale)
        a = got.astype(np.float64)
        n = a.shape[1]
        k = int(self.rng.choice(SIZES[:3]))
        w_np = self.rng.standard_normal((n, k)) / np.sqrt(n)
        b_np = self.rng.standard_normal(k)
        w = self.td.tensor(w_np, requires_grad=True)
        b = self.td.from_numpy(b_np).requires_grad_()
        xd = x.tensor.double() if x.expected.dtype != np.float64 else x.tensor
        h = (xd @ w + b).tanh()
        loss = (h * h).mean()
        twice = self.rng.random() < 0.25
        loss.backward(retain_graph=twice)
        if twice:
            loss.backward()  # gradients add up

        hn = np.tanh(a @ w_np + b_np)
        d_pre = (2 if twice else 1) * 2 * hn * (1 - hn * hn) / hn.size
        check("loss", np.asarray(loss.item()), np.asarray(np.mean(hn * hn)), 1.0)
        check("w.grad", w.grad.numpy(), a.T @ d_pre, np.abs(a).T @ np.abs(d_pre))
        check("b.grad", b.grad.numpy(), d_pre.sum(axis=0), np.abs(d_pre).sum(axis=0))
        if self.rng.random() < 0.5:  # the others go with their last reference, through the finalizers
            for t in (w, b, h, loss):
                t.free()

    def download(self) -> None:
        entry = self.pick(lambda e: True) or self.upload()
        got = entry.tensor.numpy()
        check("download", got, entry.expected, entry.scale)
        entry.expected, entry.scale = got, np.abs(got)  # roundings do not pile up along chains

    def free(self) -> None:
        if not self.live:
            return
        entry = self.live.pop(int(self.rng.integers(len(self.live))))
        if self.rng.random() < 0.5:
            entry.tensor.free()
        # Otherwise the last reference goes here and the client's finalizer frees it.

    def finish(self) -> None:
        """Checks and frees every live tensor; the session must then hold none."""
        while self.live:
            entry = self.live.pop()
            check("final download", entry.tensor.numpy(), entry.expected, entry.scale)
            entry.tensor.free()
        deadline = time.monotonic() + 30
        while (left := self.td.memory_info().session_tensors) and time.monotonic() < deadline:
            time.sleep(0.05)  # frees from finalizers are sent by the client's background thread
        if left:
            raise Mismatch(f"{left} tensors still live in the session after every one was freed")


#: The barrier the clients of one run wait on once connected (see `join`).
_start: Any = None


def join(start: Any) -> None:
    """Process initializer: `run_client(..., together=True)` waits on `start` before its first
    operation. (A barrier reaches a process only as it is started, not with a task.)"""
    global _start
    _start = start


def run_client(address: str, client: int, operations: int, seed: int, together: bool = False) -> Outcome:
    """Connects, waits for the other clients if `together` (see `join`), runs
    `operations` seeded operations, checks and frees what is left, and closes."""
    rng = np.random.default_rng([seed, client])
    kinds = rng.choice(len(KINDS), size=operations, p=WEIGHTS)
    counts = {kind: 0 for kind in KINDS}
    errors: list[str] = []
    began = time.monotonic()
    try:
        with tensord.connect(address, timeout=120, client_name=f"load-{client}") as td:
            if together:
                _start.wait(timeout=300)
            began = time.monotonic()
            load = LoadClient(td, rng)
            for i, k in enumerate(kinds):
                kind = KINDS[k]
                try:
                    load.step(kind)
                    counts[kind] += 1
                except Exception as e:  # noqa: BLE001 (reported; the test fails on any)
                    errors.append(f"client {client} operation {i} ({kind}): {type(e).__name__}: {e}")
                    if len(errors) >= MAX_ERRORS:
                        break
            load.finish()
    except Exception as e:  # noqa: BLE001
        errors.append(f"client {client}: {type(e).__name__}: {e}")
    return Outcome(client, counts, errors, time.monotonic() - began)
