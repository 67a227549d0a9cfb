"""tensord against real PyTorch, case by case (cases.py says what is covered).

Each case runs the same code on both sides (program.py). They agree when both
refuse it, or when both give outputs (and gradients) of the same dtype and
shape, the same strides where the case is about layout, and the same values:
exactly for integers and bools, within a tolerance per dtype otherwise (NaN
where the other has NaN). Known, deliberate differences are listed in
differences.py and expected to differ. A failure prints a standalone
reproducer.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import differences
import program
from conftest import CASES

TOLERANCE = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 2e-5, "float64": 1e-12,
             "complex64": 2e-5, "complex128": 1e-12}


class Tensord(program.Library):
    def __init__(self, client) -> None:
        self.client = client
        self.namespace = {"lib": client, "F": client.nn.functional, "optim": client.optim}

    def tensor(self, packed, requires_grad):
        array = program.raw_numpy(packed)
        if packed.dtype == "bfloat16":
            array = array.view(ml_dtypes.bfloat16)
        t = self.client.from_numpy(array)
        return t.requires_grad_(True) if requires_grad else t

    def result(self, value):
        import tensord

        if not isinstance(value, tensord.Tensor):
            return program.Packed(type(value).__name__, (), None, repr(value).encode())
        array = value.detach().numpy()
        dtype = str(array.dtype)
        raw = array.view(np.uint16) if dtype == "bfloat16" else array
        return program.pack(raw, dtype, tuple(value.stride()))

    def synchronize(self):
        self.client.synchronize()


def values(packed: program.Packed) -> np.ndarray:
    raw = program.raw_numpy(packed)
    if packed.dtype == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return raw


def same_values(want: program.Packed, got: program.Packed, tol: float | None) -> str | None:
    if want.dtype != got.dtype:
        return f"dtype: torch {want.dtype}, tensord {got.dtype}"
    if want.shape != got.shape:
        return f"shape: torch {want.shape}, tensord {got.shape}"
    if want.strides is None:  # a Python number
        return None if want.data == got.data else f"value: torch {want.data!r}, tensord {got.data!r}"
    a, b = values(want), values(got)
    if a.dtype.kind in "biu":
        ok = np.array_equal(a, b)
    else:
        tol = tol if tol is not None else TOLERANCE[want.dtype]
        ok = np.allclose(b, a, rtol=tol, atol=tol, equal_nan=True) and np.array_equal(np.isinf(a), np.isinf(b))
    if ok:
        return None
    return f"values differ:\n  torch   {a.tolist()}\n  tensord {b.tolist()}"


def difference(case: program.Case, want: dict, got: dict) -> str | None:
    if "error" in want or "error" in got:
        if "error" in want and "error" in got:
            return None
        return f"torch: {want.get('error', 'ok')}\n  tensord: {got.get('error', 'ok')}"
    if len(want["out"]) != len(got["out"]):
        return f"torch gave {len(want['out'])} outputs, tensord {len(got['out'])}"
    for i, (w, g) in enumerate(zip(want["out"], got["out"])):
        if (problem := same_values(w, g, case.tol)) is not None:
            return f"output {i}: {problem}"
        if case.layout and w.strides != g.strides:
            return f"output {i} strides: torch {w.strides}, tensord {g.strides}"
    for name, w, g in zip(case.grad, want["grads"], got["grads"]):
        if (w is None) != (g is None):
            return f"grad of {name}: torch {'None' if w is None else 'a tensor'}, tensord {'None' if g is None else 'a tensor'}"
        if w is not None and (problem := same_values(w, g, case.tol)) is not None:
            return f"grad of {name}: {problem}"
    return None


def _param(case: program.Case):
    reason = differences.expected(case.id)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_parity(case: program.Case, reference: dict, td) -> None:
    want = reference[case.id]
    got = program.run(case, Tensord(td))
    problem = difference(case, want, got)
    if problem is not None:
        pytest.fail(f"{case.id}: {problem}\n\nreproducer:\n{program.reproducer(case)}\n\n"
                    f"tensord: {got.get('trace', '')}", pytrace=False)
